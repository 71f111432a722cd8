"""Push workers: the push endpoints served by processes of their own, every commit made by the gateway's.

With ``[api] push_workers = N`` and ``push_port``, N worker processes listen on
``[api].host:push_port`` (SO_REUSEPORT: the kernel spreads connections over them), with the API's
TLS settings. A worker does for a push what the API port does — the counterpart's credential,
reading and checking the body, mapping, validation, rendering — and sends the prepared items over
a Unix socket to the gateway process, which commits them through its one ingestor (the store's one
writer, delivery's handoff, the exchange) and sends back the outcomes. The worker answers only
then: a 202 means committed, as on the API port, which keeps serving pushes too.

Why: one process's event loop and its store writer share one interpreter lock. On two cores that
process cannot both serve ~1,000 one-record pushes a second over HTTP and keep its writer fed; the
work before the commit is most of a push's CPU (benchmarks/RESULTS.md, "Push workers").

What stays one, in the gateway process:

- single-use values (HMAC nonces, WS-Security nonces and signature values): a worker notes them
  (``DeferredReplayCache``) and asks the gateway before it accepts the request, so a replay sent
  to another worker, or to the API port, is still a replay;
- refusals: a worker sends each one to the gateway's refusal log (metric, aggregated audit entry);
- metrics: a worker sends what it counted every second; ``/metrics`` on the API port shows it.

Trust: the socket is in a directory only this user may enter, and a worker's first bytes must be
the secret it was given on its stdin; nothing is unpickled from a connection before that.

Lifecycle: started once the store is open and the API listens; all ready, or the gateway does not
start. A worker that dies is started again (after 1 s, doubling to 30 s). At stop, workers stop
listening, finish the requests they hold (their commits are still answered) and exit. A worker
whose gateway process is gone stops listening, answers 503 to what it holds and exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hmac
import json
import logging
import os
import pickle
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api.push_workers")

__all__ = ["PushWorkerError", "PushWorkers"]

_LEN = struct.Struct("!I")
_SECRET_BYTES = 32
_OFFLOAD_BYTES = 1 << 20  # frames larger than this are unpickled in a thread
START_TIMEOUT = 60.0  # seconds for a worker to load and listen
FLUSH_EVERY = 1.0  # seconds between a worker's metric reports
RESTART_MAX = 30.0
# The API metrics a worker may report (gateway.api._metrics.ApiMetrics attributes): counters, histograms.
_COUNTERS = ("inbound_items", "inbound_requests", "requests")
_HISTOGRAMS = ("latency",)


class PushWorkerError(Exception):
    """A push worker could not start (the reason is the worker's own, when it could say it)."""


def _frame(obj: Any) -> bytes:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return _LEN.pack(len(data)) + data


async def _read(reader: asyncio.StreamReader) -> Any:
    (size,) = _LEN.unpack(await reader.readexactly(_LEN.size))
    data = await reader.readexactly(size)
    if size > _OFFLOAD_BYTES:  # a large push: unpickled beside the event loop, which goes on serving others
        return await asyncio.to_thread(pickle.loads, data)
    return pickle.loads(data)  # noqa: S301 - an authenticated child of ours (or its parent)


# =========================================================================== the gateway's side


class PushWorkers:
    """The worker processes of one gateway, and the socket they commit through."""

    def __init__(self, gw: Gateway) -> None:
        api = gw.config.api
        assert api.push_workers and api.push_port is not None
        self.gw = gw
        self.count = api.push_workers
        self.host = api.host
        self.port = api.push_port
        self.url = ""
        self.restarts = 0
        self._secret = secrets.token_bytes(_SECRET_BYTES)
        self._dir: str | None = None
        self._path = ""
        self._server: asyncio.AbstractServer | None = None
        self._payload = b""
        self._procs: dict[int, subprocess.Popen[bytes]] = {}
        self._ready: dict[int, asyncio.Future[int]] = {}
        self._writers: dict[int, asyncio.StreamWriter] = {}
        self._lost: dict[int, asyncio.Event] = {}
        self._started_at: dict[int, float] = {}
        self._tasks: list[asyncio.Task[Any]] = []
        self._stopping = False

    # ------------------------------------------------------------------ start and stop

    async def start(self) -> None:
        """Every worker listening, or PushWorkerError (and none left running)."""
        from gateway.api._inbound import push_systems, push_target
        from gateway.observability.logs import logging_settings

        gw = self.gw
        comp = gw.components
        assert comp is not None and gw.ingestor is not None
        preparer = gw.ingestor.preparer
        targets = {name: push_target(gw, name) for name in push_systems(gw)}
        self._dir = tempfile.mkdtemp(prefix="gateway-push-")  # 0700: only this user may reach the socket
        self._path = os.path.join(self._dir, "commit.sock")
        self._server = await asyncio.start_unix_server(self._connection, self._path)
        os.chmod(self._path, 0o600)
        reservation = self._reserve() if self.port == 0 else None
        try:
            self._payload = pickle.dumps(
                (gw.config, targets, tuple(preparer.router.rules), preparer.cipher, preparer.renderers,
                 logging_settings(), self.port), protocol=pickle.HIGHEST_PROTOCOL)
            await asyncio.gather(*(self._start_one(slot) for slot in range(self.count)))
        except BaseException:
            await self.stop(grace=2.0)
            raise
        finally:
            if reservation is not None:
                reservation.close()
        for slot in range(self.count):
            self._tasks.append(asyncio.create_task(self._keep(slot), name=f"push-worker-{slot}"))
        tls = gw.config.api.tls_cert is not None
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"{'https' if tls else 'http'}://{shown}:{self.port}"
        log.info(f"{self.count} push worker(s) listening on {self.url} for /api/v1/inbound/… and /soap/… "
                 "(their commits are made here)",
                 extra={"push_workers": self.count, "url": self.url, "port": self.port,
                        "pids": [p.pid for p in self._procs.values()]})

    def _reserve(self) -> socket.socket:
        """``push_port = 0``: a free port, held (bound, not listening) until every worker has bound it too."""
        family, kind, proto, _, addr = socket.getaddrinfo(self.host or None, 0, type=socket.SOCK_STREAM,
                                                          flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(addr)
        self.port = sock.getsockname()[1]
        return sock

    async def stop(self, grace: float = 10.0) -> None:
        """Workers stop listening, finish what they hold (answered from here) and exit; then the socket goes."""
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        for writer in list(self._writers.values()):
            with contextlib.suppress(Exception):
                writer.write(_frame(("stop",)))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while any(p.poll() is None for p in self._procs.values()) and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for slot, proc in self._procs.items():
            if proc.poll() is None:
                log.warning("push worker %d (pid %d) did not stop within %.0f s; killing it", slot, proc.pid, grace)
                proc.kill()
                await asyncio.to_thread(proc.wait)
        for writer in list(self._writers.values()):
            writer.close()
        self._writers.clear()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def status(self) -> dict[str, Any]:
        """For /healthz: how many are configured and running, where, and how often they were restarted."""
        running = sum(1 for slot, p in self._procs.items() if p.poll() is None and slot in self._writers)
        return {"configured": self.count, "running": running, "restarts": self.restarts, "url": self.url}

    # ------------------------------------------------------------------ one worker

    async def _start_one(self, slot: int) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[int] = loop.create_future()
        self._ready[slot] = ready
        self._lost[slot] = asyncio.Event()
        head = {"path": sys.path, "socket": self._path, "secret": self._secret.hex(), "slot": slot}
        proc = subprocess.Popen([sys.executable, "-c", _WORKER_CODE], stdin=subprocess.PIPE, close_fds=True)
        self._procs[slot] = proc
        try:
            assert proc.stdin is not None
            proc.stdin.write(json.dumps(head).encode() + b"\n" + self._payload)
            proc.stdin.close()
        except OSError:
            pass  # it died at once: said below
        deadline = loop.time() + START_TIMEOUT
        while not ready.done():
            if proc.poll() is not None:
                raise PushWorkerError(f"push worker {slot} exited with code {proc.returncode} before it listened "
                                      "(its own log lines above say why)")
            if loop.time() > deadline:
                proc.kill()
                raise PushWorkerError(f"push worker {slot} did not listen within {START_TIMEOUT:.0f} s")
            await asyncio.wait([ready], timeout=0.1)
        ready.result()
        self._started_at[slot] = time.monotonic()

    async def _keep(self, slot: int) -> None:
        """Start the worker of ``slot`` again whenever it exits (its connection ends first)."""
        pause = 1.0
        while not self._stopping:
            await self._lost[slot].wait()
            # One that ran a while gets started again after a second; one that keeps dying, ever later.
            pause = 1.0 if time.monotonic() - self._started_at.get(slot, 0.0) > 60 else pause
            proc = self._procs[slot]
            for _ in range(100):  # its connection is gone: give it 5 s to be gone too
                if proc.poll() is not None:
                    break
                await asyncio.sleep(0.05)
            else:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            log.error("push worker %d (pid %d) exited with code %s; starting it again in %.0f s",
                      slot, proc.pid, proc.returncode, pause)
            await asyncio.sleep(pause)
            pause = min(pause * 2, RESTART_MAX)
            try:
                await self._start_one(slot)
                self.restarts += 1
                log.info("push worker %d started again (pid %d)", slot, self._procs[slot].pid)
            except PushWorkerError as exc:
                log.error("push worker %d could not start again: %s", slot, exc)
                self._lost[slot].set()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = await asyncio.wait_for(reader.readexactly(_SECRET_BYTES + 4), 10)
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        if not hmac.compare_digest(hello[:_SECRET_BYTES], self._secret):
            log.warning("a connection to the push workers' socket did not present their secret; closed")
            writer.close()
            return
        slot = int.from_bytes(hello[_SECRET_BYTES:], "big")
        if slot not in self._ready:
            writer.close()
            return
        self._writers[slot] = writer
        pending: set[asyncio.Task[Any]] = set()
        try:
            while True:
                try:
                    message = await _read(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                task = self._dispatch(slot, writer, message)
                if task is not None:
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        finally:
            if self._writers.get(slot) is writer:
                del self._writers[slot]
            ready = self._ready.get(slot)
            if ready is not None and not ready.done():
                ready.set_exception(PushWorkerError(f"push worker {slot} closed its connection before it listened"))
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            writer.close()
            lost = self._lost.get(slot)
            if lost is not None and not self._stopping:
                lost.set()

    def _dispatch(self, slot: int, writer: asyncio.StreamWriter, message: tuple[Any, ...]) -> asyncio.Task[Any] | None:
        tag = message[0]
        if tag == "commit":
            return asyncio.create_task(self._commit(writer, *message[1:]))
        if tag == "replays":
            _, rid, claims = message
            writer.write(_frame(("result", rid, self._verdicts(claims))))
        elif tag == "refusal":
            from gateway.api._push_auth import refusal_log

            return asyncio.create_task(refusal_log(self.gw).record(message[1]))
        elif tag == "counts":
            self._count(*message[1:])
        elif tag in ("ready", "failed"):
            ready = self._ready[slot]
            if not ready.done():
                if tag == "ready":
                    ready.set_result(message[1])
                else:
                    ready.set_exception(PushWorkerError(f"push worker {slot}: {message[1]}"))
        return None

    async def _commit(self, writer: asyncio.StreamWriter, rid: int, system: str, accepted: list[Any],
                      quarantined: list[Any], copies: list[Any], prepared_in: float) -> None:
        from gateway.pipeline.ingest import wrap
        from gateway.records import PickledPayload
        from gateway.store import STORE_FAILURES

        assert self.gw.ingestor is not None
        try:
            items, refused = wrap(accepted, quarantined)
            if items:
                # Kept at hand in case the store finds a version conflict and must quarantine the item after all.
                by_ref = {ref: (raw, blob) for ref, raw, blob in copies}
                for it in items:
                    kept = by_ref.get(it.ref)
                    if kept is not None:
                        it.raw = kept[0]
                        it.payload = PickledPayload(kept[1]) if kept[1] is not None else None
            outcomes = await self.gw.ingestor.commit(items, refused, started=time.perf_counter() - prepared_in)
            # Plain tuples, and without the deliveries claimed at birth (rendered bodies the worker has no use for).
            reply: tuple[Any, ...] = ("result", rid, [
                (o.ref, o.status, o.receipt_id, o.kind, o.record_key, o.errors, o.findings, o.quarantine_id)
                for o in outcomes])
        except STORE_FAILURES as exc:
            log.exception("a push from %s (through a push worker) could not be stored", system)
            reply = ("store_failed", rid, type(exc).__name__)
        except Exception as exc:
            log.exception("a push from %s (through a push worker) failed in the commit", system)
            reply = ("failed", rid, type(exc).__name__)
        with contextlib.suppress(ConnectionError, RuntimeError):
            writer.write(_frame(reply))
            await writer.drain()

    def _verdicts(self, claims: Sequence[Any]) -> list[bool | None]:
        """``ReplayCache.first_use`` of each claim, in the caches the API port uses as well."""
        from gateway.api._push_auth import GUARD

        assert self.gw.api is not None
        guard = self.gw.api.app[GUARD]
        out: list[bool | None] = []
        for claim in claims:
            system = guard.systems.get(claim.system)
            cache = None
            if system is not None:
                cache = system.nonces if claim.cache == "hmac" else getattr(system.wsse, "replays", None)
            out.append(cache.first_use(claim.value) if cache is not None else False)
        return out

    def _count(self, counts: dict[tuple[str, tuple[str, ...]], float],
               observed: dict[tuple[str, tuple[str, ...]], list[float]], accepted: dict[tuple[str, ...], int]) -> None:
        from gateway.api._push_auth import refusal_log
        from gateway.api.server import METRICS

        assert self.gw.api is not None
        metrics = self.gw.api.app[METRICS]
        for (name, labels), n in counts.items():
            if name in _COUNTERS:
                getattr(metrics, name).labels(*labels).inc(n)
        for (name, labels), values in observed.items():
            if name in _HISTOGRAMS:
                child = getattr(metrics, name).labels(*labels)
                for value in values:
                    child.observe(value)
        refusals = refusal_log(self.gw)
        for (system, method, credential), n in accepted.items():
            refusals.authenticated.labels(system, method, credential).inc(n)


# =========================================================================== a worker's side

# The worker's whole program: the caller's import path first, then the rest from stdin. Started this
# way rather than by multiprocessing's spawn, which would run the parent's main script (the CLI) again.
_WORKER_CODE = ("import sys, json; head = json.loads(sys.stdin.buffer.readline()); sys.path[:] = head['path']; "
                "from gateway.api.push_workers import worker_main; worker_main(head)")


class _Link:
    """A worker's connection to the gateway process: calls answered by id, and what it sends unasked."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.next_id = 0
        self.stop = asyncio.Event()
        self.lost = False

    def send(self, message: tuple[Any, ...]) -> None:
        if not self.lost:
            self.writer.write(_frame(message))

    async def call(self, tag: str, *args: Any) -> Any:
        from gateway.api._inbound import ApiError

        if self.lost:
            raise ApiError(503, "the gateway process is gone; nothing of this request was received: send it again")
        rid = self.next_id
        self.next_id += 1
        future = asyncio.get_running_loop().create_future()
        self.waiting[rid] = future
        self.writer.write(_frame((tag, rid, *args)))
        return await future

    async def run(self) -> None:
        """Answers until the gateway says stop, or its connection ends (then every waiting call fails)."""
        from gateway.api._inbound import ApiError

        try:
            while True:
                message = await _read(self.reader)
                if message[0] == "stop":
                    self.stop.set()
                    continue
                tag, rid, value = message
                future = self.waiting.pop(rid, None)
                if future is None or future.done():
                    continue
                if tag == "result":
                    future.set_result(value)
                elif tag == "store_failed":
                    future.set_exception(ApiError(503, f"the store is unavailable ({value}); nothing of this "
                                                       "request was committed: send it again"))
                else:
                    future.set_exception(RuntimeError(f"the commit failed in the gateway process ({value})"))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        self.lost = True
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(ApiError(503, "the gateway process is gone; whether this request was committed "
                                                   "is not known: send it again (a push is idempotent per record "
                                                   "key and version)"))
        self.waiting.clear()
        self.stop.set()

    async def replays(self, claims: Sequence[Any]) -> list[bool | None]:
        result: list[bool | None] = await self.call("replays", list(claims))
        return result


class _RemoteIngestor:
    """A worker's ingestor: prepare here, commit in the gateway process, the outcomes back."""

    def __init__(self, preparer: Any, link: _Link) -> None:
        self.preparer = preparer
        self.link = link

    async def ingest(self, system: str, raws: Sequence[Any], cursor: Any = None) -> Any:
        from gateway.pipeline.ingest import _OFFLOAD_THRESHOLD
        from gateway.records import IngestOutcome

        assert cursor is None, "a push carries no cursor"
        started = time.perf_counter()
        if len(raws) > _OFFLOAD_THRESHOLD:
            accepted, quarantined = await asyncio.to_thread(self.preparer.prepare, system, raws)
        else:
            accepted, quarantined = self.preparer.prepare(system, raws)
        # Copies for a late version conflict, the payload pickled apart: the gateway unpickles it only then.
        copies = [(raw.ref, raw.raw, pickle.dumps(raw.payload, protocol=pickle.HIGHEST_PROTOCOL)
                   if raw.payload is not None else None) for raw in raws] if accepted else []
        outcomes = await self.link.call("commit", system, accepted, quarantined, copies,
                                        time.perf_counter() - started)
        return [IngestOutcome(*fields) for fields in outcomes]


class _Tally:
    """A worker's API metrics: the interface of ``ApiMetrics``, counted here and sent every second."""

    def __init__(self) -> None:
        from gateway.api._metrics import ApiMetrics

        self.counts: Counter[tuple[str, tuple[str, ...]]] = Counter()
        self.observed: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self.accepted: Counter[tuple[str, ...]] = Counter()
        for name in _COUNTERS + _HISTOGRAMS:
            setattr(self, name, _Family(self, name))
        self._observe_push = ApiMetrics.observe_push

    def observe_push(self, system: str, form: str, code: int, batch: Any) -> None:
        self._observe_push(self, system, form, code, batch)  # type: ignore[arg-type]

    def take(self) -> tuple[Any, ...] | None:
        if not (self.counts or self.observed or self.accepted):
            return None
        out = ("counts", dict(self.counts), self.observed, dict(self.accepted))
        self.counts, self.observed, self.accepted = Counter(), {}, Counter()
        return out


class _Family:
    __slots__ = ("name", "tally")

    def __init__(self, tally: _Tally, name: str) -> None:
        self.tally = tally
        self.name = name

    def labels(self, *values: str) -> _Child:
        return _Child(self.tally, (self.name, values))


class _Child:
    __slots__ = ("key", "tally")

    def __init__(self, tally: _Tally, key: tuple[str, tuple[str, ...]]) -> None:
        self.tally = tally
        self.key = key

    def inc(self, amount: float = 1.0) -> None:
        self.tally.counts[self.key] += amount

    def observe(self, value: float) -> None:
        self.tally.observed.setdefault(self.key, []).append(value)


class _ForwardedRefusals:
    """A worker's refusal log: each refusal goes to the gateway's (one metric, one aggregated audit trail)."""

    def __init__(self, link: _Link, tally: _Tally) -> None:
        self.link = link
        self.tally = tally

    async def record(self, event: Any) -> None:
        self.link.send(("refusal", event))

    def record_nowait(self, event: Any) -> None:
        self.link.send(("refusal", event))

    def accepted(self, system: str, method: str, credential: str) -> None:
        self.tally.accepted[(system, method, credential)] += 1


def worker_main(head: dict[str, Any]) -> None:
    """Entry of a worker process (see ``_WORKER_CODE``); exits 0 when told to stop, 1 otherwise."""
    payload = sys.stdin.buffer.read()
    code = asyncio.run(_worker(head, payload))
    sys.exit(code)


async def _worker(head: dict[str, Any], payload: bytes) -> int:
    import structlog

    slot = int(head["slot"])
    structlog.contextvars.bind_contextvars(push_worker=slot)  # every line of this worker says which it is
    reader, writer = await asyncio.open_unix_connection(head["socket"])
    writer.write(bytes.fromhex(head["secret"]) + slot.to_bytes(4, "big"))
    link = _Link(reader, writer)
    try:
        runner, gw, tally = await _serve(payload, link, slot)
    except BaseException as exc:
        reason = str(exc) if isinstance(exc, OSError) else f"{type(exc).__name__}: {exc}"
        logging.getLogger("gateway.api.push_workers").critical("push worker %d cannot start: %s", slot, reason)
        writer.write(_frame(("failed", reason)))
        with contextlib.suppress(Exception):
            await writer.drain()
            writer.close()
        return 1
    # Requests allocate much and keep little, as in the gateway process (gateway.app.tune_collector).
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    link.send(("ready", os.getpid()))
    # The gateway process says when to stop (or its connection ends). A terminal's Ctrl-C reaches the whole
    # process group and is the gateway's to handle; SIGTERM to a worker alone (a service manager stopping
    # every process of the unit) stops it as "stop" does: it finishes what it holds.
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.add_signal_handler(signal.SIGTERM, link.stop.set)
    reading = asyncio.create_task(link.run())
    flushing = asyncio.create_task(_flush(link, tally))
    await link.stop.wait()
    gw.stopping.set()  # new pushes: 503 "shutting down"
    if link.lost:
        log.error("push worker %d: the gateway process is gone; stopping", slot)
    await runner.cleanup()  # stop listening; the requests it holds finish (their commits are answered)
    flushing.cancel()
    last = tally.take()
    if last is not None:
        link.send(last)
    with contextlib.suppress(Exception):
        await writer.drain()
        writer.close()
    reading.cancel()
    return 1 if link.lost else 0


async def _flush(link: _Link, tally: _Tally) -> None:
    while True:
        await asyncio.sleep(FLUSH_EVERY)
        message = tally.take()
        if message is not None:
            link.send(message)


async def _serve(payload: bytes, link: _Link, slot: int) -> tuple[Any, Any, _Tally]:
    from gateway.api._inbound import keep_push_targets
    from gateway.api._push_auth import GUARD
    from gateway.api.server import METRICS, build_push_app, listen
    from gateway.app import Components, Gateway
    from gateway.observability.logs import configure_logging
    from gateway.pipeline.prepare import Preparer
    from gateway.pipeline.router import Router
    from gateway.security.counterparts import DeferredReplayCache

    config, targets, rules, cipher, renderers, log_settings, port = pickle.loads(payload)  # noqa: S301 - our parent
    if log_settings is not None:
        configure_logging(**log_settings)
    gw = Gateway(config)
    router = Router(rules)
    mappings = {name: target.mapping for name, target in targets.items()}
    gw.components = Components(config=config, adapters={}, inbound=mappings, outbound=dict(renderers),
                               router=router, cipher=cipher)
    keep_push_targets(gw, targets)
    gw.push_worker = link  # type: ignore[attr-defined]
    gw.ingestor = _RemoteIngestor(Preparer(router, mappings, cipher, renderers), link)  # type: ignore[assignment]
    tally = _Tally()
    gw.refusals = _ForwardedRefusals(link, tally)
    app = build_push_app(gw, api_port=config.api.port, slot=slot)
    app[METRICS] = tally
    for system in app[GUARD].systems.values():  # single-use values: the gateway process decides
        system.nonces = DeferredReplayCache("hmac", system.name)
        if system.wsse is not None:
            system.wsse.replays = DeferredReplayCache("wsse", system.name)
    runner = await listen(app, config.api.host, port, gw._api_tls(), who="the push workers",
                          keys="[api] host/push_port", reuse_port=True)
    gw.started = True
    return runner, gw, tally
