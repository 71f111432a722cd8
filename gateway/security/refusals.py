"""Refused pushes in the audit trail and in metrics, without letting a flood of them flood the trail.

Every refusal counts in the Prometheus counter ``gateway_counterpart_refusals_total``
(labels: system, reason). In the audit trail (action ``counterpart_refused``) refusals
are aggregated per *window* (60 s by default) and per key — system, reason, status,
remote address and the credential involved:

- the first refusal of a key in a window is written at once, with ``count`` 1, so a
  single attempt is visible immediately;
- further identical refusals in that window are only counted; when the window closes,
  one summary entry carries their number, first and last time;
- at most ``max_keys`` keys are tracked per window (256 by default); refusals beyond that
  (an attacker varying addresses or credentials) fall into one overflow key per
  system and reason, summarised the same way.

So a flood costs at most ``max_keys`` + (its keys' summaries) entries per window, however
many requests it sends. Entries never hold a token or a password, only a certificate
fingerprint, a key id or a token hash prefix.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, generate_latest

log = logging.getLogger("gateway.security.refusals")

ACTION = "counterpart_refused"
CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")


@dataclass(slots=True)
class RefusalEvent:
    """One refused push (or TLS handshake), as the audit trail shows it."""

    system: str | None
    reason: str
    status: int | None  # None: refused in the TLS handshake, before HTTP
    message: str
    remote: str | None = None
    path: str | None = None
    credential: str | None = None
    credential_system: str | None = None

    def key(self) -> tuple[Any, ...]:
        return (self.system, self.reason, self.status, self.remote, self.credential, self.credential_system)


@dataclass(slots=True)
class _Bucket:
    event: RefusalEvent
    first: float
    last: float
    suppressed: int = 0  # refusals after the one written at once
    overflow: bool = False
    remotes: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _Write:
    """An audit entry to write: a first refusal (count 1) or a window's summary."""

    event: RefusalEvent
    count: int
    first: float | None = None
    last: float | None = None
    remotes: set[str] | None = None
    summary: bool = False


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, CHINA).isoformat(timespec="milliseconds")


class RefusalLog:
    """Counts refusals and writes them to the audit trail, aggregated (see the module docstring).

    ``audit`` is ``store.audit_event``; ``run`` closes windows until the gateway stops and
    ``close`` writes the last summaries.
    """

    def __init__(self, audit: Callable[..., Any] | None, *, window: float = 60.0, max_keys: int = 256,
                 clock: Callable[[], float] = time.time) -> None:
        self.audit = audit
        self.window = window
        self.max_keys = max_keys
        self.clock = clock
        self.registry = CollectorRegistry(auto_describe=True)
        self.counter = Counter("gateway_counterpart_refusals", "Pushes (and TLS handshakes) refused for who "
                               "sent them, by system and reason.", ["system", "reason"], registry=self.registry)
        self.authenticated = Counter("gateway_counterpart_authenticated", "Pushes accepted by system, method and "
                                     "credential (shows when an old token or key is no longer used).",
                                     ["system", "method", "credential"], registry=self.registry)
        self._buckets: dict[tuple[Any, ...], _Bucket] = {}
        self._window_started = clock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.written = 0  # audit entries written (for tests and the docs' claim)

    # ----------------------------------------------------------------- recording

    async def record(self, event: RefusalEvent) -> None:
        """Count a refusal; the first of its kind in the window is in the audit trail when this returns."""
        await self._write_all(self._note(event))

    def record_nowait(self, event: RefusalEvent) -> None:
        """The same from code that cannot wait (the TLS handshake): the entry is written in the background."""
        writes = self._note(event)
        if writes:
            self._spawn(self._write_all(writes))

    def _note(self, event: RefusalEvent) -> list[_Write]:
        """Count ``event``; the entries it calls for: a closed window's summaries, then its own if first."""
        self.counter.labels(event.system or "-", event.reason).inc()
        now = self.clock()
        writes = self._close_window(now) if now - self._window_started >= self.window else []
        key = event.key()
        bucket = self._buckets.get(key)
        if bucket is None and len(self._buckets) >= self.max_keys:
            key = ("overflow", event.system, event.reason)
            bucket = self._buckets.get(key)
            if bucket is None:
                summary = RefusalEvent(event.system, event.reason, event.status,
                                       "more distinct refusals than tracked in one window", path=event.path)
                bucket = self._buckets[key] = _Bucket(summary, now, now, overflow=True)
        if bucket is None:
            self._buckets[key] = _Bucket(event, now, now)
            writes.append(_Write(event, 1))
            return writes
        bucket.last = now
        bucket.suppressed += 1
        if bucket.overflow and event.remote and len(bucket.remotes) < 20:
            bucket.remotes.add(event.remote)
        return writes

    def accepted(self, system: str, method: str, credential: str) -> None:
        self.authenticated.labels(system, method, credential).inc()

    def render(self) -> bytes:
        """The two counters in Prometheus text format."""
        return generate_latest(self.registry)

    # ----------------------------------------------------------------- windows

    def _close_window(self, now: float) -> list[_Write]:
        buckets = [b for b in self._buckets.values() if b.suppressed]
        self._buckets = {}
        self._window_started = now
        return [_Write(b.event, b.suppressed, b.first, b.last, b.remotes, summary=True) for b in buckets]

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop (a synchronous caller at shutdown): nothing can be written
            coro.close()
            return
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(self, stopping: asyncio.Event) -> None:
        """Close a window every ``window`` seconds until the gateway stops."""
        while not stopping.is_set():
            try:
                await asyncio.wait_for(stopping.wait(), timeout=self.window)
            except TimeoutError:
                pass
            if self.clock() - self._window_started >= self.window:
                await self._write_all(self._close_window(self.clock()))

    async def close(self) -> None:
        """Write the summaries of the open window and wait for entries still being written."""
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._write_all(self._close_window(self.clock()))

    async def _write_all(self, writes: list[_Write]) -> None:
        for w in writes:
            await self._write(w.event, count=w.count, first=w.first, last=w.last, remotes=w.remotes,
                              summary=w.summary)

    async def _write(self, event: RefusalEvent, *, count: int, first: float | None = None,
                     last: float | None = None, remotes: set[str] | None = None, summary: bool = False) -> None:
        if self.audit is None:
            return
        detail: dict[str, Any] = {
            "reason": event.reason, "status": event.status, "message": event.message, "remote": event.remote,
            "path": event.path, "credential": event.credential, "credential_system": event.credential_system,
            "count": count, "window_seconds": self.window,
        }
        if summary:
            start = first if first is not None else self.clock()
            detail.update(summary=True, first_at=_iso(start), last_at=_iso(last or start),
                          note=f"{count} further identical refusal(s) in this window after the one recorded")
        if remotes:
            detail["remotes"] = sorted(remotes)
        try:
            await self.audit(ACTION, system=event.system, detail={k: v for k, v in detail.items() if v is not None})
            self.written += 1
        except Exception:  # the trail being unavailable must not turn a refusal into a 500
            log.exception("could not write a %s audit entry for %s (%s)", ACTION, event.system, event.reason)

