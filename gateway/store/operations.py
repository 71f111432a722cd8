"""The store's core operations: ingest (idempotency, versions, routing), claims, settlements, replays.

Plain functions ``op(conn, chain, ...)`` over a DB-API connection, run on a backend's writer
(SQLite or PostgreSQL) inside one transaction with a savepoint per caller. The SQL is what
both databases accept; where they differ the operation asks ``dialect_of(conn)``
(``gateway.store.dialect``). Every state change appends its audit entries to ``chain`` in
the same transaction.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from gateway.adapters import IngestOutcome
from gateway.audit.chain import ChainWriter, made_head, received_detail
from gateway.store.base import AcceptItem, ClaimedDelivery, Claims, QuarantineItem, Settlement, StoreError
from gateway.store.dialect import dialect_of
from gateway.store.quarantine import record_quarantined
from gateway.store.sqlite_audit import AUDIT_INSERT, audit_row

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def now_iso() -> str:
    return datetime.now(CHINA).isoformat(timespec="milliseconds")


def _bump(conn: Any, name: str, n: int) -> None:
    if n:
        conn.execute(
            "INSERT INTO meta(key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(meta.value AS INTEGER) + CAST(excluded.value AS INTEGER)"
            " AS TEXT)",
            (f"count.{name}", n),
        )


def _commit_ingest(
    conn: Any,
    chain: ChainWriter,
    accepted: Sequence[AcceptItem],
    quarantined: Sequence[QuarantineItem],
    cursor: tuple[str, str] | None,
    claims: Claims | None = None,
) -> list[IngestOutcome]:
    at = now_iso()
    now = time.time()
    outcomes: list[IngestOutcome] = []
    records: list[tuple[Any, ...]] = []
    superseded_ids: list[tuple[int]] = []
    outbox: list[tuple[Any, ...]] = []
    births: list[tuple[int, IngestOutcome, AcceptItem]] = []  # outbox rows that may be claimed at birth
    audit: list[tuple[Any, ...]] = []
    entry_starts: dict[str, bytes] = {}  # action -> the start of its entries' bodies in this transaction
    # The newest version seen per business key in this batch, so a batch that holds
    # the same record twice dedupes against itself before anything is inserted.
    batch_heads: dict[tuple[str, str, str], tuple[int, int]] = {}
    batch_versions: dict[tuple[str, str, str, int], AcceptItem] = {}  # read as _Stored only when repeated
    ids = dialect_of(conn).ids(conn, "records", len(accepted))
    duplicates = 0
    stored_heads = _heads(conn, accepted)
    # Versions that may already be stored, with their payload hashes: a few queries per batch, never one per item.
    stored_versions = _stored_versions(conn, accepted, stored_heads)
    for it in accepted:
        bkey = (it.system, it.kind, it.record_key)
        head = batch_heads.get(bkey) or stored_heads.get(bkey)
        if head is not None and head[1] >= it.version:
            earlier = batch_versions.get((*bkey, it.version))
            existing = _Stored(earlier.receipt_id, earlier.payload_hash, earlier.body) if earlier is not None \
                else stored_versions.get((*bkey, it.version))
            if existing is not None:
                if existing.payload_hash == it.payload_hash or _same_content(it, existing) \
                        or it.system in GATEWAY_SYSTEMS:
                    duplicates += 1
                    audit.append(audit_row(chain, at, "duplicate", system=it.system, kind=it.kind,
                                           record=it.record_key, case=it.case_no,
                                           detail=_correlated(it, {"ref": it.ref, "version": it.version,
                                                                   "receipt": existing.receipt,
                                                                   "payload_hash": it.payload_hash})))
                    outcomes.append(IngestOutcome(it.ref, "duplicate", existing.receipt, it.kind, it.record_key))
                    continue
                # The same key and version with a different payload: a conflict, never a silent duplicate.
                conflict = _correlated(it, {"ref": it.ref, "version": it.version, "receipt": existing.receipt,
                                            "stored_payload_hash": existing.payload_hash,
                                            "payload_hash": it.payload_hash})
                if _policy(it, "on_conflict") == "keep_first":
                    audit.append(audit_row(chain, at, "version_conflict", system=it.system, kind=it.kind,
                                           record=it.record_key, case=it.case_no,
                                           detail={**conflict, "policy": "keep_first"}))
                    outcomes.append(IngestOutcome(it.ref, "duplicate", existing.receipt, it.kind, it.record_key))
                    continue
                outcomes.extend(record_quarantined(conn, chain, at, [_version_quarantine(
                    it, at, "version_conflict",
                    f"{it.kind} {it.record_key} version {it.version} is already stored (receipt {existing.receipt}) "
                    f"with a different payload ({existing.payload_hash[:19]}…, this one {it.payload_hash[:19]}…): the "
                    "counterpart must send a new version to change it; discard this entry if the stored one stands",
                )], audit))
                continue
            if _policy(it, "on_older") == "quarantine":
                outcomes.extend(record_quarantined(conn, chain, at, [_version_quarantine(
                    it, at, "version_older",
                    f"{it.kind} {it.record_key} version {it.version} arrived after version {head[1]}; this kind is "
                    "configured to quarantine older versions (exchange.versions on_older)",
                )], audit))
                continue
            # An older version arriving late: kept and audited, never overwrites the newer one.
            rid = next(ids)
            records.append((rid, it.system, it.kind, it.record_key, it.version, it.case_no, it.business_time,
                            it.receipt_time, it.payload_hash, it.receipt_id, "stale", it.ref, it.body,
                            it.correlation_id))
            batch_versions[(*bkey, it.version)] = it
            audit.append(audit_row(chain, at, "superseded", system=it.system, kind=it.kind, record=it.record_key,
                                    case=it.case_no, detail=_correlated(it, {
                                        "ref": it.ref, "version": it.version, "current_version": head[1],
                                        "receipt": it.receipt_id, "payload_hash": it.payload_hash})))
            outcomes.append(IngestOutcome(it.ref, "superseded", it.receipt_id, it.kind, it.record_key))
            continue
        rid = next(ids)
        if head is not None:
            superseded_ids.append((head[0],))
        records.append((rid, it.system, it.kind, it.record_key, it.version, it.case_no, it.business_time,
                        it.receipt_time, it.payload_hash, it.receipt_id, "current", it.ref, it.body,
                        it.correlation_id))
        batch_heads[bkey] = (rid, it.version)
        batch_versions[(*bkey, it.version)] = it
        # Received, mapped and routed are one state change in one transaction: one entry says all three.
        action = "alert_raised" if it.kind == "supervision_alert" else "received"
        if it.audit_made is not None:  # made where the item was prepared: add seq, time and hash
            start = entry_starts.get(action) or entry_starts.setdefault(action, made_head(at, action))
            audit.append(chain.append_made(start, it.audit_made))
        else:
            audit.append(audit_row(chain, at, action, system=it.system, kind=it.kind, record=it.record_key,
                                   case=it.case_no, detail=received_detail(
                                       ref=it.ref, version=it.version, receipt=it.receipt_id,
                                       payload_hash=it.payload_hash, business_time=it.business_time,
                                       mapping=it.mapping, routed_to=it.destinations,
                                       correlation_id=it.correlation_id)))
        outcome = IngestOutcome(it.ref, "accepted", it.receipt_id, it.kind, it.record_key)
        for dest, key in zip(it.destinations, it.idempotency_keys, strict=True):
            outbox.append((rid, dest, it.case_no, key, now, now))
            if claims is not None and dest in claims:
                births.append((len(outbox) - 1, outcome, it))
        outcomes.append(outcome)

    # One open entry per item and reason: an item read again is counted, not added (gateway.store.quarantine).
    outcomes.extend(record_quarantined(conn, chain, at, quarantined, audit))

    if records:
        conn.executemany(
            "INSERT INTO records(id, system, kind, record_key, version, case_no, business_time, receipt_time,"
            " payload_hash, receipt_id, status, ref, body, correlation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            records,
        )
    if superseded_ids:
        conn.executemany("UPDATE records SET status='superseded' WHERE id=? AND status='current'", superseded_ids)
    if outbox:
        if births:
            assert claims is not None
            _insert_outbox_claiming(conn, outbox, births, claims)
        else:
            conn.executemany(
                "INSERT INTO outbox(record_id, destination, case_no, idem_key, state, created_at, next_attempt_at)"
                " VALUES (?,?,?,?,'pending',?,?)",
                outbox,
            )
    if audit:
        conn.executemany(AUDIT_INSERT, audit)
    _bump(conn, "duplicates", duplicates)
    if cursor is not None:
        _set_cursor(conn, cursor, at)
    return outcomes


def _insert_outbox_claiming(conn: Any, outbox: list[tuple[Any, ...]],
                            births: list[tuple[int, IngestOutcome, AcceptItem]], claims: Claims) -> None:
    """Insert the batch's outbox rows, claiming at birth each one whose case has no other open delivery there.

    A claimed row is stored in flight with its destination's lease and handed back in its outcome's
    ``deliveries``; the rest wait as pending. An open row of the case — stored, or earlier in this
    batch — keeps the new one pending, so the case's deliveries still go in order.
    """
    wanted: dict[str, set[str]] = {}
    for index, _, _ in births:
        row = outbox[index]
        wanted.setdefault(row[1], set()).add(row[2])
    busy: set[tuple[str, str]] = set()
    for dest, cases in wanted.items():
        case_list = list(cases)
        for i in range(0, len(case_list), 500):
            chunk = case_list[i:i + 500]
            busy.update((dest, c) for (c,) in conn.execute(
                "SELECT DISTINCT case_no FROM outbox WHERE destination=? AND state IN ('pending','inflight','dead')"
                f" AND case_no IN ({','.join('?' * len(chunk))})", (dest, *chunk)))
    born = {index: (outcome, item) for index, outcome, item in births}
    ids = dialect_of(conn).ids(conn, "outbox", len(outbox))
    rows = []
    for index, (rid, dest, case_no, key, created, due) in enumerate(outbox):
        oid = next(ids)
        lease = None
        if index in born and (dest, case_no) not in busy:
            lease = claims[dest]
            outcome, item = born[index]
            rendered = item.rendered.get(dest) if item.rendered else None
            outcome.deliveries = (*outcome.deliveries, ClaimedDelivery(
                oid, dest, key, 0, created, rid, item.kind, item.record_key, case_no, item.system, item.body,
                rendered, item.correlation_id))
        busy.add((dest, case_no))
        rows.append((oid, rid, dest, case_no, key, "pending" if lease is None else "inflight", created, due, lease))
    conn.executemany(
        "INSERT INTO outbox(id, record_id, destination, case_no, idem_key, state, created_at, next_attempt_at,"
        " lease_until) VALUES (?,?,?,?,?,?,?,?,?)",
        rows,
    )


def _commit_supervision(conn: Any, chain: ChainWriter, states: dict[str, tuple[str, float | None]],
                        alerts: Sequence[AcceptItem], cursor: tuple[str, str] | None) -> list[IngestOutcome]:
    at = now_iso()
    conn.executemany(
        "INSERT INTO case_state(case_key, state, next_check, updated_at) VALUES (?,?,?,?) "
        "ON CONFLICT(case_key) DO UPDATE SET state=excluded.state, next_check=excluded.next_check,"
        " updated_at=excluded.updated_at",
        [(k, st, nc, at) for k, (st, nc) in states.items()],
    )
    return _commit_ingest(conn, chain, alerts, [], cursor)


def _correlated(it: AcceptItem | Settlement, detail: dict[str, Any]) -> dict[str, Any]:
    """An audit detail with the correlation id of the request, file or pull behind it, when there is one."""
    if it.correlation_id:
        detail["correlation_id"] = it.correlation_id
    return detail


def _set_cursor(conn: Any, cursor: tuple[str, str], at: str) -> None:
    conn.execute(
        "INSERT INTO cursors(name, value, updated_at) VALUES (?,?,?) "
        "ON CONFLICT(name) DO UPDATE SET value=excluded.value, updated_at=excluded.updated_at",
        (cursor[0], cursor[1], at),
    )


GATEWAY_SYSTEMS = frozenset({"supervision", "audit", "exchange"})
"""Systems whose records the gateway makes itself: made again, they differ only in their timestamps."""

VERSION_POLICY_DEFAULTS = {"on_conflict": "quarantine", "on_older": "keep"}


def _policy(it: AcceptItem, name: str) -> str:
    return getattr(it, name) or VERSION_POLICY_DEFAULTS[name]


@dataclass(slots=True)
class _Stored:
    """A version already stored (or earlier in this batch): its receipt, payload hash and, when read, its body."""

    receipt: str
    payload_hash: str
    body: str | None = None


def _data_of(body: str | None) -> Any:
    if body is None:
        return None
    try:
        data = json.loads(body).get("data")
    except (ValueError, AttributeError):
        return None
    if not isinstance(data, dict) or any(isinstance(v, dict) and "$enc" in v for v in data.values()):
        return None  # fields sealed at rest cannot be compared: the payload hashes decide
    return data


def _same_content(it: AcceptItem, stored: _Stored) -> bool:
    """The payload bytes differ but the mapped record is the same (a re-export with other whitespace)."""
    ours = _data_of(it.body)
    return ours is not None and ours == _data_of(stored.body)


def _version_quarantine(it: AcceptItem, at: str, rule: str, message: str) -> QuarantineItem:
    from gateway.records import item_hash, payload_json

    payload = payload_json(it.payload) if it.payload is not None else None
    error = {"kind": it.kind, "field": "version", "rule": rule, "value": str(it.version), "message": message,
             "record_key": it.record_key, "case_no": it.case_no}
    return QuarantineItem(system=it.system, ref=it.ref, kind=it.kind, errors=[error], payload=payload, raw=it.raw,
                          receipt_time=it.receipt_time or at, mapping=it.mapping,
                          item_hash=item_hash(it.system, it.raw, payload, it.ref), correlation_id=it.correlation_id)


def _stored_versions(conn: Any, accepted: Sequence[AcceptItem],
                     heads: dict[tuple[str, str, str], tuple[int, int]]) -> dict[tuple[str, str, str, int], _Stored]:
    """Receipt and payload hash of each stored (key, version) the batch may repeat; bodies where the hash differs."""
    if not heads:  # no key of the batch is stored yet (a new file's usual case): nothing to look at per item
        return {}
    wanted: dict[tuple[str, str], dict[str, set[int]]] = {}
    for it in accepted:
        head = heads.get((it.system, it.kind, it.record_key))
        if head is not None and head[1] >= it.version:
            wanted.setdefault((it.system, it.kind), {}).setdefault(it.record_key, set()).add(it.version)
    found: dict[tuple[str, str, str, int], _Stored] = {}
    ids: dict[int, tuple[str, str, str, int]] = {}
    for (system, kind), keys in wanted.items():
        key_list = list(keys)
        for i in range(0, len(key_list), 500):
            chunk = key_list[i:i + 500]
            rows = conn.execute(
                "SELECT id, record_key, version, receipt_id, payload_hash FROM records WHERE system=? AND kind=?"
                f" AND record_key IN ({','.join('?' * len(chunk))})", (system, kind, *chunk))
            for rid, key, version, receipt, phash in rows:
                if version in keys[key]:
                    found[(system, kind, key, version)] = _Stored(receipt, phash)
                    ids[rid] = (system, kind, key, version)
    if not ids:
        return found
    hashes: dict[tuple[str, str, str, int], set[str]] = {}
    for it in accepted:
        hashes.setdefault((it.system, it.kind, it.record_key, it.version), set()).add(it.payload_hash)
    differing = [rid for rid, k in ids.items() if hashes.get(k, set()) - {found[k].payload_hash}]
    for i in range(0, len(differing), 500):
        chunk = differing[i:i + 500]
        for rid, body in conn.execute(f"SELECT id, body FROM records WHERE id IN ({','.join('?' * len(chunk))})",
                                      chunk):
            found[ids[rid]].body = body
    return found


def _heads(conn: Any, accepted: Sequence[AcceptItem]) -> dict[tuple[str, str, str], tuple[int, int]]:
    """(id, version) of the newest stored version of each business key in the batch, a few queries per batch."""
    wanted: dict[tuple[str, str], set[str]] = {}
    for it in accepted:
        wanted.setdefault((it.system, it.kind), set()).add(it.record_key)
    heads: dict[tuple[str, str, str], tuple[int, int]] = {}
    for (system, kind), keys in wanted.items():
        key_list = list(keys)
        for i in range(0, len(key_list), 500):
            chunk = key_list[i:i + 500]
            for key, rid, version in dialect_of(conn).newest_versions(conn, system, kind, chunk):
                heads[(system, kind, key)] = (rid, version)
    return heads


_CLAIM_SQL = """
SELECT o.id, o.destination, o.idem_key, o.attempts, o.created_at, o.record_id,
       r.kind, r.record_key, o.case_no, r.system, r.body, NULL AS rendered, r.correlation_id
FROM outbox o JOIN records r ON r.id = o.record_id
WHERE o.destination = ? AND o.state = 'pending' AND o.next_attempt_at <= ?
  AND NOT EXISTS (
      SELECT 1 FROM outbox p
      WHERE p.destination = o.destination AND p.case_no = o.case_no AND p.id < o.id
        AND p.state IN ('pending', 'inflight', 'dead'))
ORDER BY o.next_attempt_at, o.id
LIMIT ?"""


def _claim(conn: Any, chain: ChainWriter, destination: str, limit: int, lease_seconds: float,
           now: float) -> list[ClaimedDelivery]:
    # A lease that ran out belongs to a worker that died or hung: its row is due again.
    _return_to_pending(conn, chain, "state='inflight' AND destination=? AND lease_until < ?", (destination, now),
                       "lease expired")
    rows = conn.execute(_CLAIM_SQL + dialect_of(conn).claim_lock, (destination, now, limit)).fetchall()
    if not rows:
        return []
    lease = now + lease_seconds
    dialect_of(conn).update_by_id(conn, "outbox", "state='inflight'", ("lease_until",), [(lease, r[0]) for r in rows])
    return [ClaimedDelivery(*r) for r in rows]


def _return_to_pending(conn: Any, chain: ChainWriter, where: str, args: tuple[Any, ...],
                       reason: str) -> int:
    """In-flight deliveries nobody will settle go back to pending, each with a ``reconciled`` entry."""
    rows = conn.execute(
        "SELECT o.id, o.destination, o.case_no, o.idem_key, r.kind, r.record_key FROM outbox o"
        f" JOIN records r ON r.id = o.record_id WHERE o.id IN (SELECT id FROM outbox WHERE {where})",
        args,
    ).fetchall()
    if not rows:
        return 0
    dialect_of(conn).update_by_id(conn, "outbox", "state='pending', lease_until=NULL", (), [(r[0],) for r in rows])
    at = now_iso()
    conn.executemany(AUDIT_INSERT, [
        audit_row(chain, at, "reconciled", system=r[1], kind=r[4], record=r[5], case=r[2],
                   detail={"delivery": r[0], "destination": r[1], "idempotency_key": r[3],
                           "from": "inflight", "to": "pending", "reason": reason})
        for r in rows])
    return len(rows)


def _settle(conn: Any, chain: ChainWriter, settlements: Sequence[Settlement]) -> None:
    at = now_iso()
    now = time.time()
    audit = []
    # A delivery is settled only while it is still in flight (a replay or a lease that ran out may have
    # taken it back): one query finds which of the batch still are, then one update per outcome.
    dialect = dialect_of(conn)
    inflight = dialect.ids_where(conn, "outbox", "state='inflight'", [s.delivery_id for s in settlements])
    delivered, retried, dead, released = [], [], [], []
    for s in settlements:
        if s.outcome not in _OUTCOMES:
            raise StoreError(f"unknown settlement outcome {s.outcome!r}")
        if s.delivery_id not in inflight:
            continue
        inflight.discard(s.delivery_id)  # the first settlement of a delivery counts, as before
        common = {"system": s.destination, "kind": s.kind, "record": s.record_key, "case": s.case_no}
        if s.outcome == "delivered":
            delivered.append((s.attempt, now, s.remote_id, s.delivery_id))
            audit.append(audit_row(chain, at, "delivered", **common, detail=_correlated(s, {
                "delivery": s.delivery_id, "destination": s.destination, "idempotency_key": s.idempotency_key,
                "attempt": s.attempt, "remote_id": s.remote_id})))
        elif s.outcome == "retry":
            retried.append((s.attempt, s.next_attempt_at, s.error, s.delivery_id))
            audit.append(audit_row(chain, at, "failed", **common, detail=_correlated(s, {
                "delivery": s.delivery_id, "destination": s.destination, "attempt": s.attempt,
                "error": s.error, "retry_at": s.next_attempt_at})))
        elif s.outcome == "dead":
            dead.append((s.attempt, now, s.error, s.delivery_id))
            audit.append(audit_row(chain, at, "dead_lettered", **common, detail=_correlated(s, {
                "delivery": s.delivery_id, "destination": s.destination, "attempt": s.attempt, "error": s.error})))
        else:
            # Claimed but never sent (the circuit opened or the destination was paused mid-batch): the claim
            # is undone, no attempt counted. A claim writes no audit entry, so neither does undoing it.
            released.append((s.next_attempt_at or now, s.delivery_id))
    # Each a few statements for the whole batch, not one per delivery (``Dialect.update_by_id``).
    dialect.update_by_id(conn, "outbox", "state='delivered', lease_until=NULL, last_error=NULL",
                         ("attempts", "settled_at", "remote_id"), delivered)
    dialect.update_by_id(conn, "outbox", "state='pending', lease_until=NULL",
                         ("attempts", "next_attempt_at", "last_error"), retried)
    dialect.update_by_id(conn, "outbox", "state='dead', lease_until=NULL", ("attempts", "settled_at", "last_error"),
                         dead)
    dialect.update_by_id(conn, "outbox", "state='pending', lease_until=NULL", ("next_attempt_at",), released)
    if audit:
        conn.executemany(AUDIT_INSERT, audit)


_OUTCOMES = frozenset({"delivered", "retry", "dead", "released"})


def _replay(
    conn: Any,
    chain: ChainWriter,
    ids: Sequence[int] | None,
    destination: str | None,
    states: Sequence[str],
    dry_run: bool,
    actor: str,
) -> list[int]:
    where = [f"o.state IN ({','.join('?' * len(states))})"]
    args: list[Any] = list(states)
    if ids is not None:
        where.append(f"o.id IN ({','.join('?' * len(ids))})")
        args.extend(ids)
    if destination is not None:
        where.append("o.destination = ?")
        args.append(destination)
    rows = conn.execute(
        "SELECT o.id, o.destination, o.case_no, o.state, o.idem_key, r.kind, r.record_key FROM outbox o"
        f" JOIN records r ON r.id = o.record_id WHERE {' AND '.join(where)} ORDER BY o.id",
        args,
    ).fetchall()
    if dry_run or not rows:
        return [r[0] for r in rows]
    at = now_iso()
    now = time.time()
    conn.executemany(
        "UPDATE outbox SET state='pending', attempts=0, next_attempt_at=?, lease_until=NULL, settled_at=NULL"
        " WHERE id=?",
        [(now, r[0]) for r in rows],
    )
    audit = [
        audit_row(chain, at, "replayed", system=r[1], kind=r[5], record=r[6], case=r[2],
                   detail={"delivery": r[0], "destination": r[1], "previous_state": r[3],
                           "idempotency_key": r[4], "actor": actor})
        for r in rows
    ]
    conn.executemany(AUDIT_INSERT, audit)
    return [r[0] for r in rows]
