"""Deliveries claimed at birth: the ingest commit claims them, the worker gets them in memory, rendered.

Durability and per-case order must be exactly what the store's own claim gives: a delivery
claimed at birth is stored in flight with a lease in the record's transaction, a case with
another open delivery waits, and whatever was only in memory comes back after a restart.
"""

from __future__ import annotations

import asyncio
import json
import time

from e2e_site import Site, wait_until
from store_support import backend_of, raw
from test_store import item

from gateway.app import Gateway
from gateway.demo.counterparts import HallPlatform
from gateway.demo.generate import generate_items, write_xml_file
from gateway.demo.scenario import MAPPINGS_DIR
from gateway.formats import read_items
from gateway.mapping import load_mapping
from gateway.pipeline.prepare import Preparer
from gateway.pipeline.router import Router, Rule
from gateway.records import RawRecord
from gateway.store import Settlement


def _states(store) -> dict[str, tuple[str, float | None]]:  # noqa: ANN001
    return {key: (state, lease) for key, state, lease in
            raw(store).execute("SELECT idem_key, state, lease_until FROM outbox ORDER BY id")}


async def test_a_new_delivery_is_claimed_at_birth_when_its_case_has_nothing_open(store):
    lease = time.time() + 60
    a = item("A")
    a.rendered = {"hall": {"caseNo": "A"}}
    out = await store.commit_ingest([a, item("B")], [], claims={"hall": lease})
    assert [o.status for o in out] == ["accepted", "accepted"]
    first, second = out[0].deliveries[0], out[1].deliveries[0]
    assert (first.destination, first.record_key, first.case_no, first.attempts) == ("hall", "A", "A", 0)
    assert first.rendered == {"caseNo": "A"} and second.rendered is None  # B renders at delivery
    assert json.loads(first.body)["data"]["case_no"] == "A"
    states = _states(store)
    assert states["A-1-hall"] == ("inflight", lease) and states["B-1-hall"][0] == "inflight"
    # in flight in the store: the store's own claim does not hand them out a second time
    assert await store.claim("hall", 10, 30, time.time()) == []
    await store.settle([Settlement(first.delivery_id, "delivered", "hall", first.idempotency_key, "case", "A", "A", 1)])
    assert _states(store)["A-1-hall"][0] == "delivered"


async def test_a_case_with_an_open_delivery_waits_in_the_store(store):
    await store.commit_ingest([item("P", 1)], [])  # pending, from before
    dead = await store.commit_ingest([item("D", 1)], [])
    claimed = await store.claim("hall", 10, 30, time.time())
    d = next(c for c in claimed if c.record_key == "D")
    await store.settle([Settlement(d.delivery_id, "dead", "hall", d.idempotency_key, "case", "D", "D", 1,
                                   error="refused")])
    assert dead
    out = await store.commit_ingest(
        [item("P", 2), item("D", 2), item("N", 1), item("N2", 1, case="N"), item("X", 1, dests=("other",))], [],
        claims={"hall": time.time() + 60})
    by_key = {o.record_key: o for o in out}
    assert by_key["P"].deliveries == ()  # version 1 is still pending
    assert by_key["D"].deliveries == ()  # version 1 is a dead letter: the case is held
    assert len(by_key["N"].deliveries) == 1  # nothing open for case N
    assert by_key["N2"].deliveries == ()  # … but N2 comes after N in the same case and batch
    assert by_key["X"].deliveries == ()  # "other" takes no deliveries at birth
    states = _states(store)
    assert states["N-1-hall"][0] == "inflight"
    assert [states[k][0] for k in ("P-2-hall", "D-2-hall", "N2-1-hall", "X-1-other")] == ["pending"] * 4


async def test_duplicates_and_late_versions_claim_nothing(store):
    await store.commit_ingest([item("A", 3)], [])
    out = await store.commit_ingest([item("A", 3), item("A", 2)], [], claims={"hall": time.time() + 60})
    assert [(o.status, o.deliveries) for o in out] == [("duplicate", ()), ("superseded", ())]


async def test_deliveries_held_in_memory_by_a_gateway_that_died_are_delivered_after_a_restart(store):
    lease = 600 if backend_of(store) == "sqlite" else 0.05
    out = await store.commit_ingest([item("A"), item("B")], [], claims={"hall": time.time() + lease})
    assert all(o.deliveries for o in out)
    if backend_of(store) == "sqlite":
        # the process that held them is gone; the only delivering process returns every lease it finds at start-up
        assert await store.release_leases() == 2
        claimed = await store.claim("hall", 10, 30, time.time())
    else:
        # other processes may be sending theirs: only leases that ran out come back, at start-up or at a claim
        await asyncio.sleep(0.1)
        claimed = await store.claim("hall", 10, 30, time.time())
    assert sorted(c.record_key for c in claimed) == ["A", "B"]


def test_a_body_rendered_at_ingest_is_the_one_rendered_from_the_stored_record():
    mapping = load_mapping(MAPPINGS_DIR / "provincial_approvedatainfo.in.yaml")
    hall = load_mapping(MAPPINGS_DIR / "hall_platform.out.yaml")
    router = Router([Rule(name="r", to=("hall",), sources=frozenset({"county"}))])
    preparer = Preparer(router, {"county": mapping}, renderers={"hall": hall})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "county.xml"
        write_xml_file(path, generate_items(60, seed=5))
        raws = [RawRecord("county", i.payload, i.ref, i.raw)
                for i in read_items(path, {"format": "xml", "record": "APPROVEDATAINFO"})]
    accepted, quarantined = preparer.prepare("county", raws)
    assert len(accepted) >= 50 and not quarantined
    kinds = set()
    for t in accepted:
        body, rendered = t[8], t[15]
        kinds.add(t[1])
        assert rendered == {"hall": hall.render(json.loads(body))}
    assert "case" in kinds


async def test_a_running_gateway_hands_new_deliveries_to_its_worker_and_keeps_case_order(tmp_path):
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url)
        gw = Gateway(site.config())
        await gw.start()
        try:
            site.drop_cases(200, per_file=100)
            await wait_until(lambda: hall.unique == 200, what="200 records at the hall")
            # The first file's commit found the worker empty and handed all 100 over; the second file's may have
            # found it still busy (its queue holds 64 here), and then its deliveries went through the store.
            assert gw.handoff is not None and gw.handoff.handed >= 100
            # one case twice in one file: version 1 is claimed at birth, version 2 waits in the store
            path = tmp_path / "drop" / "county" / "twice.xml.part"
            write_xml_file(path, generate_items(1, seed=9, start=5000))
            text = path.read_text(encoding="utf-8")
            start, end = text.index("<APPROVEDATAINFO>"), text.rindex("</APPROVEDATAINFO>") + 18
            record = text[start:end]
            second = record.replace("<VERSION>1</VERSION>", "<VERSION>2</VERSION>")
            assert second != record
            path.write_text(text[:end] + "\n" + second + text[end:], encoding="utf-8")
            path.rename(path.with_suffix(""))
            await wait_until(lambda: hall.unique == 202, what="both versions at the hall")
        finally:
            await gw.stop()
    bodies = [b for b in hall.records.values() if b["caseNo"] == "3706000000005000"]
    assert [b["version"] for b in bodies] == [1, 2]
    assert hall.repeats == 0
    assert site.scalar("SELECT count(*) FROM outbox WHERE state != 'delivered'") == 0
