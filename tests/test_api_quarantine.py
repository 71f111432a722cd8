"""The quarantine workbench over HTTP: one entry (masked by role), reprocess and discard for engineers and operators."""

from __future__ import annotations

import json

import aiohttp
from test_api_support import PUSH_AUTH, case_item, gw_fixture, http_fixture  # noqa: F401

from gateway.app import Gateway

BAD_ID = "110105194912310021"  # wrong check character


async def _quarantined(http: aiohttp.ClientSession, gw: Gateway, case_no: str) -> int:
    async with http.post(gw.api.url + "/api/v1/inbound/hall_platform/case",
                         json=[case_item(case_no, id_no=BAD_ID)], headers=PUSH_AUTH) as r:
        body = await r.json()
    return body["items"][0]["quarantine_ids"][0]


def _as(role: str | None, user: str = "wang.wu") -> dict[str, str]:
    return {"X-Gateway-User": user, **({"X-Gateway-Role": role} if role else {})}


async def _post(http: aiohttp.ClientSession, gw: Gateway, path: str, body: object,
                role: str | None) -> tuple[int, dict]:
    async with http.post(gw.api.url + path, data=json.dumps(body), headers={**_as(role),
                                                                             "Content-Type": "application/json"}) as r:
        return r.status, await r.json()


async def test_an_entry_is_shown_masked_to_an_operator_and_whole_to_a_supervisor_whose_read_is_audited(
        gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0001")
    async with http.get(f"{gw.api.url}/api/v1/quarantine/{entry_id}", headers=_as("operator")) as r:
        assert r.status == 200
        masked = await r.json()
    assert masked["masked"] is True and "raw" not in masked and masked["raw_bytes"] > 0  # the item's own bytes
    assert masked["payload"]["applicantIdNo"] == "110105********0021" and BAD_ID not in json.dumps(masked)
    assert masked["state"] == "open" and masked["seen_count"] == 1
    async with http.get(f"{gw.api.url}/api/v1/quarantine/{entry_id}", headers=_as("supervisor", "li.si")) as r:
        whole = await r.json()
    assert whole["masked"] is False and whole["payload"]["applicantIdNo"] == BAD_ID
    reads = [e.decoded() for e in await gw.store.audit_entries(limit=1000) if e.decoded()["action"] == "user_action"]
    assert reads[-1]["detail"]["user"] == "li.si" and reads[-1]["detail"]["what"] == "quarantine entry"
    async with http.get(f"{gw.api.url}/api/v1/quarantine/99999") as r:
        assert r.status == 404


async def test_only_engineers_and_operators_may_reprocess_or_discard(gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0002")
    for role in (None, "supervisor", "auditor"):
        status, body = await _post(http, gw, "/api/v1/quarantine/reprocess", {"ids": [entry_id]}, role)
        assert status == 403 and body["error"]["allowed_roles"] == ["engineer", "operator"]
        status, _ = await _post(http, gw, "/api/v1/quarantine/discard", {"ids": [entry_id], "reason": "x"}, role)
        assert status == 403
    assert (await gw.store.quarantine_entry(entry_id))["state"] == "open"


async def test_an_engineer_reprocesses_with_the_running_mapping_and_a_still_bad_entry_stays_open(gw, http) -> None:
    entry_id = await _quarantined(http, gw, "QA-0003")
    status, dry = await _post(http, gw, "/api/v1/quarantine/reprocess", {"ids": [entry_id], "dry_run": True},
                              "engineer")
    assert status == 200 and dry["dry_run"] is True and dry["counts"] == {"still_bad": 1}
    status, done = await _post(http, gw, "/api/v1/quarantine/reprocess", {"system": "hall_platform"}, "engineer")
    assert status == 200 and done["results"][0]["outcome"] == "still_bad"
    assert done["results"][0]["errors"][0]["value"] == "110105********0021"
    [audit] = [e.decoded() for e in await gw.store.audit_entries(limit=1000) if e.decoded()["action"] == "reprocessed"]
    assert audit["detail"]["actor"] == "api:wang.wu (engineer, via loopback)"
    assert audit["detail"]["rules"] == ["id_number_check"]


async def test_an_operator_discards_with_a_reason_and_the_list_shows_each_state(gw, http) -> None:
    first = await _quarantined(http, gw, "QA-0004")
    second = await _quarantined(http, gw, "QA-0005")
    status, body = await _post(http, gw, "/api/v1/quarantine/discard",
                               {"ids": [first, 4242], "reason": "test record the counterpart withdrew"}, "operator")
    assert status == 200 and body["discarded"] == 1
    assert [r["outcome"] for r in body["results"]] == ["discarded", "unknown"]
    async with http.get(gw.api.url + "/api/v1/quarantine?state=open") as r:
        assert [e["id"] for e in (await r.json())["items"]] == [second]
    async with http.get(gw.api.url + "/api/v1/quarantine?state=discarded") as r:
        (entry,) = (await r.json())["items"]
    assert entry["resolution"]["reason"] == "test record the counterpart withdrew"
    assert entry["resolution"]["by"] == "api:wang.wu (operator, via loopback)"
    async with http.get(gw.api.url + "/api/v1/quarantine") as r:  # no state: every entry, as before
        assert len((await r.json())["items"]) == 2


async def test_requests_that_do_not_say_what_to_do_are_400(gw, http) -> None:
    for path, body in (("/api/v1/quarantine/reprocess", {}), ("/api/v1/quarantine/reprocess", {"ids": "1"}),
                       ("/api/v1/quarantine/discard", {"ids": [1]}),
                       ("/api/v1/quarantine/discard", {"ids": [1], "reason": "  "}),
                       ("/api/v1/quarantine/discard", [1, 2])):
        status, answer = await _post(http, gw, path, body, "operator")
        assert status == 400, (path, body, answer)
