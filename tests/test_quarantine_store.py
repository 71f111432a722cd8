"""The store's quarantine: one entry per item and reason, and a batch that survives items the store cannot take."""

from __future__ import annotations

import json
import sqlite3

import pytest

from gateway.audit import verify_store
from gateway.audit.chain import ChainWriter
from gateway.store import AcceptItem, QuarantineItem, Reprocessed
from gateway.store import quarantine as ops
from gateway.store.sqlite import SqliteStore


def record(key: str, version: int = 1, body: str | None = None) -> AcceptItem:
    return AcceptItem(
        system="county", kind="case", record_key=key, version=version, case_no=key, business_time=None,
        receipt_time="2026-09-29T10:00:01+08:00", payload_hash=f"h-{key}", ref=f"f.xml record {key}",
        body=body or json.dumps({"kind": "case", "data": {"case_no": key}}), receipt_id=f"r-{key}-{version}",
        destinations=("hall",), idempotency_keys=(f"{key}-{version}-hall",), mapping="m@1",
    )


def bad_item(ref: str = "f.csv line 3", raw: bytes = b"3,,x", rule: str = "required", field: str = "case_no",
             at: str = "2026-09-29T10:00:01+08:00") -> QuarantineItem:
    return QuarantineItem(system="county", ref=ref, kind="case", raw=raw, payload=json.dumps({"a": "x"}),
                          errors=[{"kind": "case", "field": field, "rule": rule, "value": None, "message": "missing"}],
                          receipt_time=at)


async def test_an_item_read_again_with_the_same_fault_is_one_entry_counted_with_its_last_sighting(
        store: SqliteStore) -> None:
    first = await store.commit_ingest([], [bad_item(at="2026-09-29T10:00:00+08:00")])
    again = await store.commit_ingest([], [bad_item(ref="f-resent.csv line 3", at="2026-09-30T09:00:00+08:00")])

    assert first[0].quarantine_id == again[0].quarantine_id
    (entry,) = await store.quarantine_entries()
    assert entry["seen_count"] == 2 and entry["state"] == "open"
    assert entry["receipt_time"] == "2026-09-29T10:00:00+08:00" and entry["last_seen"] == "2026-09-30T09:00:00+08:00"
    assert (entry["ref"], entry["last_ref"]) == ("f.csv line 3", "f-resent.csv line 3")
    assert (await store.counts()).quarantined == 1
    entries = [r.decoded() for r in await store.audit_entries() if r.decoded()["action"] == "quarantined"]
    assert [e["detail"].get("seen") for e in entries] == [None, 2]  # each sighting is audited, as a repeat


async def test_the_same_item_twice_in_one_batch_is_one_entry(store: SqliteStore) -> None:
    await store.commit_ingest([], [bad_item(), bad_item()])
    (entry,) = await store.quarantine_entries()
    assert entry["seen_count"] == 2


async def test_another_item_or_another_rule_is_another_entry(store: SqliteStore) -> None:
    await store.commit_ingest([], [bad_item(), bad_item(raw=b"4,,y"), bad_item(rule="id_number_check",
                                                                              field="applicant_id_no")])
    assert len(await store.quarantine_entries()) == 3


async def test_a_batch_with_an_integer_the_store_cannot_hold_commits_everything_else(store: SqliteStore) -> None:
    batch = [record("A"), record("B"), record("HUGE", version=2**70), record("C"), record("D")]
    outcomes = await store.commit_ingest_isolated(batch, [bad_item()], cursor=("filedrop:county:f", "6"))

    by_ref = {o.ref: o for o in outcomes}
    assert [by_ref[f"f.xml record {k}"].status for k in "ABCD"] == ["accepted"] * 4
    huge = by_ref["f.xml record HUGE"]
    assert huge.status == "quarantined" and huge.errors[0]["rule"] == "integer_range"
    assert "64-bit" in huge.errors[0]["message"]
    assert len(outcomes) == 6 and await store.get_cursor("filedrop:county:f") == "6"
    assert {r["record_key"] for r in await store.list_records()} == set("ABCD")
    assert (await verify_store(store)).ok  # the chain was rolled back with each failed savepoint


async def test_a_lone_surrogate_is_isolated_and_kept_in_escaped_form(store: SqliteStore) -> None:
    body = json.dumps({"kind": "case", "data": {"case_no": "X\ud800"}}, ensure_ascii=False)
    broken_ref = QuarantineItem(system="county", ref="bad-\udcff-name.csv line 2", kind=None, raw=None,
                                payload=None, receipt_time="2026-09-29T10:00:01+08:00",
                                errors=[{"field": "x", "rule": "r", "value": "\ud83d", "message": "m"}])
    outcomes = await store.commit_ingest_isolated([record("A"), record("S", body=body)], [broken_ref])

    statuses = sorted((o.ref, o.status) for o in outcomes)
    assert statuses == [("bad-\\udcff-name.csv line 2", "quarantined"), ("f.xml record A", "accepted"),
                        ("f.xml record S", "quarantined")]
    entries = {e["ref"]: e for e in await store.quarantine_entries()}
    assert entries["f.xml record S"]["errors"][0]["rule"] == "unicode"
    assert entries["bad-\\udcff-name.csv line 2"]["errors"][0]["value"] == "\\ud83d"
    assert (await verify_store(store)).ok


def test_a_store_failure_is_not_isolated_it_fails_the_batch() -> None:
    conn = sqlite3.connect(":memory:")
    chain = ChainWriter(0, "0" * 64)

    def broken(*args: object) -> list:
        raise sqlite3.OperationalError("disk I/O error")

    with pytest.raises(sqlite3.OperationalError, match="disk I/O error"):
        ops.commit_isolated(conn, chain, [record("A"), record("B")], [], ("c", "1"), "now", broken,
                            lambda *a: None)
    assert (chain.seq, chain.head) == (0, "0" * 64)


def test_when_every_item_of_a_batch_fails_alone_the_batch_fails_instead_of_quarantining_them_all() -> None:
    conn = sqlite3.connect(":memory:")
    chain = ChainWriter(0, "0" * 64)

    def refuses_everything(conn: object, chain: object, accepted: list, quarantined: list, cursor: object, claims: object = None) -> list:
        if accepted or quarantined:
            raise ValueError("a bug, not the data")
        return []

    with pytest.raises(ValueError, match="a bug, not the data"):
        ops.commit_isolated(conn, chain, [record(str(i)) for i in range(10)], [], None, "now", refuses_everything,
                            lambda *a: None)


async def test_discard_closes_an_open_entry_with_a_scrubbed_audited_reason(store: SqliteStore) -> None:
    [outcome] = await store.commit_ingest([], [bad_item()])
    qid = outcome.quarantine_id
    results = await store.discard_quarantined([qid, qid + 99], "counterpart withdrew it; 申请人 11010519491231002X",
                                              actor="cli:zhang")
    assert [r["outcome"] for r in results] == ["discarded", "unknown"]
    again = await store.discard_quarantined([qid], "twice", actor="cli:zhang")
    assert again[0]["outcome"] == "refused" and "is discarded, not open" in again[0]["message"]
    entry = await store.quarantine_entry(qid)
    assert entry["state"] == "discarded" and entry["resolution"]["by"] == "cli:zhang"
    [audit] = [r.decoded() for r in await store.audit_entries() if r.decoded()["action"] == "discarded"]
    assert audit["detail"]["reason"] == "counterpart withdrew it; 申请人 110105********002X"
    # A discarded item sent again is new work: a new open entry.
    [resent] = await store.commit_ingest([], [bad_item()])
    assert resent.quarantine_id != qid


async def test_reprocess_lands_what_maps_now_and_keeps_the_rest_open_with_todays_reasons(store: SqliteStore) -> None:
    [a] = await store.commit_ingest([], [bad_item(raw=b"A")])
    [b] = await store.commit_ingest([], [bad_item(raw=b"B")])
    still = [{"kind": "case", "field": "region_code", "rule": "region_code", "value": "1", "message": "too short"}]
    results = await store.commit_reprocess([
        Reprocessed(a.quarantine_id, "m@2", accepted=[record("FIXED")]),
        Reprocessed(b.quarantine_id, "m@2", errors=still),
    ], actor="cli:li")

    assert [r["outcome"] for r in results] == ["landed", "still_bad"]
    landed = await store.quarantine_entry(a.quarantine_id)
    assert landed["state"] == "resolved" and landed["resolution"]["records"][0]["record_key"] == "FIXED"
    kept = await store.quarantine_entry(b.quarantine_id)
    assert kept["state"] == "open" and kept["errors"] == still and kept["mapping"] == "m@2"
    assert [r["record_key"] for r in await store.list_records()] == ["FIXED"]
    actions = [r.decoded() for r in await store.audit_entries() if r.decoded()["action"] == "reprocessed"]
    assert [a["detail"]["outcome"] for a in actions] == ["landed", "still_bad"]
    # Only open entries are reprocessed.
    [refused] = await store.commit_reprocess([Reprocessed(a.quarantine_id, "m@2", accepted=[record("X")])], "cli")
    assert refused["outcome"] == "refused"
