"""The store's semantics on every backend: idempotency, versions, quarantine, per-case claiming, audit chain."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
import time

import pytest

from gateway.audit.chain import GENESIS, entry_hash
from gateway.store import AcceptItem, QuarantineItem, Settlement
from gateway.store.sqlite import SqliteStore


def item(key: str, version: int = 1, case: str | None = None, dests=("hall",), kind="case") -> AcceptItem:
    case = case or key
    return AcceptItem(
        system="county", kind=kind, record_key=key, version=version, case_no=case,
        business_time="2026-09-29T10:00:00+08:00", receipt_time="2026-09-29T10:00:01+08:00",
        payload_hash=f"h-{key}-{version}", body=json.dumps({"kind": kind, "data": {"case_no": case}}),
        ref=f"f.xml record {key}", receipt_id=f"r-{key}-{version}", destinations=tuple(dests),
        idempotency_keys=tuple(f"{key}-{version}-{d}" for d in dests), mapping="m@1",
    )


async def verify_chain(store: SqliteStore) -> int:
    prev, expected, n = GENESIS, 1, 0
    while True:
        rows = await store.audit_entries(after_seq=expected - 1, limit=500)
        if not rows:
            return n
        for r in rows:
            assert r.seq == expected
            assert json.loads(r.body)["seq"] == r.seq
            assert entry_hash(prev, r.body) == r.hash
            prev, expected, n = r.hash, expected + 1, n + 1


async def test_same_business_key_and_version_is_a_duplicate(store):
    first = await store.commit_ingest([item("A")], [])
    again = await store.commit_ingest([item("A")], [])
    assert [o.status for o in first] == ["accepted"]
    assert [o.status for o in again] == ["duplicate"]
    assert again[0].receipt_id == first[0].receipt_id
    counts = await store.counts()
    assert counts.records == 1 and counts.pending == 1 and counts.duplicates == 1


async def test_duplicate_inside_one_batch_is_recognised(store):
    out = await store.commit_ingest([item("A"), item("A")], [])
    assert [o.status for o in out] == ["accepted", "duplicate"]
    assert (await store.counts()).pending == 1


async def test_newer_version_supersedes_and_late_older_version_does_not_overwrite(store):
    await store.commit_ingest([item("A", 1)], [])
    await store.commit_ingest([item("A", 3)], [])
    late = await store.commit_ingest([item("A", 2)], [])
    assert late[0].status == "superseded"
    recs = await store.list_records(case_no="A")
    assert {r["version"]: r["status"] for r in recs} == {1: "superseded", 3: "current", 2: "stale"}
    # the stale one is kept but never delivered
    assert (await store.counts()).pending == 2
    # and re-sending it is a plain duplicate
    assert (await store.commit_ingest([item("A", 2)], []))[0].status == "duplicate"


async def test_quarantine_and_cursor_commit_with_the_batch(store):
    q = QuarantineItem(system="county", ref="f.csv row 3", kind="case",
                       errors=[{"field": "credit_code", "rule": "gb32100", "value": "9137***", "message": "bad"}],
                       payload='{"a": 1}', raw=b"x", receipt_time="2026-01-01T00:00:00+08:00")
    out = await store.commit_ingest([item("A")], [q], cursor=("filedrop:county:f", "3"))
    assert [o.status for o in out] == ["accepted", "quarantined"]
    assert await store.get_cursor("filedrop:county:f") == "3"
    rows = await store.list_quarantine()
    assert rows[0]["ref"] == "f.csv row 3" and rows[0]["errors"][0]["rule"] == "gb32100"


async def test_claim_gives_one_delivery_per_case_in_order_and_no_head_of_line_blocking(store):
    await store.commit_ingest([item("A1", case="A"), item("A2", case="A"), item("B1", case="B")], [])
    now = time.time()
    first = await store.claim("hall", 10, 30, now)
    assert sorted(d.record_key for d in first) == ["A1", "B1"]
    # A2 waits behind A1 while A1 is in flight; nothing else is due
    assert await store.claim("hall", 10, 30, now) == []
    a1 = next(d for d in first if d.record_key == "A1")
    b1 = next(d for d in first if d.record_key == "B1")
    await store.settle([Settlement(b1.delivery_id, "delivered", "hall", b1.idempotency_key, "case", "B1", "B", 1)])
    await store.settle([Settlement(a1.delivery_id, "retry", "hall", a1.idempotency_key, "case", "A1", "A", 1,
                                   error="503", next_attempt_at=now + 60)])
    # A1 backs off: A2 must still wait (order per case), B is unaffected
    assert await store.claim("hall", 10, 30, now) == []
    later = await store.claim("hall", 10, 30, now + 61)
    assert [d.record_key for d in later] == ["A1"]
    await store.settle([Settlement(later[0].delivery_id, "delivered", "hall", later[0].idempotency_key, "case",
                                   "A1", "A", 2, remote_id="x")])
    assert [d.record_key for d in await store.claim("hall", 10, 30, now + 61)] == ["A2"]


async def test_expired_lease_is_claimed_again(store):
    await store.commit_ingest([item("A")], [])
    now = time.time()
    assert len(await store.claim("hall", 10, 5, now)) == 1
    assert await store.claim("hall", 10, 5, now + 1) == []
    assert len(await store.claim("hall", 10, 5, now + 6)) == 1
    reconciled = [r.decoded() for r in await store.audit_entries() if r.decoded()["action"] == "reconciled"]
    assert [(e["detail"]["reason"], e["detail"]["to"]) for e in reconciled] == [("lease expired", "pending")]


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)
async def test_deliveries_left_in_flight_are_released_at_start_up_and_audited(store):
    """SQLite: one process delivers (DeliveryLock), so whatever is in flight at its start-up is its own."""
    await store.commit_ingest([item("A"), item("B")], [])
    await store.claim("hall", 10, 300, time.time())
    assert await store.release_leases() == 2
    assert (await store.counts()).pending == 2
    actions = [r.decoded()["action"] for r in await store.audit_entries()]
    assert actions.count("reconciled") == 2
    await verify_chain(store)


@pytest.mark.parametrize("store", ["postgresql"], indirect=True)
async def test_on_a_shared_store_start_up_releases_only_leases_that_expired(store):
    """PostgreSQL: other processes deliver from the same store; a live process's leases are never taken from it."""
    await store.commit_ingest([item("A"), item("B")], [])
    now = time.time()
    (dead,) = await store.claim("hall", 1, 0.05, now)  # claimed by a process that died since: its lease runs out
    (live,) = await store.claim("hall", 1, 300, now)  # claimed by a process still sending it
    await asyncio.sleep(0.1)
    assert await store.release_leases() == 1
    waiting = {d["id"]: d["state"] for d in await store.list_deliveries()}
    assert waiting == {dead.delivery_id: "pending", live.delivery_id: "inflight"}
    reconciled = [r.decoded()["detail"] for r in await store.audit_entries() if r.decoded()["action"] == "reconciled"]
    assert [d["delivery"] for d in reconciled] == [dead.delivery_id]
    await verify_chain(store)


async def test_dead_letter_blocks_its_case_until_replayed(store):
    await store.commit_ingest([item("A1", case="A"), item("A2", case="A")], [])
    now = time.time()
    (d,) = await store.claim("hall", 10, 30, now)
    await store.settle([Settlement(d.delivery_id, "dead", "hall", d.idempotency_key, "case", "A1", "A", 1,
                                   error="400 bad credit code")])
    assert await store.claim("hall", 10, 30, now) == []
    dead = await store.list_deliveries(state="dead")
    assert [x["id"] for x in dead] == [d.delivery_id] and dead[0]["last_error"] == "400 bad credit code"
    assert await store.replay(dry_run=True) == [d.delivery_id]
    assert (await store.counts()).dead == 1
    assert await store.replay() == [d.delivery_id]
    again = await store.claim("hall", 10, 30, now + 1)
    assert [x.record_key for x in again] == ["A1"] and again[0].attempts == 0


async def test_every_change_is_on_one_unbroken_hash_chain(store):
    await store.commit_ingest([item("A"), item("B")], [])
    await store.commit_ingest([item("A")], [])
    (d, _) = await store.claim("hall", 10, 30, time.time())
    await store.settle([Settlement(d.delivery_id, "delivered", "hall", d.idempotency_key, "case", d.record_key,
                                   d.case_no, 1)])
    await store.audit_event("config_changed", detail={"file": "gateway.toml"})
    n = await verify_chain(store)
    actions = [r.decoded()["action"] for r in await store.audit_entries()]
    assert actions == ["received", "received", "duplicate", "delivered", "config_changed"]
    assert rows_detail_routes(await store.audit_entries()) == [["hall"], ["hall"]]
    assert n == len(actions)


def rows_detail_routes(rows):
    return [r.decoded()["detail"]["routed_to"] for r in rows if r.decoded()["action"] == "received"]


async def test_concurrent_writers_are_group_committed_and_isolated(store):
    async def one(i: int):
        return await store.commit_ingest([item(f"K{i}")], [])

    results = await asyncio.gather(*(one(i) for i in range(200)))
    assert all(r[0].status == "accepted" for r in results)
    assert store.transactions < 200  # many callers shared a commit
    await verify_chain(store)


async def test_a_failing_operation_does_not_undo_its_neighbours(store):
    bad = item("X")
    bad.idempotency_keys = ()  # zip(strict) fails inside the writer
    results = await asyncio.gather(
        store.commit_ingest([item("A")], []), store.commit_ingest([bad], []), return_exceptions=True
    )
    assert results[0][0].status == "accepted"
    assert isinstance(results[1], ValueError)
    assert (await store.counts()).records == 1
    await verify_chain(store)


async def _one_group(store, calls):
    """Run ``calls`` (coroutine factories) so that the writer takes them in one group: it is held busy until
    every one of them has queued its operation."""
    release = threading.Event()
    held = asyncio.ensure_future(store._write(lambda conn, chain: release.wait(10)))
    await asyncio.sleep(0.05)  # the writer is inside the holding operation
    tasks = [asyncio.ensure_future(call()) for call in calls]
    await asyncio.sleep(0.05)  # each call has prepared and queued its operation
    release.set()
    await held
    return await asyncio.gather(*tasks, return_exceptions=True)


def _merges(monkeypatch):
    """Count the writer's merged runs of ingest batches and how many batches each took."""
    from gateway.store.quarantine import IsolatedIngest

    runs: list[int] = []
    merged = IsolatedIngest.run_merged.__func__

    def counting(cls, conn, chain, ops):
        runs.append(len(ops))
        return merged(cls, conn, chain, ops)

    monkeypatch.setattr(IsolatedIngest, "run_merged", classmethod(counting))
    return runs


async def test_neighbouring_batches_commit_as_one_and_each_gets_its_own_outcomes(store, monkeypatch):
    """One-record pushes queued together are one batch in the writer; each caller's answer is what it
    would have been alone, in its own order: a repeat is a duplicate of the earlier caller's record, a
    newer version supersedes, and a case's second delivery waits behind its first."""
    runs = _merges(monkeypatch)
    q = QuarantineItem(system="county", ref="push item 1", kind="case",
                       errors=[{"field": "credit_code", "rule": "gb32100", "value": "9137***", "message": "bad"}],
                       payload='{"a": 1}', raw=b"x", receipt_time="2026-01-01T00:00:00+08:00")
    claims = {"hall": time.time() + 60}
    calls = [
        lambda: store.commit_ingest_isolated([item("A"), item("B")], [], None, claims),
        lambda: store.commit_ingest_isolated([item("A")], [], None, claims),
        lambda: store.commit_ingest_isolated([item("C", 1)], [], None, claims),
        lambda: store.commit_ingest_isolated([item("C", 2)], [], None, claims),
        lambda: store.commit_ingest_isolated([item("D")], [q], None, claims),
    ]
    before = store.transactions
    results = await _one_group(store, calls)
    assert runs == [5]
    assert store.transactions == before + 2  # the holding operation's group, then the five in one
    assert [[o.status for o in r] for r in results] == [
        ["accepted", "accepted"], ["duplicate"], ["accepted"], ["accepted"], ["accepted", "quarantined"]]
    assert results[1][0].receipt_id == results[0][0].receipt_id
    assert [len(o.deliveries) for r in results for o in r] == [1, 1, 0, 1, 0, 1, 0]  # C v2 waits behind C v1
    recs = {(r["record_key"], r["version"]): r["status"] for r in await store.list_records()}
    assert recs == {("A", 1): "current", ("B", 1): "current", ("C", 1): "superseded", ("C", 2): "current",
                    ("D", 1): "current"}
    assert (await store.list_quarantine())[0]["ref"] == "push item 1"
    await verify_chain(store)


async def test_a_merged_run_that_fails_is_run_batch_by_batch(store, monkeypatch):
    """An item the store refuses fails the merged batch; the writer rolls it back and runs each batch
    alone, so only that item is quarantined and its neighbours land."""
    runs = _merges(monkeypatch)
    bad = item("X")
    bad.idempotency_keys = ()  # zip(strict) fails inside the store: a data fault of this item
    results = await _one_group(store, [
        lambda: store.commit_ingest_isolated([item("A")], []),
        lambda: store.commit_ingest_isolated([bad], []),
        lambda: store.commit_ingest_isolated([item("B")], []),
    ])
    assert runs == [3]
    assert [[o.status for o in r] for r in results] == [["accepted"], ["quarantined"], ["accepted"]]
    assert {r["record_key"] for r in await store.list_records()} == {"A", "B"}
    await verify_chain(store)


async def test_a_merged_run_holds_a_bounded_number_of_items(store, monkeypatch):
    """A run that fails is done again batch by batch: its size is bounded, so a bad item costs its
    neighbours at most that much work again."""
    import gateway.store.sqlstore as sqlstore

    monkeypatch.setattr(sqlstore, "MERGE_LIMIT", 5)
    runs = _merges(monkeypatch)
    results = await _one_group(store, [
        lambda i=i: store.commit_ingest_isolated([item(f"K{i}a"), item(f"K{i}b")], []) for i in range(6)])
    assert runs == [2, 2, 2]  # two batches of two items each; a third would make six
    assert all([o.status for o in r] == ["accepted", "accepted"] for r in results)
    await verify_chain(store)


async def test_a_batch_with_a_cursor_commits_alone(store, monkeypatch):
    """A cursor moves with exactly its own batch's records: such a batch is never merged with others, and
    batches with different claims are not merged either."""
    runs = _merges(monkeypatch)
    results = await _one_group(store, [
        lambda: store.commit_ingest_isolated([item("A")], []),
        lambda: store.commit_ingest_isolated([item("B")], [], ("filedrop:county:f", "7")),
        lambda: store.commit_ingest_isolated([item("C")], []),
        lambda: store.commit_ingest_isolated([item("D")], [], None, {"hall": time.time() + 60}),
        lambda: store.commit_ingest_isolated([item("E")], []),
        lambda: store.commit_ingest_isolated([item("F")], []),
    ])
    assert runs == [2]  # E and F; the others each have a different neighbour
    assert all(r[0].status == "accepted" for r in results)
    assert await store.get_cursor("filedrop:county:f") == "7"
    await verify_chain(store)


async def test_state_survives_reopen_and_chain_continues(store_factory):
    s = store_factory()
    await s.open()
    await s.commit_ingest([item("A")], [])
    await s.close()
    s2 = store_factory(audit_algorithm="sm3")
    await s2.open()
    assert s2.audit_algorithm == "sha256"  # the chain keeps its algorithm
    assert (await s2.commit_ingest([item("A")], []))[0].status == "duplicate"
    await verify_chain(s2)
    await s2.close()


async def test_sm3_chain(store_factory):
    s = store_factory(audit_algorithm="sm3")
    await s.open()
    await s.commit_ingest([item("A")], [])
    rows = await s.audit_entries()
    assert entry_hash(GENESIS, rows[0].body, "sm3") == rows[0].hash
    await s.close()


async def test_a_migration_numbered_below_one_already_applied_still_runs(tmp_path, monkeypatch) -> None:
    """Migrations are a set: a store that ran 0020 before 0010 existed still gets 0010 when it arrives."""
    import gateway.store.sqlite as backend

    every = backend.migrations()
    without_quarantine = [m for m in every if m[0] != 10]
    monkeypatch.setattr(backend, "migrations", lambda: without_quarantine)
    first = SqliteStore(tmp_path / "m.db")
    await first.open()
    await first.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    assert 10 not in {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    assert max(r[0] for r in conn.execute("SELECT version FROM schema_migrations")) > 10
    conn.close()
    monkeypatch.setattr(backend, "migrations", lambda: every)
    second = SqliteStore(tmp_path / "m.db")
    await second.open()
    await second.close()
    conn = sqlite3.connect(tmp_path / "m.db")
    assert {r[0] for r in conn.execute("SELECT version FROM schema_migrations")} == {m[0] for m in every}
    conn.close()
