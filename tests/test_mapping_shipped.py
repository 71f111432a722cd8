"""The mappings shipped in mappings/ on their sample files, read by gateway.formats like the gateway reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from gateway.formats import read_items
from gateway.mapping import InboundMapping, Mapped, OutboundMapping, load_mapping
from gateway.mapping.commands import mapping as mapping_cli
from gateway.schema import KINDS, kind_json_schema
from gateway.shipped import shipped_mappings

ROOT = Path(__file__).resolve().parents[1]
MAPPINGS = shipped_mappings()
SAMPLES = ROOT / "tests" / "samples" / "mapping"


def load_in(name: str) -> InboundMapping:
    m = load_mapping(MAPPINGS / name)
    assert isinstance(m, InboundMapping)
    return m


def map_sample(m: InboundMapping, sample: str) -> list[tuple[str, Mapped]]:
    out = []
    for item in read_items(SAMPLES / sample, m.input):
        assert item.error is None, item.error
        assert item.payload is not None
        out.extend((item.ref, mapped) for mapped in m.map(item.payload))
    return out


def as_stored(m: InboundMapping, mapped: Mapped) -> dict[str, Any]:
    return {
        "kind": mapped.kind,
        "schema_version": "1",
        "data": mapped.data,
        "provenance": {
            "source_system": m.system,
            "source_id": mapped.data.get("case_no") if mapped.data else None,
            "receipt_time": "2026-11-02T08:06:00+08:00",
            "payload_hash": "0" * 64,
            "original": mapped.original,
            "mapping": f"{m.name}@{m.version}",
        },
    }


@pytest.mark.parametrize("path", sorted(MAPPINGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_mapping_compiles(path: Path) -> None:
    m = load_mapping(path)
    assert m.direction == ("inbound" if path.name.endswith(".in.yaml") else "outbound")


def test_provincial_xml_sample_maps_to_cases_acceptances_and_a_completion() -> None:
    m = load_in("provincial_approvedatainfo.in.yaml")
    assert m.input == {"format": "xml", "encoding": "auto", "record": "APPROVEDATAINFO"}
    results = map_sample(m, "provincial_approvedatainfo.xml")
    assert [(ref.split(" (")[0], r.kind) for ref, r in results] == [
        ("record 1", "case"), ("record 1", "acceptance"),
        ("record 2", "case"), ("record 2", "acceptance"), ("record 2", "completion"),
        ("record 2", "process_step"), ("record 2", "process_step"), ("record 2", "process_step"),
        ("record 3", "case"), ("record 3", "acceptance"),
        ("record 4", "case"), ("record 4", "acceptance"), ("record 4", "process_step"), ("record 4", "process_step"),
        ("record 4", "correction"), ("record 4", "special_procedure"),
    ]
    for _, mapped in results:
        assert mapped.errors == [], mapped.errors
    first_case = results[0][1].data
    assert first_case is not None
    assert first_case["case_no"] == "SD37060220260929000017"
    assert first_case["applicant_id_type"] == "111"  # local 1 → 111
    assert results[0][1].original == {"applicant_id_type": "1", "channel": "01"}
    assert first_case["contact_phone"] == "13863810427"
    assert first_case["submitted_at"] == "2026-09-29T09:15:22+08:00"
    assert first_case["time_limit_unit"] == "G"
    assert first_case["version"] == 1
    completion = results[4][1].data
    assert completion is not None
    assert completion["version"] == 2
    assert completion["result_code"] == "6"
    assert completion["license_valid_until"] == "2031-09-29"
    assert completion["fee_amount"] == "0.00"
    third_case = results[8][1].data
    assert third_case is not None
    assert third_case["applicant_id_no"] == "370602199207184020"  # full-width digits normalised
    assert results[9][1].data is not None and results[9][1].data["status"] == "2"


def test_provincial_mapping_reads_the_demo_generators_layout() -> None:
    # VERSION inside the section, 受理部门 instead of 实施机构, 10 for 身份证
    m = load_in("provincial_approvedatainfo.in.yaml")
    payload = {
        "SPSHENQIN": {
            "SBLSH": "3706000000000001", "SXBM": "XK00011", "SSXBM": "11370600MB28584063370600001100001",
            "SXLX": "01", "SQRLX": "1", "SQRMC": "王伟", "SQRZJLX": "10", "SQRZJHM": "370602198503121230",
            "LXRZJLX": "10", "LXRZJHM": "110105197601010015", "SBSJ": "20260929091522", "SBFS": "2", "SBQD": "1",
            "XZQHDM": "370602", "SLBMMC": "烟台市行政审批服务局", "SLBMZZJGDM": "11370600MB2855918R", "CLSL": "4",
            "VERSION": "3",
        }
    }
    (mapped,) = m.map(payload)
    assert mapped.errors == []
    assert mapped.data is not None
    assert mapped.data["version"] == 3
    assert mapped.data["department_name"] == "烟台市行政审批服务局"
    assert mapped.data["contact_id_type"] == "111"
    assert mapped.data["material_count"] == 4


def test_shuanggongshi_csv_sample_is_gb18030_and_maps_to_approval_results() -> None:
    raw = (SAMPLES / "shuanggongshi_xk.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "行政相对人名称".encode("gb18030") in raw and b"\r\n" in raw
    m = load_in("shuanggongshi_xk.in.yaml")
    assert m.input["encoding"] == "gb18030"
    results = map_sample(m, "shuanggongshi_xk.csv")
    assert len(results) == 4
    for _, mapped in results:
        assert mapped.kind == "approval_result"
        assert mapped.errors == [], mapped.errors
    datas = [r.data for _, r in results]
    assert all(d is not None for d in datas)
    first, second, third, fourth = datas  # type: ignore[misc]
    assert first["decision_no"] == "烟审药许〔2026〕0342号"
    assert first["decided_on"] == "2026-09-30" and first["valid_until"] == "2031-09-29"
    assert first["status"] == "1"
    assert second["license_category"] == "普通" and results[1][1].original["license_category"] == "普通许可"
    assert second["legal_rep_id_type"] == "111" and second["legal_rep_id_no"] == "370602198503121230"
    assert third["counterpart_category"] == "自然人"
    assert third["valid_until"] == "2099-12-31" and results[2][1].original["valid_until"] == "长期"
    assert fourth["license_category"] == "特许" and fourth["decided_on"] == "2026-11-02"


def test_shuanggongshi_bad_rows_become_field_errors() -> None:
    m = load_in("shuanggongshi_xk.in.yaml")
    row = next(read_items(SAMPLES / "shuanggongshi_xk.csv", m.input)).payload
    assert row is not None
    (mapped,) = m.map({**row, "统一社会信用代码": "91370602MA3C4L7H6O", "许可决定日期": "2026/02/30", "许可类别": "普通的"})
    assert {(e.field, e.rule) for e in mapped.errors} == {
        ("counterpart_credit_code", "credit_code_charset"),
        ("decided_on", "date_format"),
        ("license_category", "code_unknown"),
    }


def test_hall_platform_sample_maps_every_demo_kind() -> None:
    m = load_in("hall_platform.in.yaml")
    results = map_sample(m, "hall_platform.jsonl")
    assert [r.kind for _, r in results] == ["case", "acceptance", "completion", "approval_result"]
    for _, mapped in results:
        assert mapped.errors == [], mapped.errors
    case = results[0][1]
    assert case.data is not None
    assert (case.data["applicant_type"], case.data["applicant_id_type"], case.data["channel"]) == ("2", "821", "1")
    assert case.original == {"applicant_type": "ENTERPRISE", "applicant_id_type": "20", "channel": "WINDOW"}
    completion = results[2][1].data
    assert completion is not None
    assert completion["license_no"] == "鲁202637060001G"  # from the nested license object
    assert completion["fee_amount"] == "0"


# --------------------------------------------------------------------------- the kinds with a mapping of their own


def test_provincial_repeated_sections_become_one_record_each_with_its_own_key() -> None:
    m = load_in("provincial_approvedatainfo.in.yaml")
    results = [r for _, r in map_sample(m, "provincial_approvedatainfo.xml")]
    steps = [r.data for r in results if r.kind == "process_step"]
    assert all(not r.errors for r in results)
    # record 2: three SPGUOCHENG, two without their own SBLSH (they take the report's), VERSION 2 on the element
    assert [(d["case_no"], d["step_code"], d["handled_at"], d["action"], d["version"]) for d in steps[:3]] == [
        ("SD37060020260921000342", "1", "2026-09-24T10:12:00+08:00", "pass", 2),
        ("SD37060020260921000342", "2", "2026-09-28T15:30:00+08:00", "pass", 2),
        ("SD37060020260921000342", "3", "2026-09-30T16:30:00+08:00", "pass", 2),
    ]
    assert steps[4]["action"] == "other" and steps[3]["opinion"] == "补正材料已齐，转审核"
    keys = [KINDS["process_step"].record_key(d) for d in steps]
    assert len(set(keys)) == len(keys) == 5
    (correction,) = [r.data for r in results if r.kind == "correction"]
    assert correction == {
        "case_no": "SD37060020261012000118", "item_code": "0120110003",
        "notice_reason": "建设工程设计方案总平面图缺少规划指标表，请补充后重新提交",
        "material_list": "设计方案总平面图（含规划指标表）", "notifier_name": "陈静",
        "notified_at": "2026-10-12T10:05:00+08:00", "resubmitted_at": "2026-10-15T14:30:00+08:00", "version": 1,
    }
    (special,) = [r.data for r in results if r.kind == "special_procedure"]
    assert (special["procedure_type"], special["time_limit"], special["time_limit_unit"]) == ("B", 5, "G")
    assert (special["started_at"], special["ended_at"]) == ("2026-10-20T09:00:00+08:00", "2026-10-23T17:00:00+08:00")
    assert special["fee_amount"] == "0"


def test_shuanggongshi_penalty_csv_is_gb18030_and_maps_to_supervision_results() -> None:
    raw = (SAMPLES / "shuanggongshi_cf.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "行政处罚决定书文号".encode("gb18030") in raw and b"\r\n" in raw
    m = load_in("shuanggongshi_cf.in.yaml")
    results = map_sample(m, "shuanggongshi_cf.csv")
    assert [ref for ref, _ in results] == [f"line {n}" for n in range(2, 6)]
    assert all(r.kind == "supervision_result" and not r.errors for _, r in results), [r.errors for _, r in results]
    first, second, person, last = (r.data for _, r in results)
    assert first["decision_no"] == "芝市监处罚〔2026〕0215号" and first["result_type"] == "penalty"
    assert first["penalty_category"] == "警告;罚款" and first["fine_amount"] == "0.5"
    assert first["legal_rep_id_type"] == "111" and first["decided_on"] == "2026-10-15"
    assert second["penalty_category"] == "罚款;没收违法所得" and second["confiscated_amount"] == "1.286"
    assert person["counterpart_category"] == "自然人" and person["counterpart_id_no"] == "370602198811031528"
    assert person["valid_until"] == "2099-12-31" and person["decided_on"] == "2026-10-28"
    assert last["penalty_category"] == "警告;罚款;暂扣许可证件"
    assert last["affected_license"] == "药品经营许可证 鲁AA5350217"
    assert {d["authority_code"] for d in (first, second, person, last)} == {"11370602MB2857374W"}


def test_haochaping_evaluations_turn_the_national_satisfaction_coding_around() -> None:
    m = load_in("haochaping.in.yaml")
    results = [r for _, r in map_sample(m, "haochaping.json")]
    assert all(r.kind == "evaluation" and not r.errors for r in results)
    # national interface 5 = 非常满意 is GB/T 39046 1; 1 = 非常不满意 is 5 (the raw digit is kept)
    assert [(r.data["satisfaction"], r.original["satisfaction"]) for r in results] == [
        ("1", "5"), ("5", "1"), ("3", "3"), ("2", "4")
    ]
    assert [r.data["channel"] for r in results] == ["window", "mobile", "qr", "other"]
    assert results[0].data["comment"] == "窗口工作人员一次性告知所需材料，当天受理。"
    assert results[1].data["comment"] == "不予受理理由不清楚"  # the short appraisal when there is no text
    assert results[3].data["comment"] == "网上 申报 指引清楚"
    assert "case_no" not in results[3].data
    assert results[1].data["evaluated_at"] == "2026-10-16T18:33:44+08:00"


def test_ministry_progress_lines_give_steps_corrections_special_procedures_and_completions() -> None:
    m = load_in("ministry_progress.in.yaml")
    results = map_sample(m, "ministry_progress.jsonl")
    assert all(not r.errors for _, r in results), [r.errors for _, r in results]
    assert [(ref, r.kind) for ref, r in results] == [
        ("line 1", "process_step"), ("line 1", "process_step"), ("line 1", "process_step"), ("line 1", "completion"),
        ("line 2", "process_step"), ("line 2", "process_step"), ("line 2", "correction"),
        ("line 3", "process_step"), ("line 3", "special_procedure"),
    ]
    completion = results[3][1].data
    assert (completion["result_code"], completion["license_valid_until"], completion["fee_amount"]) == ("6", "2031-10-09", "0")
    assert completion["department_credit_code"] == "11370000004317AB9P"
    returned = results[5][1].data
    assert (returned["action"], returned["version"], returned["department_name"]) == ("return", 2, "烟台市市场监督管理局")
    extension = results[8][1].data
    assert (extension["procedure_type"], extension["time_limit"], extension["time_limit_unit"]) == ("A", 10, "G")


@pytest.mark.parametrize(
    ("mapping", "sample"),
    [
        ("provincial_approvedatainfo.in.yaml", "provincial_approvedatainfo.xml"),
        ("shuanggongshi_xk.in.yaml", "shuanggongshi_xk.csv"),
        ("hall_platform.in.yaml", "hall_platform.jsonl"),
        ("shuanggongshi_cf.in.yaml", "shuanggongshi_cf.csv"),
        ("haochaping.in.yaml", "haochaping.json"),
        ("ministry_progress.in.yaml", "ministry_progress.jsonl"),
    ],
)
def test_mapped_samples_validate_against_the_exported_json_schema(mapping: str, sample: str) -> None:
    m = load_in(mapping)
    for _, mapped in map_sample(m, sample):
        document = kind_json_schema(KINDS[mapped.kind])
        validator = jsonschema.Draft202012Validator(document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
        assert list(validator.iter_errors(as_stored(m, mapped))) == []


def test_hall_records_survive_a_round_trip_through_the_common_schema() -> None:
    inbound = load_in("hall_platform.in.yaml")
    outbound = load_mapping(MAPPINGS / "hall_platform.out.yaml")
    assert isinstance(outbound, OutboundMapping)
    for item in read_items(SAMPLES / "hall_platform.jsonl", inbound.input):
        assert item.payload is not None
        (mapped,) = inbound.map(item.payload)
        body = outbound.render(as_stored(inbound, mapped))
        assert body["meta"] == {"sourceSystem": "hall_platform", "receivedAt": "2026-11-02 08:06:00", "mapping": "hall_platform@1"}
        for key, value in item.payload.items():
            if key in ("fee", "finishTime"):
                continue  # a number becomes a decimal string; an ISO time comes back in the hall's own format
            assert body[key] == value, key


def test_hall_outbound_renders_supervision_results_and_alerts() -> None:
    outbound = load_mapping(MAPPINGS / "hall_platform.out.yaml")
    assert isinstance(outbound, OutboundMapping)
    alert = {
        "kind": "supervision_alert",
        "data": {
            "alert_id": "A1", "case_no": "SD1", "rule": "time_limit", "alert_type": "overdue_red", "severity": "red",
            "raised_at": "2026-10-13T00:00:00+08:00", "description": "超期",
        },
        "provenance": {},
    }
    body = outbound.render(alert)
    assert body["alertTypeName"] == "红牌：超期未办结"
    assert body["level"] == "RED" and body["raisedAt"] == "2026-10-13 00:00:00"
    penalty = {
        "kind": "supervision_result",
        "data": {
            "decision_no": "罚1", "result_type": "penalty", "counterpart_name": "公司",
            "counterpart_category": "法人及非法人组织", "content": "警告", "decided_on": "2026-11-03",
            "license_effect": "suspend", "fine_amount": "1.5",
        },
        "provenance": {"source_system": "market_supervision", "receipt_time": "2026-11-03T10:00:00+08:00"},
    }
    body = outbound.render(penalty)
    assert (body["dataType"], body["holder"]["category"], body["licenseEffect"]) == ("PENALTY", "ORG", "SUSPEND")
    assert body["fineWanYuan"] == "1.5"


# --------------------------------------------------------------------------- gateway mapping test


def test_mapping_test_prints_each_record_as_json() -> None:
    result = CliRunner().invoke(
        mapping_cli, ["test", str(MAPPINGS / "shuanggongshi_xk.in.yaml"), str(SAMPLES / "shuanggongshi_xk.csv")]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["ref"] for line in lines] == [f"shuanggongshi_xk.csv line {i}" for i in range(2, 6)]
    assert lines[2]["data"]["valid_until"] == "2099-12-31"
    assert "4 items, 4 records, 0 errors" in result.stderr


def test_mapping_test_reports_file_record_field_rule_and_value_and_fails(tmp_path: Path) -> None:
    text = (SAMPLES / "provincial_approvedatainfo.xml").read_text(encoding="utf-8")
    broken = text.replace("<SBSJ>20260921143005</SBSJ>", "<SBSJ>20261340256100</SBSJ>").replace(
        "<SQRZJHM>370602198503121230</SQRZJHM>", "<SQRZJHM>370602198503121239</SQRZJHM>"
    )
    sample = tmp_path / "county.xml"
    sample.write_text(broken, encoding="utf-8")
    result = CliRunner().invoke(
        mapping_cli, ["test", "--errors-only", str(MAPPINGS / "provincial_approvedatainfo.in.yaml"), str(sample)]
    )
    assert result.exit_code == 1
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2
    assert errors[0].startswith("ERROR county.xml record 1 (line ")
    assert "case.applicant_id_no: id_number_check:" in errors[0] and "'370602********1239'" in errors[0]
    assert errors[1].startswith("ERROR county.xml record 2 (line ")
    assert "case.submitted_at: datetime_format:" in errors[1] and "'20261340256100'" in errors[1]


def test_mapping_test_reports_a_broken_mapping(tmp_path: Path) -> None:
    path = tmp_path / "x.in.yaml"
    path.write_text("name: x\nversion: 1\ndirection: inbound\ninput: {format: csv}\noutputs: []\n", encoding="utf-8")
    result = CliRunner().invoke(mapping_cli, ["test", str(path), str(SAMPLES / "shuanggongshi_xk.csv")])
    assert result.exit_code == 1
    assert f"{path}:5" in result.stderr and "mapping_format" in result.stderr


def test_mapping_test_renders_stored_records_with_an_outbound_mapping(tmp_path: Path) -> None:
    inbound = load_in("hall_platform.in.yaml")
    records = [as_stored(inbound, r) for _, r in map_sample(inbound, "hall_platform.jsonl")]
    records[1]["data"].pop("accepted_at")
    sample = tmp_path / "records.jsonl"
    sample.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records), encoding="utf-8")
    result = CliRunner().invoke(mapping_cli, ["test", str(MAPPINGS / "hall_platform.out.yaml"), str(sample)])
    assert result.exit_code == 1
    assert [json.loads(line)["dataType"] for line in result.stdout.splitlines()] == ["CASE", "FINISH", "LICENSE"]
    assert "records.jsonl line 2:" in result.stderr and "acceptance.acceptTime: required" in result.stderr


def test_mapping_check_compiles_all_shipped_mappings() -> None:
    paths = [str(p) for p in sorted(MAPPINGS.glob("*.yaml"))]
    result = CliRunner().invoke(mapping_cli, ["check", *paths])
    assert result.exit_code == 0, result.output
    assert result.output.count("ok ") == len(paths)
