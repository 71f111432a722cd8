"""The exchange over HTTP, behind the identity contract: licences, links, 并联审批, reconciliation on demand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from exchange_support import (
    acceptance,
    case,
    completion,
    holder_code,
    licence,
    opinion,
    push,
    settle,
    supervision_result,
    write_site,
)
from test_api_support import token_for

from gateway.app import Gateway
from gateway.config import load_config

SCHEME = """
[[exchange.parallel]]
name = "食品经营许可"
items = ["XK00011"]
lead = "hall_platform"

[[exchange.parallel.departments]]
name = "烟台市市场监督管理局"
system = "market_ministry"
time_limit = 5
"""


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    config = write_site(tmp_path, SCHEME)
    config.write_text(config.read_text(encoding="utf-8").replace("[api]\nenabled = false", "[api]\nport = 0"),
                      encoding="utf-8")
    gateway = Gateway(load_config(config))
    await gateway.start()
    try:
        code = holder_code("api")
        await push(gateway, "hall_platform", case("SB-API-1", holder=code), acceptance("SB-API-1"),
                   completion("SB-API-1", "JY-API-1"), licence("SB-API-1", "JY-API-1", code))
        await push(gateway, "market_ministry", supervision_result("烟市监罚〔2026〕1号", code, licence_no="JY-API-1"),
                   supervision_result("烟市监罚〔2026〕2号", holder_code("nobody"), licence_no="JY-NOWHERE"),
                   opinion("SB-API-1", department="烟台市市场监督管理局", at="2026-09-30 10:00:00",
                           text="同意。联系人手机 13812345678"))
        await settle(gateway)
        yield gateway
    finally:
        await gateway.stop()


async def _get(gw: Gateway, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    assert gw.api is not None
    async with aiohttp.ClientSession() as http, http.get(gw.api.url + path, headers=headers or {}) as r:
        return r.status, await r.json()


async def test_a_licence_is_read_by_who_may_read_its_records(gw: Gateway):
    assert (await _get(gw, "/api/v1/licences/JY-API-1"))[0] == 401
    status, body = await _get(gw, "/api/v1/licences/JY-API-1", await token_for(gw, "sup.li", role="supervisor"))
    assert status == 200 and body["licence"]["state"] == "revoked" and body["case"]["affected"] == "revoked"
    assert body["masked"] is True
    status, _ = await _get(gw, "/api/v1/licences/JY-UNKNOWN", await token_for(gw, "sup.li", role="supervisor"))
    assert status == 404
    # an operator bound to other systems may not read it; one bound to the hall may
    other = await token_for(gw, "op.county", role="operator", systems=["county_results"])
    assert (await _get(gw, "/api/v1/licences/JY-API-1", other))[0] == 403
    hall = await token_for(gw, "op.hall", role="operator", systems=["hall_platform"])
    assert (await _get(gw, "/api/v1/licences/JY-API-1", hall))[0] == 200


async def test_links_list_the_unresolved_with_the_reason_and_an_operator_sees_its_systems_only(gw: Gateway):
    engineer = await token_for(gw, "eng.wu")
    status, body = await _get(gw, "/api/v1/links?unresolved=true", engineer)
    assert status == 200
    assert [(i["record_key"], i["licence_no"]) for i in body["items"]] == [("烟市监罚〔2026〕2号", "JY-NOWHERE")]
    assert "not known yet" in body["items"][0]["note"]
    hall = await token_for(gw, "op.hall2", role="operator", systems=["hall_platform"])
    _, mine = await _get(gw, "/api/v1/links?case_no=SB-API-1", hall)
    assert {i["system"] for i in mine["items"]} == {"hall_platform"}


async def test_parallel_cases_show_who_answered_with_free_text_masked(gw: Gateway):
    engineer = await token_for(gw, "eng.zheng")
    status, body = await _get(gw, "/api/v1/parallel?state=completed", engineer)
    assert status == 200 and [c["case_no"] for c in body["items"]] == ["SB-API-1"]
    (dept,) = body["items"][0]["departments"]
    assert dept["action"] == "pass" and dept["late"] is False
    assert "13812345678" not in dept["opinion"] and "138" in dept["opinion"]  # a mobile number in free text is masked
    status, one = await _get(gw, "/api/v1/parallel/SB-API-1", engineer)
    assert status == 200 and one["result"] == "pass"
    assert (await _get(gw, "/api/v1/parallel/SB-NONE", engineer))[0] == 404


async def test_reconciliation_on_demand_needs_the_right_to_send_again(gw: Gateway):
    assert gw.api is not None
    url = gw.api.url + "/api/v1/counterparts/market_ministry/reconcile"
    async with aiohttp.ClientSession() as http:
        supervisor = await token_for(gw, "sup.he", role="supervisor")
        async with http.post(url, json={"dry_run": True}, headers=supervisor) as r:
            assert r.status == 403
        engineer = await token_for(gw, "eng.feng")
        async with http.post(url, json={"date": "2026-11-29", "dry_run": True}, headers=engineer) as r:
            assert r.status == 200
            result = await r.json()
        async with http.post(url, json={"date": "not a date"}, headers=engineer) as r:
            assert r.status == 400
        async with http.post(gw.api.url + "/api/v1/counterparts/nobody/reconcile", json={}, headers=engineer) as r:
            assert r.status == 404
    # a file sink without [reconcile]: the counterpart cannot be asked, and the result says so
    assert result["outcome"] == "unavailable" and "reconcile" in result["error"] and result["dry_run"] is True
    assert result["triggered_by"] == "api:eng.feng"
