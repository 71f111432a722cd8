"""Both directions, end to end, with all three simulated counterparts on loopback: the hall platform (REST),
the market-regulation ministry (SOAP, zeep on our side) and the county front-end machine (file drops).

Approval results reach the supervising departments the routes choose; a revocation that names only its
licence comes back from the ministry, is tied to its case, marks the licence and the case, and reaches the
hall — and the whole chain can be followed through the API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import aiohttp
import pytest
from e2e_site import wait_until
from exchange_support import HALL_CODE, holder_code
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


def _now(minutes: int = 0) -> str:
    return (datetime.now(CHINA) + timedelta(minutes=minutes)).strftime("%Y-%m-%d %H:%M:%S")


def hall_case(case_no: str, holder: str, *, item: str = "XK00023", region: str = "370602") -> list[dict]:
    """What the hall pushes for a case from application to licence (受理 → 办结 → 许可决定)."""
    licence_no = f"JY{case_no[-6:]}"
    return [
        {"dataType": "CASE", "caseNo": case_no, "itemCode": item, "itemName": "公共场所卫生许可",
         "applicantType": "ENTERPRISE", "applicantName": "烟台华信餐饮有限公司", "applicantIdType": "20",
         "applicantIdNo": holder, "submitTime": _now(-120), "regionCode": region},
        {"dataType": "ACCEPT", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局", "status": "ACCEPTED",
         "acceptTime": _now(-100)},
        {"dataType": "FINISH", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局", "result": "APPROVED",
         "license": {"name": "公共场所卫生许可证", "no": licence_no}, "finishTime": _now(-30)},
        {"dataType": "LICENSE", "decisionNo": f"芝审批许〔2026〕{case_no[-4:]}号", "caseNo": case_no, "itemCode": item,
         "itemType": "01", "regionCode": region,
         "holder": {"name": "烟台华信餐饮有限公司", "category": "ORG", "creditCode": holder},
         "category": "GENERAL", "licenseName": "公共场所卫生许可证", "licenseNo": licence_no, "content": "住宿、餐饮",
         "decisionDate": _now(-30)[:10], "validFrom": _now(-30)[:10], "validTo": "2030-12-31",
         "authority": "烟台市芝罘区行政审批服务局", "authorityCode": HALL_CODE},
    ]


async def api(http: aiohttp.ClientSession, gw: Gateway, path: str, headers: dict[str, str]) -> dict:
    assert gw.api is not None
    async with http.get(gw.api.url + path, headers=headers) as r:
        assert r.status == 200, await r.text()
        return await r.json()


async def test_a_revocation_from_the_ministry_reaches_the_hall_linked_to_its_licence_and_case(two_way):
    sim, gw = two_way
    county = sim.county
    assert county is not None
    holder = holder_code("hua-xin")
    # 1. the hall approves: case, acceptance, completion, licence — the licence goes to the market regulator (SOAP)
    answer = await sim.hall.push(*hall_case("SB2026112900101", holder))
    assert answer["accepted"] == 4
    # … and a licence in 牟平区 also to the county's departments (a file through the front-end machine)
    await sim.hall.push(*hall_case("SB2026112900102", holder_code("bo-yuan"), region="370612"))
    await wait_until(lambda: len(sim.ministry.received_of("XK")) == 2, timeout=20,
                     what="both licences at the ministry over SOAP")
    await wait_until(lambda: len(county.received_of("XK")) == 1, timeout=20, what="the 牟平区 licence at the county")
    xk = {d["XK_XKBH"]: d for d in sim.ministry.received_of("XK")}
    assert xk["JY900101"]["SBLSH"] == "SB2026112900101" and xk["JY900101"]["SXLX"] == "01"
    assert county.received_of("XK")[0]["XK_XKBH"] == "JY900102"
    # 2. the ministry revokes the first licence; its result names only the licence, not the hall's case
    sim.ministry.publish({"TYPE": "CF", "CF_WSH": "烟市监罚〔2026〕188号", "CF_JGLX": "吊销",
                          "CF_XDR_MC": "烟台华信餐饮有限公司", "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder,
                          "CF_NR": "吊销公共场所卫生许可证", "CF_XKBH": "JY900101", "CF_XKYX": "吊销",
                          "CF_JDRQ": _now()[:10], "CF_CFJG": "烟台市市场监督管理局", "CF_CFJGDM": HALL_CODE})
    # 3. … and a county department suspends the second one (a file through the front-end machine)
    county.send({"TYPE": "CF", "CF_WSH": "牟卫罚〔2026〕12号", "CF_JGLX": "暂扣", "CF_XDR_MC": "烟台博远食品有限公司",
                 "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder_code("bo-yuan"), "CF_NR": "暂扣许可证三个月",
                 "CF_XKBH": "JY900102", "CF_XKYX": "暂扣", "CF_JDRQ": _now()[:10], "CF_CFJG": "牟平区卫生健康局",
                 "CF_CFJGDM": HALL_CODE})

    def at_hall(data_type: str, case_no: str | None = None) -> list[dict]:
        return [b for b in sim.hall.records.values() if b.get("dataType") == data_type
                and (case_no is None or b.get("caseNo") == case_no)]

    await wait_until(lambda: len(at_hall("ALERT")) == 2 and len(at_hall("PENALTY")) == 2, timeout=30,
                     what="both results and both notices at the hall")
    notices = {n["caseNo"]: n for n in at_hall("ALERT")}
    assert notices["SB2026112900101"]["alertType"] == "licence_revoked"
    assert "JY900101" in notices["SB2026112900101"]["description"]
    assert notices["SB2026112900102"]["alertType"] == "licence_suspended"
    revocation = next(p for p in at_hall("PENALTY") if p["decisionNo"] == "烟市监罚〔2026〕188号")
    assert revocation["affectedLicenseNo"] == "JY900101" and revocation["licenseEffect"] == "REVOKE"
    # 4. the chain through the API: application → … → approval result pushed → result received → hall informed
    headers = await token_for(gw, "supervisor.liu", role="supervisor")
    async with aiohttp.ClientSession() as http:
        records = (await api(http, gw, "/api/v1/records?case_no=SB2026112900101", headers))["items"]
        chain = [(r["kind"], r["system"]) for r in records]
        assert chain == [("case", "hall_platform"), ("acceptance", "hall_platform"), ("completion", "hall_platform"),
                         ("approval_result", "hall_platform"), ("supervision_result", "market_ministry"),
                         ("supervision_alert", "supervision")]
        engineer = await token_for(gw, "eng.zhao")
        deliveries = (await api(http, gw, "/api/v1/deliveries?case_no=SB2026112900101", engineer))["items"]
        sent = {(d["kind"], d["destination"], d["state"]) for d in deliveries}
        assert ("approval_result", "market_ministry", "delivered") in sent  # approval result pushed (SOAP)
        assert ("supervision_result", "hall_platform", "delivered") in sent  # result back at the hall
        assert ("supervision_alert", "hall_platform", "delivered") in sent  # hall informed
        licence = await api(http, gw, "/api/v1/licences/JY900101", headers)
        assert licence["licence"]["state"] == "revoked" and licence["licence"]["case_no"] == "SB2026112900101"
        assert licence["case"]["affected"] == "revoked"
        assert [e["decision_no"] for e in licence["effects"]] == ["烟市监罚〔2026〕188号"]
        assert licence["links"][-1]["resolved_by"] == "licence"
        other = await api(http, gw, "/api/v1/licences/JY900102", headers)
        assert other["licence"]["state"] == "suspended"
        health = (await api(http, gw, "/api/v1/counterparts", engineer))["items"]
        names = {h["counterpart"]: h for h in health}
        assert set(names) == {"hall_platform", "market_ministry", "county"}
        assert names["market_ministry"]["last_received"] and names["market_ministry"]["last_delivered"]
        assert names["county"]["sinks"] == ["county_out"]
    assert sim.ministry.repeats == 0 and sim.hall.repeats == 0  # nothing delivered twice


async def test_parallel_approval_across_soap_and_files_ends_in_one_combined_result_at_the_hall(two_way):
    sim, gw = two_way
    county = sim.county
    assert county is not None
    case_no = "SB2026112900201"
    items = hall_case(case_no, holder_code("jia-he"), item="XK00011")[:2]  # a 食品经营许可 case, accepted once
    await sim.hall.push(*items)
    # dispatched at once: the case and its acceptance to the ministry (SOAP) and to the county (files)
    await wait_until(lambda: [d["SBLSH"] for d in sim.ministry.received_of("SQ")] == [case_no]
                     and [d["SBLSH"] for d in sim.ministry.received_of("SL")] == [case_no]
                     and [d["SBLSH"] for d in county.received_of("SQ")] == [case_no]
                     and [d["SBLSH"] for d in county.received_of("SL")] == [case_no], timeout=30,
                     what="the case dispatched to both departments")
    sim.ministry.publish({"TYPE": "YJ", "SBLSH": case_no, "SXBM": "XK00011", "SPHJDM": "2", "SPHJMC": "部门审查",
                          "SPBMMC": "烟台市市场监督管理局", "SPRXM": "孙七", "SPYJ": "经营场所符合要求",
                          "SPSJ": _now(), "YWDZ": "通过"})
    county.send({"TYPE": "YJ", "SBLSH": case_no, "SXBM": "XK00011", "SPHJDM": "2", "SPHJMC": "部门审查",
                 "SPBMMC": "牟平区卫生健康局", "SPRXM": "周八", "SPYJ": "从业人员健康证齐全", "SPSJ": _now(1),
                 "YWDZ": "通过"})

    def combined() -> list[dict]:
        return [b for b in sim.hall.records.values() if b.get("dataType") == "STEP"
                and b.get("meta", {}).get("sourceSystem") == "exchange"]

    await wait_until(lambda: len(combined()) == 1, timeout=30, what="the combined result at the hall")
    result = combined()[0]
    assert result["caseNo"] == case_no and result["action"] == "PASS" and result["stepName"] == "并联审批意见汇总"
    assert "烟台市市场监督管理局：同意（经营场所符合要求）" in result["opinion"]
    assert "牟平区卫生健康局：同意（从业人员健康证齐全）" in result["opinion"]
    opinions = [b for b in sim.hall.records.values() if b.get("dataType") == "STEP" and b["caseNo"] == case_no]
    assert len(opinions) == 3  # both departments' opinions, then the combined result


async def test_a_result_about_a_licence_the_county_approved_goes_back_to_the_county_too(two_way):
    sim, gw = two_way
    county = sim.county
    assert county is not None
    holder = holder_code("heng-tong")
    # the county's own approval bureau approves; its front-end machine carries the licence to the gateway
    county.send({"TYPE": "XK", "XK_WSH": "牟审批许〔2026〕31号", "SBLSH": "MP2026112900031", "SXBM": "XK00023",
                 "SXLX": "01", "XZQHDM": "370612", "XK_XDR_MC": "烟台恒通物流有限公司", "XK_XDR_LB": "法人及非法人组织",
                 "XK_XDR_SHXYM": holder, "XK_XKLB": "普通", "XK_XKZS": "公共场所卫生许可证", "XK_XKBH": "MPW2026031",
                 "XK_NR": "住宿", "XK_JDRQ": _now()[:10], "XK_YXQZ": _now()[:10], "XK_XKJG": "烟台市牟平区行政审批服务局",
                 "XK_XKJGDM": HALL_CODE})
    await wait_until(lambda: [d["XK_XKBH"] for d in sim.ministry.received_of("XK")] == ["MPW2026031"], timeout=30,
                     what="the county's licence at the market regulator")
    sim.ministry.publish({"TYPE": "CF", "CF_WSH": "烟市监罚〔2026〕201号", "CF_JGLX": "处罚", "CF_XDR_MC": "烟台恒通物流有限公司",
                          "CF_XDR_LB": "法人及非法人组织", "CF_XDR_SHXYM": holder, "CF_NR": "罚款五千元",
                          "CF_XKBH": "MPW2026031", "CF_XKYX": "无", "CF_JDRQ": _now()[:10], "CF_CFJG": "烟台市市场监督管理局",
                          "CF_CFJGDM": HALL_CODE})
    # back to the hall by the routes, and to the approving bureau (the county) through its front-end machine
    await wait_until(lambda: [d["CF_WSH"] for d in county.received_of("CF")] == ["烟市监罚〔2026〕201号"], timeout=30,
                     what="the penalty back at the county")
    penalty = county.received_of("CF")[0]
    assert penalty["CF_XKBH"] == "MPW2026031" and penalty.get("SBLSH") is None  # the ministry named no case …
    await wait_until(lambda: any(b.get("decisionNo") == "烟市监罚〔2026〕201号" for b in sim.hall.records.values()),
                     what="the penalty at the hall")
    assert gw.store is not None  # … and the gateway filed it under the county's case
    assert [r["kind"] for r in await gw.store.list_records(case_no="MP2026112900031")] == [
        "approval_result", "supervision_result"]
