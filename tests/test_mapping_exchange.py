"""The mappings of the two-way exchange on their samples: the market-regulation ministry (SOAP, both ways),
the county front-end machine (files, both ways), and what the hall platform now receives back."""

from __future__ import annotations

from typing import Any

from lxml import etree
from test_mapping_shipped import MAPPINGS, load_in, map_sample

from gateway.adapters import manifest_digest
from gateway.mapping import OutboundMapping, load_mapping


def stored(kind: str, data: dict[str, Any], system: str = "hall_platform") -> dict[str, Any]:
    return {"kind": kind, "schema_version": "1", "data": data,
            "provenance": {"source_system": system, "receipt_time": "2026-11-29T10:00:00.000+08:00",
                           "mapping": "test@1"}}


def load_out(name: str) -> OutboundMapping:
    m = load_mapping(MAPPINGS / name)
    assert isinstance(m, OutboundMapping)
    return m


APPROVAL = {"decision_no": "芝审批许〔2026〕0101号", "case_no": "SB2026112900101", "item_code": "XK00023",
            "item_type": "01", "region_code": "370602", "counterpart_name": "烟台华信餐饮有限公司",
            "counterpart_category": "法人及非法人组织", "counterpart_credit_code": "91370602W03JAX9C6G",
            "license_category": "普通", "license_name": "公共场所卫生许可证", "license_no": "JY900101",
            "content": "住宿、餐饮", "decided_on": "2026-11-29", "valid_from": "2026-11-29", "valid_until": "2030-12-31",
            "authority": "烟台市芝罘区行政审批服务局", "authority_code": "113706006R0FR4HTXX", "version": 1}


def test_the_ministry_answer_maps_to_supervision_results_and_an_opinion() -> None:
    m = load_in("market_ministry.in.yaml")
    results = map_sample(m, "market_ministry.xml")
    assert [r.kind for _, r in results] == ["supervision_result", "supervision_result", "process_step"]
    assert all(not r.errors for _, r in results)
    revocation, penalty, opinion = (r.data for _, r in results)
    assert revocation is not None and penalty is not None and opinion is not None
    assert (revocation["result_type"], revocation["license_effect"], revocation["affected_license_no"]) == (
        "revocation", "revoke", "JY13706020000123")
    assert "case_no" not in revocation  # it names only the licence: the gateway finds the case
    assert (penalty["case_no"], penalty["license_effect"], penalty["decided_on"], penalty["version"]) == (
        "SB2026092900001", "none", "2026-11-25", 2)
    assert penalty["penalty_category"] == "警告;罚款"
    assert (opinion["action"], opinion["handled_at"], opinion["department_name"]) == (
        "pass", "2026-11-27T15:20:00+08:00", "烟台市市场监督管理局")


def test_the_county_files_map_to_a_licence_a_suspension_and_a_refusal() -> None:
    m = load_in("county_frontend.in.yaml")
    results = map_sample(m, "county_frontend.jsonl")
    assert [r.kind for _, r in results] == ["approval_result", "supervision_result", "process_step"]
    assert all(not r.errors for _, r in results)
    licence, suspension, opinion = (r.data for _, r in results)
    assert licence is not None and suspension is not None and opinion is not None
    assert (licence["license_no"], licence["region_code"], licence["item_type"], licence["valid_until"]) == (
        "MPW2026031", "370612", "01", "2031-11-28")
    assert (suspension["result_type"], suspension["license_effect"]) == ("suspension", "suspend")
    assert opinion["action"] == "return"  # 不同意


def test_an_approval_result_goes_to_the_ministry_as_an_exchange_document() -> None:
    out = load_out("market_ministry.out.yaml")
    body = out.render(stored("approval_result", APPROVAL))
    assert isinstance(body, bytes)
    root = etree.fromstring(body)
    assert root.tag == "EXCHANGEDATA"
    fields = {child.tag: child.text for child in root}
    assert fields["TYPE"] == "XK" and fields["XK_XKBH"] == "JY900101" and fields["SBLSH"] == "SB2026112900101"
    assert fields["XK_JDRQ"] == "2026-11-29" and fields["SXLX"] == "01"
    # what the ministry digests in its manifest is exactly these bytes (as text)
    assert manifest_digest(body) == manifest_digest(body.decode("utf-8"))


def test_a_dispatched_case_and_its_acceptance_render_for_both_departments() -> None:
    case = {"case_no": "SB2026112900201", "item_code": "XK00011", "applicant_type": "2", "applicant_name": "烟台嘉禾食品有限公司",
            "applicant_id_type": "821", "applicant_id_no": "91370602W03JAX9C6G", "submitted_at": "2026-11-29T09:00:00+08:00",
            "region_code": "370602", "version": 1}
    acceptance = {"case_no": "SB2026112900201", "department_name": "烟台市芝罘区行政审批服务局", "status": "1",
                  "accepted_at": "2026-11-29T10:00:00+08:00", "version": 1}
    ministry = load_out("market_ministry.out.yaml")
    county = load_out("county_frontend.out.yaml")
    assert b"<TYPE>SQ</TYPE>" in ministry.render(stored("case", case))
    assert b"<SLSJ>2026-11-29 10:00:00</SLSJ>" in ministry.render(stored("acceptance", acceptance))
    rendered = county.render(stored("case", case))
    assert rendered["TYPE"] == "SQ" and rendered["SBSJ"] == "2026-11-29 09:00:00"
    assert county.render(stored("acceptance", acceptance))["SLZTDM"] == "1"


def test_the_hall_now_receives_the_combined_result_of_parallel_approval_as_a_step() -> None:
    hall = load_out("hall_platform.out.yaml")
    step = {"case_no": "SB2026112900201", "step_code": "2", "step_name": "并联审批意见汇总", "department_name": "芝罘区审批局",
            "handler_name": "交换网关", "opinion": "各部门意见：……", "handled_at": "2026-11-29T16:00:00+08:00",
            "action": "pass", "version": 1}
    body = hall.render(stored("process_step", step, system="exchange"))
    assert (body["dataType"], body["action"], body["handleTime"], body["meta"]["sourceSystem"]) == (
        "STEP", "PASS", "2026-11-29 16:00:00", "exchange")
    licence = hall.render(stored("approval_result", APPROVAL))
    assert (licence["itemType"], licence["regionCode"]) == ("01", "370602")
