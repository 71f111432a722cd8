"""Store operations of the two-way exchange: links, licence effects, 并联审批, reconciliation, contacts, watchdogs.

Plain functions ``op(conn, chain, ...)`` (writes) and ``q(conn, ...)`` (reads) over a DB-API
connection, in SQL that SQLite and PostgreSQL both accept; ``sqlite_exchange`` runs them on
the store's writer thread and reader pool. The exchange follower computes what changes in
Python and hands it over as one :class:`ExchangeBatch`, applied in one transaction with its
audit entries and cursor, so a crash repeats at most the last batch.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.adapters import IngestOutcome
from gateway.audit.chain import ChainWriter
from gateway.store.base import AcceptItem
from gateway.store.sqlite_audit import AUDIT_INSERT, audit_row

CommitRecords = Callable[[Any, ChainWriter, Sequence[AcceptItem], Sequence[Any], Any], list[IngestOutcome]]
_CHUNK = 500

LINK_COLUMNS = ("record_id", "system", "kind", "record_key", "version", "case_no", "licence_no", "credit_code",
                "decision_no", "resolved_by", "facts", "note", "linked_at")
LICENCE_COLUMNS = ("licence_no", "case_no", "credit_code", "licence_name", "decision_no", "approved_by", "record_id",
                   "valid_until", "state", "state_since", "state_by", "updated_at")
EFFECT_COLUMNS = ("decision_no", "licence_no", "case_no", "effect", "record_id", "system", "decided_on", "authority",
                  "applied_at", "notice")
PARALLEL_COLUMNS = ("case_no", "scheme", "lead", "accepted_at", "dispatched_at", "state", "completed_at", "result",
                    "result_key", "next_check")
DEPARTMENT_COLUMNS = ("case_no", "department", "system", "sink", "due_at", "answered_at", "action", "opinion",
                      "record_id", "late_alert")
RECONCILIATION_COLUMNS = ("id", "counterpart", "period_start", "period_end", "triggered_by", "started_at",
                          "finished_at", "outcome", "summary", "gaps", "audit_seq")
WATCHDOG_COLUMNS = ("counterpart", "watch", "state", "since", "detail", "alert_id")


def _chunks(values: Sequence[Any]) -> Iterable[Sequence[Any]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i:i + _CHUNK]


def _marks(n: int) -> str:
    return ",".join("?" * n)


def _dict(columns: Sequence[str], row: Sequence[Any]) -> dict[str, Any]:
    return dict(zip(columns, row, strict=True))


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


# --------------------------------------------------------------------------- what a follower step changes


@dataclass(slots=True)
class AuditEvent:
    action: str
    system: str | None = None
    kind: str | None = None
    record: str | None = None
    case: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Resolution:
    """A record tied to its case after it was stored: its case index, its deliveries and its link change."""

    record_id: int
    case_no: str
    system: str
    kind: str
    record_key: str
    by: str  # licence | credit_code
    licence_no: str | None = None
    previous: str | None = None


@dataclass(slots=True)
class ExtraDelivery:
    """An outbox row added after ingest: a department a case is dispatched to, a re-send, an approver."""

    record_id: int
    destination: str
    case_no: str
    idempotency_key: str
    reason: str
    kind: str
    record_key: str
    # route: skip when the record already has any delivery to this destination;
    # resend: skip only when one is still open (pending or in flight).
    mode: str = "route"


@dataclass(slots=True)
class ExchangeBatch:
    links: list[dict[str, Any]] = field(default_factory=list)  # LINK_COLUMNS
    resolutions: list[Resolution] = field(default_factory=list)
    licences: list[dict[str, Any]] = field(default_factory=list)  # LICENCE_COLUMNS (upsert)
    effects: list[dict[str, Any]] = field(default_factory=list)  # EFFECT_COLUMNS (upsert by decision)
    parallel: list[dict[str, Any]] = field(default_factory=list)  # PARALLEL_COLUMNS (upsert)
    departments: list[dict[str, Any]] = field(default_factory=list)  # DEPARTMENT_COLUMNS (upsert)
    deliveries: list[ExtraDelivery] = field(default_factory=list)
    records: list[AcceptItem] = field(default_factory=list)  # gateway-made records: alerts, combined results
    audit: list[AuditEvent] = field(default_factory=list)
    cursors: list[tuple[str, str]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.links or self.resolutions or self.licences or self.effects or self.parallel
                    or self.departments or self.deliveries or self.records or self.audit)


def _upsert(conn: Any, table: str, columns: Sequence[str], keys: Sequence[str], rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    updates = ", ".join(f"{c}=excluded.{c}" for c in columns if c not in keys)
    conn.executemany(
        f"INSERT INTO {table}({', '.join(columns)}) VALUES ({_marks(len(columns))}) "
        f"ON CONFLICT({', '.join(keys)}) DO UPDATE SET {updates}",
        [tuple(r.get(c) for c in columns) for r in rows])


def licence_state(effects: Sequence[tuple[str, str | None, str]]) -> tuple[str, str | None, str | None]:
    """(state, since, by) of a licence from its effects (effect, decided_on, decision_no): revoke wins over suspend."""
    for wanted, state in (("revoke", "revoked"), ("suspend", "suspended")):
        found = sorted((e for e in effects if e[0] == wanted), key=lambda e: (e[1] or "", e[2]))
        if found:
            return state, found[0][1], found[0][2]
    return "valid", None, None


def apply_batch(conn: Any, chain: ChainWriter, at: str, batch: ExchangeBatch,
                commit_records: CommitRecords, set_cursor: Callable[[Any, tuple[str, str], str], None],
                ) -> list[IngestOutcome]:
    """Apply one follower step in the caller's transaction; returns the outcomes of the gateway-made records."""
    audit: list[tuple[Any, ...]] = []
    _upsert(conn, "exchange_links", LINK_COLUMNS, ("record_id",), batch.links)
    for r in batch.resolutions:
        conn.execute("UPDATE records SET case_no=? WHERE id=?", (r.case_no, r.record_id))
        # Its deliveries follow the record to its case (settling an in-flight one goes by its id alone), so
        # they are listed under the case, and later ones keep their order behind those of the case.
        conn.execute("UPDATE outbox SET case_no=? WHERE record_id=?", (r.case_no, r.record_id))
        conn.execute("UPDATE exchange_links SET case_no=?, resolved_by=?, licence_no=coalesce(?, licence_no), note=NULL"
                     " WHERE record_id=?", (r.case_no, r.by, r.licence_no, r.record_id))
        audit.append(audit_row(chain, at, "case_linked", system=r.system, kind=r.kind, record=r.record_key,
                               case=r.case_no, detail={"record_id": r.record_id, "by": r.by, "licence": r.licence_no,
                                                       "previous_case_index": r.previous}))
    _upsert(conn, "exchange_licences", LICENCE_COLUMNS, ("licence_no",), batch.licences)
    _upsert(conn, "exchange_effects", EFFECT_COLUMNS, ("decision_no",), batch.effects)
    touched = sorted({e["licence_no"] for e in batch.effects})
    for licence_no in touched:
        rows = conn.execute("SELECT effect, decided_on, decision_no FROM exchange_effects WHERE licence_no=?",
                            (licence_no,)).fetchall()
        state, since, by = licence_state([tuple(r) for r in rows])
        conn.execute("UPDATE exchange_licences SET state=?, state_since=?, state_by=?, updated_at=? WHERE licence_no=?",
                     (state, since, by, at, licence_no))
    _upsert(conn, "exchange_parallel", PARALLEL_COLUMNS, ("case_no",), batch.parallel)
    _upsert(conn, "exchange_parallel_departments", DEPARTMENT_COLUMNS, ("case_no", "department"), batch.departments)
    add_deliveries(conn, chain, at, batch.deliveries, audit)
    for e in batch.audit:
        audit.append(audit_row(chain, at, e.action, system=e.system, kind=e.kind, record=e.record, case=e.case,
                               detail=e.detail))
    if audit:
        conn.executemany(AUDIT_INSERT, audit)
    outcomes = commit_records(conn, chain, batch.records, [], None) if batch.records else []
    for cursor in batch.cursors:
        set_cursor(conn, cursor, at)
    return outcomes


def add_deliveries(conn: Any, chain: ChainWriter, at: str, deliveries: Sequence[ExtraDelivery],
                   audit: list[tuple[Any, ...]]) -> list[ExtraDelivery]:
    """Insert the outbox rows that are not there yet (see ExtraDelivery.mode), each with a ``routed`` entry."""
    if not deliveries:
        return []
    ids = sorted({d.record_id for d in deliveries})
    existing: dict[tuple[int, str], set[str]] = {}
    for chunk in _chunks(ids):
        for record_id, dest, state in conn.execute(
                f"SELECT record_id, destination, state FROM outbox WHERE record_id IN ({_marks(len(chunk))})", chunk):
            existing.setdefault((record_id, dest), set()).add(state)
    now = time.time()
    added: list[ExtraDelivery] = []
    rows = []
    for d in deliveries:
        states = existing.get((d.record_id, d.destination), set())
        if (d.mode == "route" and states) or (d.mode == "resend" and states & {"pending", "inflight"}):
            continue
        existing.setdefault((d.record_id, d.destination), set()).add("pending")
        rows.append((d.record_id, d.destination, d.case_no, d.idempotency_key, now, now))
        added.append(d)
        audit.append(audit_row(chain, at, "routed", system=d.destination, kind=d.kind, record=d.record_key,
                               case=d.case_no, detail={"record_id": d.record_id, "destination": d.destination,
                                                       "idempotency_key": d.idempotency_key, "reason": d.reason}))
    if rows:
        conn.executemany(
            "INSERT INTO outbox(record_id, destination, case_no, idem_key, state, created_at, next_attempt_at)"
            " VALUES (?,?,?,?,'pending',?,?)", rows)
    return added


# --------------------------------------------------------------------------- reads for the follower


RECORD_COLUMNS = ("id", "system", "kind", "record_key", "version", "case_no", "status", "receipt_time", "body")


def records_after(conn: Any, after_id: int, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE id > ? ORDER BY id LIMIT ?",
                        (after_id, limit)).fetchall()
    return [_dict(RECORD_COLUMNS, r) for r in rows]


def records_by_id(conn: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for chunk in _chunks(list(ids)):
        for r in conn.execute(f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE id IN ({_marks(len(chunk))})",
                              chunk):
            out[r[0]] = _dict(RECORD_COLUMNS, r)
    return out


def current_records(conn: Any, case_nos: Sequence[str], kinds: Sequence[str]) -> list[dict[str, Any]]:
    """The current (newest) records of these kinds of these cases, in id order."""
    out: list[dict[str, Any]] = []
    for chunk in _chunks(sorted(set(case_nos))):
        out.extend(_dict(RECORD_COLUMNS, r) for r in conn.execute(
            f"SELECT {', '.join(RECORD_COLUMNS)} FROM records WHERE case_no IN ({_marks(len(chunk))})"
            f" AND kind IN ({_marks(len(kinds))}) AND status = 'current' ORDER BY id", (*chunk, *kinds)))
    out.sort(key=lambda r: r["id"])
    return out


def destinations_of(conn: Any, record_ids: Sequence[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}
    for chunk in _chunks(sorted(set(record_ids))):
        for record_id, dest in conn.execute(
                f"SELECT record_id, destination FROM outbox WHERE record_id IN ({_marks(len(chunk))})", chunk):
            out.setdefault(record_id, set()).add(dest)
    return out


def licences(conn: Any, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(numbers))):
        for r in conn.execute(f"SELECT {', '.join(LICENCE_COLUMNS)} FROM exchange_licences"
                              f" WHERE licence_no IN ({_marks(len(chunk))})", chunk):
            out[r[0]] = _dict(LICENCE_COLUMNS, r)
    return out


def licences_of_credit_codes(conn: Any, codes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(sorted(set(codes))):
        for r in conn.execute(f"SELECT {', '.join(LICENCE_COLUMNS)} FROM exchange_licences"
                              f" WHERE credit_code IN ({_marks(len(chunk))}) ORDER BY licence_no", chunk):
            row = _dict(LICENCE_COLUMNS, r)
            out.setdefault(row["credit_code"], []).append(row)
    return out


def cases_of_credit_codes(conn: Any, codes: Sequence[str]) -> dict[str, set[str]]:
    """The cases the links tie to each credit code (from cases, approvals and completions)."""
    out: dict[str, set[str]] = {}
    for chunk in _chunks(sorted(set(codes))):
        for code, case_no in conn.execute(
                f"SELECT credit_code, case_no FROM exchange_links WHERE credit_code IN ({_marks(len(chunk))})"
                " AND case_no IS NOT NULL AND kind IN ('case', 'approval_result', 'completion')", chunk):
            out.setdefault(code, set()).add(case_no)
    return out


def unresolved_links(conn: Any, licence_nos: Sequence[str], credit_codes: Sequence[str]) -> list[dict[str, Any]]:
    """Links still waiting for their case that name one of these licences or credit codes."""
    found: dict[int, dict[str, Any]] = {}
    for column, values in (("licence_no", licence_nos), ("credit_code", credit_codes)):
        for chunk in _chunks(sorted(set(values))):
            for r in conn.execute(f"SELECT {', '.join(LINK_COLUMNS)} FROM exchange_links WHERE case_no IS NULL"
                                  f" AND {column} IN ({_marks(len(chunk))})", chunk):
                found[r[0]] = _dict(LINK_COLUMNS, r)
    return [found[k] for k in sorted(found)]


def parallel_cases(conn: Any, case_nos: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Parallel-approval state of these cases: the case row with its ``departments``."""
    out: dict[str, dict[str, Any]] = {}
    for chunk in _chunks(sorted(set(case_nos))):
        for r in conn.execute(f"SELECT {', '.join(PARALLEL_COLUMNS)} FROM exchange_parallel"
                              f" WHERE case_no IN ({_marks(len(chunk))})", chunk):
            out[r[0]] = {**_dict(PARALLEL_COLUMNS, r), "departments": []}
        for r in conn.execute(f"SELECT {', '.join(DEPARTMENT_COLUMNS)} FROM exchange_parallel_departments"
                              f" WHERE case_no IN ({_marks(len(chunk))}) ORDER BY case_no, department", chunk):
            row = _dict(DEPARTMENT_COLUMNS, r)
            if row["case_no"] in out:
                out[row["case_no"]]["departments"].append(row)
    return out


def parallel_due(conn: Any, now: float, limit: int) -> list[str]:
    return [r[0] for r in conn.execute(
        "SELECT case_no FROM exchange_parallel WHERE next_check IS NOT NULL AND next_check <= ?"
        " ORDER BY next_check LIMIT ?", (now, limit))]


def parallel_page(conn: Any, *, state: str | None, limit: int, after: str = "") -> list[dict[str, Any]]:
    where, args = ["case_no > ?"], [after]
    if state is not None:
        where.append("state = ?")
        args.append(state)
    numbers = [r[0] for r in conn.execute(
        f"SELECT case_no FROM exchange_parallel WHERE {' AND '.join(where)} ORDER BY case_no LIMIT ?", (*args, limit))]
    found = parallel_cases(conn, numbers)
    return [found[n] for n in numbers if n in found]


def quarantine_after(conn: Any, after_id: int, limit: int) -> list[dict[str, Any]]:
    cols = ("id", "system", "kind", "ref", "errors", "state")
    rows = conn.execute(f"SELECT {', '.join(cols)} FROM quarantine WHERE id > ? ORDER BY id LIMIT ?",
                        (after_id, limit)).fetchall()
    out = []
    for r in rows:
        row = _dict(cols, r)
        row["errors"] = json.loads(row["errors"]) if row["errors"] else []
        out.append(row)
    return out


# --------------------------------------------------------------------------- reads for people


def _links(conn: Any, where: str, args: Sequence[Any], limit: int) -> list[dict[str, Any]]:
    rows = conn.execute(f"SELECT {', '.join(LINK_COLUMNS)} FROM exchange_links WHERE {where}"
                        " ORDER BY record_id LIMIT ?", (*args, limit)).fetchall()
    out = []
    for r in rows:
        row = _dict(LINK_COLUMNS, r)
        row["facts"] = json.loads(row["facts"]) if row["facts"] else {}
        out.append(row)
    return out


def links_page(conn: Any, *, case_no: str | None = None, licence_no: str | None = None,
               credit_code: str | None = None, unresolved: bool = False, after_id: int = 0,
               limit: int = 100) -> list[dict[str, Any]]:
    where, args = ["record_id > ?"], [after_id]
    for column, value in (("case_no", case_no), ("licence_no", licence_no), ("credit_code", credit_code)):
        if value is not None:
            where.append(f"{column} = ?")
            args.append(value)
    if unresolved:
        where.append("case_no IS NULL")
    return _links(conn, " AND ".join(where), args, limit)


def licence_detail(conn: Any, licence_no: str) -> dict[str, Any] | None:
    """The licence, what supervision did to it, and every record linked to it or to its case."""
    found = licences(conn, [licence_no]).get(licence_no)
    links = _links(conn, "licence_no = ?", (licence_no,), 1000)
    if found is None and not links:
        return None
    effects = [_dict(EFFECT_COLUMNS, r) for r in conn.execute(
        f"SELECT {', '.join(EFFECT_COLUMNS)} FROM exchange_effects WHERE licence_no = ? ORDER BY decided_on, decision_no",
        (licence_no,))]
    case_no = (found or {}).get("case_no")
    case = case_effects(conn, case_no) if case_no else None
    return {"licence": found, "effects": effects, "links": links, "case": case}


def case_effects(conn: Any, case_no: str) -> dict[str, Any]:
    """Whether supervision affected a case, through which licences and decisions."""
    effects = [_dict(EFFECT_COLUMNS, r) for r in conn.execute(
        f"SELECT {', '.join(EFFECT_COLUMNS)} FROM exchange_effects WHERE case_no = ? ORDER BY decided_on, decision_no",
        (case_no,))]
    licences_of_case = [_dict(LICENCE_COLUMNS, r) for r in conn.execute(
        f"SELECT {', '.join(LICENCE_COLUMNS)} FROM exchange_licences WHERE case_no = ? ORDER BY licence_no",
        (case_no,))]
    states = {lic["state"] for lic in licences_of_case}
    affected = "revoked" if "revoked" in states else "suspended" if "suspended" in states else None
    return {"case_no": case_no, "affected": affected, "licences": licences_of_case, "effects": effects}


# --------------------------------------------------------------------------- reconciliation


DELIVERED_COLUMNS = ("delivery_id", "destination", "idempotency_key", "settled_at", "record_id", "kind", "record_key",
                     "version", "case_no", "status", "system", "body")


def delivered_between(conn: Any, destinations: Sequence[str], start: float, end: float) -> list[dict[str, Any]]:
    """Deliveries to these destinations that succeeded in [start, end) (unix times), oldest first."""
    if not destinations:
        return []
    rows = conn.execute(
        "SELECT o.id, o.destination, o.idem_key, o.settled_at, o.record_id, r.kind, r.record_key, r.version,"
        " o.case_no, r.status, r.system, r.body FROM outbox o JOIN records r ON r.id = o.record_id"
        f" WHERE o.destination IN ({_marks(len(destinations))}) AND o.state = 'delivered'"
        " AND o.settled_at >= ? AND o.settled_at < ? ORDER BY o.settled_at, o.id",
        (*destinations, start, end)).fetchall()
    return [_dict(DELIVERED_COLUMNS, r) for r in rows]


RECEIVED_COLUMNS = ("id", "system", "kind", "record_key", "version", "case_no", "status", "receipt_time")


def received_between(conn: Any, systems: Sequence[str], start: str, end: str) -> list[dict[str, Any]]:
    """Records from these systems received in [start, end) (ISO 8601 China time, as stored)."""
    if not systems:
        return []
    rows = conn.execute(
        f"SELECT {', '.join(RECEIVED_COLUMNS)} FROM records WHERE system IN ({_marks(len(systems))})"
        " AND receipt_time >= ? AND receipt_time < ? ORDER BY id", (*systems, start, end)).fetchall()
    return [_dict(RECEIVED_COLUMNS, r) for r in rows]


def records_with_keys(conn: Any, systems: Sequence[str], keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    """Every stored version of these (kind, record key) from these systems, whenever received."""
    out: list[dict[str, Any]] = []
    by_kind: dict[str, list[str]] = {}
    for kind, key in keys:
        by_kind.setdefault(kind, []).append(key)
    for kind, values in by_kind.items():
        for chunk in _chunks(sorted(set(values))):
            out.extend(_dict(RECEIVED_COLUMNS, r) for r in conn.execute(
                f"SELECT {', '.join(RECEIVED_COLUMNS)} FROM records WHERE system IN ({_marks(len(systems))})"
                f" AND kind = ? AND record_key IN ({_marks(len(chunk))})", (*systems, kind, *chunk)))
    return out


def deliveries_with_keys(conn: Any, keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """Outbox rows by idempotency key (every state), with their record."""
    out: dict[str, list[dict[str, Any]]] = {}
    cols = ("delivery_id", "destination", "idempotency_key", "state", "settled_at", "record_id", "kind", "record_key",
            "version", "case_no", "status", "system")
    for chunk in _chunks(sorted(set(keys))):
        for r in conn.execute(
                "SELECT o.id, o.destination, o.idem_key, o.state, o.settled_at, o.record_id, r.kind, r.record_key,"
                " r.version, o.case_no, r.status, r.system FROM outbox o JOIN records r ON r.id = o.record_id"
                f" WHERE o.idem_key IN ({_marks(len(chunk))}) ORDER BY o.id", chunk):
            row = _dict(cols, r)
            out.setdefault(row["idempotency_key"], []).append(row)
    return out


def open_count(conn: Any, destinations: Sequence[str]) -> dict[str, dict[str, int]]:
    """Pending, in-flight and dead deliveries per destination (the backlog a reconciliation reports)."""
    if not destinations:
        return {}
    out: dict[str, dict[str, int]] = {}
    for dest, state, n in conn.execute(
            f"SELECT destination, state, count(*) FROM outbox WHERE destination IN ({_marks(len(destinations))})"
            " AND state IN ('pending', 'inflight', 'dead') GROUP BY destination, state", tuple(destinations)):
        out.setdefault(dest, {})[state] = n
    return out


def save_reconciliation(conn: Any, chain: ChainWriter, at: str, result: dict[str, Any],
                        resends: Sequence[ExtraDelivery], requested: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The reconciliation's row, its re-sends (new outbox rows, same idempotency keys) and audit entries."""
    audit: list[tuple[Any, ...]] = []
    added = add_deliveries(conn, chain, at, resends, audit)
    for d in added:
        audit.append(audit_row(chain, at, "resent", system=d.destination, kind=d.kind, record=d.record_key,
                               case=d.case_no, detail={"record_id": d.record_id, "destination": d.destination,
                                                       "idempotency_key": d.idempotency_key, "reason": d.reason}))
    summary = dict(result["summary"])
    summary["resent"] = len(added)
    summary["requested"] = len(requested)
    detail = {"counterpart": result["counterpart"], "from": result["period_start"], "to": result["period_end"],
              "triggered_by": result["triggered_by"], "outcome": result["outcome"], "summary": summary}
    if result.get("error"):
        detail["error"] = result["error"]
    if requested:
        detail["requested"] = [f"{e.get('kind')}:{e.get('key')}:{e.get('version')}" for e in requested[:200]]
    row = audit_row(chain, at, "reconciliation", system=result["counterpart"], detail=detail)
    audit.append(row)
    conn.executemany(AUDIT_INSERT, audit)
    rid = conn.execute(
        "INSERT INTO exchange_reconciliations(counterpart, period_start, period_end, triggered_by, started_at,"
        " finished_at, outcome, summary, gaps, audit_seq) VALUES (?,?,?,?,?,?,?,?,?,?) RETURNING id",
        (result["counterpart"], result["period_start"], result["period_end"], result["triggered_by"],
         result["started_at"], at, result["outcome"], _json(summary), _json(result["gaps"]), row[0])).fetchone()[0]
    return {**result, "id": rid, "finished_at": at, "summary": summary, "audit_seq": row[0],
            "resent_ids": [d.idempotency_key for d in added]}


def reconciliations_page(conn: Any, *, counterpart: str | None, limit: int,
                         before_id: int | None = None) -> list[dict[str, Any]]:
    where, args = ["1=1"], []
    if counterpart is not None:
        where.append("counterpart = ?")
        args.append(counterpart)
    if before_id is not None:
        where.append("id < ?")
        args.append(before_id)
    rows = conn.execute(f"SELECT {', '.join(RECONCILIATION_COLUMNS)} FROM exchange_reconciliations"
                        f" WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
    out = []
    for r in rows:
        row = _dict(RECONCILIATION_COLUMNS, r)
        row["summary"] = json.loads(row["summary"])
        row["gaps"] = json.loads(row["gaps"])
        out.append(row)
    return out


def last_reconciliations(conn: Any) -> dict[str, dict[str, Any]]:
    """The newest reconciliation of each counterpart."""
    out: dict[str, dict[str, Any]] = {}
    for (counterpart,) in conn.execute("SELECT DISTINCT counterpart FROM exchange_reconciliations").fetchall():
        rows = reconciliations_page(conn, counterpart=counterpart, limit=1)
        if rows:
            out[counterpart] = rows[0]
    return out


# --------------------------------------------------------------------------- contacts and watchdogs


def note_contacts(conn: Any, rows: Sequence[tuple[str, str, float]]) -> None:
    """(system, direction, unix time): the latest contact wins."""
    if rows:
        conn.executemany(
            "INSERT INTO exchange_contacts(system, direction, last_at) VALUES (?,?,?) "
            "ON CONFLICT(system, direction) DO UPDATE SET last_at = CASE WHEN excluded.last_at > exchange_contacts.last_at"
            " THEN excluded.last_at ELSE exchange_contacts.last_at END", list(rows))


def contacts(conn: Any) -> dict[tuple[str, str], float]:
    return {(s, d): t for s, d, t in conn.execute("SELECT system, direction, last_at FROM exchange_contacts")}


def last_delivered(conn: Any, destinations: Sequence[str]) -> dict[str, float]:
    """When each destination last took a delivery (an index lookup each)."""
    out: dict[str, float] = {}
    for dest in destinations:
        row = conn.execute("SELECT max(settled_at) FROM outbox WHERE destination = ? AND state = 'delivered'",
                           (dest,)).fetchone()
        if row and row[0] is not None:
            out[dest] = float(row[0])
    return out


def last_received(conn: Any, systems: Sequence[str]) -> dict[str, str]:
    """The receipt time (ISO) of each system's newest stored record (an index lookup each)."""
    out: dict[str, str] = {}
    for system in systems:
        row = conn.execute("SELECT max(receipt_time) FROM records WHERE system = ?", (system,)).fetchone()
        if row and row[0] is not None:
            out[system] = str(row[0])
    return out


def watchdogs(conn: Any) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for r in conn.execute(f"SELECT {', '.join(WATCHDOG_COLUMNS)} FROM exchange_watchdogs"):
        row = _dict(WATCHDOG_COLUMNS, r)
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        out[(row["counterpart"], row["watch"])] = row
    return out


def set_watchdogs(conn: Any, chain: ChainWriter, at: str, rows: Sequence[dict[str, Any]],
                  contact_rows: Sequence[tuple[str, str, float]], alerts: Sequence[AcceptItem],
                  commit_records: CommitRecords) -> list[IngestOutcome]:
    """Watchdog states, the contacts they were judged on and their alerts, in one transaction."""
    note_contacts(conn, contact_rows)
    _upsert(conn, "exchange_watchdogs", WATCHDOG_COLUMNS, ("counterpart", "watch"),
            [{**r, "detail": _json(r.get("detail") or {})} for r in rows])
    return commit_records(conn, chain, list(alerts), [], None) if alerts else []
