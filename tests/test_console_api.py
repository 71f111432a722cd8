"""The console's query API against a real gateway: case search, timeline, alerts and acknowledgement,
statistics and CSV, counterpart health, delivery preview — each behind the identity contract, masked."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from gateway.api import build_app
from gateway.app import Gateway
from tests.console_support import CREDIT_CODE, ID_NO, console_gateway, load_scenario, this_month
from tests.test_api_support import http_fixture as http_fixture  # noqa: F401  (the ``http`` fixture)
from tests.test_api_support import login, token_for


@pytest.fixture(name="gw")
async def gw_fixture(tmp_path) -> AsyncIterator[Gateway]:
    async for gw in console_gateway(tmp_path):
        yield gw


@pytest.fixture(name="loaded")
async def loaded_fixture(gw, http) -> Gateway:
    await load_scenario(http, gw)
    return gw


async def get(http: aiohttp.ClientSession, gw: Gateway, path: str, headers: dict[str, str],
              **params: Any) -> tuple[int, Any]:
    assert gw.api is not None
    async with http.get(gw.api.url + path, headers=headers, params=params) as r:
        if r.content_type == "application/json":
            return r.status, await r.json()
        return r.status, await r.read()


# --------------------------------------------------------------------------- cases


async def test_case_search_finds_cases_by_each_filter_newest_first(loaded, http) -> None:
    auth = await token_for(loaded, "zhang.gong", "engineer")

    async def found(**params: Any) -> list[str]:
        status, body = await get(http, loaded, "/api/v1/cases", auth, **params)
        assert status == 200, body
        return [c["case_no"] for c in body["items"]]

    # One push, one receipt time: newest activity first, then by case number, descending.
    assert await found() == ["SL-RED-0001", "SL-OUT-0002", "SL-OK-0003"]
    assert await found(case_no="SL-RED") == ["SL-RED-0001"]
    assert await found(applicant="烟台海鲜") == ["SL-OUT-0002"]
    assert await found(applicant=CREDIT_CODE) == ["SL-OUT-0002"]
    assert await found(item_code="3706000002") == ["SL-OUT-0002"]
    assert sorted(await found(region="370602")) == ["SL-OK-0003", "SL-RED-0001"]
    assert await found(status="completed", region="370602") == ["SL-OK-0003"]
    assert await found(status="accepted") == ["SL-RED-0001"]
    assert sorted(await found(warning="red")) == ["SL-OUT-0002", "SL-RED-0001"]
    assert await found(warning="none") == ["SL-OK-0003"]


async def test_case_search_pages_with_before_until_the_last_page(loaded, http) -> None:
    auth = await token_for(loaded, "zhang.gong", "engineer")
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    while True:
        status, body = await get(http, loaded, "/api/v1/cases", auth, **params)
        assert status == 200 and body["total"] == 3
        seen += [c["case_no"] for c in body["items"]]
        if body["next"] is None:
            break
        params["before"] = body["next"]["before"]
    assert sorted(seen) == ["SL-OK-0003", "SL-OUT-0002", "SL-RED-0001"] and len(seen) == 3


async def test_case_search_masks_a_persons_name_but_not_a_companys(loaded, http) -> None:
    auth = await token_for(loaded, "jian.cha", "supervisor")
    status, body = await get(http, loaded, "/api/v1/cases", auth)
    assert status == 200 and body["masked"] is True
    names = {c["case_no"]: c["applicant_name"] for c in body["items"]}
    assert names["SL-RED-0001"] == "张*" and names["SL-OK-0003"] == "赵*"
    assert names["SL-OUT-0002"] == "烟台海鲜贸易有限公司"
    outside = next(c for c in body["items"] if c["case_no"] == "SL-OUT-0002")
    assert outside["applicant_credit_code"] == CREDIT_CODE and outside["outside_system"] is True


async def test_case_search_refuses_anonymous_callers_and_bad_parameters(loaded, http) -> None:
    status, body = await get(http, loaded, "/api/v1/cases", {})
    assert status == 401 and body["error"]["permission"] == "records:read"
    auth = await token_for(loaded, "zhang.gong", "engineer")
    status, body = await get(http, loaded, "/api/v1/cases", auth, warning="purple")
    assert status == 400 and body["error"]["parameter"] == "warning"
    status, body = await get(http, loaded, "/api/v1/cases", auth, before="no-separator")
    assert status == 400 and body["error"]["parameter"] == "before"


async def test_an_operator_finds_only_cases_with_records_from_its_systems(loaded, http) -> None:
    own = await token_for(loaded, "wang.hall", "operator", systems=["hall_platform"])
    other = await token_for(loaded, "li.city", "operator", systems=["city_platform"])
    status, body = await get(http, loaded, "/api/v1/cases", own)
    assert status == 200 and body["total"] == 3
    status, body = await get(http, loaded, "/api/v1/cases", other)
    assert status == 200 and body["items"] == [] and body["total"] == 0
    status, body = await get(http, loaded, "/api/v1/cases/SL-RED-0001", other)
    assert status == 404


# --------------------------------------------------------------------------- timeline


async def test_a_case_timeline_holds_records_deliveries_and_verified_audit_entries_in_order(loaded, http) -> None:
    await loaded.sealer.seal_now()
    auth = await token_for(loaded, "zhang.gong", "engineer")
    status, body = await get(http, loaded, "/api/v1/cases/SL-RED-0001", auth)
    assert status == 200, body
    kinds = [r["kind"] for r in body["records"]]
    assert kinds[:2] == ["case", "acceptance"] and "supervision_alert" in kinds
    assert [d["state"] for d in body["deliveries"]] == ["dead"]
    actions = [a["action"] for a in body["audit"]]
    assert actions[0] == "received" and "dead_lettered" in actions and "alert_raised" in actions
    assert body["verification"]["verdict"] == "proven", body["verification"]
    assert all(a["verification"]["state"] == "proven" for a in body["audit"])
    times = [e["at"] for e in body["timeline"] if e["type"] == "record"]
    assert len(body["timeline"]) == len(body["records"]) + len(body["deliveries"]) + len(body["audit"])
    assert times == sorted(times)
    # The person's ID number never leaves unmasked.
    assert ID_NO not in str(body) and "110105********002X" in str(body)
    assert body["case"]["warning"] == "red" and body["case"]["overdue"] is True


async def test_a_timeline_says_when_audit_entries_are_not_sealed_yet(loaded, http) -> None:
    auth = await token_for(loaded, "shen.ji", "auditor")
    status, body = await get(http, loaded, "/api/v1/cases/SL-OK-0003", auth)
    assert status == 200
    assert body["verification"]["verdict"] in ("not_yet_sealed", "proven", "partly_proven")
    assert body["links"]["licences"][0]["license_no"] == "JY0003"


async def test_a_changed_audit_entry_shows_as_broken_in_the_timeline(loaded, http) -> None:
    await loaded.sealer.seal_now()
    import sqlite3

    store: Any = loaded.store
    seqs = await store.audit_case_seqs("SL-OK-0003")
    conn = sqlite3.connect(store.path)
    body = conn.execute("SELECT body FROM audit WHERE seq = ?", (seqs[0],)).fetchone()[0]
    conn.execute("UPDATE audit SET body = ? WHERE seq = ?", (bytes(body).replace(b"received", b"receivex"), seqs[0]))
    conn.commit()
    conn.close()
    auth = await token_for(loaded, "jian.cha", "supervisor")
    status, answer = await get(http, loaded, "/api/v1/cases/SL-OK-0003", auth)
    assert status == 200
    assert answer["verification"]["verdict"] == "broken"
    first = answer["audit"][0]["verification"]
    assert first["state"] == "broken" and "hash" in first["problem"]


async def test_a_seal_whose_signature_was_changed_makes_its_entries_broken_in_the_timeline(loaded, http) -> None:
    await loaded.sealer.seal_now()
    import sqlite3

    store: Any = loaded.store
    seal = await store.seal_for_seq((await store.audit_case_seqs("SL-OK-0003"))[0])
    conn = sqlite3.connect(store.path)
    forged = bytes(seal.signature[:-1]) + bytes([seal.signature[-1] ^ 1])
    conn.execute("UPDATE audit_seals SET signature = ? WHERE seal = ?", (forged, seal.seal))
    conn.commit()
    conn.close()
    auth = await token_for(loaded, "jian.cha", "supervisor")
    status, answer = await get(http, loaded, "/api/v1/cases/SL-OK-0003", auth)
    assert status == 200 and answer["verification"]["verdict"] == "broken"
    problems = {a["verification"].get("problem") for a in answer["audit"] if a["verification"]["seal"] == seal.seal}
    assert problems == {f"seal {seal.seal}: the signature does not verify (statement or signature changed)"}


async def test_a_supervisor_sees_no_deliveries_in_the_timeline_and_an_auditor_may_unmask_with_a_reason(
        loaded, http) -> None:
    supervisor = await token_for(loaded, "jian.cha", "supervisor")
    status, body = await get(http, loaded, "/api/v1/cases/SL-RED-0001", supervisor)
    assert status == 200 and body["deliveries"] is None and body["audit"]
    status, body = await get(http, loaded, "/api/v1/cases/SL-RED-0001", supervisor, unmask="true", reason="投诉核查")
    assert status == 403
    auditor = await token_for(loaded, "shen.ji", "auditor")
    status, body = await get(http, loaded, "/api/v1/cases/SL-RED-0001", auditor, unmask="true",
                             reason="投诉核查 2026-17")
    assert status == 200 and body["masked"] is False and ID_NO in str(body["records"])
    entries = await loaded.store.audit_entries(case_no="SL-RED-0001", limit=1000)
    unmasked = [e.decoded() for e in entries if e.decoded()["action"] == "unmasked"]
    assert unmasked and unmasked[-1]["detail"]["user"] == "shen.ji"
    assert unmasked[-1]["detail"]["what"] == "case timeline"


# --------------------------------------------------------------------------- alerts


async def test_alerts_of_every_origin_are_filtered_by_colour_and_type(loaded, http) -> None:
    auth = await token_for(loaded, "jian.cha", "supervisor")
    status, body = await get(http, loaded, "/api/v1/supervision/alerts", auth, severity="red")
    assert status == 200
    types = {a["alert_type"] for a in body["items"]}
    assert {"overdue_red", "outside_system_no_acceptance"} <= types
    assert all(a["severity"] == "red" for a in body["items"])
    status, body = await get(http, loaded, "/api/v1/supervision/alerts", auth, type="outside_system_no_acceptance")
    assert [a["case_no"] for a in body["items"]] == ["SL-OUT-0002"]
    assert body["items"][0]["label"] == "体外循环：无受理即办结"
    status, types_body = await get(http, loaded, "/api/v1/supervision/alert-types", auth)
    by_code = {t["code"]: t for t in types_body["items"]}
    assert by_code["overdue_red"]["open"] >= 1 and by_code["audit_integrity"]["open"] == 0


async def test_acknowledging_an_alert_records_who_when_and_the_note_and_audits_it(loaded, http) -> None:
    supervisor = await token_for(loaded, "jian.cha", "supervisor")
    status, body = await get(http, loaded, "/api/v1/supervision/alerts", supervisor, type="overdue_red")
    alert_id = body["items"][0]["alert_id"]
    assert loaded.api is not None
    async with http.post(loaded.api.url + "/api/v1/supervision/alerts/acknowledge", headers=supervisor,
                         json={"alert_ids": [alert_id], "note": "已电话督办，申请人 13812345678 已知悉"}) as r:
        answer = await r.json()
        assert r.status == 200 and answer["acknowledged"] == 1
    status, body = await get(http, loaded, "/api/v1/supervision/alerts", supervisor, acked="true")
    acked = body["items"][0]
    assert acked["alert_id"] == alert_id and acked["acked_by"] == "jian.cha" and acked["acked_role"] == "supervisor"
    assert acked["ack_note"] == "已电话督办，申请人 138****5678 已知悉"  # stored masked: it is also in the audit trail
    status, body = await get(http, loaded, "/api/v1/supervision/alerts", supervisor, acked="false", type="overdue_red")
    assert body["items"] == []
    entries = [e.decoded() for e in await loaded.store.audit_entries(case_no="SL-RED-0001", limit=1000)]
    ack = [e for e in entries if e["action"] == "alert_acknowledged"]
    assert ack and ack[0]["detail"]["user"] == "jian.cha" and "13812345678" not in str(ack[0])
    async with http.post(loaded.api.url + "/api/v1/supervision/alerts/acknowledge", headers=supervisor,
                         json={"alert_ids": [alert_id], "note": "again"}) as r:
        assert (await r.json())["results"][0]["result"] == "already_acknowledged"


async def test_acknowledgement_needs_a_note_the_permission_and_the_csrf_token(loaded, http) -> None:
    operator = await token_for(loaded, "wang.hall", "operator", systems=["hall_platform"])
    supervisor = await token_for(loaded, "jian.cha", "supervisor")
    url = loaded.api.url + "/api/v1/supervision/alerts/acknowledge"
    async with http.post(url, headers=operator, json={"alert_ids": ["sa-x"], "note": "看过了"}) as r:
        assert r.status == 403
    async with http.post(url, headers=supervisor, json={"alert_ids": ["sa-x"], "note": "  "}) as r:
        assert r.status == 400 and (await r.json())["error"]["field"] == "note"
    async with http.post(url, headers=supervisor, json={"alert_ids": ["sa-unknown"], "note": "看过了"}) as r:
        assert r.status == 404
    # A console session without its CSRF token is refused before anything happens.
    from tests.test_api_support import add_user

    await add_user(loaded, "zhao.jian", "supervisor")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
        await login(browser, loaded.api.url, "zhao.jian")
        async with browser.post(url, json={"alert_ids": ["sa-x"], "note": "看过了"}) as r:
            assert r.status == 403 and "CSRF" in (await r.json())["error"]["message"]


# --------------------------------------------------------------------------- statistics


async def test_statistics_count_received_completed_on_time_overdue_by_month(loaded, http) -> None:
    auth = await token_for(loaded, "jian.cha", "supervisor")
    span = {"from": "2026-09", "to": this_month()}
    status, body = await get(http, loaded, "/api/v1/statistics", auth, **span)
    assert status == 200, body
    months = {m["key"]: m for m in body["months"]}
    assert months["2026-09"]["received"] == 1 and months["2026-09"]["overdue"] == 1
    assert months["2026-10"]["received"] == 1 and months["2026-10"]["completed"] == 1
    assert months[this_month()]["completed"] >= 1 and months[this_month()]["on_time"] == 1
    assert months[this_month()]["on_time_rate"] == 1.0
    status, body = await get(http, loaded, "/api/v1/statistics", auth, by="department", **span)
    departments = {g["key"]: g for g in body["groups"]}
    assert departments["芝罘区市场监管局"]["received"] == 2 and departments["莱山区行政审批服务局"]["received"] == 1


async def test_statistics_export_as_csv_with_chinese_headers_in_utf8_or_gb18030(loaded, http) -> None:
    auth = await token_for(loaded, "jian.cha", "supervisor")
    status, data = await get(http, loaded, "/api/v1/statistics.csv", auth, by="item",
                             **{"from": "2026-09", "to": this_month()})
    assert status == 200 and data.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))
    assert rows[0][:3] == ["分组代码", "名称", "受理（申报）件数"]
    assert {r[0] for r in rows[1:]} == {"3706000001", "3706000002"}
    status, data = await get(http, loaded, "/api/v1/statistics.csv", auth, encoding="gb18030",
                             **{"from": "2026-09", "to": this_month()})
    assert status == 200 and data.decode("gb18030").startswith("月份,")
    status, body = await get(http, loaded, "/api/v1/statistics", auth, **{"from": "2026-13"})
    assert status == 400 and body["error"]["parameter"] == "from"


async def test_a_bound_operator_may_not_read_the_halls_statistics(loaded, http) -> None:
    operator = await token_for(loaded, "wang.hall", "operator", systems=["hall_platform"])
    status, _ = await get(http, loaded, "/api/v1/statistics", operator)
    assert status == 403


# --------------------------------------------------------------------------- health and preview


async def test_counterpart_health_shows_last_contact_backlog_dead_letters_and_what_is_not_available(
        loaded, http) -> None:
    auth = await token_for(loaded, "zhang.gong", "engineer")
    status, body = await get(http, loaded, "/api/v1/counterparts/health", auth)
    assert status == 200
    systems = {s["system"]: s for s in body["systems"]}
    assert systems["hall_platform"]["last_contact"]["records"] == 7
    assert systems["hall_platform"]["quarantine"] == 1
    city = systems["city_platform"]["deliveries"]
    assert city["dead"] == 3 and city["backlog"] == 0 and city["error_rate"] == 1.0
    assert city["circuit"] in ("closed", "open", "half_open") and city["paused"] is False
    assert "400" in city["last_error"]
    assert body["unavailable"] == [] and "reconciliation" not in systems["city_platform"]
    # After a 对账 the page shows its newest result per counterpart: period, outcome and counts.
    summary = {"sent": {"ours": 3, "theirs": 2, "missing": 1, "differing": 0, "unexpected": 0, "resendable": 1},
               "received": {"ours": 0, "theirs": 0, "missing": 0, "unexpected": 0}}
    await loaded.store.save_reconciliation({
        "counterpart": "city_platform", "period_start": "2026-11-01T00:00:00+08:00",
        "period_end": "2026-11-02T00:00:00+08:00", "triggered_by": "zhang.gong",
        "started_at": "2026-11-02T01:00:00+08:00", "outcome": "gaps", "summary": summary,
        "gaps": {"sent_missing": [{"key": "k1"}]}}, [], [])
    status, body = await get(http, loaded, "/api/v1/counterparts/health", auth)
    shown = {s["system"]: s for s in body["systems"]}["city_platform"]["reconciliation"]
    assert (shown["outcome"], shown["period_start"], shown["summary"]["sent"]["missing"]) == (
        "gaps", "2026-11-01T00:00:00+08:00", 1)
    assert "gaps" not in shown  # the gap lists stay on /api/v1/reconciliations
    supervisor = await token_for(loaded, "jian.cha", "supervisor")
    status, _ = await get(http, loaded, "/api/v1/counterparts/health", supervisor)
    assert status == 403


async def test_a_delivery_preview_renders_what_a_replay_would_send_masked_and_changes_nothing(loaded, http) -> None:
    auth = await token_for(loaded, "zhang.gong", "engineer")
    dead = await loaded.store.list_deliveries(state="dead", case_no="SL-RED-0001")
    status, body = await get(http, loaded, f"/api/v1/deliveries/{dead[0]['id']}/preview", auth)
    assert status == 200 and body["renderable"] is True and body["masked"] is True
    assert "SL-RED-0001" in body["body"] and ID_NO not in body["body"] and "110105" in body["body"]
    assert [d["state"] for d in await loaded.store.list_deliveries(case_no="SL-RED-0001")] == ["dead"]
    supervisor = await token_for(loaded, "jian.cha", "supervisor")
    status, _ = await get(http, loaded, f"/api/v1/deliveries/{dead[0]['id']}/preview", supervisor)
    assert status == 403
    status, _ = await get(http, loaded, "/api/v1/deliveries/999999/preview", auth)
    assert status == 404


# --------------------------------------------------------------------------- the document


async def test_every_console_route_is_documented_with_its_security_and_parameters(gw) -> None:
    from gateway.api import openapi_document

    doc = openapi_document()
    app = build_app(gw)
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}
    documented = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert routes - documented == set(), "routes without a document entry"
    assert documented - routes == set(), "document entries without a route"
    for path in ("/api/v1/cases", "/api/v1/cases/{case_no}", "/api/v1/supervision/alerts",
                 "/api/v1/supervision/alerts/acknowledge", "/api/v1/statistics", "/api/v1/statistics.csv",
                 "/api/v1/counterparts/health", "/api/v1/deliveries/{id}/preview"):
        for op in doc["paths"][path].values():
            assert {"apiToken": []} in op["security"] and {"consoleSession": []} in op["security"]
            assert op["responses"]["401"]
            named = {p.get("name") for p in op.get("parameters", [])}
            assert {seg.strip("{}") for seg in path.split("/") if seg.startswith("{")} <= named
