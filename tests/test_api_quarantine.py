"""The quarantine workbench over HTTP: one entry (masked; whole only for an auditor with a reason), reprocess and
discard for engineers and for operators of the entry's system."""

from __future__ import annotations

import json

import aiohttp
from test_api_support import PUSH_AUTH, case_item, gw_fixture, http_fixture, token_for  # noqa: F401

from gateway.app import Gateway

BAD_ID = "110105194912310021"  # wrong check character


async def _quarantined(http: aiohttp.ClientSession, gw: Gateway, case_no: str) -> int:
    async with http.post(gw.api.url + "/api/v1/inbound/hall_platform/case",
                         json=[case_item(case_no, id_no=BAD_ID)], headers=PUSH_AUTH) as r:
        body = await r.json()
    return body["items"][0]["quarantine_ids"][0]


async def _as(gw: Gateway, role: str, user: str | None = None, systems: list[str] | None = None) -> dict[str, str]:
    return await token_for(gw, user or f"wang.{role}", role, systems)


async def _post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: object,
                headers: dict[str, str]) -> tuple[int, dict]:
    async with http.post(gw.api.url + path, data=json.dumps(body),
                         headers={**headers, "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def test_an_entry_is_shown_masked_and_whole_only_to_an_auditor_who_says_why(gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0001")
    url = f"{gw.api.url}/api/v1/quarantine/{entry_id}"
    async with http.get(url, headers=await _as(gw, "operator", systems=["hall_platform"])) as r:
        assert r.status == 200
        masked = await r.json()
    assert masked["masked"] is True and "raw" not in masked and masked["raw_bytes"] > 0  # the item's own bytes
    assert masked["payload"]["applicantIdNo"] != BAD_ID and BAD_ID not in json.dumps(masked)
    assert masked["state"] == "open" and masked["seen_count"] == 1
    auditor = await _as(gw, "auditor", "li.si")
    async with http.get(url + "?unmask=true", headers=auditor) as r:
        assert r.status == 400  # no reason, no unmasking
    async with http.get(url + "?unmask=true&reason=checking+the+counterpart's+complaint", headers=auditor) as r:
        whole = await r.json()
    assert whole["masked"] is False and whole["payload"]["applicantIdNo"] == BAD_ID and BAD_ID in whole["raw"]
    reads = [e.decoded() for e in await gw.store.audit_entries(limit=1000) if e.decoded()["action"] == "unmasked"]
    assert reads[-1]["detail"]["user"] == "li.si" and reads[-1]["detail"]["what"] == "quarantine entry"
    async with http.get(f"{gw.api.url}/api/v1/quarantine/99999", headers=auditor) as r:
        assert r.status == 404
    # an operator of another system does not see that the entry exists
    async with http.get(url, headers=await _as(gw, "operator", "zhao.other", ["hall_json_only"])) as r:
        assert r.status == 404


async def test_only_engineers_and_operators_of_the_system_may_reprocess_or_discard(gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0002")
    async with http.post(gw.api.url + "/api/v1/quarantine/reprocess", json={"ids": [entry_id]}) as r:
        assert r.status == 401  # nobody authenticated: no role at all
    refused = [await _as(gw, "supervisor"), await _as(gw, "auditor"),
               await _as(gw, "operator", "zhao.other", ["hall_json_only"])]
    for headers in refused:
        status, body = await _post(http, gw, "/api/v1/quarantine/reprocess", {"ids": [entry_id]}, headers)
        assert status == 403, body
        status, _ = await _post(http, gw, "/api/v1/quarantine/discard", {"ids": [entry_id], "reason": "x"}, headers)
        assert status == 403
    assert (await gw.store.quarantine_entry(entry_id))["state"] == "open"


async def test_an_engineer_reprocesses_with_the_running_mapping_and_a_still_bad_entry_stays_open(gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0003")
    engineer = await _as(gw, "engineer", "wang.wu")
    status, dry = await _post(http, gw, "/api/v1/quarantine/reprocess", {"ids": [entry_id], "dry_run": True},
                              engineer)
    assert status == 200 and dry["dry_run"] is True and dry["counts"] == {"still_bad": 1}
    status, done = await _post(http, gw, "/api/v1/quarantine/reprocess", {"system": "hall_platform"}, engineer)
    assert status == 200 and done["results"][0]["outcome"] == "still_bad"
    assert BAD_ID not in json.dumps(done)
    [audit] = [e.decoded() for e in await gw.store.audit_entries(limit=1000) if e.decoded()["action"] == "reprocessed"]
    assert audit["detail"]["actor"] == "user:wang.wu (engineer, token)"
    assert audit["detail"]["rules"] == ["id_number_check"]


async def test_an_operator_discards_with_a_reason_and_the_list_shows_each_state(gw, http) -> None:
    first = await _quarantined(http, gw, "QA-0004")
    second = await _quarantined(http, gw, "QA-0005")
    operator = await _as(gw, "operator", "wang.wu", ["hall_platform"])
    status, body = await _post(http, gw, "/api/v1/quarantine/discard",
                               {"ids": [first, 4242], "reason": "test record the counterpart withdrew"}, operator)
    assert status == 200 and body["discarded"] == 1
    assert [r["outcome"] for r in body["results"]] == ["discarded", "unknown"]
    async with http.get(gw.api.url + "/api/v1/quarantine?state=open", headers=operator) as r:
        assert [e["id"] for e in (await r.json())["items"]] == [second]
    async with http.get(gw.api.url + "/api/v1/quarantine?state=discarded", headers=operator) as r:
        (entry,) = (await r.json())["items"]
    assert entry["resolution"]["reason"] == "test record the counterpart withdrew"
    assert entry["resolution"]["by"] == "user:wang.wu (operator, token)"
    async with http.get(gw.api.url + "/api/v1/quarantine", headers=operator) as r:  # no state: every entry
        assert len((await r.json())["items"]) == 2
    other = await _as(gw, "operator", "zhao.other", ["hall_json_only"])
    async with http.get(gw.api.url + "/api/v1/quarantine", headers=other) as r:  # another system's operator
        assert (await r.json())["items"] == []


async def test_requests_that_do_not_say_what_to_do_are_400(gw, http) -> None:
    engineer = await _as(gw, "engineer")
    for path, body in (("/api/v1/quarantine/reprocess", {}), ("/api/v1/quarantine/reprocess", {"ids": "1"}),
                       ("/api/v1/quarantine/discard", {"ids": [1]}),
                       ("/api/v1/quarantine/discard", {"ids": [1], "reason": "  "}),
                       ("/api/v1/quarantine/discard", [1, 2])):
        status, answer = await _post(http, gw, path, body, engineer)
        assert status == 400, (path, body, answer)
