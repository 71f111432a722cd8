"""Store operations behind the console: the case index, alert index and acknowledgements, statistics,
counterpart health.

Plain functions over a DB-API connection (``op(conn, chain, …)`` for writes, ``q(conn, …)`` for
reads) in SQL that SQLite and PostgreSQL both accept: ``?`` placeholders, ``ON CONFLICT … DO
UPDATE``, ``CASE`` instead of two-argument ``max``. :class:`SqliteCasesMixin` runs them on the
SQLite store's writer thread and reader pool. Tables: migration 0045.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.console.index import ALERT_COLUMNS, CASE_COLUMNS, IndexBatch
from gateway.store.sqlite_audit import append_audit

if TYPE_CHECKING:
    from gateway.audit.chain import ChainWriter

T = TypeVar("T")
Conn = Any
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
INDEX_CURSOR = "console:case_index"
COUNT_CAP = 10_000  # a search counts its matches up to this many ("more than 10,000")


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


# --------------------------------------------------------------------------- writing the index

_RISE = ("warning", "overdue", "backfilled", "outside_system")
_ADD = ("alerts", "records")
_KEEP_UNLESS_GIVEN = ("item_code", "item_name", "applicant_name", "applicant_type", "applicant_id_type",
                      "applicant_credit_code", "region_code", "department", "clock", "submitted_at", "accepted_at",
                      "due_at", "completed_at", "on_time", "license_no", "completed_month")


def _case_upsert_sql() -> str:
    sets = [f"{c} = COALESCE(excluded.{c}, case_index.{c})" for c in _KEEP_UNLESS_GIVEN]
    sets += [f"{c} = CASE WHEN excluded.{c} > case_index.{c} THEN excluded.{c} ELSE case_index.{c} END"
             for c in _RISE]
    sets += [f"{c} = case_index.{c} + excluded.{c}" for c in _ADD]
    sets += [
        "status = excluded.status",
        # The application's month once the case record says it, else the month it was first seen.
        "received_month = CASE WHEN excluded.submitted_at IS NOT NULL THEN excluded.received_month"
        " ELSE case_index.received_month END",
        "first_received_at = CASE WHEN excluded.first_received_at < case_index.first_received_at"
        " THEN excluded.first_received_at ELSE case_index.first_received_at END",
        "last_received_at = CASE WHEN excluded.last_received_at > case_index.last_received_at"
        " THEN excluded.last_received_at ELSE case_index.last_received_at END",
    ]
    return (f"INSERT INTO case_index({', '.join(CASE_COLUMNS)}) VALUES ({', '.join('?' * len(CASE_COLUMNS))})"
            f" ON CONFLICT(case_no) DO UPDATE SET {', '.join(sets)}")


CASE_UPSERT = _case_upsert_sql()
# An alert for a case the index already holds raises its flags; it says nothing else about the case.
CASE_ALERT_UPDATE = (
    "UPDATE case_index SET "
    + ", ".join(f"{c} = CASE WHEN ? > {c} THEN ? ELSE {c} END" for c in _RISE)
    + ", alerts = alerts + ? WHERE case_no = ?")
ALERT_INSERT = (f"INSERT INTO alert_index({', '.join(ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(ALERT_COLUMNS))})"
                " ON CONFLICT(alert_id) DO NOTHING")
CONTACT_UPSERT = (
    "INSERT INTO counterpart_contact(system, last_received_at, last_record_id, records) VALUES (?,?,?,?)"
    " ON CONFLICT(system) DO UPDATE SET"
    " last_received_at = CASE WHEN excluded.last_received_at > counterpart_contact.last_received_at"
    " THEN excluded.last_received_at ELSE counterpart_contact.last_received_at END,"
    " last_record_id = CASE WHEN excluded.last_record_id > counterpart_contact.last_record_id"
    " THEN excluded.last_record_id ELSE counterpart_contact.last_record_id END,"
    " records = counterpart_contact.records + excluded.records")
CURSOR_UPSERT = ("INSERT INTO cursors(name, value, updated_at) VALUES (?,?,?) "
                 "ON CONFLICT(name) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at")


_STAT_SOURCE = ("received_month", "completed_month", "department", "item_code", "item_name", "overdue",
                "backfilled", "on_time")
_STAT_COUNTS = ("received", "overdue", "backfilled", "completed", "on_time", "timed")
STATS_UPSERT = (
    "INSERT INTO case_stats_monthly(month, department, item_code, item_name, " + ", ".join(_STAT_COUNTS) + ")"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(month, department, item_code) DO UPDATE SET"
    " item_name = COALESCE(excluded.item_name, case_stats_monthly.item_name), "
    + ", ".join(f"{c} = case_stats_monthly.{c} + excluded.{c}" for c in _STAT_COUNTS))


def _stat_sources(conn: Conn, keys: Sequence[str]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for i in range(0, len(keys), 500):
        chunk = keys[i:i + 500]
        out.extend(conn.execute(f"SELECT {', '.join(_STAT_SOURCE)} FROM case_index WHERE case_no IN"
                                f" ({', '.join('?' * len(chunk))})", chunk).fetchall())
    return out


def _add_contributions(totals: dict[tuple[str, str, str], list[Any]], rows: list[tuple[Any, ...]], sign: int) -> None:
    """What each case row counts in the monthly table: received where it was applied for, completed where done."""
    for received_month, completed_month, department, item_code, item_name, overdue, backfilled, on_time in rows:
        dept, item = department or "", item_code or ""
        got = totals.setdefault((received_month, dept, item), [item_name, 0, 0, 0, 0, 0, 0])
        got[0] = got[0] or item_name
        got[1] += sign
        got[2] += sign * (overdue or 0)
        got[3] += sign * (backfilled or 0)
        if completed_month:
            done = totals.setdefault((completed_month, dept, item), [item_name, 0, 0, 0, 0, 0, 0])
            done[0] = done[0] or item_name
            done[4] += sign
            done[5] += sign * (1 if on_time == 1 else 0)
            done[6] += sign * (0 if on_time is None else 1)


def write_index(conn: Conn, batch: IndexBatch, cursor: str | None) -> None:
    """Upsert one batch of index changes and, when given, move the index cursor (the caller's transaction).

    The monthly statistics move with it: what the batch's cases counted before is subtracted and
    what they count now is added.
    """
    keys = list(batch.cases)
    totals: dict[tuple[str, str, str], list[Any]] = {}
    if keys:
        _add_contributions(totals, _stat_sources(conn, keys), -1)
    full, alert_only = [], []
    for row in batch.cases.values():
        if row.get("_alert_only"):
            alert_only.append(row)
        else:
            full.append(tuple(row[c] for c in CASE_COLUMNS))
    if full:
        conn.executemany(CASE_UPSERT, full)
    if alert_only:
        conn.executemany(CASE_ALERT_UPDATE, [
            (*(v for c in _RISE for v in (r[c], r[c])), r["alerts"], r["case_no"]) for r in alert_only])
    if keys:
        _add_contributions(totals, _stat_sources(conn, keys), +1)
        changed = [(month, dept, item, counts[0], *counts[1:]) for (month, dept, item), counts in totals.items()
                   if month and any(counts[1:])]
        if changed:
            conn.executemany(STATS_UPSERT, changed)
    if batch.alerts:
        conn.executemany(ALERT_INSERT, [tuple(a[c] for c in ALERT_COLUMNS) for a in batch.alerts])
    if batch.contacts:
        conn.executemany(CONTACT_UPSERT, [(s, at, rid, n) for s, (at, rid, n) in batch.contacts.items()])
    if cursor is not None:
        conn.execute(CURSOR_UPSERT, (INDEX_CURSOR, cursor, _now()))


# --------------------------------------------------------------------------- case search

@dataclass(frozen=True, slots=True)
class CaseQuery:
    """A case search; every text filter but status is a prefix (indexed range), ``None`` means any."""

    case_no: str | None = None
    applicant: str | None = None  # a name prefix, or a 统一社会信用代码 (18 characters) exactly
    item_code: str | None = None
    region: str | None = None
    department: str | None = None
    status: str | None = None
    warning: int | None = None  # 0 none, 1 yellow, 2 red
    systems: frozenset[str] | None = None  # an operator's systems: cases with a record from one of them
    limit: int = 50
    before: tuple[str, str] | None = None  # (last_received_at, case_no) of the previous page's last row


def _prefix(column: str, value: str, where: list[str], args: list[Any]) -> None:
    """``column`` starts with ``value``, as an index range rather than LIKE (whose index use differs by database)."""
    where.append(f"{column} >= ? AND {column} < ?")
    args.extend([value, value + "\U0010ffff"])


def _is_credit_code(value: str) -> bool:
    return len(value) == 18 and value.isalnum() and value.isascii()


def _case_where(q: CaseQuery) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if q.case_no:
        _prefix("c.case_no", q.case_no, where, args)
    if q.applicant:
        if _is_credit_code(q.applicant):
            where.append("c.applicant_credit_code = ?")
            args.append(q.applicant.upper())
        else:
            _prefix("c.applicant_name", q.applicant, where, args)
    if q.item_code:
        _prefix("c.item_code", q.item_code, where, args)
    if q.region:
        _prefix("c.region_code", q.region, where, args)
    if q.department:
        where.append("c.department = ?")
        args.append(q.department)
    if q.status:
        where.append("c.status = ?")
        args.append(q.status)
    if q.warning is not None:
        where.append("c.warning = ?")
        args.append(q.warning)
    if q.systems is not None:
        systems = sorted(q.systems) or [""]
        where.append(f"EXISTS (SELECT 1 FROM records r WHERE r.case_no = c.case_no AND r.system IN "
                     f"({', '.join('?' * len(systems))}))")
        args.extend(systems)
    return where, args


def search_cases(conn: Conn, q: CaseQuery) -> tuple[list[dict[str, Any]], int, bool]:
    """(a page of cases, newest activity first; how many match up to COUNT_CAP; whether there are more)."""
    where, args = _case_where(q)
    page_where, page_args = list(where), list(args)
    if q.before is not None:
        page_where.append("(c.last_received_at < ? OR (c.last_received_at = ? AND c.case_no < ?))")
        page_args.extend([q.before[0], q.before[0], q.before[1]])
    clause = f" WHERE {' AND '.join(page_where)}" if page_where else ""
    rows = conn.execute(
        f"SELECT {', '.join('c.' + col for col in CASE_COLUMNS)} FROM case_index c{clause}"
        " ORDER BY c.last_received_at DESC, c.case_no DESC LIMIT ?", (*page_args, q.limit + 1)).fetchall()
    more = len(rows) > q.limit
    items = [dict(zip(CASE_COLUMNS, r, strict=True)) for r in rows[:q.limit]]
    count_clause = f" WHERE {' AND '.join(where)}" if where else ""
    total = conn.execute(f"SELECT count(*) FROM (SELECT 1 FROM case_index c{count_clause} LIMIT ?) AS m",
                         (*args, COUNT_CAP + 1)).fetchone()[0]
    return items, total, more


def case_row(conn: Conn, case_no: str) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {', '.join(CASE_COLUMNS)} FROM case_index WHERE case_no = ?", (case_no,)).fetchone()
    return dict(zip(CASE_COLUMNS, row, strict=True)) if row else None


# --------------------------------------------------------------------------- alerts and acknowledgements

ALERT_LIST_COLUMNS = (*ALERT_COLUMNS, "acked_by", "acked_role", "acked_at", "ack_note")


@dataclass(frozen=True, slots=True)
class AlertQuery:
    alert_type: str | None = None
    severity: str | None = None
    case_no: str | None = None
    department: str | None = None
    acked: bool | None = None  # True: only acknowledged; False: only open
    limit: int = 50
    before_id: int | None = None  # record id of the previous page's last alert (newest first)


def list_alerts(conn: Conn, q: AlertQuery) -> tuple[list[dict[str, Any]], bool]:
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("a.alert_type", q.alert_type), ("a.severity", q.severity), ("a.case_no", q.case_no),
                          ("a.department", q.department)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if q.acked is True:
        where.append("k.alert_id IS NOT NULL")
    elif q.acked is False:
        where.append("k.alert_id IS NULL")
    if q.before_id is not None:
        where.append("a.record_id < ?")
        args.append(q.before_id)
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    rows = conn.execute(
        f"SELECT {', '.join('a.' + c for c in ALERT_COLUMNS)}, k.acked_by, k.role, k.acked_at, k.note"
        f" FROM alert_index a LEFT JOIN alert_acks k ON k.alert_id = a.alert_id{clause}"
        " ORDER BY a.record_id DESC LIMIT ?", (*args, q.limit + 1)).fetchall()
    return [dict(zip(ALERT_LIST_COLUMNS, r, strict=True)) for r in rows[:q.limit]], len(rows) > q.limit


def alert_counts(conn: Conn) -> dict[str, dict[str, int]]:
    """Open and acknowledged alerts per type."""
    out: dict[str, dict[str, int]] = {}
    for alert_type, acked, n in conn.execute(
            "SELECT a.alert_type, CASE WHEN k.alert_id IS NULL THEN 0 ELSE 1 END, count(*) FROM alert_index a"
            " LEFT JOIN alert_acks k ON k.alert_id = a.alert_id GROUP BY 1, 2"):
        out.setdefault(alert_type, {"open": 0, "acknowledged": 0})["acknowledged" if acked else "open"] = n
    return out


def acknowledge_alerts(conn: Conn, chain: ChainWriter, alert_ids: Sequence[str], user: str, role: str,
                       note: str) -> list[dict[str, Any]]:
    """Acknowledge each alert once, each with an ``alert_acknowledged`` audit entry; one result per id."""
    at = _now()
    results = []
    for alert_id in alert_ids:
        found = conn.execute("SELECT a.case_no, a.alert_type, k.acked_by, k.acked_at FROM alert_index a"
                             " LEFT JOIN alert_acks k ON k.alert_id = a.alert_id WHERE a.alert_id = ?",
                             (alert_id,)).fetchone()
        if found is None:
            results.append({"alert_id": alert_id, "result": "unknown"})
            continue
        case_no, alert_type, acked_by, acked_at = found
        if acked_by is not None:
            results.append({"alert_id": alert_id, "result": "already_acknowledged", "acked_by": acked_by,
                            "acked_at": acked_at})
            continue
        conn.execute("INSERT INTO alert_acks(alert_id, case_no, acked_by, role, acked_at, note) VALUES (?,?,?,?,?,?)",
                     (alert_id, case_no, user, role, at, note))
        append_audit(conn, chain, "alert_acknowledged", system="supervision", kind="supervision_alert",
                     record=alert_id, case=case_no or None,
                     detail={"alert_type": alert_type, "user": user, "role": role, "note": note})
        results.append({"alert_id": alert_id, "result": "acknowledged", "acked_by": user, "acked_at": at})
    return results


def alert_acks_for(conn: Conn, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    ids = list(alert_ids)
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        for alert_id, user, role, at, note in conn.execute(
                f"SELECT alert_id, acked_by, role, acked_at, note FROM alert_acks WHERE alert_id IN"
                f" ({', '.join('?' * len(chunk))})", chunk):
            out[alert_id] = {"acked_by": user, "role": role, "acked_at": at, "note": note}
    return out


# --------------------------------------------------------------------------- statistics

DIMENSIONS = {"month": None, "department": "department", "item": "item_code"}


def statistics(conn: Conn, by: str, first_month: str, last_month: str,
               department: str | None = None, item_code: str | None = None) -> list[dict[str, Any]]:
    """Per month and ``by`` (month | department | item): received, completed, on time, overdue, back-filled.

    Read from the monthly table (migration 0046), kept with the case index. Received, overdue and
    back-filled count cases by the month of application; completed and on time by the month of
    completion. ``timed`` counts completed cases that had a time limit (the on-time rate's denominator).
    """
    dim = DIMENSIONS[by]
    key = dim if dim else "''"
    where, args = ["month >= ?", "month <= ?"], [first_month, last_month]
    if department is not None:
        where.append("department = ?")
        args.append(department)
    if item_code is not None:
        where.append("item_code = ?")
        args.append(item_code)
    name = "max(item_name)" if by == "item" else "''"
    rows = conn.execute(
        f"SELECT month, {key}, {name}, sum(received), sum(overdue), sum(backfilled), sum(completed), sum(on_time),"
        f" sum(timed) FROM case_stats_monthly WHERE {' AND '.join(where)} GROUP BY month, {key}"
        f" ORDER BY month, {key}", args).fetchall()
    out = []
    for month, k, label, received, overdue, backfilled, completed, on_time, timed in rows:
        if not (received or completed):
            continue
        out.append({"month": month, "key": k, "name": label or "", "received": received, "completed": completed,
                    "on_time": on_time, "timed": timed, "overdue": overdue, "backfilled": backfilled})
    return out


# --------------------------------------------------------------------------- counterpart health


def last_contacts(conn: Conn) -> dict[str, dict[str, Any]]:
    return {s: {"last_contact": at, "records": n}
            for s, at, _rid, n in conn.execute(
                "SELECT system, last_received_at, last_record_id, records FROM counterpart_contact")}


def open_quarantine(conn: Conn) -> dict[str, int]:
    return dict(conn.execute("SELECT system, count(*) FROM quarantine WHERE state = 'open' GROUP BY system"))


# --------------------------------------------------------------------------- the mixin


class SqliteCasesMixin:
    """The console's operations on the SQLite store (its ``_read`` / ``_write``)."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[Conn], T]) -> T: ...

        async def _write(self, op: Callable[[Conn, ChainWriter], T]) -> T: ...

    async def commit_supervision_indexed(self, states: dict[str, tuple[str, float | None]], alerts: Sequence[Any],
                                         cursor: tuple[str, str] | None, index: IndexBatch) -> Any:
        """``commit_supervision`` and the index changes of the same records, in one transaction."""
        from gateway.store.operations import _commit_supervision  # the store module imports this one

        def op(conn: Conn, chain: ChainWriter) -> Any:
            outcomes = _commit_supervision(conn, chain, states, alerts, cursor)
            write_index(conn, index, cursor[1] if cursor is not None else None)
            return outcomes

        return await self._write(op)

    async def commit_index(self, index: IndexBatch, cursor: str) -> None:
        """Index changes alone (catching up on records folded before the index existed)."""
        await self._write(lambda conn, chain: write_index(conn, index, cursor))

    async def search_cases(self, q: CaseQuery) -> tuple[list[dict[str, Any]], int, bool]:
        return await self._read(lambda conn: search_cases(conn, q))

    async def case_index_row(self, case_no: str) -> dict[str, Any] | None:
        return await self._read(lambda conn: case_row(conn, case_no))

    async def list_alert_index(self, q: AlertQuery) -> tuple[list[dict[str, Any]], bool]:
        return await self._read(lambda conn: list_alerts(conn, q))

    async def alert_type_counts(self) -> dict[str, dict[str, int]]:
        return await self._read(alert_counts)

    async def alert_acks(self, alert_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._read(lambda conn: alert_acks_for(conn, alert_ids))

    async def acknowledge_alerts(self, alert_ids: Sequence[str], user: str, role: str,
                                 note: str) -> list[dict[str, Any]]:
        return await self._write(lambda conn, chain: acknowledge_alerts(conn, chain, alert_ids, user, role, note))

    async def case_statistics(self, by: str, first_month: str, last_month: str, department: str | None = None,
                              item_code: str | None = None) -> list[dict[str, Any]]:
        return await self._read(lambda conn: statistics(conn, by, first_month, last_month, department, item_code))

    async def counterpart_contacts(self) -> dict[str, dict[str, Any]]:
        return await self._read(last_contacts)

    async def open_quarantine_by_system(self) -> dict[str, int]:
        return await self._read(open_quarantine)

    async def delivery_with_record(self, delivery_id: int) -> dict[str, Any] | None:
        """One delivery with its record's body (for a dry-run preview of what would be sent)."""
        def q(conn: Conn) -> dict[str, Any] | None:
            row = conn.execute(
                "SELECT o.id, o.destination, o.state, o.case_no, o.idem_key, o.attempts, r.system, r.kind,"
                " r.record_key, r.version, r.body FROM outbox o JOIN records r ON r.id = o.record_id WHERE o.id = ?",
                (delivery_id,)).fetchone()
            if row is None:
                return None
            cols = ("id", "destination", "state", "case_no", "idempotency_key", "attempts", "system", "kind",
                    "record_key", "version")
            return {**dict(zip(cols, row[:-1], strict=True)), "record": json.loads(row[-1])}

        return await self._read(q)

