"""Checkpoints with ``torch.distributed.checkpoint`` (DCP): every rank writes its shard, rank 0 publishes.

Layout under ``checkpointDir`` (a filesystem every rank sees: local disk on one machine, NFS/DBFS-fuse on a
cluster)::

    step-000040/        one DCP checkpoint: .metadata + one file per rank, written under step-000040.tmp-*
                        and renamed by rank 0 after every rank finished (a crash mid-save leaves no step dir)
    step-000080/

:func:`latest` finds the newest complete one; :func:`load` restores model, optimizer and the loop's position
(``epoch``, ``step``, ``global_step``) in place, so a retried barrier stage -- or a new ``fit`` pointed at the same
directory -- continues where the last checkpoint left off. ``keep`` bounds how many stay on disk.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import uuid
from typing import Any

logger = logging.getLogger(__name__)

_STEP_DIR = re.compile(r"^step-(\d+)$")


def latest(directory: str) -> tuple[int, str] | None:
    """``(global_step, path)`` of the newest complete checkpoint in ``directory``, or ``None``."""
    if not directory or not os.path.isdir(directory):
        return None
    found = []
    for name in os.listdir(directory):
        m = _STEP_DIR.match(name)
        if m and os.path.exists(os.path.join(directory, name, ".metadata")):
            found.append((int(m.group(1)), os.path.join(directory, name)))
    return max(found) if found else None


def _state(model, optimizer, position: dict | None = None) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optim": optim_state}
    if position is not None:
        state["position"] = dict(position)
    return state


def save(directory: str, model, optimizer, position: dict, rank: int, barrier, keep: int = 2) -> str:
    """Write one checkpoint (collective: every rank calls it); ``barrier`` is the launcher's BarrierContext."""
    import torch.distributed.checkpoint as dcp

    step = int(position["global_step"])
    final = os.path.join(directory, f"step-{step:06d}")
    token = barrier.broadcast(uuid.uuid4().hex[:8] if rank == 0 else None)
    tmp = f"{final}.tmp-{token}"
    if rank == 0:
        os.makedirs(directory, exist_ok=True)
    dcp.save(_state(model, optimizer, position), checkpoint_id=tmp)
    barrier.barrier()
    if rank == 0:
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        _prune(directory, keep)
        logger.info("checkpoint %s", final)
    barrier.barrier()
    return final


def _prune(directory: str, keep: int) -> None:
    steps = sorted((int(m.group(1)), name) for name in os.listdir(directory) if (m := _STEP_DIR.match(name)))
    for _, name in steps[:-keep] if keep > 0 else []:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    for name in os.listdir(directory):  # leftovers of saves that crashed before their rename
        if ".tmp-" in name and _STEP_DIR.match(name.split(".tmp-")[0]):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def load(path: str, model, optimizer) -> dict:
    """Restore ``model`` and ``optimizer`` from the checkpoint at ``path`` (collective); the saved position."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    state = _state(model, optimizer, {"epoch": 0, "step": 0, "global_step": 0})
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    return dict(state["position"])
