"""Liveness and readiness, and the start-up line that says where the API listens (or that it does not).

- alive (``/healthz``): the process answers. It reads nothing, so a slow or broken store never
  makes an orchestrator restart a gateway that would only come back to the same store;
- ready (``/readyz``): the store commits a real write within ``WRITE_PROBE_TIMEOUT``, every
  source and sink started, no long-running part ended, and the gateway is not starting or
  stopping. A load balancer sends pushes only to a ready gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api")

WRITE_PROBE_TIMEOUT = 2.0  # seconds a readiness probe waits for the store to commit its write
PROBE_REUSE = 1.0  # a probe's result answers the probes of the next second (many checkers, one write)

__all__ = ["Readiness", "WriteProbe", "alive", "log_api_off", "log_api_on", "readiness"]


def _state(gw: Gateway) -> str:
    return "stopping" if gw.stopping.is_set() else "started" if gw.started else "starting"


def alive(gw: Gateway, started_at: float) -> dict[str, Any]:
    """The body of ``/healthz``: nothing here touches the store."""
    from gateway.observability.metrics import gateway_version

    return {"status": "alive", "gateway": gw.config.gateway.name, "version": gateway_version(),
            "state": _state(gw), "uptime_seconds": round(time.monotonic() - started_at, 1)}


class WriteProbe:
    """One write through the store at a time, its result reused for ``PROBE_REUSE`` seconds."""

    def __init__(self) -> None:
        self._task: asyncio.Task[float] | None = None
        self._done_at = float("-inf")
        self._result: float | BaseException | None = None

    async def run(self, store: Any, timeout: float = WRITE_PROBE_TIMEOUT) -> float:
        """Seconds the write took; raises TimeoutError or the store's error."""
        if self._result is not None and time.monotonic() - self._done_at < PROBE_REUSE:
            if isinstance(self._result, BaseException):
                raise self._result
            return self._result
        if self._task is None or self._task.done():
            # A probe still queued behind a stuck writer is not queued again: the next checker waits for it.
            self._task = asyncio.ensure_future(self._write(store))
        try:
            took = await asyncio.wait_for(asyncio.shield(self._task), timeout=timeout)
        except TimeoutError:
            raise TimeoutError(f"the store did not commit a write within {timeout:g}s") from None
        except Exception as exc:
            self._result, self._done_at = exc, time.monotonic()
            raise
        self._result, self._done_at = took, time.monotonic()
        return took

    @staticmethod
    async def _write(store: Any) -> float:
        started = time.perf_counter()
        await store.probe_write()
        return time.perf_counter() - started


@dataclass
class Readiness:
    ready: bool
    reasons: list[str] = field(default_factory=list)
    body: dict[str, Any] = field(default_factory=dict)


async def readiness(gw: Gateway, probe: WriteProbe) -> Readiness:
    """Whether ``gw`` should receive traffic, and every reason it should not."""
    reasons: list[str] = []
    state = _state(gw)
    if state == "starting":
        reasons.append("starting: the sources and sinks have not all started yet")
    elif state == "stopping":
        reasons.append("stopping: finishing what is in flight")
    body: dict[str, Any] = {"gateway": gw.config.gateway.name, "state": state}
    store: dict[str, Any] = {}
    if gw.store is None:
        reasons.append("the store is not open")
        store["writable"] = False
    else:
        try:
            took = await probe.run(gw.store)
            store.update(writable=True, write_ms=round(took * 1000, 1))
        except Exception as exc:
            reason = str(exc) if isinstance(exc, TimeoutError) else \
                f"the store cannot be written: {type(exc).__name__}: {exc}"
            reasons.append(reason)
            store.update(writable=False, error=reason)
        try:
            seq, _, algorithm = await asyncio.wait_for(gw.store.audit_head(), timeout=WRITE_PROBE_TIMEOUT)
            body["audit"] = {"head_seq": seq, "algorithm": algorithm}
        except Exception:  # the write probe above already says what is wrong with the store
            pass
    body["store"] = store
    problems = gw.task_problems()
    reasons.extend(problems)
    body["sources"] = {name: ({"state": "restarting", "last_crash": gw.source_failures[name]}
                              if name in gw.source_failures else {"state": "running"})
                       for name in gw.sources}
    body["sinks"] = {name: {"state": "running"} for name in gw.sinks}
    ready = not reasons
    body.update(status="ready" if ready else "not ready", ready=ready, reasons=reasons)
    return Readiness(ready, reasons, body)


# --------------------------------------------------------------------------- the start-up line


def log_api_on(gw: Gateway, url: str, push_systems: list[str], tls: bool) -> None:
    """Say where the API listens, how, and what it serves."""
    cfg = gw.config.api
    how = "HTTPS" if tls else "plain HTTP"
    if tls and cfg.client_ca:
        how += f" with client certificates {cfg.client_certificates}"
    picked = " ([api] port = 0 picked a free port; set a port to keep one)" if cfg.port == 0 else ""
    log.info(f"API listening on {url} ({how}){picked}", extra={
        "api": "enabled", "url": url, "host": cfg.host, "port": int(url.rsplit(":", 1)[-1]), "tls": tls,
        "push_systems": push_systems, "endpoints": ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"]})


def log_api_off(gw: Gateway) -> None:
    """Say that nothing listens, and why, so an operator does not wait on a port that never opens."""
    if not gw.config.api.enabled:  # a warning: whoever waits on the port should find this line
        why, level = "[api] enabled = false in the configuration", logging.WARNING
    else:
        why, level = "this process does not run sources (it delivers only)", logging.INFO
    log.log(level, f"the HTTP API is disabled: {why}; no push endpoints, /healthz, /readyz or /metrics are served",
            extra={"api": "disabled", "reason": why})
