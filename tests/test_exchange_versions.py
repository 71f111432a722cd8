"""Versions and conflicts, explicit: a higher version supersedes, an older one arriving late is kept but never
delivered, and the same key and version with a different payload is a conflict — quarantined with its own
rule and alerted, never silently counted a duplicate. The policy is configurable per kind."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from e2e_site import wait_until
from exchange_support import audit_actions, case, push, rows, settle, site_fixture, write_site  # noqa: F401

from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.counterparts import HallPlatform


async def test_same_key_and_version_with_a_different_payload_is_quarantined_and_alerted(site: Gateway):
    first = await push(site, "hall_platform", case("SB-V1"))
    assert [o.status for o in first] == ["accepted"]
    changed = {**case("SB-V1"), "applicantName": "烟台海岳食品有限公司"}
    out = await push(site, "hall_platform", changed)
    assert [o.status for o in out] == ["quarantined"]
    assert out[0].errors[0]["rule"] == "version_conflict"
    assert "different payload" in out[0].errors[0]["message"]
    store = site.store
    assert store is not None
    entry = (await store.quarantine_entries(ids=[out[0].quarantine_id]))[0]
    assert entry["state"] == "open" and entry["kind"] == "case"
    assert entry["payload"]["applicantName"] == "烟台海岳食品有限公司"  # the second payload is kept to look at
    assert rows(site, "SELECT value FROM meta WHERE key = 'count.duplicates'") == []  # not counted a duplicate
    await settle(site)
    alerts = await store.list_records(kind="supervision_alert")
    assert [a["record"]["data"]["alert_type"] for a in alerts] == ["version_conflict"]
    alert = alerts[0]["record"]["data"]
    assert alert["case_no"] == "SB-V1" and f"隔离编号 {entry['id']}" in alert["description"]
    # routed like any alert: to the [supervision] destinations
    assert rows(site, "SELECT destination FROM outbox WHERE record_id = ?", alerts[0]["id"]) == [("hall_platform",)]
    # the same conflicting item sent again is the same entry, counted, and no second alert
    again = await push(site, "hall_platform", changed)
    assert again[0].quarantine_id == entry["id"]
    await settle(site)
    assert len(await store.list_records(kind="supervision_alert")) == 1


async def test_the_same_record_reformatted_is_a_duplicate_not_a_conflict(site: Gateway):
    item = case("SB-V2")
    await push(site, "hall_platform", item)
    reordered = dict(reversed(list(item.items())))  # other bytes (key order), the same record
    out = await push(site, "hall_platform", reordered)
    assert [o.status for o in out] == ["duplicate"]
    assert [e["detail"]["ref"] for e in audit_actions(site, "duplicate")] == ["test hall_platform item 0"]


async def test_a_reprocessed_conflict_stays_open_with_its_rule(site: Gateway):
    from gateway.pipeline.reprocess import reprocess

    await push(site, "hall_platform", case("SB-V3"))
    out = await push(site, "hall_platform", {**case("SB-V3"), "remark": "改过"})
    assert site.store is not None and site.ingestor is not None
    report = await reprocess(site.store, site.ingestor, ids=[out[0].quarantine_id], actor="test")
    assert [r["outcome"] for r in report.results] == ["still_bad"]
    assert [e["rule"] for e in report.results[0]["errors"]] == ["version_conflict"]
    assert (await site.store.quarantine_entries(ids=[out[0].quarantine_id]))[0]["state"] == "open"


@pytest.fixture
async def keep_first_site(tmp_path: Path) -> AsyncIterator[Gateway]:
    extra = """
[exchange.versions.case]
on_conflict = "keep_first"

[exchange.versions.acceptance]
on_older = "quarantine"
"""
    gw = Gateway(load_config(write_site(tmp_path, extra)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


async def test_the_policy_is_configurable_per_kind(keep_first_site: Gateway):
    gw = keep_first_site
    await push(gw, "hall_platform", case("SB-V4"))
    out = await push(gw, "hall_platform", {**case("SB-V4"), "applicantName": "别的名字有限公司"})
    assert [o.status for o in out] == ["duplicate"]  # kept first, but not silently:
    entries = audit_actions(gw, "version_conflict")
    assert [(e["record"], e["detail"]["policy"]) for e in entries] == [("SB-V4", "keep_first")]
    assert entries[0]["detail"]["stored_payload_hash"] != entries[0]["detail"]["payload_hash"]
    # an older acceptance arriving late is quarantined for this kind, kept (stale) for the others
    accept = {"dataType": "ACCEPT", "caseNo": "SB-V4", "deptName": "审批局", "status": "ACCEPTED",
              "acceptTime": "2026-09-29 10:00:00"}
    await push(gw, "hall_platform", {**accept, "version": 2})
    late = await push(gw, "hall_platform", {**accept, "version": 1})
    assert [(o.status, o.errors[0]["rule"]) for o in late] == [("quarantined", "version_older")]
    await push(gw, "hall_platform", case("SB-V4", version=3))
    older_case = await push(gw, "hall_platform", case("SB-V4", version=2))
    assert [o.status for o in older_case] == ["superseded"]


# --------------------------------------------------------------------------- end to end, through the API


HALL_CONFIG = """
[gateway]
name = "versions-e2e"
store = "sqlite:///gateway.db"
adapters = ["push", "rest"]

[api]
port = 0

[delivery]
poll_interval = "0.05s"
backoff_initial = "0.05s"
backoff_max = "0.5s"

[supervision]
enabled = false
destinations = ["hall"]

[exchange]
tick_interval = "0.2s"

[sources.ministry]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ anonymous = true }}

[sinks.hall]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"

[[routes]]
name = "all-to-the-hall"
sources = ["ministry"]
to = ["hall"]
"""


async def test_reordered_and_repeated_pushes_deliver_each_version_once_and_in_order(tmp_path: Path):
    """Per case: a version is delivered at most once, never an older one after a newer; a conflict is held back."""
    async with HallPlatform() as hall:
        write_site(tmp_path)
        (tmp_path / "gateway.toml").write_text(HALL_CONFIG.format(url=hall.records_url), encoding="utf-8")
        gw = Gateway(load_config(tmp_path / "gateway.toml"))
        await gw.start()
        try:
            assert gw.api is not None
            url = f"{gw.api.url}/api/v1/inbound/ministry"
            rng = random.Random(9)
            sends: list[dict] = []
            for n in range(12):
                case_no = f"SB-R{n:03d}"
                versions = [case(case_no, version=v) for v in (1, 2, 3)]
                sends += versions + [rng.choice(versions)]  # a repeat of one of them
            rng.shuffle(sends)
            conflict = {**case("SB-R000", version=2), "applicantName": "同版本不同内容有限公司"}
            async with aiohttp.ClientSession() as http:
                for i in range(0, len(sends), 5):
                    async with http.post(url, json=sends[i:i + 5]) as r:
                        assert r.status in (200, 202), await r.text()
                async with http.post(url, json=[conflict]) as r:
                    assert r.status == 400
                    answer = await r.json()
            assert answer["items"][0]["status"] == "quarantined"
            assert answer["items"][0]["errors"][0]["rule"] == "version_conflict"
            pending = "SELECT count(*) FROM outbox WHERE state IN ('pending', 'inflight')"
            await wait_until(lambda: rows(gw, pending)[0][0] == 0 and hall.unique > 0, what="deliveries settled")
            assert gw.exchange is not None
            await gw.exchange.drain()
            await wait_until(lambda: rows(gw, pending)[0][0] == 0, what="the alert delivered")
        finally:
            await gw.stop()
    assert hall.repeats == 0  # nothing was delivered twice
    delivered: dict[str, list[int]] = {}
    alerts = []
    for body in hall.records.values():
        if body["dataType"] == "CASE":
            delivered.setdefault(body["caseNo"], []).append(int(body["version"]))
        elif body["dataType"] == "ALERT":
            alerts.append(body)
    for case_no, versions in delivered.items():
        assert versions == sorted(set(versions)), f"{case_no} got {versions}"
        assert versions[-1] == 3, f"{case_no} never got its newest version: {versions}"
    assert len(delivered) == 12
    assert [a["alertType"] for a in alerts] == ["version_conflict"]
    assert alerts[0]["caseNo"] == "SB-R000"
    stale = rows(gw, "SELECT count(*) FROM records WHERE status = 'stale'")[0][0]
    assert stale == sum(3 - len(v) for v in delivered.values())  # every older version that came late is kept
