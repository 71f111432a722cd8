"""Quarantine operations over a DB-API connection: dedupe, isolation of unstorable items, reprocess, discard.

Plain functions ``op(conn, chain, ...)`` in SQL that SQLite and PostgreSQL both accept, run
on the store's writer (see ``sqlite_quarantine``). One *open* entry per (system, item,
reason): an item read again bumps its entry's count and last-seen time instead of adding a
row. ``commit_isolated`` is how a batch survives an item the store cannot take: the batch
is tried whole in a savepoint; on a data fault it is bisected in nested savepoints until
the culprits are found, which are quarantined, and the rest commits — one transaction, one
cursor, so a store outage still commits nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from gateway.adapters import IngestOutcome
from gateway.audit.chain import ChainWriter
from gateway.records import item_hash, storable_text, storable_tree
from gateway.schema.identifiers import mask
from gateway.store.base import AcceptItem, QuarantineItem, Reprocessed
from gateway.store.sqlite_audit import AUDIT_INSERT, audit_row

STATES = ("open", "resolved", "discarded")
ENTRY_COLUMNS = ("id, system, ref, kind, errors, payload, receipt_time, item_hash, seen_count, last_seen, last_ref,"
                 " state, mapping, settled_at, resolution")
# (connection, chain, accepted, quarantined, cursor, claims) → outcomes
CommitBatch = Callable[[Any, ChainWriter, Sequence[AcceptItem], Sequence[QuarantineItem], Any, Any], list[IngestOutcome]]

# Exceptions an item's own data can cause while it is stored: an integer beyond 64 bits, a lone
# surrogate that UTF-8 cannot encode, nesting too deep to serialise, a value the database refuses.
# Anything else (the disk, a lock, a bug in SQL) is the store's, and fails the batch as before.
ITEM_FAULTS: tuple[type[BaseException], ...] = (
    OverflowError, UnicodeError, RecursionError, ValueError, sqlite3.DataError, sqlite3.IntegrityError,
)
SYSTEMIC_MIN = 8  # when every item of a batch at least this large fails alone, the fault is not theirs


def register_item_faults(*types: type[BaseException]) -> None:
    """Add a backend's exceptions for data it refuses (PostgreSQL's DataError, IntegrityError)."""
    global ITEM_FAULTS
    ITEM_FAULTS = tuple(dict.fromkeys((*ITEM_FAULTS, *types)))


def is_item_fault(exc: BaseException) -> bool:
    return isinstance(exc, ITEM_FAULTS) and not isinstance(exc, sqlite3.OperationalError)


# --------------------------------------------------------------------------- making items storable


def reason_hash(errors: Sequence[dict[str, Any]]) -> str:
    """Identity of a reason: the (kind, field, rule) broken, not the wording or the masked value."""
    parts = sorted({f"{e.get('kind') or ''}\x1f{e.get('field') or ''}\x1f{e.get('rule') or ''}" for e in errors})
    return hashlib.sha256("\x1e".join(parts).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- recording


def record_quarantined(conn: Any, chain: ChainWriter, at: str, items: Sequence[QuarantineItem],
                       audit: list[tuple[Any, ...]]) -> list[IngestOutcome]:
    """Insert or bump one open entry per (system, item, reason); append each one's audit row to ``audit``.

    This is the quarantine part of ``_commit_ingest``: its audit rows join the batch's, in order.
    """
    outcomes: list[IngestOutcome] = []
    for q in items:
        ref = storable_text(q.ref)
        errors = storable_tree(q.errors)
        payload = storable_text(q.payload) if q.payload is not None else None
        ih = q.item_hash or item_hash(q.system, q.raw, payload, ref)
        rh = reason_hash(errors)
        errors_json = json.dumps(errors, ensure_ascii=False)
        row = conn.execute("SELECT id, seen_count FROM quarantine WHERE system=? AND item_hash=? AND reason_hash=?"
                           " AND state='open'", (q.system, ih, rh)).fetchone()
        if row is None:
            qid = conn.execute(
                "INSERT INTO quarantine(system, ref, kind, errors, payload, raw, receipt_time, item_hash, reason_hash,"
                " seen_count, last_seen, last_ref, state, mapping) VALUES (?,?,?,?,?,?,?,?,?,1,?,?,'open',?)"
                " RETURNING id",
                (q.system, ref, q.kind, errors_json, payload, q.raw, q.receipt_time, ih, rh, q.receipt_time, ref,
                 q.mapping),
            ).fetchone()[0]
            seen = 1
        else:
            qid, seen = row[0], row[1] + 1
            # The same item, broken the same way, read again: one entry, counted.
            conn.execute("UPDATE quarantine SET seen_count=?, last_seen=?, last_ref=?, errors=?, mapping=?"
                         " WHERE id=?", (seen, q.receipt_time, ref, errors_json, q.mapping, qid))
        detail: dict[str, Any] = {"ref": ref, "errors": errors, "quarantine": qid, "item_hash": ih}
        if seen > 1:
            detail["seen"] = seen
        if q.correlation_id:
            detail["correlation_id"] = q.correlation_id
        audit.append(audit_row(chain, at, "quarantined", system=q.system, kind=q.kind, detail=detail))
        outcomes.append(IngestOutcome(ref, "quarantined", None, q.kind, None, errors, quarantine_id=qid))
    return outcomes


# --------------------------------------------------------------------------- isolation


@contextmanager
def savepoint(conn: Any, chain: ChainWriter, name: str) -> Iterator[None]:
    """A nested transaction; on failure both the rows and the in-memory chain head go back."""
    saved = (chain.seq, chain.head)
    conn.execute(f"SAVEPOINT {name}")
    try:
        yield
    except BaseException:
        conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
        conn.execute(f"RELEASE SAVEPOINT {name}")
        chain.seq, chain.head = saved
        raise
    conn.execute(f"RELEASE SAVEPOINT {name}")


def _unit_ref(unit: AcceptItem | QuarantineItem) -> str:
    return storable_text(unit.ref)


def _unstorable(unit: AcceptItem | QuarantineItem, exc: BaseException, at: str) -> QuarantineItem:
    """The quarantine entry for an item the store refused, naming the fault (the value is not repeated)."""
    # A backend's own error says the same by its SQLSTATE: 22003 numeric value out of range, 22021 bad character.
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(exc, OverflowError) or sqlstate == "22003":
        rule, what = "integer_range", "a number is beyond the 64-bit range the store holds"
    elif isinstance(exc, UnicodeError) or sqlstate == "22021":
        rule, what = "unicode", "a text holds characters UTF-8 cannot encode (a lone surrogate)"
    elif isinstance(exc, RecursionError):
        rule, what = "max_depth", "it is nested too deeply to be stored"
    else:
        rule, what = "storable", f"the store refused it ({type(exc).__name__}: {storable_text(str(exc))[:200]})"
    if isinstance(unit, AcceptItem):
        kind, raw = unit.kind, storable_text(unit.body).encode("utf-8")
        message = f"the {unit.kind} record mapped from this item cannot be stored: {what}"
    else:
        kind, raw = unit.kind, unit.raw
        message = f"this item cannot be kept as it came: {what}; its bytes are kept, not its parsed form"
    error = {"kind": kind, "field": None, "rule": rule, "value": None, "message": message}
    return QuarantineItem(system=unit.system, ref=_unit_ref(unit), kind=kind, errors=[error], payload=None, raw=raw,
                          receipt_time=unit.receipt_time or at, mapping=unit.mapping,
                          correlation_id=unit.correlation_id)


def commit_isolated(conn: Any, chain: ChainWriter, accepted: Sequence[AcceptItem],
                    quarantined: Sequence[QuarantineItem], cursor: tuple[str, str] | None, at: str,
                    commit_batch: CommitBatch, set_cursor: Callable[[Any, tuple[str, str], str], None],
                    claims: Mapping[str, float] | None = None) -> list[IngestOutcome]:
    """``commit_batch`` for the whole batch; if an item's data makes it fail, everything but that item.

    Only a data fault (:data:`ITEM_FAULTS`) is isolated; any other failure propagates and the
    surrounding transaction commits nothing.
    """
    try:
        with savepoint(conn, chain, "batch_whole"):
            return commit_batch(conn, chain, accepted, quarantined, cursor, claims)
    except Exception as exc:
        if not is_item_fault(exc):
            raise
        first = exc
    outcomes: list[IngestOutcome] = []
    culprits: list[tuple[AcceptItem | QuarantineItem, BaseException]] = []
    depth = 0

    def attempt(part: list[AcceptItem | QuarantineItem]) -> None:
        nonlocal depth
        depth += 1
        try:
            with savepoint(conn, chain, f"batch_part_{depth}"):
                outcomes.extend(commit_batch(conn, chain, [u for u in part if isinstance(u, AcceptItem)],
                                             [u for u in part if isinstance(u, QuarantineItem)], None, claims))
            return
        except Exception as exc:
            if not is_item_fault(exc):
                raise
            if len(part) == 1:
                culprits.append((part[0], exc))
                return
        middle = len(part) // 2
        attempt(part[:middle])
        attempt(part[middle:])

    units: list[AcceptItem | QuarantineItem] = [*accepted, *quarantined]
    if len(units) == 1:
        culprits.append((units[0], first))
    else:
        attempt(units[: len(units) // 2])
        attempt(units[len(units) // 2 :])
    if len(units) >= SYSTEMIC_MIN and len(culprits) == len(units):
        # Not one item could be stored: a fault of the store or the code, not of the data. Quarantining them
        # all would hide it; failing the batch shows it (a file is retried, then filed under error/).
        raise first
    for unit, exc in culprits:
        entry = _unstorable(unit, exc, at)
        try:
            with savepoint(conn, chain, "batch_culprit"):
                outcomes.extend(commit_batch(conn, chain, [], [entry], None, None))
        except Exception as again:
            if not is_item_fault(again):
                raise
            # Not even its bytes can be kept: the entry says so, with nothing of the item in it.
            entry.raw = None
            entry.errors[0]["message"] += "; not even its bytes could be kept"
            outcomes.extend(commit_batch(conn, chain, [], [entry], None, None))
    if cursor is not None:
        set_cursor(conn, cursor, at)
    return outcomes


class IsolatedIngest:
    """The writer operation behind ``Store.commit_ingest_isolated``: :func:`commit_isolated` for one batch.

    Batches without a cursor (pushes, replays) are :class:`~gateway.store.sqlstore.Mergeable`: the
    writer may commit neighbouring ones as one batch, which ``commit_batch`` takes as it takes a batch
    that holds the same record twice (the later one is a duplicate, a newer version supersedes, a
    case's new delivery waits behind an earlier one). A batch with a cursor runs alone: its cursor
    must move with exactly its own records. ``claims`` must name the same destinations for two
    batches to merge; the run takes each destination's latest lease.
    """

    __slots__ = ("accepted", "quarantined", "cursor", "claims", "commit_batch", "set_cursor", "now", "merge_key",
                 "merge_size")

    def __init__(self, accepted: Sequence[AcceptItem], quarantined: Sequence[QuarantineItem],
                 cursor: tuple[str, str] | None, claims: Mapping[str, float] | None, commit_batch: CommitBatch,
                 set_cursor: Callable[[Any, tuple[str, str], str], None], now: Callable[[], str]) -> None:
        self.accepted, self.quarantined, self.cursor, self.claims = accepted, quarantined, cursor, claims
        self.commit_batch, self.set_cursor, self.now = commit_batch, set_cursor, now
        self.merge_key: tuple[str, frozenset[str]] | None = (
            None if cursor is not None else ("ingest", frozenset(claims or ())))
        self.merge_size = len(accepted) + len(quarantined)

    def __call__(self, conn: Any, chain: ChainWriter) -> list[IngestOutcome]:
        return commit_isolated(conn, chain, self.accepted, self.quarantined, self.cursor, self.now(),
                               self.commit_batch, self.set_cursor, self.claims)

    @classmethod
    def run_merged(cls, conn: Any, chain: ChainWriter, ops: Sequence[IsolatedIngest]) -> list[list[IngestOutcome]]:
        """One ``commit_batch`` for all of ``ops``; each gets its own outcomes back, in its own order.

        No isolation here: if an item's data fails the merged batch, the writer rolls it back and runs
        each batch alone, where :func:`commit_isolated` finds the item.
        """
        accepted = [it for op in ops for it in op.accepted]
        quarantined = [q for op in ops for q in op.quarantined]
        claims = {dest: max(op.claims[dest] for op in ops if op.claims) for dest in ops[0].claims or ()} or None
        outcomes = ops[0].commit_batch(conn, chain, accepted, quarantined, None, claims)
        # commit_batch answers one outcome per accepted item, then one per quarantined item, each in order.
        if len(outcomes) != len(accepted) + len(quarantined):
            raise RuntimeError(f"a merged batch of {len(accepted) + len(quarantined)} items gave {len(outcomes)} "
                               "outcomes")
        results: list[list[IngestOutcome]] = []
        a, q = 0, len(accepted)
        for op in ops:
            results.append([*outcomes[a:a + len(op.accepted)], *outcomes[q:q + len(op.quarantined)]])
            a += len(op.accepted)
            q += len(op.quarantined)
        return results


# --------------------------------------------------------------------------- reading


def _entry(row: Sequence[Any]) -> dict[str, Any]:
    cols = [c.strip() for c in ENTRY_COLUMNS.split(",")]
    entry = dict(zip(cols, row, strict=True))
    entry["errors"] = json.loads(entry["errors"])
    entry["payload"] = json.loads(entry["payload"]) if entry["payload"] else None
    entry["resolution"] = json.loads(entry["resolution"]) if entry["resolution"] else None
    return entry


def list_entries(conn: Any, *, ids: Sequence[int] | None = None, system: str | None = None,
                 state: str | None = None, limit: int = 100, after_id: int = 0,
                 newest_first: bool = False, systems: Sequence[str] | None = None) -> list[dict[str, Any]]:
    where, args = ["1=1"], []
    for column, values in (("id", ids), ("system", systems)):
        if values is not None:
            if not values:
                return []
            where.append(f"{column} IN ({','.join('?' * len(values))})")
            args.extend(values)
    if after_id:
        where.append("id < ?" if newest_first else "id > ?")
        args.append(after_id)
    for col, val in (("system", system), ("state", state)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    args.append(limit)
    rows = conn.execute(f"SELECT {ENTRY_COLUMNS} FROM quarantine WHERE {' AND '.join(where)}"
                        f" ORDER BY id {'DESC' if newest_first else 'ASC'} LIMIT ?", args).fetchall()
    return [_entry(r) for r in rows]


def count_entries(conn: Any, *, system: str | None = None, state: str | None = None) -> int:
    where, args = ["1=1"], []
    for col, val in (("system", system), ("state", state)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    return int(conn.execute(f"SELECT count(*) FROM quarantine WHERE {' AND '.join(where)}", args).fetchone()[0])


def get_entry(conn: Any, entry_id: int) -> dict[str, Any] | None:
    row = conn.execute(f"SELECT {ENTRY_COLUMNS}, raw FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
    if row is None:
        return None
    entry = _entry(row[:-1])
    entry["raw"] = bytes(row[-1]) if row[-1] is not None else None
    return entry


# --------------------------------------------------------------------------- discard


_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])\d{17}[\dXx](?![0-9A-Za-z])|(?<!\d)1\d{10}(?!\d)")


def scrub(text: str) -> str:
    """An operator's free text for the audit trail, with anything shaped like an ID or mobile number masked."""
    return _ID_NUMBER.sub(lambda m: mask(m.group(0)), storable_text(text))


def discard(conn: Any, chain: ChainWriter, at: str, ids: Sequence[int], reason: str,
            actor: str) -> list[dict[str, Any]]:
    """Close open entries for good, each with an audited reason; one result per id asked for."""
    reason = scrub(reason)
    results: list[dict[str, Any]] = []
    audit = []
    for entry_id in dict.fromkeys(ids):
        row = conn.execute("SELECT system, kind, state, ref FROM quarantine WHERE id = ?", (entry_id,)).fetchone()
        if row is None:
            results.append({"id": entry_id, "outcome": "unknown", "message": f"no quarantine entry {entry_id}"})
            continue
        system, kind, state, ref = row
        if state != "open":
            results.append({"id": entry_id, "outcome": "refused",
                            "message": f"quarantine entry {entry_id} is {state}, not open: nothing to discard"})
            continue
        resolution = {"outcome": "discarded", "by": actor, "reason": reason}
        conn.execute("UPDATE quarantine SET state='discarded', settled_at=?, resolution=? WHERE id=?",
                     (at, json.dumps(resolution, ensure_ascii=False), entry_id))
        audit.append(audit_row(chain, at, "discarded", system=system, kind=kind, detail={
            "quarantine": entry_id, "ref": ref, "reason": reason, "actor": actor}))
        results.append({"id": entry_id, "outcome": "discarded", "system": system, "ref": ref})
    if audit:
        conn.executemany(AUDIT_INSERT, audit)
    return results


# --------------------------------------------------------------------------- reprocess


def commit_reprocess(conn: Any, chain: ChainWriter, at: str, items: Sequence[Reprocessed], actor: str,
                     commit_batch: CommitBatch) -> list[dict[str, Any]]:
    """Land what now maps and validates; keep the rest open with today's reasons; audit each entry."""
    results: list[dict[str, Any]] = []
    audit = []
    for item in items:
        row = conn.execute("SELECT system, kind, state, ref, item_hash, seen_count FROM quarantine WHERE id = ?",
                           (item.entry_id,)).fetchone()
        if row is None or row[2] != "open":
            state = "missing" if row is None else row[2]
            results.append({"id": item.entry_id, "outcome": "refused",
                            "message": f"quarantine entry {item.entry_id} is {state}, not open: not reprocessed"})
            continue
        system, kind, _, ref, ih, seen = row
        records: list[dict[str, Any]] = []
        errors = storable_tree(item.errors)
        if item.accepted:
            try:
                with savepoint(conn, chain, "reprocess_entry"):
                    outcomes = commit_batch(conn, chain, item.accepted, [], None, None)
            except Exception as exc:
                if not is_item_fault(exc):
                    raise
                # Mapped now, but not storable: the entry stays, saying why (nothing of it landed).
                errors += _unstorable(item.accepted[0], exc, at).errors
            else:
                records = [{"kind": o.kind, "record_key": o.record_key, "status": o.status,
                            "receipt_id": o.receipt_id} for o in outcomes if o.status != "quarantined"]
                # A record the store itself refused on landing (a version conflict) keeps the entry open.
                errors += [e for o in outcomes if o.status == "quarantined" for e in o.errors]
        detail: dict[str, Any] = {"quarantine": item.entry_id, "ref": ref, "mapping": item.mapping, "actor": actor,
                                  "receipts": [r["receipt_id"] for r in records]}
        if not errors:
            resolution = {"outcome": "landed", "by": actor, "mapping": item.mapping, "records": records}
            conn.execute("UPDATE quarantine SET state='resolved', settled_at=?, resolution=?, mapping=? WHERE id=?",
                         (at, json.dumps(resolution, ensure_ascii=False), item.mapping, item.entry_id))
            detail["outcome"] = "landed"
            results.append({"id": item.entry_id, "outcome": "landed", "records": records})
        else:
            rh = reason_hash(errors)
            other = conn.execute("SELECT id, seen_count FROM quarantine WHERE system=? AND item_hash=?"
                                 " AND reason_hash=? AND state='open' AND id <> ?",
                                 (system, ih, rh, item.entry_id)).fetchone()
            outcome = "partly_landed" if records else "still_bad"
            if other is not None:
                # Today's reasons are those of another open entry of the same item: one entry stays.
                conn.execute("UPDATE quarantine SET seen_count=? WHERE id=?", (other[1] + seen, other[0]))
                resolution = {"outcome": "merged", "into": other[0], "by": actor, "mapping": item.mapping}
                conn.execute("UPDATE quarantine SET state='resolved', settled_at=?, resolution=? WHERE id=?",
                             (at, json.dumps(resolution, ensure_ascii=False), item.entry_id))
                detail["merged_into"] = other[0]
            else:
                conn.execute("UPDATE quarantine SET errors=?, reason_hash=?, mapping=? WHERE id=?",
                             (json.dumps(errors, ensure_ascii=False), rh, item.mapping, item.entry_id))
            detail.update(outcome=outcome, rules=sorted({str(e.get("rule")) for e in errors}))
            results.append({"id": item.entry_id, "outcome": outcome, "records": records, "errors": errors,
                            **({"merged_into": other[0]} if other is not None else {})})
        audit.append(audit_row(chain, at, "reprocessed", system=system, kind=kind, detail=detail))
    if audit:
        conn.executemany(AUDIT_INSERT, audit)
    return results
