"""Destination controls and health over a DB-API connection: pause, runtime settings, circuit state, backlog.

Plain functions ``op(conn, chain, ...)`` (writes) and ``q(conn, ...)`` (reads) in SQL that SQLite
and PostgreSQL both accept, run through the store's writer and readers (``sqlite_destinations``).
The store is the truth: an operator's pause or setting lands here, audited, and every delivering
process reads it from here. The circuit breaker itself runs in the worker
(``gateway.pipeline.circuit``); the worker writes its state here so that operators, the API and
other processes see it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from gateway.audit.chain import ChainWriter
from gateway.security.masking import mask_text
from gateway.store.sqlite_audit import AUDIT_INSERT, audit_row

CIRCUIT_STATES = ("closed", "open", "half_open")
ERROR_WINDOW_MINUTES = 15  # the error rate shown is over this many minutes of attempts
_KEEP_MINUTES = 24 * 60  # per-minute attempt counts older than a day are dropped
_MAX_TEXT = 500

_COLUMNS = ("name, paused, paused_at, paused_by, pause_reason, concurrency, rate, settings_by, settings_at, circuit,"
            " circuit_since, circuit_failures, next_probe_at, last_success_at, last_error, last_error_at, updated_at")


@dataclass(slots=True)
class DestinationControls:
    """One destination's row: what operators set (pause, concurrency, rate) and what its worker last saw."""

    name: str
    paused: bool = False
    paused_at: float | None = None
    paused_by: str | None = None
    pause_reason: str | None = None
    concurrency: int | None = None  # None: the configured value
    rate: float | None = None  # requests per second; 0: no limit; None: the configured value
    settings_by: str | None = None
    settings_at: float | None = None
    circuit: str = "closed"
    circuit_since: float | None = None
    circuit_failures: int = 0
    next_probe_at: float | None = None
    last_success_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    updated_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class Backlog:
    """What waits for one destination: deliveries not yet delivered, dead letters, and cases held behind them."""

    waiting: int = 0  # pending + in flight
    oldest_created_at: float | None = None  # of the oldest waiting delivery
    dead: int = 0
    held: int = 0  # waiting deliveries of a case whose earlier delivery is a dead letter (per-case order)
    held_cases: int = 0
    attempts: int = 0  # in the error-rate window
    failures: int = 0

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.attempts if self.attempts else None


def _text(value: str | None) -> str | None:
    """Free text (a reason, a counterpart's error) as it may be stored beside the audit trail: masked, bounded."""
    if value is None:
        return None
    return mask_text(" ".join(str(value).split()))[:_MAX_TEXT]


def _row(row: Sequence[Any]) -> DestinationControls:
    c = DestinationControls(*row)
    c.paused = bool(c.paused)
    return c


# --------------------------------------------------------------------------- reads


def controls(conn: Any, names: Sequence[str] | None = None) -> dict[str, DestinationControls]:
    """The stored controls of ``names`` (all when None); a destination never touched has no row."""
    if names is None:
        rows = conn.execute(f"SELECT {_COLUMNS} FROM destinations").fetchall()
    else:
        names = list(names)
        if not names:
            return {}
        rows = conn.execute(f"SELECT {_COLUMNS} FROM destinations WHERE name IN ({','.join('?' * len(names))})",
                            names).fetchall()
    return {r[0]: _row(r) for r in rows}


def waiting(conn: Any, destination: str) -> tuple[int, float | None]:
    """(deliveries waiting — pending or in flight —, created_at of the oldest) from ix_outbox_waiting."""
    n = conn.execute("SELECT count(*) FROM outbox WHERE destination = ? AND state IN ('pending', 'inflight')",
                     (destination,)).fetchone()[0]
    if not n:
        return 0, None
    row = conn.execute("SELECT created_at FROM outbox WHERE destination = ? AND state IN ('pending', 'inflight')"
                       " ORDER BY id LIMIT 1", (destination,)).fetchone()
    return int(n), row[0] if row else None


def backlog(conn: Any, destination: str, now: float) -> Backlog:
    """Waiting, dead, held and the recent error rate of one destination."""
    b = Backlog()
    b.waiting, b.oldest_created_at = waiting(conn, destination)
    b.dead = int(conn.execute("SELECT count(*) FROM outbox WHERE destination = ? AND state = 'dead'",
                              (destination,)).fetchone()[0])
    if b.dead:
        # Driven by the dead letters (few), not by the backlog (possibly many).
        held, cases = conn.execute(
            "SELECT count(DISTINCT p.id), count(DISTINCT p.case_no) FROM outbox d JOIN outbox p"
            " ON p.destination = d.destination AND p.case_no = d.case_no AND p.id > d.id"
            " AND p.state IN ('pending', 'inflight')"
            " WHERE d.destination = ? AND d.state = 'dead'", (destination,)).fetchone()
        b.held, b.held_cases = int(held or 0), int(cases or 0)
    since = int(now // 60) - ERROR_WINDOW_MINUTES + 1
    attempts, failures = conn.execute(
        "SELECT sum(attempts), sum(failures) FROM destination_minutes WHERE destination = ? AND minute >= ?",
        (destination, since)).fetchone()
    b.attempts, b.failures = int(attempts or 0), int(failures or 0)
    return b


# --------------------------------------------------------------------------- writes by operators


def _ensure(conn: Any, name: str, now: float) -> DestinationControls:
    conn.execute("INSERT INTO destinations(name, updated_at) VALUES (?, ?) ON CONFLICT(name) DO NOTHING", (name, now))
    return controls(conn, [name])[name]


def set_paused(conn: Any, chain: ChainWriter, at: str, now: float, name: str, paused: bool, actor: str,
               reason: str | None) -> tuple[DestinationControls, bool]:
    """Pause or resume ``name``; (the row after, whether anything changed). Each change is audited."""
    before = _ensure(conn, name, now)
    if before.paused == paused:
        return before, False
    reason = _text(reason)
    if paused:
        conn.execute("UPDATE destinations SET paused = 1, paused_at = ?, paused_by = ?, pause_reason = ?,"
                     " updated_at = ? WHERE name = ?", (now, actor, reason, now, name))
    else:
        conn.execute("UPDATE destinations SET paused = 0, paused_at = NULL, paused_by = NULL, pause_reason = NULL,"
                     " updated_at = ? WHERE name = ?", (now, name))
    detail: dict[str, Any] = {"destination": name, "actor": actor}
    if paused:
        detail["reason"] = reason
    else:
        detail.update(paused_since=before.paused_at, paused_by=before.paused_by)
    conn.execute(AUDIT_INSERT, audit_row(chain, at, "destination_paused" if paused else "destination_resumed",
                                         system=name, detail=detail))
    return controls(conn, [name])[name], True


def set_settings(conn: Any, chain: ChainWriter, at: str, now: float, name: str, changes: dict[str, Any],
                 actor: str) -> tuple[DestinationControls, bool]:
    """Set ``concurrency`` and/or ``rate`` (a value, or None for the configured one); audited with before/after."""
    unknown = set(changes) - {"concurrency", "rate"}
    if unknown:
        raise ValueError(f"unknown destination settings: {', '.join(sorted(unknown))}")
    before = _ensure(conn, name, now)
    after = {k: changes.get(k, getattr(before, k)) for k in ("concurrency", "rate")}
    old = {"concurrency": before.concurrency, "rate": before.rate}
    if after == old:
        return before, False
    conn.execute("UPDATE destinations SET concurrency = ?, rate = ?, settings_by = ?, settings_at = ?, updated_at = ?"
                 " WHERE name = ?", (after["concurrency"], after["rate"], actor, now, now, name))
    conn.execute(AUDIT_INSERT, audit_row(chain, at, "destination_settings", system=name, detail={
        "destination": name, "actor": actor, "before": old, "after": after}))
    return controls(conn, [name])[name], True


# --------------------------------------------------------------------------- writes by the worker


def note_circuit(conn: Any, chain: ChainWriter, at: str, now: float, name: str, state: str, *,
                 failures: int, next_probe_at: float | None, error: str | None, audit_action: str | None,
                 detail: dict[str, Any] | None = None) -> int:
    """The worker's circuit state; on ``circuit_closed`` every waiting delivery becomes due now.

    Returns how many deliveries were made due. ``audit_action`` (circuit_opened / circuit_closed)
    writes one entry for the destination; half-open probes are logged and counted, not audited.
    """
    if state not in CIRCUIT_STATES:
        raise ValueError(f"unknown circuit state {state!r}")
    _ensure(conn, name, now)
    made_due = 0
    if state == "closed" and audit_action == "circuit_closed":
        # Retries that sat in backoff while the counterpart was away go now, not when their timers run out.
        made_due = conn.execute("UPDATE outbox SET next_attempt_at = ? WHERE destination = ? AND state = 'pending'"
                                " AND next_attempt_at > ?", (now, name, now)).rowcount or 0
    since_sql = "circuit_since" if audit_action is None else "?"
    args: list[Any] = [state] + ([] if audit_action is None else [now]) + [failures, next_probe_at, now, name]
    conn.execute(f"UPDATE destinations SET circuit = ?, circuit_since = {since_sql}, circuit_failures = ?,"
                 " next_probe_at = ?, updated_at = ? WHERE name = ?", args)
    if error is not None:
        conn.execute("UPDATE destinations SET last_error = ?, last_error_at = ? WHERE name = ?",
                     (_text(error), now, name))
    if audit_action is not None:
        body = {"destination": name, **(detail or {})}
        if error is not None:
            body["error"] = _text(error)
        if audit_action == "circuit_closed":
            body["made_due"] = made_due
        conn.execute(AUDIT_INSERT, audit_row(chain, at, audit_action, system=name, detail=body))
    return made_due


def reset_circuit(conn: Any, name: str, now: float) -> None:
    """A worker starting: whatever state a previous process left is not this process's breaker."""
    conn.execute("UPDATE destinations SET circuit = 'closed', circuit_since = NULL, circuit_failures = 0,"
                 " next_probe_at = NULL, updated_at = ? WHERE name = ? AND circuit <> 'closed'", (now, name))


def note_outcomes(conn: Any, name: str, now: float, attempts: int, failures: int,
                  last_success_at: float | None, last_error: str | None) -> None:
    """Attempts and failures of one settled batch into its minute; the destination's last success and error."""
    if attempts:
        conn.execute(
            "INSERT INTO destination_minutes(destination, minute, attempts, failures) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(destination, minute) DO UPDATE SET attempts = destination_minutes.attempts"
            " + excluded.attempts, failures = destination_minutes.failures + excluded.failures",
            (name, int(now // 60), attempts, failures))
    if last_success_at is None and last_error is None:
        return
    _ensure(conn, name, now)
    if last_success_at is not None:
        conn.execute("UPDATE destinations SET last_success_at = ?, updated_at = ? WHERE name = ?",
                     (last_success_at, now, name))
    if last_error is not None:
        conn.execute("UPDATE destinations SET last_error = ?, last_error_at = ?, updated_at = ? WHERE name = ?",
                     (_text(last_error), now, now, name))


def prune_minutes(conn: Any, now: float) -> int:
    """Drop per-minute counts older than a day (the error rate looks at the last few minutes)."""
    return conn.execute("DELETE FROM destination_minutes WHERE minute < ?",
                        (int(now // 60) - _KEEP_MINUTES,)).rowcount or 0
