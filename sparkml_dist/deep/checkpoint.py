"""Checkpoints with ``torch.distributed.checkpoint`` (DCP): every rank writes its shard, rank 0 publishes.

Layout under ``checkpointDir`` (a filesystem every rank sees: local disk on one machine, NFS/DBFS-fuse on a
cluster)::

    step-000040/        one DCP checkpoint: .metadata + one file per rank, written under step-000040.tmp-*
                        and renamed by rank 0 after every rank finished (a crash mid-save leaves no step dir)
    step-000080/

:func:`latest` finds the newest complete one; :func:`load` restores model, optimizer and the loop's position
(``epoch``, ``step``, ``global_step``) in place, so a retried barrier stage -- or a new ``fit`` pointed at the same
directory -- continues where the last checkpoint left off. ``keep`` bounds how many stay on disk.

Each rank also saves what is its own (under ``rank_state.rank<r>``, so DCP's de-duplication across ranks keeps
every rank's copy): its random number generators (torch CPU, CUDA when initialised, numpy's and Python's global
ones) and its feed's shuffle position (seed, epoch, step). A resumed model with dropout therefore draws the masks
the undisturbed run would have drawn and ends at the same parameters. A checkpoint written with a different world
size (or before rank state existed) restores model and optimizer and logs that the random state starts afresh.
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


def rng_state() -> dict:
    """This process's random number generators: torch (CPU, and CUDA once initialised), numpy's and Python's."""
    import random

    import numpy as np
    import torch

    state: dict[str, Any] = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Put back what :func:`rng_state` returned."""
    import random

    import numpy as np
    import torch

    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _rank_key(rank: int) -> str:
    return f"rank{rank}"


def _state(model, optimizer, position: dict | None = None, rank_state: dict | None = None) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_state, optim_state = get_state_dict(model, optimizer)
    state: dict[str, Any] = {"model": model_state, "optim": optim_state}
    if position is not None:
        state["position"] = dict(position)
    if rank_state is not None:
        state["rank_state"] = rank_state
    return state


def save(directory: str, model, optimizer, position: dict, rank: int, barrier, keep: int = 2, feed=None) -> str:
    """Write one checkpoint (collective: every rank calls it); ``barrier`` is the launcher's BarrierContext.

    Besides model, optimizer and ``position``, each rank stores its RNG state and ``feed.state_dict()`` (the
    shuffle position of a :class:`~sparkml_dist.data.feed.TensorFeed`) when a feed is given.
    """
    import pickle

    import torch.distributed.checkpoint as dcp

    step = int(position["global_step"])
    final = os.path.join(directory, f"step-{step:06d}")
    token = barrier.broadcast(uuid.uuid4().hex[:8] if rank == 0 else None)
    tmp = f"{final}.tmp-{token}"
    if rank == 0:
        os.makedirs(directory, exist_ok=True)
    mine = {"rng": rng_state(), "feed": feed.state_dict() if feed is not None else None}
    rank_state = {_rank_key(rank): pickle.dumps(mine, protocol=pickle.HIGHEST_PROTOCOL)}
    dcp.save(_state(model, optimizer, position, rank_state), checkpoint_id=tmp)
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


def load(path: str, model, optimizer, rank: int | None = None, feed=None) -> dict:
    """Restore ``model`` and ``optimizer`` from the checkpoint at ``path`` (collective); the saved position.

    With ``rank``, also this rank's RNG state and, with ``feed``, its shuffle position (when the checkpoint has
    them for this rank).
    """
    import pickle

    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    rank_state = None
    if rank is not None:
        key = f"rank_state.{_rank_key(rank)}"
        if key in dcp.FileSystemReader(path).read_metadata().state_dict_metadata:
            rank_state = {_rank_key(rank): b""}
        else:
            logger.warning("checkpoint %s has no random state for rank %d (written by another world size?): the "
                           "RNG and the feed's position start afresh", path, rank)
    state = _state(model, optimizer, {"epoch": 0, "step": 0, "global_step": 0}, rank_state)
    dcp.load(state, checkpoint_id=path)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if rank_state is not None:
        mine = pickle.loads(state["rank_state"][_rank_key(rank)])
        set_rng_state(mine["rng"])
        if feed is not None and mine.get("feed") is not None:
            feed.load_state_dict(mine["feed"])
    return dict(state["position"])
