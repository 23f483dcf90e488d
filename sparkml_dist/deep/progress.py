"""Training progress from the ranks, logged on the driver while the barrier stage runs.

The ranks run inside Spark tasks, whose logs stay on the executors. A small ``TCPStore`` on the driver carries one
JSON line per report (``epoch``, ``step``, ``loss``, ``samples/s`` ...): a rank appends with an atomic counter, a
driver thread polls twice a second and logs each line on the ``sparkml_dist.deep`` logger. Reports are cheap (one
round trip) and best effort: a rank whose driver cannot be reached (Spark Connect) keeps training silently.
"""

from __future__ import annotations

import datetime
import json
import logging
import threading

logger = logging.getLogger("sparkml_dist.deep")

_COUNTER = "progress/n"


class ProgressServer:
    """Driver side: hosts the store and logs what the ranks report until :meth:`close`."""

    def __init__(self, host: str, poll: float = 0.5):
        import torch.distributed as dist

        self.store = dist.TCPStore(host, 0, None, True, datetime.timedelta(seconds=30), wait_for_workers=False)
        self.address = f"{host}:{self.store.port}"
        self.records: list[dict] = []
        self._seen = 0
        self._poll = poll
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sparkml_dist-progress", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        n = int(self.store.add(_COUNTER, 0))
        while self._seen < n:
            record = json.loads(self.store.get(f"progress/{self._seen}").decode())
            self._seen += 1
            self.records.append(record)
            logger.info("%s", format_record(record))

    def _loop(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self._drain()
            except Exception:  # noqa: BLE001 - progress is best effort; training goes on
                logger.debug("progress poll failed", exc_info=True)

    def close(self) -> list[dict]:
        self._stop.set()
        self._thread.join(5)
        try:
            self._drain()
        except Exception:  # noqa: BLE001
            pass
        return self.records


def format_record(record: dict) -> str:
    parts = [f"rank {record.get('rank', '?')}"]
    for key, value in record.items():
        if key == "rank":
            continue
        parts.append(f"{key}={value:.5g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


class ProgressClient:
    """Rank side: ``report(**metrics)`` sends one line to the driver."""

    def __init__(self, address: str | None, rank: int):
        self.address = address
        self.rank = rank
        self._store = None

    def report(self, **metrics) -> None:
        if not self.address:
            return
        try:
            if self._store is None:
                import torch.distributed as dist

                host, port = self.address.rsplit(":", 1)
                self._store = dist.TCPStore(host, int(port), None, False, datetime.timedelta(seconds=10))
            record = {"rank": self.rank, **{k: _plain(v) for k, v in metrics.items()}}
            index = int(self._store.add(_COUNTER, 1)) - 1
            self._store.set(f"progress/{index}", json.dumps(record))
        except Exception:  # noqa: BLE001 - the driver may be unreachable; never fail training for a log line
            self.address = None


def _plain(value):
    if hasattr(value, "item"):
        return value.item()
    return value
