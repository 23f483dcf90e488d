"""What every fitted clustering model of this package shares: centres, the training summary, persistence."""

from __future__ import annotations

from typing import Any

import numpy as np

from sparkml_dist.engine import launch
from sparkml_dist.ml.persistence import ArrayPersistable
from sparkml_dist.ml.summary import HasTrainingSummary


def fit_on_engine(engine: str, df, spec, body, args: tuple, check) -> Any:
    """:func:`~sparkml_dist.engine.launch` a clustering body; its result gets the run's ``load_seconds`` and
    ``bytes_communicated``."""
    run = launch(engine, df, spec, body, args, check)
    result = run.result
    result.load_seconds = run.load_seconds
    result.bytes_communicated = run.bytes_communicated
    return result


class CentersModelMixin(ArrayPersistable, HasTrainingSummary):
    """Centres (``clusterCenters()`` / ``centers``) and ``summary`` of a fitted model, saved and loaded with it.

    Subclasses set ``_summary_cls`` (a :class:`~sparkml_dist.ml.summary.TrainingSummary`) and may extend
    ``_get_state``/``_from_state`` with more arrays.
    """

    _summary_cls: Any = None

    def _init_state(self, centers: np.ndarray | None, summary: Any) -> None:
        self._centers = None if centers is None else np.asarray(centers, dtype=np.float64)
        self._summary = summary

    def clusterCenters(self) -> list[np.ndarray]:
        """The centres as a list of arrays (MLlib's return type)."""
        return [c.copy() for c in self._centers]

    @property
    def centers(self) -> np.ndarray:
        """The centres as one ``k x d`` array."""
        return self._centers.copy()

    def _get_state(self) -> tuple[dict[str, np.ndarray], dict]:
        return {"centers": self._centers}, {"summary": self._summary.asDict() if self._summary else None}

    @classmethod
    def _summary_from(cls, extra: dict):
        return cls._summary_cls.fromDict(extra["summary"]) if extra.get("summary") else None

    @classmethod
    def _from_state(cls, arrays: dict[str, np.ndarray], extra: dict):
        return cls(arrays["centers"], cls._summary_from(extra))
