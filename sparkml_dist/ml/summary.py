"""One training-summary base for every fitted model of this package.

A summary is a keyword-only dataclass: the fields every fit reports (iterations, convergence, engine, seconds, bytes
communicated) live here, each family adds its own (``trainingCost``, ``xieBeni``, ``dualObjective``...).
``asDict()`` is what a model saves beside its arrays and ``fromDict()`` what it loads back (unknown keys from another
version are ignored, missing ones take their defaults), so a summary survives ``save``/``load``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

_S = TypeVar("_S", bound="TrainingSummary")


@dataclass(kw_only=True, repr=False)
class TrainingSummary:
    """What every fit reports.

    Attributes
    ----------
    numIter : int
        Iterations (boosting rounds, Lloyd iterations, cascade passes) run.
    converged : bool or None
        Whether the stopping rule was met before the iteration cap (None where it does not apply).
    engine : str
        ``"mapreduce"`` or ``"bsp"``.
    fitTime : float
        Wall seconds of the whole ``fit``.
    loadTime : float or None
        Seconds spent reading, converting and validating the data.
    iterationTimes : list of float
        Wall seconds per iteration.
    bytesCommunicated : int or None
        Bytes of partial results moved between tasks and the driver (MapReduce: pickled task arguments and results;
        BSP: what every rank sent in its collectives).
    passes : int or None
        Passes over the data.
    """

    numIter: int = 0
    converged: bool | None = None
    engine: str = ""
    fitTime: float = 0.0
    loadTime: float | None = None
    iterationTimes: list[float] = field(default_factory=list)
    bytesCommunicated: int | None = None
    passes: int | None = None

    def asDict(self) -> dict[str, Any]:
        """Every field, JSON-able (what the model's writer stores)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def fromDict(cls: type[_S], values: dict[str, Any]) -> _S:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    def __repr__(self) -> str:
        shown = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                 if not isinstance(getattr(self, f.name), (list, dict))]
        return f"{type(self).__name__}({', '.join(shown)})"


class HasTrainingSummary:
    """``model.summary`` / ``model.hasSummary`` (pyspark.ml's names) over the model's ``_summary``."""

    _summary: Any = None

    @property
    def hasSummary(self) -> bool:
        return self._summary is not None

    @property
    def summary(self) -> Any:
        if self._summary is None:
            raise RuntimeError(f"no training summary available for this {type(self).__name__}")
        return self._summary
