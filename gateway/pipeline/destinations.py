"""Destinations as operators see and steer them: state, backlog, health; pause, resume and runtime settings.

Shared by ``gateway destinations`` (``destinations_cli``) and the API (``gateway.api._destinations``).
Changes are written to the store, audited, and read from there by every delivering process; a
worker in the same process is told at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.pipeline.delivery import policy_for
from gateway.store.destinations import ERROR_WINDOW_MINUTES, DestinationControls

_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
MAX_CONCURRENCY = 256
MAX_RATE = 100_000.0
STATES = ("running", "paused", "circuit open", "circuit half-open")


class DestinationError(ValueError):
    """A request about a destination that cannot be done as asked; ``status`` for the API."""

    def __init__(self, message: str, status: int = 400, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.field = field


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, _CHINA).isoformat(timespec="seconds") if ts is not None else None


def configured(config: Any, name: str) -> None:
    """Refuse a name that is not a configured, enabled sink."""
    sink = config.sinks.get(name)
    if sink is None or not sink.enabled:
        known = ", ".join(sorted(n for n, s in config.sinks.items() if s.enabled)) or "none"
        raise DestinationError(f"no destination {name!r}: configured sinks are {known}", 404)


def _state(controls: DestinationControls, circuit: str) -> str:
    if controls.paused:
        return "paused"
    return {"open": "circuit open", "half_open": "circuit half-open"}.get(circuit, "running")


async def destination_rows(config: Any, store: Any, *, names: Sequence[str] | None = None,
                           workers: Mapping[str, Any] | None = None, now: float | None = None) -> list[dict[str, Any]]:
    """One row per enabled sink (or per name in ``names``): state, settings, backlog and health.

    ``workers`` (a running gateway's) give the live circuit state; without them the state is what the
    last delivering process stored.
    """
    now = time.time() if now is None else now
    wanted = [n for n, s in sorted(config.sinks.items()) if s.enabled and (names is None or n in names)]
    stored = await store.destination_controls(wanted)
    backlogs = await store.destination_backlog(wanted, now)
    rows = []
    for name in wanted:
        c = stored.get(name, DestinationControls(name))
        b = backlogs[name]
        policy = policy_for(config, name)
        worker = (workers or {}).get(name)
        circuit = worker.circuit.state if worker is not None else c.circuit
        next_probe = worker.circuit.next_probe_at if worker is not None else c.next_probe_at
        rate = c.rate if c.rate is not None else policy.rate
        rows.append({
            "name": name,
            "adapter": config.sinks[name].adapter,
            "state": _state(c, circuit),
            "paused": c.paused,
            "paused_by": c.paused_by,
            "paused_at": _iso(c.paused_at),
            "pause_reason": c.pause_reason,
            "circuit": circuit,
            "circuit_since": _iso(c.circuit_since) if circuit != "closed" else None,
            "next_probe_at": _iso(next_probe) if circuit == "open" else None,
            "concurrency": c.concurrency or policy.concurrency,
            "concurrency_configured": policy.concurrency,
            "rate": rate or None,
            "rate_configured": policy.rate,
            "settings_by": c.settings_by,
            "settings_at": _iso(c.settings_at),
            "backlog": b.waiting,
            "oldest_waiting_at": _iso(b.oldest_created_at),
            "oldest_waiting_seconds": round(now - b.oldest_created_at, 1) if b.oldest_created_at else None,
            "dead": b.dead,
            "held": b.held,
            "held_cases": b.held_cases,
            "last_success_at": _iso(c.last_success_at),
            "last_error": c.last_error,
            "last_error_at": _iso(c.last_error_at),
            "attempts_recent": b.attempts,
            "error_rate": round(b.error_rate, 4) if b.error_rate is not None else None,
            "error_window_minutes": ERROR_WINDOW_MINUTES,
        })
    return rows


def settings_changes(concurrency: Any = ..., rate: Any = ...) -> dict[str, Any]:
    """Validated changes: ``...`` leaves a setting as it is, None returns it to gateway.toml.

    ``concurrency``: a whole number 1–256. ``rate``: sends per second > 0, or 0 for no limit.
    """
    changes: dict[str, Any] = {}
    if concurrency is not ...:
        if concurrency is not None:
            if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not \
                    1 <= concurrency <= MAX_CONCURRENCY:
                raise DestinationError(f"concurrency must be a whole number from 1 to {MAX_CONCURRENCY} (or null "
                                       f"for the configured value), not {concurrency!r}", field="concurrency")
        changes["concurrency"] = concurrency
    if rate is not ...:
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not math.isfinite(rate) \
                    or not 0 <= rate <= MAX_RATE:
                raise DestinationError(f"rate must be sends per second from 0 (no limit) to {MAX_RATE:g} (or null "
                                       f"for the configured value), not {rate!r}", field="rate")
            rate = float(rate)
        changes["rate"] = rate
    if not changes:
        raise DestinationError("nothing to change: give concurrency and/or rate")
    return changes


async def pause(config: Any, store: Any, name: str, actor: str, reason: str | None = None, *,
                workers: Mapping[str, Any] | None = None, resume: bool = False) -> bool:
    """Pause (or resume) ``name``, audited; whether anything changed. A worker here is told at once."""
    configured(config, name)
    if reason is not None and len(reason) > 500:
        raise DestinationError("the reason is longer than 500 characters", field="reason")
    controls, changed = await store.pause_destination(name, paused=not resume, actor=actor, reason=reason,
                                                      now=time.time())
    _tell(workers, name, controls)
    return bool(changed)


async def change_settings(config: Any, store: Any, name: str, changes: dict[str, Any], actor: str, *,
                          workers: Mapping[str, Any] | None = None) -> bool:
    """Set runtime concurrency / rate of ``name`` (validated by ``settings_changes``), audited."""
    configured(config, name)
    controls, changed = await store.set_destination_settings(name, changes, actor=actor, now=time.time())
    _tell(workers, name, controls)
    return bool(changed)


def _tell(workers: Mapping[str, Any] | None, name: str, controls: DestinationControls) -> None:
    worker = (workers or {}).get(name)
    if worker is not None:
        worker.apply_controls(controls)
