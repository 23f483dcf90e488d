"""Helpers for the Databricks notebooks in ``jobs/notebooks/``: widget values checked once, with an error that names
the widget, before any Spark work; the notebook's input and output paths checked the same way.

    rows = widget(dbutils, "rows", int, minimum=1)
    df = read_input(spark, widget(dbutils, "input"), widget_name="input")      # None when the widget is empty
    output = check_output(spark, widget(dbutils, "output"), overwrite=widget(dbutils, "overwrite", as_bool))
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from typing import Any


def as_bool(text: str) -> bool:
    """``"true"``/``"false"`` (any case, also yes/no/1/0) -> bool; anything else is a ``ValueError``."""
    value = str(text).strip().lower()
    if value in ("true", "yes", "1"):
        return True
    if value in ("false", "no", "0", ""):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def positive(cast: Callable[[str], Any] = float) -> Callable[[str], Any]:
    """``cast`` that also refuses values ``<= 0`` (and NaN/inf): ``widget(dbutils, "lr", positive(float))``."""
    def convert(text: str):
        value = cast(text)
        if not (value > 0 and value != float("inf")):
            raise ValueError("must be a finite number > 0")
        return value

    convert.__name__ = f"positive {getattr(cast, '__name__', 'number')}"
    return convert


def json_object(text: str) -> dict:
    """A JSON object widget (``{"unrollLength": 16}``); empty means ``{}``."""
    value = json.loads(text) if str(text).strip() else {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object, got {type(value).__name__}")
    return value


json_object.__name__ = "a JSON object"


def widget(dbutils: Any, name: str, cast: Callable[[str], Any] = str, *, minimum: float | None = None,
           choices: tuple | list | None = None) -> Any:
    """The value of widget ``name`` converted by ``cast`` and checked; a bad value raises ``ValueError`` naming the
    widget and what it expects."""
    raw = dbutils.widgets.get(name)
    try:
        value = cast(raw.strip() if isinstance(raw, str) else raw)
    except (TypeError, ValueError) as exc:
        kind = getattr(cast, "__name__", "a valid value")
        raise ValueError(f"widget {name!r} = {raw!r}: expected {kind} ({exc})") from None
    if minimum is not None and value < minimum:
        raise ValueError(f"widget {name!r} = {raw!r}: must be >= {minimum}")
    if choices is not None and value not in choices:
        raise ValueError(f"widget {name!r} = {raw!r}: must be one of {', '.join(map(str, choices))}")
    return value


def config_error(exc: Exception, widgets: dict[str, tuple[str, Any]], fallback: str) -> ValueError:
    """A library error about a parameter (``totalSteps=100 is smaller ...``) restated naming the widget it came
    from: ``widgets`` maps parameter name -> (widget name, widget value); other parameters belong to ``fallback``."""
    message = str(exc)
    head = message.split("; known:")[0]  # an unknown-name error lists every known name after this
    found = [(m.start(), name, value) for param, (name, value) in widgets.items()
             if (m := re.search(rf"\b{re.escape(param)}\b", head))]
    if found:  # the parameter named first is the culprit ("totalSteps=100 is smaller than ... env steps")
        _, name, value = min(found)
        return ValueError(f"widget {name!r} = {value!r}: {message}")
    return ValueError(f"widget {fallback!r}: {message}")


def _exists(spark, path: str) -> bool:
    from sparkml_dist.data.io import path_exists

    return path_exists(path, spark)


def read_input(spark, path: str, widget_name: str = "input", label_col: str = "label"):
    """``None`` for an empty widget (the notebook generates its data), else the DataFrame at ``path`` (Parquet,
    CSV, LibSVM or a bundled dataset name, as :func:`sparkml_dist.data.sources.load`), checked to exist and to hold
    a ``features`` column first."""
    from sparkml_dist.data.sources import BUNDLED, load

    if not path:
        return None
    if path not in BUNDLED and not _exists(spark, path):
        raise FileNotFoundError(f"widget {widget_name!r} = {path!r}: no such file or directory")
    df = load(spark, path)
    if "features" not in df.columns:
        raise ValueError(f"widget {widget_name!r} = {path!r}: no 'features' column (has {', '.join(df.columns)})")
    if label_col and label_col not in df.columns:
        raise ValueError(f"widget {widget_name!r} = {path!r}: no {label_col!r} column (has {', '.join(df.columns)})")
    return df


def check_output(spark, path: str, overwrite: bool, widget_name: str = "output") -> str | None:
    """``path`` (or ``None`` for an empty widget) after checking that it may be written: an existing path without
    ``overwrite`` is refused up front, so a long training never ends in a write error."""
    if not path:
        return None
    if _exists(spark, path) and not overwrite:
        raise FileExistsError(f"widget {widget_name!r} = {path!r}: already exists (set widget 'overwrite' to true)")
    parent = os.path.dirname(path.rstrip("/"))
    if "://" not in path and not path.startswith("dbfs:") and parent and os.path.exists(parent) \
            and not os.access(parent, os.W_OK):
        raise PermissionError(f"widget {widget_name!r} = {path!r}: cannot write into {parent}")
    return path


def save_models(spark, path: str | None, models: dict[str, Any], overwrite: bool) -> None:
    """Save each model to ``path/<name>`` in one atomic step (all of them or none)."""
    from sparkml_dist.data.io import atomic_path

    if not path:
        return
    with atomic_path(path, spark, overwrite=overwrite) as tmp:
        for name, model in models.items():
            model.write().save(f"{tmp}/{name}")
