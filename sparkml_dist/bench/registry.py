"""The one registry of benchmark cases that ``sparkml-dist bench`` runs.

A case is one algorithm variant on one dataset, with the sizes it runs at in each suite (``quick``: seconds, to
check the machinery; ``standard``: minutes; ``full``: the README's figures) and the baselines it runs in the same
process on the same data. A family adds its cases in its own module with the :func:`bench_case` decorator, and the
module is listed in :data:`CASE_MODULES` (imported when the bench starts; a listed module that does not exist yet is
skipped, so ``bench/deep.py`` and ``bench/rl.py`` are picked up as soon as they land)::

    from sparkml_dist.bench.registry import CaseContext, bench_case

    @bench_case("clustering", "kmeans", variants=("mapreduce", "bsp"), dataset="blobs", quality="cost",
                higher_is_better=False, sizes={"quick": {"rows": 4000, "dims": 8, "k": 4},
                                               "standard": {...}, "full": {...}})
    def kmeans_case(ctx: CaseContext) -> dict:
        df = make_blobs(ctx.spark, ctx.size["rows"], ..., seed=ctx.seed)
        model = KMeans(k=ctx.size["k"], engine=ctx.variant, seed=ctx.seed).fit(df)
        sk = ctx.baseline("sklearn", lambda: run_sklearn(...))   # run once per data, shared by the variants
        return {"seconds": fit_seconds, "metrics": {"cost": ...}, "baselines": {"sklearn": sk},
                "curves": {"cost": model.summary.costHistory}, "bytes": model.summary.bytesCommunicated}

What a case returns (a dict): ``seconds`` (our wall time, the figure every ratio uses), ``metrics`` (quality and
anything else, numbers; ``quality`` names the one that is compared), ``baselines`` (name -> dict with ``seconds``
and the same quality key), optionally ``curves`` (name -> list of numbers per iteration/round/epoch: cost, loss,
return) and ``bytes`` (bytes communicated). The runner adds the ratios, the machine and its calibration.
"""

from __future__ import annotations

import fnmatch
import importlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SUITES = ("quick", "standard", "full")

#: modules that register cases (imported lazily, in this order; a missing one is skipped)
CASE_MODULES = (
    "sparkml_dist.bench.data",
    "sparkml_dist.bench.clustering",
    "sparkml_dist.bench.classification",
    "sparkml_dist.bench.deep",
    "sparkml_dist.bench.rl",
)

#: repeats per suite (``--repeats`` overrides)
DEFAULT_REPEATS = {"quick": 1, "standard": 3, "full": 3}


@dataclass
class CaseContext:
    """What a case function gets: the session, its size for the suite, the seed, the variant, the workers."""

    spark: Any
    size: dict
    seed: int
    variant: str
    workers: int | None
    repeat: int = 0
    _baselines: dict = field(default_factory=dict, repr=False)
    _case: str = ""

    def baseline(self, name: str, fn: Callable[[], dict]) -> dict:
        """``fn()`` (a baseline's result dict), run once per case, size, seed, workers and repeat: the variants
        of a case share it, so a slow baseline is not measured once per variant."""
        key = (self._case, name, json.dumps(self.size, sort_keys=True, default=str), self.seed, self.workers,
               self.repeat)
        if key not in self._baselines:
            self._baselines[key] = fn()
        return self._baselines[key]


@dataclass(frozen=True)
class Case:
    """One registered benchmark case (one variant of one algorithm on one dataset)."""

    family: str
    name: str
    variant: str
    dataset: str
    fn: Callable[[CaseContext], dict]
    sizes: dict
    quality: str
    higher_is_better: bool = True
    description: str = ""
    min_slots: int = 1  # task slots the case needs at once (a 2-rank barrier stage: 2)

    @property
    def id(self) -> str:
        """``family/name/variant``: what ``--only`` matches and records are keyed by."""
        return f"{self.family}/{self.name}/{self.variant}"


#: case id -> Case
CASES: dict[str, Case] = {}


def bench_case(family: str, name: str, *, dataset: str, sizes: dict, quality: str, variants: tuple[str, ...] = ("",),
               higher_is_better: bool = True, description: str = "", min_slots: int = 1) -> Callable:
    """Register ``fn(ctx) -> dict`` as one case per variant (see the module docstring)."""
    unknown = sorted(set(sizes) - set(SUITES))
    if unknown:
        raise ValueError(f"bench case {family}/{name}: unknown suites {unknown} in sizes (known: {', '.join(SUITES)})")

    def wrap(fn: Callable[[CaseContext], dict]) -> Callable[[CaseContext], dict]:
        for variant in variants:
            case = Case(family, name, variant or "default", dataset, fn, dict(sizes), quality, higher_is_better,
                        description or (fn.__doc__ or "").strip().split("\n")[0], min_slots)
            CASES[case.id] = case
        return fn

    return wrap


def load_cases() -> dict[str, Case]:
    """Import every module of :data:`CASE_MODULES` that exists, and return the registry."""
    for module in CASE_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:  # the module exists but one of its imports does not: a real error
                raise
            logger.debug("bench: no %s yet", module)
    return CASES


def select(suite: str, only: list[str] | None = None) -> list[Case]:
    """The cases of ``suite`` whose id matches one of ``only`` (a family, a name, ``name/variant``, a full id,
    or a glob over the id); an unknown suite or a pattern that matches nothing is an error naming it."""
    if suite not in SUITES:
        raise ValueError(f"--suite {suite!r}: unknown; known: {', '.join(SUITES)} (pick families or cases with "
                         "--only, e.g. --only clustering,adaboost)")
    cases = [c for c in load_cases().values() if suite in c.sizes]
    if not only:
        return cases
    chosen: list[Case] = []
    for pattern in only:
        hits = [c for c in cases if _matches(c, pattern)]
        if not hits:
            known = sorted({c.family for c in cases} | {c.name for c in cases} | {c.id for c in cases})
            raise ValueError(f"--only {pattern!r}: no case of suite {suite!r} matches; known: {', '.join(known)}")
        chosen += [c for c in hits if c not in chosen]
    return chosen


def _matches(case: Case, pattern: str) -> bool:
    parts = case.id.split("/")
    return (pattern in (case.family, case.name, f"{case.name}/{case.variant}", case.id)
            or fnmatch.fnmatchcase(case.id, pattern) or pattern == "/".join(parts[:2]))
