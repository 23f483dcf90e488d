"""The side channel between the driver's learner and the actor tasks: one TCP server on the driver.

Why not the barrier's gloo group: the learner lives on the driver (so the actors use every task slot and a dead actor
costs no learner state), and the driver is not a member of the group. The server listens on ``spark.driver.host`` (the
address executors already reach for the barrier's TCPStore) and its address travels to the tasks as an argument of the
one barrier stage. Frames are 8-byte lengths + pickles; every request gets exactly one reply.

Flow control: a handler thread per actor puts requests on a bounded queue; when the learner falls behind, ``put``
blocks, the actor waits for its reply and stops stepping (back-pressure: memory stays bounded at ``queueSize``
payloads). With ``auto_reply`` the handler answers with the newest published weights as soon as the request is queued
(asynchronous actors); otherwise the learner answers each request (lag-1 rounds, SEED inference).
"""

from __future__ import annotations

import logging
import pickle
import queue
import socket
import struct
import threading
import time

from sparkml_dist.runtime.barrier import recv_exact

logger = logging.getLogger(__name__)

STOP = "__sparkml_dist_rl_stop__"
_LEN = struct.Struct("!Q")


def _send(sock: socket.socket, data: bytes) -> None:
    sock.sendall(_LEN.pack(len(data)) + data)


def _recv(sock: socket.socket) -> bytes:
    (n,) = _LEN.unpack(recv_exact(sock, _LEN.size))
    return recv_exact(sock, n)


class Request:
    """One actor payload waiting for the learner; :meth:`answer` sends the reply straight back on the actor's
    connection (from the learner's thread: no hand-off to the connection's handler thread on the way back)."""

    __slots__ = ("actor_id", "payload", "_conn", "_server")

    def __init__(self, actor_id: int, payload: dict, conn: socket.socket | None = None,
                 server: ChannelServer | None = None):
        self.actor_id = actor_id
        self.payload = payload
        self._conn = conn
        self._server = server

    def answer(self, reply) -> None:
        data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
        if self._server is not None:
            self._server.bytes_out += len(data)
        if self._conn is not None:
            try:
                _send(self._conn, data)
            except OSError:
                pass  # the actor is gone; its stage's failure is handled by the runner


class ChannelServer:
    """The driver's end: accepts actor connections, queues their payloads, publishes weights."""

    def __init__(self, host: str, queue_size: int, auto_reply: bool):
        self.sock = socket.create_server((host, 0))
        self.address = f"{host}:{self.sock.getsockname()[1]}"
        self.queue: queue.Queue[Request] = queue.Queue(maxsize=queue_size)
        self.auto_reply = auto_reply
        self.actors: dict[int, int] = {}  # actor id -> pid of its Python worker
        self.hosts: dict[int, str] = {}  # actor id -> its host name (the memory watch reads /proc only on this one)
        self.hellos: dict[tuple[int, int], int] = {}  # (actor id, generation) -> connections (Spark re-attempts)
        self.bytes_in = 0
        self.bytes_out = 0
        self.requests = 0
        self._latest = pickle.dumps(None)
        self._stopping = threading.Event()
        self._closed = False
        self._round: dict[int, Request] = {}
        threading.Thread(target=self._accept, name="rl-channel-accept", daemon=True).start()

    # --- driver side ----------------------------------------------------------------------------------------------
    def publish(self, reply) -> None:
        """What auto-replied and weights-only requests get from now on (e.g. ``(version, weights)``)."""
        self._latest = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)

    def take(self, mode: str, num_actors: int, timeout: float = 0.2) -> list[Request]:
        """Requests for the learner: whatever is queued (``weights``), one full round ordered by actor id
        (``round``, else ``[]``), or the observations of the actors waiting now (``inference``)."""
        try:
            first = self.queue.get(timeout=timeout)
        except queue.Empty:
            return []
        items = [first]
        if mode == "weights":
            while True:
                try:
                    items.append(self.queue.get_nowait())
                except queue.Empty:
                    return items
        if mode == "round":
            for req in items:
                self._round[req.actor_id] = req
            while len(self._round) < num_actors:
                try:
                    req = self.queue.get(timeout=timeout)
                except queue.Empty:
                    return []
                self._round[req.actor_id] = req
            out = [self._round[i] for i in sorted(self._round)]
            self._round = {}
            return out
        # inference: batch every actor that is waiting; wait a moment for the others so one forward pass serves all
        deadline = time.perf_counter() + 0.002
        while len(items) < num_actors:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                items.append(self.queue.get(timeout=left))
            except queue.Empty:
                break
        return items

    def reattempts(self) -> int:
        """Spark's re-attempts of the actor stages, as the actors saw them: a re-attempted barrier stage reconnects
        every actor of its generation (the tasks launched with ``collectives=False`` do not know their attempt)."""
        per_generation: dict[int, int] = {}
        for (_, generation), n in self.hellos.items():
            per_generation[generation] = max(per_generation.get(generation, 0), n - 1)
        return sum(per_generation.values())

    def reset(self) -> None:
        """After an actor stage failed: drop requests of actors that are gone (their sockets are closed)."""
        for req in self._round.values():
            req.answer(STOP)
        self._round = {}
        self._drain(STOP)

    def stop_actors(self) -> None:
        """Every further request (and every one still waiting) is answered ``STOP``; the actor tasks return."""
        self._stopping.set()
        self.reset()

    def close(self) -> None:
        self._closed = True
        self.stop_actors()
        try:
            self.sock.close()
        except OSError:
            pass

    def _drain(self, reply) -> None:
        while True:
            try:
                self.queue.get_nowait().answer(reply)
            except queue.Empty:
                return

    # --- handler threads ------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._serve, args=(conn,), name="rl-channel-actor", daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        stop = pickle.dumps(STOP)
        try:
            hello = pickle.loads(_recv(conn))
            actor_id = int(hello["actor_id"])
            self.actors[actor_id] = int(hello["pid"])
            self.hosts[actor_id] = str(hello.get("host", ""))
            key = (actor_id, int(hello.get("generation", 0)))
            self.hellos[key] = self.hellos.get(key, 0) + 1
            while True:
                data = _recv(conn)
                self.bytes_in += len(data)
                self.requests += 1
                if self._stopping.is_set():
                    _send(conn, stop)
                    continue
                payload = pickle.loads(data)
                if payload is None:  # an actor asking for the current weights only
                    out = self._latest
                else:
                    # answered by the learner (Request.answer sends on this connection), or right here with the
                    # newest weights (auto_reply) or STOP; the actor sends nothing before it has its reply
                    req = Request(actor_id, payload, None if self.auto_reply else conn, self)
                    queued = False
                    while not self._stopping.is_set():
                        try:
                            self.queue.put(req, timeout=0.1)  # blocks while the learner is behind: back-pressure
                            queued = True
                            break
                        except queue.Full:
                            continue
                    if not queued:
                        out = stop
                    elif self.auto_reply:
                        out = self._latest
                    else:
                        continue
                self.bytes_out += len(out)
                _send(conn, out)
        except (ConnectionError, OSError, EOFError):
            pass  # the actor is gone; its stage's failure is handled by the runner
        finally:
            conn.close()


class ChannelClient:
    """The actor's end: ``request(payload) -> reply`` (``STOP`` when the run is over)."""

    def __init__(self, address: str, hello: dict, timeout: float):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        _send(self.sock, pickle.dumps({"host": socket.gethostname(), **hello}))

    def request(self, payload):
        _send(self.sock, pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL))
        return pickle.loads(_recv(self.sock))

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
