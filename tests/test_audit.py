"""The verifiable audit trail: seals over the chain, verification that names the first broken entry or seal."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_support import as_bytes, raw
from test_store import item

from gateway.audit import Sealer, SealRefused, load_certificates, load_or_create_dev_signer, verify_store
from gateway.audit.chain import (
    GENESIS,
    ChainWriter,
    canonical,
    entry_hash,
    made_fields,
    made_head,
    make_body,
    received_detail,
)
from gateway.audit.merkle import MerkleTree, merkle_root, root_from_path
from gateway.audit.signers import Signer, SignerError
from gateway.store import Settlement
from gateway.store.sqlite import SqliteStore

# ---------------------------------------------------------------------------- helpers shared by test_audit_*.py


async def fill(store: SqliteStore, items: int, *, start: int = 0, batch: int = 250, cases: int | None = None) -> None:
    """Ingest ``items`` records K{start}.. (one or more entries each), optionally spread over ``cases`` cases."""
    for i in range(start, start + items, batch):
        await store.commit_ingest(
            [item(f"K{j}", case=f"C{j % cases}" if cases else None) for j in range(i, min(i + batch, start + items))],
            [],
        )


async def fill_to(store: SqliteStore, entries: int, *, cases: int | None = None, batch: int = 250) -> None:
    """Ingest records until the chain holds exactly ``entries`` entries, whatever each record writes."""
    while True:
        head = (await store.audit_head())[0]
        remaining = entries - head
        if remaining <= 0:
            break
        if remaining == 1:  # a record may write two entries; top up with a console event
            await store.audit_event("user_action", system="console", detail={"user": "test"})
            continue
        n = min(batch, remaining // 2)
        await store.commit_ingest(
            [item(f"E{head}-{j}", case=f"C{(head + j) % cases}" if cases else None) for j in range(n)], [])
    assert (await store.audit_head())[0] == entries


def tamper(db: Any, sql: str, *args: object) -> None:
    """Change the database behind the gateway's back, as an intruder with database access would (a store or a path)."""
    raw(db).execute(sql, *args)


def body_of(db: Any, seq: int) -> bytes:
    return as_bytes(raw(db).value("SELECT body FROM audit WHERE seq=?", seq))


class FlakySigner(Signer):
    """A signer that can be switched off (raises) or made to hang, around a real dev key."""

    def __init__(self, inner: Signer) -> None:
        self.inner = inner
        self.algorithm = inner.algorithm
        self.down = False
        self.hang = False
        self.calls = 0

    @property
    def certificate(self):  # type: ignore[no-untyped-def]
        return self.inner.certificate

    async def sign(self, data: bytes) -> bytes:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.down:
            raise SignerError("signing service unreachable (test outage)")
        return await self.inner.sign(data)


async def unsealed_are_only_seal_records(store: SqliteStore) -> bool:
    """After sealing, what stays unsealed is the chain's own record of the last seals made and signed."""
    head = (await store.audit_head())[0]
    sealed_to = (await store.audit_seal_head()).to_seq
    rows = await store.audit_range(sealed_to + 1, head)
    return all(json.loads(r.body)["action"] in ("seal_made", "seal_signed") for r in rows)


async def sealed_store(store: SqliteStore, signer: Signer, entries: int = 1000, every: int = 100) -> Sealer:
    await fill_to(store, entries)
    sealer = Sealer(store, signer, every_entries=every, max_entries=every)
    await sealer.seal_now()
    return sealer


# ---------------------------------------------------------------------------- Merkle trees


def _rfc6962_root(leaves: list[bytes]) -> bytes:
    """The RFC's recursive definition, to check the bottom-up implementation against."""
    import hashlib

    if len(leaves) == 1:
        return hashlib.sha256(b"\x00" + leaves[0]).digest()
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + _rfc6962_root(leaves[:k]) + _rfc6962_root(leaves[k:])).digest()


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 100])
def test_merkle_root_is_rfc6962_and_every_inclusion_path_leads_to_it(size: int) -> None:
    hashes = [bytes([i % 256]) * 32 for i in range(size)]
    tree = MerkleTree(hashes)
    assert tree.root == merkle_root(hashes) == _rfc6962_root(hashes)
    for index in range(size):
        assert root_from_path(hashes[index], index, size, tree.path(index)) == tree.root
    if size > 1:
        assert root_from_path(hashes[0], 1, size, tree.path(1)) != tree.root  # wrong leaf for the path
        with pytest.raises(ValueError):
            root_from_path(hashes[0], 0, size, tree.path(0)[:-1])


# ---------------------------------------------------------------------------- a clean trail


async def test_sealed_trail_verifies_with_every_seal_signed(store, signer, trusted) -> None:
    await sealed_store(store, signer)
    report = await verify_store(store, trusted=trusted)
    assert report.ok, report.render()
    # 1000 entries, the seal_made entry of each seal, and the seal_signed entry of each signature
    assert report.entries_checked == 1022 and (report.first_seq, report.last_seq) == (1, 1022)
    # seals 1..10 cover the business entries; seal 11 covers the records of the first ten
    assert report.seals_checked == report.seals_signed == 11
    assert report.unsealed_entries == 12 and await unsealed_are_only_seal_records(store)
    seals = await store.list_seals()
    assert [(s.from_seq, s.to_seq) for s in seals[:2]] == [(1, 100), (101, 200)]
    statement = json.loads(seals[1].statement)
    assert statement["prev_seal"] == seals[0].statement_hash and statement["prev_hash"] == json.loads(
        seals[0].statement)["head_hash"]
    assert seals[1].statement == canonical(statement)  # the exact signed bytes are canonical JSON


async def test_unsealed_tail_and_no_seals_at_all_still_verify_the_chain(store) -> None:
    await fill_to(store, 100)
    report = await verify_store(store)
    assert report.ok and report.entries_checked == 100 and report.unsealed_entries == 100
    assert any("not sealed yet" in n for n in report.notes)


# ---------------------------------------------------------------------------- tampering with entries


async def test_one_byte_changed_in_one_entry_body_names_that_entry(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    body = body_of(store, 57)
    tamper(store, "UPDATE audit SET body=? WHERE seq=57", body.replace(b'"county"', b'"countx"'))
    report = await verify_store(store, trusted=trusted)
    assert not report.ok
    assert report.first_problem == "entry 57: hash does not match its body"


@pytest.mark.parametrize("store", ["sqlite"], indirect=True)  # PostgreSQL's columns keep their types
async def test_values_of_the_wrong_type_are_checked_not_crashed_on(store, signer, trusted, tmp_path) -> None:
    """Someone edits the file with the sqlite3 shell: a body becomes TEXT, a hash becomes a BLOB."""
    await sealed_store(store, signer, entries=300)
    same = body_of(store, 40).decode("utf-8")
    tamper(store, "UPDATE audit SET body=? WHERE seq=40", same)  # same bytes, TEXT type: still intact
    assert (await verify_store(store, trusted=trusted)).ok
    tamper(store, "UPDATE audit SET body=? WHERE seq=41", body_of(store, 41).decode()
           .replace("county", "c0unty"))
    tamper(store, "UPDATE audit SET hash=? WHERE seq=250", bytes(32))
    report = await verify_store(store, trusted=trusted)
    assert report.problems[0] == "entry 41: hash does not match its body"
    # the verification of that chunk stopped at 41; the hash at 250 is found once 41 is repaired
    tamper(store, "UPDATE audit SET body=? WHERE seq=41", body_of(store, 41).decode()
           .replace("c0unty", "county"))
    assert (await verify_store(store, trusted=trusted)).first_problem == "entry 250: hash does not match its body"


async def test_changed_stored_hash_names_that_entry(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    tamper(store, "UPDATE audit SET hash=? WHERE seq=333", "ab" * 32)
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == "entry 333: hash does not match its body"


async def test_entry_deleted_from_the_middle_is_named_as_a_gap(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    tamper(store, "DELETE FROM audit WHERE seq=56")
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == "gap: entries 56..56 missing between 55 and 57"


@pytest.mark.parametrize("deleted", [(7, 7), (9, 10), (8, 14), (1, 3)], ids=lambda d: f"{d[0]}..{d[1]}")
async def test_gap_is_named_the_same_whatever_the_read_size(store, signer, trusted, monkeypatch, deleted) -> None:
    """The verifier reads a chunk at a time and looks for a gap only when a chunk comes back short: a gap
    at a chunk's edge, across edges, or at the very start is still named exactly."""
    from gateway.store.audit_source import AuditSource

    await sealed_store(store, signer, entries=40, every=10)
    a, b = deleted
    tamper(store, "DELETE FROM audit WHERE seq BETWEEN ? AND ?", a, b)
    expected = f"gap: entries {a}..{b} missing " + (f"before {b + 1}" if a == 1 else f"between {a - 1} and {b + 1}")
    for chunk in (4, 1024):
        monkeypatch.setattr(AuditSource, "chunk", chunk)
        report = await verify_store(store, trusted=trusted, workers=1)
        assert report.first_problem == expected, chunk


async def test_newest_sealed_entries_deleted_are_caught_by_their_seal(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    tamper(store, "DELETE FROM audit WHERE seq > 950")
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == ("seal 10: covers entries 901..1000, but the trail ends at entry 950 "
                                    "(entries deleted from the end)")
    # the chain's records of seals 10 and 11 went with the entries
    assert "seal 10: the chain records its making 0 times (expected once: its seal_made entry was deleted or " \
           "copied)" in report.problems


async def test_body_that_names_another_seq_is_caught(store, tmp_path) -> None:
    await fill_to(store, 20)
    body = json.loads(body_of(store, 20))
    body["seq"] = 21
    forged = canonical(body)
    prev = raw(store).value("SELECT hash FROM audit WHERE seq=19")
    tamper(store, "UPDATE audit SET body=?, hash=? WHERE seq=20", forged, entry_hash(prev, forged))
    report = await verify_store(store)
    assert report.first_problem == "entry 20: body says seq 21 but it is stored as entry 20"


async def test_history_rewritten_with_recomputed_hashes_is_caught_by_the_seal(store, signer, trusted, tmp_path) -> None:
    """An intruder without the seal key rewrites entry 150 and re-hashes everything after it."""
    await sealed_store(store, signer)
    db = raw(store)
    prev = db.value("SELECT hash FROM audit WHERE seq=149")
    rewritten = []
    for seq, body in db.execute("SELECT seq, body FROM audit WHERE seq >= 150 ORDER BY seq"):
        body = bytes(body)
        if seq == 150:
            body = body.replace(b'"county"', b'"forged"')
        prev = entry_hash(prev, body)
        rewritten.append((body, prev, seq))
    db.executemany("UPDATE audit SET body=?, hash=? WHERE seq=?", rewritten)
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == "seal 2: Merkle root does not match entries 101..200"


# ---------------------------------------------------------------------------- tampering with seals


async def test_one_byte_changed_in_a_seal_statement_names_the_seal(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    statement = bytes(raw(store).value("SELECT statement FROM audit_seals WHERE seal=3"))
    changed = statement.replace(b'"to_seq":300', b'"to_seq":301')
    assert changed != statement
    tamper(store, "UPDATE audit_seals SET statement=? WHERE seal=3", changed)
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == "seal 3: signature invalid"
    # the next seal no longer links to it either
    assert "seal 4: does not link to seal 3 (previous-seal hash differs)" in report.problems


async def test_one_byte_changed_in_a_seal_signature_names_the_seal(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    sig = bytearray(raw(store).value("SELECT signature FROM audit_seals WHERE seal=7"))
    sig[10] ^= 0x01
    tamper(store, "UPDATE audit_seals SET signature=? WHERE seal=7", bytes(sig))
    report = await verify_store(store, trusted=trusted)
    assert report.problems == ["seal 7: signature invalid", "seal 7: its signature is not the one entry 1018 records"]


async def test_seal_deleted_from_the_middle_is_named(store, signer, trusted, tmp_path) -> None:
    await sealed_store(store, signer)
    tamper(store, "DELETE FROM audit_seals WHERE seal=5")
    report = await verify_store(store, trusted=trusted)
    assert report.first_problem == "seal 6: follows seal 4; seals 5..5 are missing"


async def test_seals_signed_by_an_untrusted_key_are_named(store, signer, tmp_path) -> None:
    await sealed_store(store, signer, entries=200)
    load_or_create_dev_signer(tmp_path / "other")
    other = load_certificates(tmp_path / "other")
    report = await verify_store(store, trusted=other)
    assert report.first_problem.startswith("seal 1: signed by key ")
    assert report.first_problem.endswith("which is not a trusted certificate")
    # without trusted certificates the store's own copies are used, and the report says so
    selfcheck = await verify_store(store)
    assert selfcheck.ok and "copied in the store itself" in selfcheck.trust


# ---------------------------------------------------------------------------- worker processes


async def test_verification_split_over_worker_processes_names_the_same_first_problem(
        store, signer, trusted, tmp_path, monkeypatch) -> None:
    import gateway.audit.verify as verify_module

    monkeypatch.setattr(verify_module, "PARALLEL_FROM", 100)
    monkeypatch.setattr(verify_module, "TASK_TARGET", 300)
    await sealed_store(store, signer, entries=2000, every=100)
    clean = await verify_store(store, trusted=trusted, workers=2)
    assert clean.ok and clean.workers == 2, clean.render()
    assert clean.entries_checked == (await store.audit_head())[0] == 2042
    # a gap exactly at a task boundary (tasks end at seals 3, 6, …: entry 600 ends one)
    tamper(store, "DELETE FROM audit WHERE seq BETWEEN 600 AND 602")
    body = body_of(store, 1500)
    tamper(store, "UPDATE audit SET body=? WHERE seq=1500", body.replace(b"county", b"c0unty"))
    report = await verify_store(store, trusted=trusted, workers=2)
    assert report.first_problem == "gap: entries 600..602 missing between 599 and 603"
    assert "entry 1500: hash does not match its body" in report.problems


# ---------------------------------------------------------------------------- signing outages


async def test_signing_outage_never_stops_exchange_and_seals_catch_up(store, signer, trusted) -> None:
    flaky = FlakySigner(signer)
    flaky.down = True
    sealer = Sealer(store, flaky, every_entries=40, max_entries=40, poll_seconds=0.02, retry_initial=0.05,
                    retry_max=0.1, sign_timeout=1.0)
    stopping = asyncio.Event()
    task = asyncio.create_task(sealer.run(stopping))
    try:
        # exchange goes on: ingest and delivery settle while the signer is down
        for i in range(0, 200, 20):
            await fill(store, 20, start=i)
            claimed = await store.claim("hall", 50, 30, time.time())
            await store.settle([Settlement(d.delivery_id, "delivered", "hall", d.idempotency_key, d.kind,
                                           d.record_key, d.case_no, 1) for d in claimed])
            await asyncio.sleep(0.03)
        assert (await store.counts()).delivered == 200
        await _until(lambda: sealer.status().pending >= 5)
        assert sealer.status().last_error and "test outage" in sealer.status().last_error
        waiting = await store.list_seals()
        assert all(s.state == "pending" for s in waiting)
        await _until(lambda: sealer.status().pending >= 5)
        assert (await store.list_seals())[0].attempts > 1  # the sealer keeps trying, and says so
        mid = await verify_store(store, trusted=trusted)
        assert mid.ok and len(mid.seals_pending) >= 5 and mid.seals_signed == 0
        # the signer comes back: every pending seal gets signed, oldest first
        flaky.down = False
        await _until(lambda: sealer.status().pending == 0 and sealer.status().last_error is None)
    finally:
        stopping.set()
        await task
    seals = await store.list_seals()
    assert seals and all(s.state == "signed" for s in seals)
    assert all(s.attempts == 0 and s.last_error is None for s in seals)  # bookkeeping cleared once signed
    report = await verify_store(store, trusted=trusted)
    assert report.ok and report.seals_signed == len(seals), report.render()
    assert await unsealed_are_only_seal_records(store)


async def test_a_hanging_signer_times_out_and_the_seal_stays_pending(store, signer, trusted) -> None:
    flaky = FlakySigner(signer)
    flaky.hang = True
    await fill_to(store, 60)
    sealer = Sealer(store, flaky, sign_timeout=0.1)
    started = time.monotonic()
    made = await sealer.seal_now()
    assert time.monotonic() - started < 2
    assert [s.state for s in await store.list_seals()] == ["pending"] and len(made) == 1
    assert "timed out" in sealer.status().last_error
    flaky.hang = False
    assert await sealer.sign_pending() == 1
    assert (await verify_store(store, trusted=trusted)).ok


async def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- the sealer


async def test_sealer_seals_by_count_and_by_time_and_once_more_at_stop(store, signer) -> None:
    sealer = Sealer(store, signer, every_entries=100, every_seconds=0.3, poll_seconds=0.02)
    stopping = asyncio.Event()
    task = asyncio.create_task(sealer.run(stopping))
    try:
        # (fill, not fill_to: the running sealer appends its own records meanwhile)
        await fill(store, 120)  # over the count
        await _until(lambda: sealer.last_seal >= 1)
        first = await store.list_seals()
        assert first[0].to_seq >= 100
        await fill(store, 5, start=120)  # under the count: sealed when the time is up
        await _until(lambda: sealer.last_seal >= 2)
        await fill(store, 1, start=125)
    finally:
        stopping.set()
        await task
    seals = await store.list_seals()
    assert await unsealed_are_only_seal_records(store)  # the stop sealed the rest
    assert all(s.state == "signed" for s in seals)


async def test_two_sealers_at_once_never_fork_the_seal_chain(store, signer, trusted) -> None:
    await fill_to(store, 600)
    a = Sealer(store, signer, max_entries=50)
    b = Sealer(store, signer, max_entries=50)
    await asyncio.gather(a.seal_now(), b.seal_now())
    seals = await store.list_seals()
    assert [s.seal for s in seals] == list(range(1, len(seals) + 1))
    assert all(seals[i].from_seq == seals[i - 1].to_seq + 1 for i in range(1, len(seals)))
    assert (await verify_store(store, trusted=trusted)).ok


async def test_sealer_refuses_to_sign_over_a_broken_chain(store, signer, tmp_path) -> None:
    await fill_to(store, 40)
    body = body_of(store, 7)
    tamper(store, "UPDATE audit SET body=? WHERE seq=7", body.replace(b"county", b"c0unty"))
    with pytest.raises(SealRefused, match="entry 7: hash does not match its body"):
        await Sealer(store, signer).seal_now()
    assert await store.list_seals() == []


async def test_a_seal_signed_in_the_round_that_made_it_is_read_once_and_one_left_pending_is_read_again(
        store, signer) -> None:
    await fill_to(store, 300)
    reads: list[tuple[int, int]] = []
    read = store.audit_range

    async def counted(from_seq: int, to_seq: int):  # type: ignore[no-untyped-def]
        reads.append((from_seq, to_seq))
        return await read(from_seq, to_seq)

    store.audit_range = counted
    made = await Sealer(store, signer, every_entries=100, max_entries=100).seal_now()
    assert len(made) >= 3 and all(s.state == "signed" for s in await store.list_seals())
    # built from entries it had just read and checked: no second read of the same range before signing
    assert [reads.count((s.from_seq, s.to_seq)) for s in made] == [1] * len(made)

    # A seal left pending (the signer is down) is checked against the store again before it is signed,
    # so entries changed while it waited are refused, not signed.
    flaky = FlakySigner(signer)
    flaky.down = True
    sealer = Sealer(store, flaky, every_entries=100, max_entries=1000)
    await fill(store, 50, start=1000)
    (pending,) = await sealer.seal_now()
    assert [s.state for s in await store.list_seals()][-1] == "pending"
    seq = pending.from_seq + 5
    body = body_of(store, seq)
    tamper(store, f"UPDATE audit SET body=? WHERE seq={seq}", body.replace(b"county", b"c0unty"))
    flaky.down = False
    reads.clear()
    with pytest.raises(SealRefused, match=f"entry {seq}: hash does not match its body"):
        await sealer.sign_pending()
    assert (pending.from_seq, pending.to_seq) in reads
    assert [s.state for s in await store.list_seals()][-1] == "pending"


# ---------------------------------------------------------------------------- SM3


async def test_sm3_chain_with_seals_verifies_and_catches_tampering(store_factory, signer, trusted) -> None:
    s = store_factory(audit_algorithm="sm3")
    await s.open()
    try:
        await fill_to(s, 400)
        await Sealer(s, signer, max_entries=150).seal_now()
        rows = await s.audit_entries(limit=2)
        assert rows[0].hash == entry_hash(GENESIS, rows[0].body, "sm3")
        statement = json.loads((await s.list_seals())[0].statement)
        assert statement["algorithm"] == "sm3"
        report = await verify_store(s, trusted=trusted)
        assert report.ok and report.algorithm == "sm3" and report.seals_signed == 3, report.render()
        body = body_of(s, 222)
        tamper(s, "UPDATE audit SET body=? WHERE seq=222", body.replace(b"county", b"c0unty"))
        assert (await verify_store(s, trusted=trusted)).first_problem == "entry 222: hash does not match its body"
    finally:
        await s.close()


# ---------------------------------------------------------------------------- entries made ahead

_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)  # anything UTF-8 holds


@settings(max_examples=300, deadline=None)
@given(system=_TEXT, kind=_TEXT, record=_TEXT, case=st.none() | _TEXT, ref=_TEXT,
       version=st.integers(-(2**63), 2**63 - 1), business_time=st.none() | _TEXT,
       routed_to=st.lists(_TEXT, max_size=3), correlation_id=st.none() | _TEXT,
       action=st.sampled_from(["received", "alert_raised"]), algorithm=st.sampled_from(["sha256", "sm3"]))
def test_an_entry_made_ahead_has_the_bytes_and_hash_of_one_made_whole(
        system, kind, record, case, ref, version, business_time, routed_to, correlation_id, action, algorithm) -> None:
    """What a file's helper makes ahead and the writer finishes is byte for byte the entry the writer would make."""
    at = "2026-12-01T09:30:00.123+08:00"
    detail = received_detail(ref=ref, version=version, receipt="Rabc", payload_hash="sha256:00",
                             business_time=business_time, mapping="m@1", routed_to=routed_to,
                             correlation_id=correlation_id)
    whole, ahead = ChainWriter(41, "ab" * 32, algorithm), ChainWriter(41, "ab" * 32, algorithm)
    made = made_fields(system=system, kind=kind, record=record, case=case, detail=detail)
    assert made is not None
    for _ in range(2):  # and the chain goes on the same from either
        seq, _, _, digest, body = whole.append(at, action, system=system, kind=kind, record=record, case=case,
                                               detail=detail)
        assert ahead.append_made(made_head(at, action), made) == (seq, digest, body)
        assert body == canonical(make_body(seq, at, action, system=system, kind=kind, record=record, case=case,
                                           detail=detail))
    assert (whole.seq, whole.head) == (ahead.seq, ahead.head)


def test_fields_orjson_refuses_are_left_for_the_writer_to_make_whole() -> None:
    assert made_fields(system="s", kind="k", record="r", case=None, detail={"version": 2**70}) is None
    assert made_fields(system="s", kind="k", record="\ud800", case=None, detail={}) is None


async def test_prepared_records_store_the_entries_the_writer_would_have_made(tmp_path, monkeypatch) -> None:
    """Items from the Preparer (entries made ahead) and the same items made whole chain the same bytes."""
    from gateway.demo.generate import generate_items, write_xml_file
    from gateway.demo.scenario import MAPPINGS_DIR
    from gateway.formats import read_items
    from gateway.mapping import load_mapping
    from gateway.pipeline.prepare import Preparer
    from gateway.pipeline.router import Router, Rule
    from gateway.records import RawRecord
    from gateway.store import AcceptItem, operations

    mapping = load_mapping(MAPPINGS_DIR / "provincial_approvedatainfo.in.yaml")
    router = Router([Rule(name="both", to=("hall", "dept"), sources=frozenset({"county"}))])
    path = tmp_path / "county.xml"
    write_xml_file(path, generate_items(6, seed=3))
    raws = [RawRecord("county", i.payload, i.ref, i.raw)
            for i in read_items(path, {"format": "xml", "record": "APPROVEDATAINFO"})]
    for n, raw_record in enumerate(raws):
        raw_record.correlation_id = "c" * 32 if n % 2 else "d" * 32
    accepted, quarantined = Preparer(router, {"county": mapping}).prepare("county", raws)
    assert len(accepted) == 6 and not quarantined
    ahead = [AcceptItem(*a) for a in accepted]
    assert all(it.audit_made is not None for it in ahead)
    whole = [AcceptItem(*a) for a in accepted]
    for it in whole:
        it.audit_made = None
    monkeypatch.setattr(operations, "now_iso", lambda: "2026-12-01T09:30:00.000+08:00")
    bodies = []
    for n, items in enumerate((ahead, whole)):
        store = SqliteStore(tmp_path / f"s{n}.db")
        await store.open()
        try:
            outcomes = await store.commit_ingest(items, [])
            assert [o.status for o in outcomes] == ["accepted"] * 6
            rows = await store.audit_entries(after_seq=0, limit=100)
            bodies.append([(r.seq, r.hash, as_bytes(r.body)) for r in rows])
            assert (await verify_store(store)).ok
        finally:
            await store.close()
    assert bodies[0] == bodies[1]
    assert len(bodies[0]) == 6
    first = json.loads(bodies[0][0][2])
    assert first["action"] == "received" and first["detail"]["routed_to"] == ["hall", "dept"]
    assert first["detail"]["correlation_id"] == "d" * 32
