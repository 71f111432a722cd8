"""Store operations for operations visibility: the figures ``/metrics`` reads, the readiness write probe,
and the last contact with each counterpart.

Plain functions over a DB-API connection in SQL that SQLite and PostgreSQL both accept;
``SqliteObservabilityMixin`` runs them on the SQLite store's reader pool and writer thread.
Every scrape query is answered from an index and costs what is open (the backlog, dead
letters, open quarantine, unsigned seals), never what was ever stored: with a million
delivered records a scrape reads nothing of them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit.chain import ChainWriter

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
ALERT_SYSTEM = "supervision"  # the source name of supervision_alert records (gateway.pipeline.alerts)

__all__ = ["ScrapeFigures", "SqliteObservabilityMixin", "last_contacts", "probe_write", "scrape_figures"]


@dataclass(slots=True)
class ScrapeFigures:
    """What one scrape reads from the store (times are Unix seconds)."""

    waiting: dict[str, int] = field(default_factory=dict)  # destination → pending + in flight
    inflight: dict[str, int] = field(default_factory=dict)
    dead: dict[str, int] = field(default_factory=dict)
    oldest_waiting: dict[str, float] = field(default_factory=dict)  # destination → created_at of the oldest
    quarantine_open: dict[str, int] = field(default_factory=dict)  # system → open entries
    records: int = 0  # records received from counterparts, over the store's life (alerts not included)
    alerts: int = 0  # supervision_alert records the gateway raised
    duplicates: int = 0
    quarantine_entries: int = 0
    audit_head: int = 0  # seq of the newest audit entry
    last_signed_seal: int = 0  # number of the newest signed seal (0: none yet)
    last_signed_to_seq: int = 0  # the last entry it covers
    last_signed_sealed_at: float | None = None  # when that seal was made
    oldest_unsigned_at: float | None = None  # when the oldest entry under no signed seal was written
    pending_seals: int = 0  # seals waiting for their signature

    @property
    def unsigned_entries(self) -> int:
        return max(0, self.audit_head - self.last_signed_to_seq)


def _epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:  # the gateway writes China time; an older value without a zone is too
        moment = moment.replace(tzinfo=_CHINA)
    return moment.timestamp()


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes | bytearray | memoryview) else str(value)


def scrape_figures(conn: Any, destinations: Sequence[str]) -> ScrapeFigures:
    """Every figure of one scrape, each from an index (see the module docstring)."""
    f = ScrapeFigures()
    # ix_outbox_waiting (migration 0040): pending and in-flight rows only, by destination.
    for dest, n in conn.execute("SELECT destination, count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
                                " GROUP BY destination"):
        f.waiting[dest] = n
    # ix_outbox_inflight: at most what the workers hold.
    for dest, n in conn.execute("SELECT destination, count(*) FROM outbox WHERE state = 'inflight'"
                                " GROUP BY destination"):
        f.inflight[dest] = n
    # ix_outbox_case_open (open rows: pending, in flight and dead letters); its WHERE must be repeated to use it.
    for dest, n in conn.execute("SELECT destination, count(*) FROM outbox WHERE state IN ('pending', 'inflight',"
                                " 'dead') AND state = 'dead' GROUP BY destination"):
        f.dead[dest] = n
    for dest in sorted({*destinations, *f.waiting}):
        row = conn.execute("SELECT created_at FROM outbox WHERE id = (SELECT min(id) FROM outbox"
                           " WHERE destination = ? AND state IN ('pending', 'inflight'))", (dest,)).fetchone()
        if row is not None and row[0] is not None:
            f.oldest_waiting[dest] = float(row[0])
    for system, n in conn.execute("SELECT system, count(*) FROM quarantine WHERE state = 'open' GROUP BY system"):
        f.quarantine_open[system] = n
    # Records and quarantine entries are never deleted, so the newest id is their count.
    total = conn.execute("SELECT max(id) FROM records").fetchone()[0] or 0
    f.alerts = conn.execute("SELECT count(*) FROM records WHERE system = ?", (ALERT_SYSTEM,)).fetchone()[0]
    f.records = total - f.alerts
    f.quarantine_entries = conn.execute("SELECT max(id) FROM quarantine").fetchone()[0] or 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'count.duplicates'").fetchone()
    f.duplicates = int(row[0]) if row else 0
    f.audit_head = conn.execute("SELECT max(seq) FROM audit").fetchone()[0] or 0
    _seal_figures(conn, f)
    return f


def _seal_figures(conn: Any, f: ScrapeFigures) -> None:
    f.pending_seals = conn.execute("SELECT count(*) FROM audit_seals WHERE signature IS NULL").fetchone()[0]
    row = conn.execute("SELECT seal, to_seq, statement FROM audit_seals WHERE signature IS NOT NULL"
                       " ORDER BY seal DESC LIMIT 1").fetchone()
    if row is None:  # archived seals still count: the archive records the last one it holds
        archived = conn.execute("SELECT last_seal, to_seq FROM audit_archives ORDER BY archive DESC LIMIT 1"
                                ).fetchone()
        if archived is not None:
            f.last_signed_seal, f.last_signed_to_seq = archived[0], archived[1]
    else:
        f.last_signed_seal, f.last_signed_to_seq = row[0], row[1]
        try:
            f.last_signed_sealed_at = _epoch(json.loads(_text(row[2])).get("sealed_at"))
        except (ValueError, AttributeError):  # a statement the verifier will name; not the scrape's business
            f.last_signed_sealed_at = None
    if f.audit_head > f.last_signed_to_seq:
        first = conn.execute("SELECT seq, body FROM audit WHERE seq > ? ORDER BY seq LIMIT 1",
                             (f.last_signed_to_seq,)).fetchone()
        if first is not None:
            try:
                f.oldest_unsigned_at = _epoch(json.loads(_text(first[1])).get("at"))
            except (ValueError, AttributeError):
                f.oldest_unsigned_at = None


def last_contacts(conn: Any) -> tuple[dict[str, float], dict[str, float]]:
    """(system → when its newest record arrived, destination → when the newest delivery to it succeeded).

    Read once when the gateway starts (running, it keeps them itself). The deliveries come from
    the delivery workers' own record (``destinations.last_success_at``); the arrivals read the
    receipt index once, about 0.2 s for a million records.
    """
    received: dict[str, float] = {}
    newest = conn.execute("SELECT system, max(id) FROM records WHERE system <> ? GROUP BY system",
                          (ALERT_SYSTEM,)).fetchall()
    for system, rid in newest:
        row = conn.execute("SELECT receipt_time FROM records WHERE id = ?", (rid,)).fetchone()
        at = _epoch(row[0]) if row else None
        if at is not None:
            received[system] = at
    delivered = {name: float(at) for name, at in conn.execute(
        "SELECT name, last_success_at FROM destinations WHERE last_success_at IS NOT NULL")}
    return received, delivered


def probe_write(conn: Any, chain: ChainWriter, at: str) -> None:
    """The readiness probe: a real write through the store's transaction path (no audit entry)."""
    conn.execute("INSERT INTO meta(key, value) VALUES ('probe.ready', ?)"
                 " ON CONFLICT(key) DO UPDATE SET value = excluded.value", (at,))


class SqliteObservabilityMixin:
    """Mixed into SqliteStore; uses its _read/_write primitives."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, op: Callable[[sqlite3.Connection, ChainWriter], T]) -> T: ...

    async def scrape_figures(self, destinations: Sequence[str] = ()) -> ScrapeFigures:
        """The store's part of a ``/metrics`` scrape."""
        wanted = list(destinations)
        return await self._read(lambda conn: scrape_figures(conn, wanted))

    async def last_contacts(self) -> tuple[dict[str, float], dict[str, float]]:
        """When each system last sent a record and each destination last took one (see ``last_contacts``)."""
        return await self._read(last_contacts)

    async def probe_write(self) -> None:
        """Commit a small write through the writer: the store is writable when this returns."""
        at = datetime.now(_CHINA).isoformat(timespec="milliseconds")
        await self._write(lambda conn, chain: probe_write(conn, chain, at))
