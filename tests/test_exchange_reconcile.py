"""Reconciliation (对账): a counterpart that silently loses records is found out — exactly the missing ones —
and the gap is repaired: re-sent with the same idempotency keys, or asked for again; each run is audited and kept."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from e2e_site import wait_until
from exchange_support import HALL_CODE, audit_actions, holder_code, rows
from test_api_support import token_for

from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.twoway import TEST_HEADER, TwoWay

CHINA = timezone(timedelta(hours=8))


@pytest.fixture
async def two_way(tmp_path: Path) -> AsyncIterator[tuple[TwoWay, Gateway]]:
    sim = await TwoWay(tmp_path).start()
    gw = Gateway(load_config(sim.write_site(TEST_HEADER)))
    try:
        await gw.start()
        assert gw.api is not None
        sim.connect(gw.api.url)
        yield sim, gw
    finally:
        await gw.stop()
        await sim.stop()


def today() -> tuple[datetime, datetime]:
    start = datetime.combine(datetime.now(CHINA).date(), time(0), CHINA)
    return start, start + timedelta(days=1)


def licence_item(n: int, holder: str, *, region: str = "370602") -> dict:
    day = datetime.now(CHINA).strftime("%Y-%m-%d")
    return {"dataType": "LICENSE", "decisionNo": f"芝审批许〔2026〕R{n:03d}号", "caseNo": f"SB-REC-{n:04d}",
            "itemCode": "XK00023", "itemType": "01", "regionCode": region,
            "holder": {"name": "烟台金桥建材有限公司", "category": "ORG", "creditCode": holder},
            "category": "GENERAL", "licenseName": "公共场所卫生许可证", "licenseNo": f"JY-REC-{n:04d}", "content": "住宿",
            "decisionDate": day, "validFrom": day, "authority": "烟台市芝罘区行政审批服务局", "authorityCode": HALL_CODE}


def alert_source(n: int) -> dict:
    """A supervision result of the ministry, to make deliveries to the hall."""
    return {"TYPE": "CF", "CF_WSH": f"烟市监检〔2026〕{n}号", "CF_JGLX": "检查", "CF_XDR_MC": "烟台金桥建材有限公司",
            "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder_code("jin-qiao"), "CF_NR": "日常检查，未发现问题",
            "CF_JDRQ": datetime.now(CHINA).strftime("%Y-%m-%d"), "CF_CFJG": "烟台市市场监督管理局", "CF_CFJGDM": HALL_CODE}


async def test_the_hall_losing_deliveries_silently_is_found_and_repaired(two_way):
    sim, gw = two_way
    assert gw.exchange is not None and gw.store is not None
    sim.hall.lose_next(3)  # the next three records the hall acknowledges are lost on its side
    sim.ministry.publish(*(alert_source(n) for n in range(1, 13)))
    delivered = "SELECT count(*) FROM outbox WHERE destination = 'hall_platform' AND state = 'delivered'"
    await wait_until(lambda: rows(gw, delivered)[0][0] == 12, timeout=30, what="12 deliveries to the hall")
    assert sim.hall.unique == 9 and len(sim.hall.lost) == 3  # the gateway has no way to know, yet
    start, end = today()
    result = await gw.exchange.reconcile("hall_platform", start, end, triggered_by="test")
    assert result["outcome"] == "repaired"
    sent = result["summary"]["sent"]
    assert (sent["ours"], sent["theirs"], sent["missing"], sent["differing"], sent["unexpected"]) == (12, 9, 3, 0, 0)
    assert sorted(g["key"] for g in result["gaps"]["sent_missing"]) == sorted(sim.hall.lost)  # exactly those
    assert result["summary"]["resent"] == 3
    await wait_until(lambda: sim.hall.unique == 12, timeout=20, what="the lost records at the hall again")
    assert sim.hall.repeats == 0  # only the lost ones were sent again
    # audited: the run, and each delivery sent again on its case
    # (the gateway also ran its scheduled reconciliation of yesterday at start: after 01:30, it catches up)
    (entry,) = [e for e in audit_actions(gw, "reconciliation") if e["detail"]["triggered_by"] == "test"]
    assert entry["system"] == "hall_platform" and entry["detail"]["outcome"] == "repaired"
    assert entry["detail"]["summary"]["resent"] == 3
    resent = audit_actions(gw, "resent")
    assert sorted(e["detail"]["idempotency_key"] for e in resent) == sorted(sim.hall.lost)
    # and again: nothing left to find
    await wait_until(lambda: rows(gw, "SELECT count(*) FROM outbox WHERE state != 'delivered'")[0][0] == 0,
                     what="the re-sends settled")
    again = await gw.exchange.reconcile("hall_platform", start, end, triggered_by="test")
    assert again["outcome"] == "clean" and again["summary"]["sent"]["ours"] == 15  # 12 + the 3 sent again
    # the results are kept for the console
    engineer = await token_for(gw, "eng.qian")
    assert gw.api is not None
    async with aiohttp.ClientSession() as http, http.get(
            gw.api.url + "/api/v1/reconciliations?counterpart=hall_platform", headers=engineer) as r:
        kept = (await r.json())["items"]
    assert [k["outcome"] for k in kept if k["triggered_by"] == "test"] == ["clean", "repaired"]


async def test_the_ministry_losing_both_ways_is_repaired_by_gateway_reconcile(two_way):
    """Over SOAP, from the command line beside the running gateway: what it lost is re-sent, what it never
    sent us is asked for again and pulled."""
    sim, gw = two_way
    holder = holder_code("rec-ministry")
    sim.ministry.lose_next(2)  # two licences acknowledged, then lost
    await sim.hall.push(*(licence_item(n, holder) for n in range(1, 7)))
    sim.ministry.lose_outgoing(1)  # one result it believes it sent never reaches its feed
    sim.ministry.publish(*(alert_source(100 + n) for n in range(1, 5)))
    pulled = "SELECT count(*) FROM records WHERE system = 'market_ministry'"
    to_ministry = "SELECT count(*) FROM outbox WHERE destination = 'market_ministry' AND state = 'delivered'"
    await wait_until(lambda: rows(gw, to_ministry)[0][0] == 6 and rows(gw, pulled)[0][0] == 3, timeout=30,
                     what="6 licences delivered, 3 results pulled")
    lost = list(sim.ministry.lost)
    start, end = today()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "reconcile", "market_ministry", "--from", start.isoformat(),
        "--to", end.isoformat(), "--json", "-c", str(gw.config.path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, out.decode() + err.decode()
    result = json.loads(out)
    assert result["outcome"] == "repaired", result
    assert sorted(g["key"] for g in result["gaps"]["sent_missing"]) == sorted(lost)
    assert [(g["kind"], g["key"]) for g in result["gaps"]["received_missing"]] == [
        ("supervision_result", "烟市监检〔2026〕101号")]
    assert result["summary"]["received"]["theirs"] == 4 and result["summary"]["received"]["ours"] == 3
    assert result["triggered_by"].startswith("cli:os:")
    # the running gateway delivers the re-sends (same sn: the ministry keeps each once) and pulls the missing one
    await wait_until(lambda: not set(lost) - set(sim.ministry.received), timeout=30, what="re-sent licences")
    await wait_until(lambda: rows(gw, pulled)[0][0] == 4, timeout=30, what="the missing result pulled again")
    assert sim.ministry.resend_requests[0][0]["KEY"] == "烟市监检〔2026〕101号"
    assert sim.ministry.repeats == 0


async def test_the_county_front_end_machine_losing_a_file_is_found_and_the_file_written_again(two_way):
    sim, gw = two_way
    county = sim.county
    assert county is not None and gw.exchange is not None
    county.lose_next(1)
    await sim.hall.push(*(licence_item(n, holder_code("rec-county"), region="370612") for n in range(20, 24)))
    delivered = "SELECT count(*) FROM outbox WHERE destination = 'county_out' AND state = 'delivered'"
    await wait_until(lambda: rows(gw, delivered)[0][0] == 4 and len(county.carried) + len(county.lost) == 4,
                     timeout=30, what="four files carried across")
    await asyncio.sleep(0.3)  # the machine writes its manifest after it carried the files
    start, end = today()
    result = await gw.exchange.reconcile("county", start, end, triggered_by="test")
    assert result["outcome"] == "repaired"
    assert [g["key"] for g in result["gaps"]["sent_missing"]] == county.lost
    await wait_until(lambda: len(county.carried) == 4, timeout=20, what="the lost file written and carried again")


async def test_content_that_differs_and_an_unavailable_counterpart_are_reported_not_repaired(two_way):
    sim, gw = two_way
    assert gw.exchange is not None
    sim.ministry.publish(alert_source(300))
    await wait_until(lambda: sim.hall.unique == 1, timeout=30, what="a delivery to the hall")
    key = next(iter(sim.hall.arrivals))
    at, _ = sim.hall.arrivals[key]
    sim.hall.arrivals[key] = (at, "sha256:" + "0" * 64)  # the hall's copy no longer matches what was sent
    start, end = today()
    result = await gw.exchange.reconcile("hall_platform", start, end, triggered_by="test")
    assert result["outcome"] == "gaps"
    assert [g["key"] for g in result["gaps"]["sent_differing"]] == [key]
    assert result["summary"]["resent"] == 0
    sim.ministry.fail_next(1)
    down = await gw.exchange.reconcile("market_ministry", start, end, triggered_by="test")
    assert down["outcome"] == "unavailable" and "Server.Unavailable" in down["error"]
    assert [e["detail"]["outcome"] for e in audit_actions(gw, "reconciliation")
            if e["detail"]["triggered_by"] == "test"] == ["gaps", "unavailable"]


async def test_scheduled_reconciliation_runs_once_a_day_for_the_day_before(two_way):
    sim, gw = two_way
    assert gw.exchange is not None
    after = datetime.combine(datetime.now(CHINA).date() + timedelta(days=1), time(2, 0), CHINA)  # 01:30 passed
    done = await gw.exchange.scheduled_reconciliations(after)
    names = {r["counterpart"]: r for r in done}
    assert set(names) == {"hall_platform", "market_ministry"}  # the county has no schedule
    assert names["hall_platform"]["outcome"] == "clean"
    assert names["hall_platform"]["period_start"].startswith(str(after.date() - timedelta(days=1)))
    assert await gw.exchange.scheduled_reconciliations(after) == []  # once a day
