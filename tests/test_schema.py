"""Common schema v1: record kinds, compiled validators, code tables and the JSON Schema export."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from gateway.schema import (
    KINDS,
    SCHEMA_VERSION,
    CodeTableError,
    FieldError,
    FieldSpec,
    RecordKind,
    code_tables,
)
from gateway.schema._codetables import load_table_file, resolve_tables
from gateway.schema.commands import schema
from gateway.schema.identifiers import check_credit_code, check_id_number

CREDIT = "11370600MB2855918R"
ENTERPRISE = "91370602MA3C4L7H6G"
PERSON_ID = "370602198503121230"
LICENSE_ID = "1.2.156.3005.2.11100000000013338W001.11370600MB2855918R.3706002026093000017.001.D"

SAMPLES: dict[str, dict[str, Any]] = {
    "case": {
        "case_no": "SD37060220260929000017", "item_code": "0120030001", "item_name": "食品经营许可（新办）",
        "item_type": "01", "applicant_type": "1", "applicant_name": "王晓梅", "applicant_id_type": "111",
        "applicant_id_no": PERSON_ID, "contact_phone": "13863810427", "submitted_at": "2026-09-29T09:15:22+08:00",
        "channel": "1", "region_code": "370602", "department_credit_code": CREDIT, "case_type": "2",
        "promised_time_limit": 5, "time_limit_unit": "G", "material_count": 3, "version": 1,
    },
    "acceptance": {
        "case_no": "SD37060220260929000017", "department_name": "烟台市芝罘区行政审批服务局", "status": "1",
        "accepted_at": "2026-09-29T10:30:00+08:00", "promised_completion_at": "2026-10-12T17:30:00+08:00", "version": 1,
    },
    "process_step": {
        "case_no": "SD37060220260929000017", "step_code": "2", "step_name": "审核", "handler_name": "刘建国",
        "opinion": "材料齐全，同意", "handled_at": "2026-09-30T11:00:00+08:00", "action": "pass", "version": 1,
    },
    "correction": {
        "case_no": "SD37060220260929000017", "notice_reason": "缺少场所平面图", "material_list": "经营场所平面图",
        "notified_at": "2026-09-30T09:00:00+08:00", "resubmitted_at": "2026-10-08T15:12:00+08:00",
    },
    "special_procedure": {
        "case_no": "SD37060220260929000017", "procedure_type": "B", "procedure_name": "现场核查",
        "started_at": "2026-10-09T09:00:00+08:00", "ended_at": "2026-10-10T17:00:00+08:00", "time_limit": 2,
        "time_limit_unit": "G", "fee_amount": "0",
    },
    "completion": {
        "case_no": "SD37060020260921000342", "department_name": "烟台市行政审批服务局", "department_credit_code": CREDIT,
        "result_code": "6", "license_id": LICENSE_ID, "license_valid_until": "2031-09-29", "fee_amount": "0.00",
        "completed_at": "2026-09-30T16:45:10+08:00", "version": 2,
    },
    "approval_result": {
        "decision_no": "烟审药许〔2026〕0342号", "counterpart_name": "烟台康宁大药房有限公司",
        "counterpart_category": "法人及非法人组织", "counterpart_credit_code": ENTERPRISE, "license_category": "普通",
        "content": "药品零售", "decided_on": "2026-09-30", "valid_from": "2026-09-30", "valid_until": "2031-09-29",
        "authority": "烟台市行政审批服务局", "authority_code": CREDIT, "status": "1",
    },
    "supervision_result": {
        "decision_no": "烟市监罚〔2026〕0112号", "result_type": "penalty", "counterpart_name": "烟台康宁大药房有限公司",
        "counterpart_category": "法人及非法人组织", "counterpart_credit_code": ENTERPRISE, "penalty_category": "警告;罚款",
        "content": "警告，并处罚款人民币壹万元", "fine_amount": "1.0", "license_effect": "none", "decided_on": "2026-11-03",
        "authority": "烟台市市场监督管理局", "authority_code": CREDIT,
    },
    "supervision_alert": {
        "alert_id": "ALERT-2026-000031", "case_no": "SD37060220260929000017", "rule": "time_limit",
        "alert_type": "overdue_red", "severity": "red", "raised_at": "2026-10-13T00:00:00+08:00",
        "description": "承诺时限 2026-10-12 已过，办件未办结",
    },
    "evaluation": {
        "evaluation_id": "PJ20261013000017", "case_no": "SD37060220260929000017", "channel": "mobile",
        "satisfaction": "1", "evaluated_at": "2026-10-13T09:12:00+08:00",
    },
}


def stored(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "kind": kind,
        "schema_version": SCHEMA_VERSION,
        "data": data,
        "provenance": {
            "source_system": "provincial",
            "source_id": data.get("case_no") or "x",
            "source_version": 1,
            "business_time": None,
            "receipt_time": "2026-11-02T08:06:00+08:00",
            "payload_hash": "a3f1" * 16,
            "original": {"applicant_id_type": "10"},
            "ref": "county/2026-11-01.xml record 3",
            "mapping": "provincial_approvedatainfo@1",
        },
    }


# --------------------------------------------------------------------------- record kinds


def test_schema_v1_has_the_ten_kinds_of_the_domain_and_the_gateways_audit_seal() -> None:
    assert SCHEMA_VERSION == "1"
    assert set(KINDS) == {
        "case", "acceptance", "process_step", "correction", "special_procedure", "completion",
        "approval_result", "supervision_result", "supervision_alert", "evaluation",
        "audit_seal",  # the gateway's own: signed seals delivered to the supervisors as a witness
    }
    for kind in KINDS.values():
        assert isinstance(kind, RecordKind)
        assert kind.title and all(isinstance(f, FieldSpec) and f.title for f in kind.fields)


def test_key_fields_are_required_and_time_fields_hold_times() -> None:
    for kind in KINDS.values():
        for name in kind.key_fields:
            assert kind.field_map[name].required, (kind.name, name)
        assert kind.field_map[kind.time_field].type in ("datetime", "date")
        assert kind.order_field in kind.field_map


def test_wire_short_codes_are_documented_on_fields() -> None:
    case = KINDS["case"]
    assert case.field("case_no").wire == "SBLSH"
    assert case.field("item_code").wire == "SXBM"
    assert case.field("applicant_id_no").wire == "SQRZJHM"
    assert KINDS["approval_result"].field("decision_no").wire == "XK_WSH"
    assert KINDS["supervision_result"].field("fine_amount").wire == "CF_NR_FK"
    assert "SBLSH" in case.field("case_no").doc and "申办流水号" in case.field("case_no").doc


def test_natural_keys_versions_and_business_times() -> None:
    case = KINDS["case"]
    data = SAMPLES["case"]
    assert case.key_fields == ("case_no",)
    assert case.record_key(data) == "SD37060220260929000017"
    assert case.case_no(data) == "SD37060220260929000017"
    assert case.version(data) == 1
    assert case.version({**data, "version": 3}) == 3
    assert case.version({k: v for k, v in data.items() if k != "version"}) == 1
    assert case.business_time(data) == "2026-09-29T09:15:22+08:00"
    step = KINDS["process_step"]
    assert step.record_key(SAMPLES["process_step"]) == "SD37060220260929000017|2|2026-09-30T11:00:00+08:00"
    assert step.case_no(SAMPLES["process_step"]) == "SD37060220260929000017"


def test_results_without_a_case_order_by_their_own_key() -> None:
    result = KINDS["approval_result"]
    assert result.key_fields == ("decision_no",)
    assert result.case_no(SAMPLES["approval_result"]) == "烟审药许〔2026〕0342号"
    assert result.case_no({**SAMPLES["approval_result"], "case_no": "SD1"}) == "SD1"
    assert KINDS["supervision_alert"].version_field is None
    assert KINDS["supervision_alert"].version(SAMPLES["supervision_alert"]) == 1


# --------------------------------------------------------------------------- validators


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_sample_records_of_every_kind_are_valid(kind: str) -> None:
    assert KINDS[kind].validator(SAMPLES[kind]) == []


def test_validator_is_compiled_once() -> None:
    assert KINDS["case"].validator is KINDS["case"].validator


def rules(kind: str, data: dict[str, Any]) -> dict[str, str]:
    return {e.field: e.rule for e in KINDS[kind].validator(data)}


def test_validator_names_field_and_rule_of_each_problem() -> None:
    data = {
        **SAMPLES["case"],
        "applicant_type": "9",
        "submitted_at": "2026-09-29 09:15:22",
        "region_code": "000000",
        "department_credit_code": CREDIT[:17] + "0",
        "promised_time_limit": "5",
        "item_code": "X" * 11,
        "extra": "?",
    }
    del data["applicant_name"]
    assert rules("case", data) == {
        "applicant_type": "code_invalid",
        "submitted_at": "datetime_format",
        "region_code": "region_code_province",
        "department_credit_code": "credit_code_check",
        "promised_time_limit": "int_format",
        "item_code": "max_length",
        "extra": "unknown_field",
        "applicant_name": "required",
    }


def test_validator_checks_id_numbers_by_their_type_and_masks_them() -> None:
    bad = PERSON_ID[:17] + "9"
    errors = KINDS["case"].validator({**SAMPLES["case"], "applicant_id_no": bad})
    assert [(e.field, e.rule) for e in errors] == [("applicant_id_no", "id_number_check")]
    assert errors[0].value == "370602********1239"
    assert errors[0].kind == "case"
    assert errors[0].as_dict()["value"] == "370602********1239"
    assert "applicant_id_no" in str(errors[0]) and "id_number_check" in str(errors[0])
    # a passport number has no check the gateway can apply
    assert KINDS["case"].validator({**SAMPLES["case"], "applicant_id_type": "414", "applicant_id_no": "E12345678"}) == []
    enterprise = {**SAMPLES["case"], "applicant_type": "2", "applicant_id_type": "821", "applicant_id_no": ENTERPRISE}
    assert KINDS["case"].validator(enterprise) == []
    assert rules("case", {**enterprise, "applicant_id_no": ENTERPRISE[:17] + "0"}) == {"applicant_id_no": "credit_code_check"}


def test_validator_checks_types_dates_decimals_and_multi_codes() -> None:
    assert rules("completion", {**SAMPLES["completion"], "fee_amount": 12.5}) == {"fee_amount": "type"}
    assert rules("completion", {**SAMPLES["completion"], "fee_amount": "12,5"}) == {"fee_amount": "decimal_format"}
    assert rules("completion", {**SAMPLES["completion"], "license_valid_until": "2031-02-30"}) == {
        "license_valid_until": "date_format"
    }
    assert rules("completion", {**SAMPLES["completion"], "completed_at": "2026-09-31T10:00:00+08:00"}) == {
        "completed_at": "datetime_format"
    }
    assert rules("completion", {**SAMPLES["completion"], "license_id": LICENSE_ID[:-1] + "E"}) == {
        "license_id": "license_id_check"
    }
    assert rules("supervision_result", {**SAMPLES["supervision_result"], "penalty_category": "警告;打板子"}) == {
        "penalty_category": "code_invalid"
    }
    assert rules("process_step", {**SAMPLES["process_step"], "action": "approve"}) == {"action": "enum_invalid"}
    assert rules("case", {**SAMPLES["case"], "version": True}) == {"version": "int_format"}


def test_field_error_is_a_plain_value() -> None:
    e = FieldError("case_no", "required", "", "申办流水号: is required", "case")
    assert e.as_dict() == {"field": "case_no", "rule": "required", "value": "", "message": "申办流水号: is required", "kind": "case"}


# --------------------------------------------------------------------------- code tables

EXPECTED_TABLES = {
    "item_type", "exercise_level", "service_object", "handling_form", "case_type", "id_type", "applicant_type",
    "acceptance_status", "step_code", "completion_result", "completion_result_67", "special_procedure_type",
    "time_unit", "license_category", "penalty_category", "counterpart_category", "license_status",
    "satisfaction", "satisfaction_hcp", "supervision_alert_type",
}


def test_every_code_table_loads_with_title_and_codes() -> None:
    tables = code_tables()
    assert EXPECTED_TABLES <= set(tables)
    for table in tables.values():
        assert table.title
        assert table.codes or table.map


def test_every_code_field_names_a_domain_table() -> None:
    tables = code_tables()
    for kind in KINDS.values():
        for spec in kind.fields:
            if spec.code_table:
                assert spec.code_table in tables and not tables[spec.code_table].is_translation, spec.name


def test_national_code_tables_hold_the_standard_codes() -> None:
    t = code_tables()
    assert t["item_type"].label("01") == "行政许可" and t["item_type"].label("20") == "公共服务"
    assert set(t["id_type"].codes) == {"111", "414", "516", "511", "553", "811", "821", "990"}
    assert dict(t["acceptance_status"].codes) == {"1": "受理", "2": "不受理", "3": "补齐补正", "4": "不予受理"}
    assert set(t["time_unit"].codes) == {"G", "Z"}
    assert set(t["completion_result"].codes) == {"0", "1", "2", "3", "4", "5", "6", "7"}
    assert t["completion_result_67"].target == "completion_result"


def test_satisfaction_is_documented_in_both_codings() -> None:
    t = code_tables()
    assert t["satisfaction"].label("1") == "非常满意"
    assert t["satisfaction"].label("5") == "非常不满意"
    assert "1 = 非常不满意" in t["satisfaction"].note
    assert dict(t["satisfaction_hcp"].map or {}) == {"1": "5", "2": "4", "3": "3", "4": "2", "5": "1"}


def test_supervision_alert_types_are_the_gateways_own_with_severity() -> None:
    t = code_tables()["supervision_alert_type"]
    for code in (
        "overdue_red", "near_deadline_yellow", "backfill_late_entry", "backfill_completed_on_first_sight",
        "outside_system_no_acceptance", "disclosure_overdue",
    ):
        assert code in t.codes
        assert t.attributes[code]["severity"] in ("red", "yellow", "info")
        assert t.attributes[code]["note"]
    assert "own" in t.source


def test_an_unquoted_code_is_refused_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("id: demo.kind\ntitle: 测试\ntarget: id_type\nmap:\n  \"1\": \"111\"\n  010: \"414\"\n", encoding="utf-8")
    with pytest.raises(CodeTableError) as info:
        load_table_file(path, local=True)
    assert f"{path}:6" in str(info.value)
    assert "quoted" in str(info.value)


def test_a_translation_into_a_code_the_target_lacks_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('id: demo.id_type\ntitle: t\ntarget: id_type\nmap:\n  "10": "112"\n', encoding="utf-8")
    with pytest.raises(CodeTableError, match="'112', which is not a code of 'id_type'"):
        resolve_tables(load_table_file(path, local=True), code_tables())


def test_local_tables_need_a_dotted_id(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text('id: id_type\ntitle: t\ntarget: id_type\nmap:\n  "10": "111"\n', encoding="utf-8")
    with pytest.raises(CodeTableError, match="dotted id"):
        load_table_file(path, local=True)


# --------------------------------------------------------------------------- JSON Schema export


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("schemas")
    result = CliRunner().invoke(schema, ["export", str(out)])
    assert result.exit_code == 0, result.output
    return {kind: json.loads((out / f"{kind}.schema.json").read_text(encoding="utf-8")) for kind in KINDS}


def validator_for(document: dict[str, Any]) -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_exported_json_schema_accepts_valid_stored_records(exported: dict[str, Any], kind: str) -> None:
    document = exported[kind]
    assert document["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert document["properties"]["provenance"]["required"] == ["source_system", "receipt_time", "payload_hash"]
    errors = list(validator_for(document).iter_errors(stored(kind, SAMPLES[kind])))
    assert errors == []


def test_exported_json_schema_rejects_what_the_validator_rejects(exported: dict[str, Any]) -> None:
    v = validator_for(exported["case"])
    bad = stored("case", {**SAMPLES["case"], "applicant_type": "9"})
    assert not v.is_valid(bad)
    no_offset = stored("case", {**SAMPLES["case"], "submitted_at": "2026-09-29T09:15:22"})
    assert not v.is_valid(no_offset)
    missing = stored("case", {k: v for k, v in SAMPLES["case"].items() if k != "case_no"})
    assert not v.is_valid(missing)
    assert not v.is_valid({**stored("case", SAMPLES["case"]), "kind": "completion"})
    assert not validator_for(exported["supervision_result"]).is_valid(
        stored("supervision_result", {**SAMPLES["supervision_result"], "penalty_category": "警告;打板子"})
    )


def test_exported_json_schema_documents_chinese_terms_wire_codes_and_codes(exported: dict[str, Any]) -> None:
    props = exported["case"]["properties"]["data"]["properties"]
    assert props["case_no"]["title"] == "申办流水号" and props["case_no"]["x-wire"] == "SBLSH"
    assert props["applicant_id_type"]["x-code-table"] == "id_type"
    assert props["applicant_id_type"]["x-codes"]["111"] == "居民身份证"
    assert "personal" in props["applicant_id_no"]["description"]
    assert exported["case"]["x-key-fields"] == ["case_no"]


def test_identifiers_in_samples_are_real(exported: dict[str, Any]) -> None:
    # the JSON Schema gives identifier shapes only; the samples also pass the real checks
    assert check_credit_code(CREDIT) is None and check_credit_code(ENTERPRISE) is None
    assert check_id_number(PERSON_ID) is None
