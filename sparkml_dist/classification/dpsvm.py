"""DPSVM (Lu, Roychowdhury, Vandenberghe, IEEE TNN 2008) behind
:class:`~sparkml_dist.classification.cascade_svc.CascadeSVC` (``mode="dpsvm"``), written once against the engine's
data interface (:mod:`sparkml_dist.engine`), so it runs on both engines; every partition is a node of the network and
stays one (sites stay sites for every partitions/slots combination).

Every round each node trains on its own rows plus the SVs its in-neighbours (ring: node ``i-1``; complete: all others)
found in the previous round (and its own previous SVs, warm-started from their alphas: :func:`_dp_node`), until no
node's SV set changes (or, since libsvm's tolerance makes borderline vectors flicker, until after one circulation no
node's dual objective moves by more than ``tol`` relative); the final SVM is trained on the union of the nodes' final
SV sets. The nodes' SV sets are what the driver records between rounds: a node's state is never only on an executor.
"""

from __future__ import annotations

import logging

import numpy as np

from sparkml_dist.classification.cascade import (
    CascadeResult,
    SolverConfig,
    _block_rows,
    _layer1,
    _require_solution,
    _same_ids,
    _solve,
    _train_merge,
)
from sparkml_dist.classification.kernel_svm import SVSet
from sparkml_dist.runtime.logs import ProgressReporter

logger = logging.getLogger(__name__)


def in_neighbours(sites: list[int], topology: str) -> dict[int, list[int]]:
    """Who sends SVs to whom: ring (``i-1 -> i``) or complete (everyone else)."""
    if topology == "complete":
        return {s: [t for t in sites if t != s] for s in sites}
    return {s: [sites[(k - 1) % len(sites)]] for k, s in enumerate(sites)}


def _dp_node(block, offsets: dict[int, int], incoming: dict[int, SVSet], previous: dict[int, SVSet],
             cfg: SolverConfig):
    """One DPSVM node for one round: ``(partition, SVSet, objective, rows trained)``.

    Round 1 trains the node's own rows (leaves + merges, as the cascade's layer 1). Later rounds train its rows, its
    own SVs of the previous round and the SVs from its in-neighbours, **warm from its previous alphas** (an optimum
    of a sub-problem, so its deep bounded SVs are held at ``C`` while SMO moves the rest; checked over all rows
    afterwards): the new rows start at 0, which keeps the start feasible. Keeping its own SVs also makes each
    node's objective non-decreasing from round to round.
    """
    if block.n_rows == 0:
        return None
    rows = _block_rows(block, offsets)
    own = previous.get(block.partition)
    if own is None:
        svs, _, _ = _layer1(rows, cfg)
        return block.partition, svs, float("nan"), len(rows)
    extra = incoming.get(block.partition)
    train = own.union(rows, *([extra] if extra is not None and len(extra) else []))
    svs, sol = _solve(train, cfg, warm=True, shrink=True, objective=True)
    return block.partition, svs, (sol.objective if sol is not None else float("nan")), len(train)


def fit_dpsvm(data, offsets: dict[int, int], sites: list[int], cfg: SolverConfig, max_passes: int, topology: str,
              tol: float) -> CascadeResult:
    """DPSVM over the non-empty partitions ``sites`` (partition ids)."""
    neighbours = in_neighbours(sites, topology)
    max_rounds = max_passes * max(len(sites), 1) if topology == "ring" else max_passes
    progress = ProgressReporter("dpsvm", total=max_rounds, rows=data.num_rows, logger=logger)
    current: dict[int, SVSet] = {}
    objectives: dict[int, float] = {}
    converged = False
    for r in range(max_rounds):
        # the neighbours' SVs travel without their alphas: each node starts from its own solution only
        sent = {t: SVSet(v.ids, v.X, v.y) for t, v in current.items()}
        incoming = {s: SVSet.empty(data.n_features).union(*[sent[t] for t in neighbours[s] if t in sent])
                    for s in sites} if current else {}
        results = {res[0]: res for res in data.gather(_dp_node, offsets, incoming, current, cfg) if res is not None}
        new = {s: results[s][1] for s in sites}
        new_obj = {s: results[s][2] for s in sites}
        changed = [s for s in sites if s not in current or not _same_ids(current[s], new[s])]
        # libsvm's own tolerance lets borderline vectors flicker in and out of a set forever; once the SVs have had
        # time to travel the ring, a round in which no node's objective moves by tol counts as converged too
        stalled = r >= len(sites) and all(
            abs(new_obj[s] - objectives.get(s, np.inf)) <= tol * abs(new_obj[s]) for s in sites)
        progress.step(changed=len(changed), n_sv=int(sum(len(v) for v in new.values())),
                      objective=float(np.nansum(list(new_obj.values()))),
                      rows_trained=int(sum(results[s][3] for s in sites)))
        current, objectives = new, new_obj
        if not changed or stalled:
            converged = True
            break
    if not converged:
        logger.warning("dpsvm: SV sets still changing after %d rounds (raise maxPasses)", max_rounds)
    union = SVSet.empty(data.n_features).union(*current.values())
    _, sol, _, _ = data.on_root(_train_merge, [union], cfg)
    return CascadeResult(_require_solution(sol), len(progress.history), converged, progress.history)
