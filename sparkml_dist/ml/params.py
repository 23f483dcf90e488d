"""One Params base for every estimator of this package: typed Params, a declarative constraints table, one check.

``pyspark.ml`` conventions: camelCase Params declared once, on mixins that also hold their getters
(``HasEngine.getEngine``); setters live on the estimators. Each mixin adds its value constraints to the class
attribute ``_constraints`` (Param name -> :class:`Interval` / :class:`OneOf` / :class:`Either` / :class:`Satisfies`)
and its cross-Param rules to ``_rules``; :meth:`ValidatedParams._validate_params`, the first call of every ``_fit``,
checks the union of the tables along the class hierarchy (a subclass's entry replaces its base's), so a bad value
raises one ``ValueError`` naming the Param before any Spark job runs. This follows scikit-learn's
``_parameter_constraints`` (checked once, at ``fit``) on top of ``pyspark.ml``'s Params.

Example::

    class HasAlpha(ValidatedParams):
        alpha = typed_param("alpha", "smoothing, > 0", TypeConverters.toFloat)
        _constraints = {"alpha": Interval(0, None, closed="neither")}

        def getAlpha(self) -> float:
            return self.getOrDefault(self.alpha)
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasSeed

from sparkml_dist.engine import ENGINES


def stable_seed(name: str) -> int:
    """A fixed default seed for class ``name`` (crc32, so the same in every process; pyspark's ``HasSeed`` default,
    ``hash(class name)``, changes with ``PYTHONHASHSEED`` and so from one driver process to the next)."""
    return zlib.crc32(name.encode()) & 0x7FFFFFFF


def typed_param(name: str, doc: str, converter: Callable[[Any], Any]) -> Param:
    """A class-level Param (``Params._dummy()`` parent, as ``pyspark.ml`` declares them) whose values are converted
    by ``converter`` when set (``TypeConverters.toInt`` etc.)."""
    return Param(Params._dummy(), name, doc, typeConverter=converter)


# ---------------------------------------------------------------------------------------------------------------
# Constraints: each says whether a value is allowed and how to say what is
# ---------------------------------------------------------------------------------------------------------------
def _number(x: float) -> str:
    return repr(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Interval:
    """A number in ``[low, high]`` (``None``: unbounded; ``closed`` in both/left/right/neither). ``note`` is appended
    to the description (what special values mean); ``subject`` names the Param in words (default: its name)."""

    low: float | None = None
    high: float | None = None
    closed: str = "both"
    note: str = ""
    subject: str = ""

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:  # NaN fails too
            return False
        lo_ok = self.low is None or (value >= self.low if self.closed in ("both", "left") else value > self.low)
        hi_ok = self.high is None or (value <= self.high if self.closed in ("both", "right") else value < self.high)
        return lo_ok and hi_ok

    def describe(self) -> str:
        left, right = self.closed in ("both", "left"), self.closed in ("both", "right")
        if self.high is None:
            text = f"{'>=' if left else '>'} {_number(self.low)}" if self.low is not None else "a number"
        elif self.low is None:
            text = f"{'<=' if right else '<'} {_number(self.high)}"
        else:
            text = f"in {'[' if left else '('}{_number(self.low)}, {_number(self.high)}{']' if right else ')'}"
        return f"{text} {self.note}".strip()


@dataclass(frozen=True)
class OneOf:
    """One of ``choices``; ``refused`` maps values refused on purpose to the reason (said instead of the list)."""

    choices: tuple
    refused: tuple[tuple[Any, str], ...] = ()
    subject: str = ""

    def accepts(self, value: Any) -> bool:
        return value in self.choices

    def describe(self) -> str:
        return "one of " + ", ".join(str(c) for c in self.choices)

    def message(self, name: str, value: Any) -> str:
        reason = dict(self.refused).get(value) if isinstance(value, str) else None
        if reason:
            return f"{name}={value!r} is not supported: {reason}"
        return f"{name}={value!r} is not supported; choose one of {', '.join(str(c) for c in self.choices)}"


@dataclass(frozen=True)
class Satisfies:
    """Any rule a function can decide (``test(value) -> bool``), described in words."""

    test: Callable[[Any], bool]
    description: str
    subject: str = ""

    def accepts(self, value: Any) -> bool:
        try:
            return bool(self.test(value))
        except (TypeError, ValueError):
            return False

    def describe(self) -> str:
        return self.description


@dataclass(frozen=True)
class Either:
    """Any of several constraints (``maxBins``: 0 or >= 2); ``description`` overrides the joined descriptions."""

    options: tuple
    description: str = ""
    subject: str = ""

    def accepts(self, value: Any) -> bool:
        return any(c.accepts(value) for c in self.options)

    def describe(self) -> str:
        return self.description or " or ".join(c.describe() for c in self.options)


def constraint_message(name: str, value: Any, constraint: Any) -> str:
    """The error for ``name=value`` breaking ``constraint``: ``"<name>=<value>: <subject> must be <rule>"``
    (choices: ``"<name>=<value> is not supported; choose one of ..."``)."""
    if hasattr(constraint, "message"):
        return constraint.message(name, value)
    return f"{name}={value!r}: {constraint.subject or name} must be {constraint.describe()}"


class ValidatedParams(Params):
    """Params with a declarative constraints table checked once by :meth:`_validate_params`.

    ``_constraints``: Param name -> constraint, for single values (a Param left unset without a default is not
    checked). ``_rules``: functions ``rule(params) -> error message or None`` for what involves several Params.
    Both are collected along the MRO; a subclass's entry for a name replaces its base's.
    """

    _constraints: ClassVar[dict[str, Any]] = {}
    _rules: ClassVar[tuple[Callable[[Any], str | None], ...]] = ()

    @classmethod
    def _constraint_table(cls) -> dict[str, Any]:
        table: dict[str, Any] = {}
        for klass in reversed(cls.__mro__):
            table.update(klass.__dict__.get("_constraints", {}))
        return table

    @classmethod
    def _rule_list(cls) -> list[Callable[[Any], str | None]]:
        rules: list[Callable[[Any], str | None]] = []
        for klass in reversed(cls.__mro__):
            rules.extend(r for r in klass.__dict__.get("_rules", ()) if r not in rules)
        return rules

    def _validate_params(self) -> None:
        """Raise ``ValueError`` for the first Param value that breaks its constraint, then for the first broken
        cross-Param rule (no data needed: call it before any Spark job)."""
        for name, constraint in self._constraint_table().items():
            if not self.hasParam(name) or not self.isDefined(self.getParam(name)):
                continue
            value = self.getOrDefault(self.getParam(name))
            if value is None:
                continue
            if not constraint.accepts(value):
                raise ValueError(constraint_message(name, value, constraint))
        for rule in self._rule_list():
            message = rule(self)
            if message:
                raise ValueError(message)

    def _set_params(self, kwargs: dict[str, Any]):
        """``setParams`` body: set every keyword given (``None`` leaves a Param at its default, as unset)."""
        return self._set(**{k: v for k, v in kwargs.items() if v is not None})

    def _optional(self, param: Param) -> Any:
        """A Param's value, or None when it is unset without a default (or set to an empty string)."""
        if not self.isDefined(param):
            return None
        value = self.getOrDefault(param)
        return None if value == "" else value


# ---------------------------------------------------------------------------------------------------------------
# Mixins shared by several families
# ---------------------------------------------------------------------------------------------------------------
class HasEngine(ValidatedParams):
    """The ``engine`` Param of every distributed estimator."""

    engine = typed_param("engine", "how the loop runs: 'mapreduce' (one Spark job per data pass over blocks resident "
                                   "on the executors) or 'bsp' (the whole loop in one barrier stage, partial results "
                                   "combined by gloo collectives); the same model either way",
                         TypeConverters.toString)
    _constraints = {"engine": OneOf(ENGINES)}

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(engine="mapreduce")

    def getEngine(self) -> str:
        return self.getOrDefault(self.engine)


class HasStableSeed(HasSeed):
    """``seed`` with a default fixed per estimator class and the same in every process (see :func:`stable_seed`);
    a model shares its estimator's default (``KMeansModel`` -> ``"KMeans"``)."""

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(seed=stable_seed(type(self).__name__.replace("Model", "")))
