"""Mapping files: the closed vocabulary, compile-time errors with file and line, run-time FieldErrors, rendering."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from gateway.mapping import InboundMapping, Mapped, MappingError, OutboundMapping, load_mapping

PERSON_ID = "370602198503121230"
CREDIT = "11370600MB2855918R"

CASE_FIELDS = """\
      case_no: SBLSH
      applicant_type: SQRLX
      applicant_name: SQRMC
      applicant_id_type: SQRZJLX
      applicant_id_no: SQRZJHM
      submitted_at: SBSJ
      region_code: XZQHDM
"""

PAYLOAD = {
    "SBLSH": "SD37060220260929000017",
    "SQRLX": "1",
    "SQRMC": "王晓梅",
    "SQRZJLX": "111",
    "SQRZJHM": PERSON_ID,
    "SBSJ": "20260929091522",
    "XZQHDM": "370602",
}


def write(tmp_path: Path, body: str, name: str = "t.in.yaml", tables: str | None = None) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    if tables is not None:
        (tmp_path / "codetables").mkdir(exist_ok=True)
        (tmp_path / "codetables" / "local.yaml").write_text(textwrap.dedent(tables), encoding="utf-8")
    return path


def inbound(tmp_path: Path, fields: str = CASE_FIELDS, *, extra_top: str = "", kind: str = "case", tables: str | None = None) -> InboundMapping:
    body = (
        "name: t\nversion: 1\ndirection: inbound\n" + extra_top
        + "input: {format: jsonl}\noutputs:\n  - kind: " + kind + "\n    fields:\n" + fields
    )
    m = load_mapping(write(tmp_path, body, tables=tables))
    assert isinstance(m, InboundMapping)
    return m


def one(m: InboundMapping, payload: Any) -> Mapped:
    out = m.map(payload)
    assert len(out) == 1
    return out[0]


def errors_of(mapped: Mapped) -> dict[str, str]:
    return {e.field: e.rule for e in mapped.errors}


LOCAL_TABLES = """\
tables:
  - id: t.id_type
    title: 本地证件类型
    target: id_type
    map: {"10": "111", "20": "821"}
"""


# --------------------------------------------------------------------------- the happy path


def test_a_compiled_mapping_maps_and_validates_a_payload(tmp_path: Path) -> None:
    m = inbound(tmp_path)
    assert (m.name, m.version, m.direction, m.kinds) == ("t", "1", "inbound", ("case",))
    assert m.input == {"format": "jsonl", "encoding": "auto"}
    assert m.path == tmp_path / "t.in.yaml"
    mapped = one(m, PAYLOAD)
    assert mapped.errors == []
    assert mapped.kind == "case"
    assert mapped.data == {
        "case_no": "SD37060220260929000017",
        "applicant_type": "1",
        "applicant_name": "王晓梅",
        "applicant_id_type": "111",
        "applicant_id_no": PERSON_ID,
        "submitted_at": "2026-09-29T09:15:22+08:00",
        "region_code": "370602",
    }


def test_values_are_trimmed_and_identifiers_normalised(tmp_path: Path) -> None:
    mapped = one(inbound(tmp_path), {**PAYLOAD, "SBLSH": "  SD1 ", "SQRZJHM": "３７０６０２ １９８５０３１２１２３０", "XZQHDM": " 370602\u3000"})
    assert mapped.errors == []
    assert mapped.data is not None
    assert mapped.data["case_no"] == "SD1"
    assert mapped.data["applicant_id_no"] == PERSON_ID
    assert mapped.data["region_code"] == "370602"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("20260929091522", "2026-09-29T09:15:22+08:00"),
        ("2026-09-29 09:15:22", "2026-09-29T09:15:22+08:00"),
        ("2026-09-29T09:15:22", "2026-09-29T09:15:22+08:00"),
        ("2026-09-29T01:15:22Z", "2026-09-29T09:15:22+08:00"),
        ("2026-09-29T09:15:22.250+08:00", "2026-09-29T09:15:22.250000+08:00"),
        ("2026-09-28T20:15:22-05:00", "2026-09-29T09:15:22+08:00"),
    ],
)
def test_datetimes_in_every_accepted_form_become_china_time_with_offset(tmp_path: Path, raw: str, expected: str) -> None:
    mapped = one(inbound(tmp_path), {**PAYLOAD, "SBSJ": raw})
    assert mapped.errors == []
    assert mapped.data is not None and mapped.data["submitted_at"] == expected


def test_naive_times_are_read_in_the_mapping_zone(tmp_path: Path) -> None:
    m = inbound(tmp_path, extra_top='zone: UTC\n')
    mapped = one(m, {**PAYLOAD, "SBSJ": "2026-09-29 01:15:22"})
    assert mapped.data is not None and mapped.data["submitted_at"] == "2026-09-29T09:15:22+08:00"


def test_a_field_zone_overrides_the_mapping_zone(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("submitted_at: SBSJ", 'submitted_at: {path: SBSJ, zone: "+00:00"}')
    mapped = one(inbound(tmp_path, fields), {**PAYLOAD, "SBSJ": "20260929011522"})
    assert mapped.data is not None and mapped.data["submitted_at"] == "2026-09-29T09:15:22+08:00"


def test_dates_with_named_formats(tmp_path: Path) -> None:
    fields = """\
      case_no: SBLSH
      department_name: BJBMMC
      result_code: BJJGDM
      completed_at: {path: BJSJ, format: [YYYY/MM/DD hh:mm:ss, YYYYMMDD]}
      license_valid_until: {path: ZJYXQX, format: [YYYY/MM/DD, YYYYMMDD]}
      fee_amount: SFJE
"""
    m = inbound(tmp_path, fields, kind="completion")
    mapped = one(m, {"SBLSH": "A", "BJBMMC": "局", "BJJGDM": "6", "BJSJ": "2026/09/30 16:45:10", "ZJYXQX": "20310929", "SFJE": "1,250"})
    assert errors_of(mapped) == {"fee_amount": "decimal_format"}
    assert mapped.data is not None
    assert mapped.data["completed_at"] == "2026-09-30T16:45:10+08:00"
    assert mapped.data["license_valid_until"] == "2031-09-29"
    mapped = one(m, {"SBLSH": "A", "BJBMMC": "局", "BJJGDM": "6", "BJSJ": "20260930", "ZJYXQX": "2031/09/29", "SFJE": "+1250.50"})
    assert mapped.errors == []
    assert mapped.data is not None
    assert mapped.data["completed_at"] == "2026-09-30T00:00:00+08:00"
    assert mapped.data["fee_amount"] == "1250.50"


def test_lookup_translates_local_codes_and_keeps_the_original(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_id_type: SQRZJLX", "applicant_id_type: {path: SQRZJLX, lookup: t.id_type}")
    m = inbound(tmp_path, fields, tables=LOCAL_TABLES)
    mapped = one(m, {**PAYLOAD, "SQRZJLX": "10"})
    assert mapped.errors == []
    assert mapped.data is not None and mapped.data["applicant_id_type"] == "111"
    assert mapped.original == {"applicant_id_type": "10"}


def test_lookup_on_missing_keep_passes_national_codes_through_and_still_validates(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace(
        "applicant_id_type: SQRZJLX", "applicant_id_type: {path: SQRZJLX, lookup: {table: t.id_type, on_missing: keep}}"
    )
    m = inbound(tmp_path, fields, tables=LOCAL_TABLES)
    assert one(m, {**PAYLOAD, "SQRZJLX": "111"}).errors == []
    bad = one(m, {**PAYLOAD, "SQRZJLX": "77"})
    assert errors_of(bad) == {"applicant_id_type": "code_invalid"}


def test_lookup_default_and_inline_maps(tmp_path: Path) -> None:
    fields = CASE_FIELDS + """\
      channel: {path: QD, lookup: {map: {WINDOW: "1", PC: "2"}, default: "9"}}
      case_type: {path: BJLX, lookup: {map: {即办件: "1", 承诺件: "2"}}}
"""
    m = inbound(tmp_path, fields)
    mapped = one(m, {**PAYLOAD, "QD": "FAX", "BJLX": "承诺件"})
    assert mapped.errors == []
    assert mapped.data is not None
    assert (mapped.data["channel"], mapped.data["case_type"]) == ("9", "2")
    assert mapped.original == {"channel": "FAX", "case_type": "承诺件"}


def test_concat_first_nonempty_const_default_and_functions(tmp_path: Path) -> None:
    fields = CASE_FIELDS + """\
      item_name: {concat: [SXMC, {const: "（"}, BLX, {const: "）"}], separator: ""}
      department_name: {first_nonempty: [SSJGMC, SLBMMC]}
      remark: {concat: [A, B, C], separator: " / "}
      channel: {const: "1"}
      case_type: {path: BJLX, default: "2"}
      contact_phone: {path: LXRSJ, fn: [halfwidth, remove_spaces]}
      item_code: {path: SXBM, fn: [trim, upper]}
      promised_time_limit: CNSX
      time_limit_unit: {path: CNSXDW, fn: upper}
      material_count: {path: CLSL, fn: int}
"""
    m = inbound(tmp_path, fields)
    mapped = one(
        m,
        {**PAYLOAD, "SXMC": "食品经营许可", "BLX": "新办", "SLBMMC": "芝罘区审批局", "A": "甲", "C": "丙",
         "LXRSJ": "１３８ ６３８１ ０４２７", "SXBM": " xk00011 ", "CNSX": "5.0", "CNSXDW": "g", "CLSL": 3},
    )
    assert mapped.errors == []
    assert mapped.data is not None
    d = mapped.data
    assert d["item_name"] == "食品经营许可（新办）"
    assert d["department_name"] == "芝罘区审批局"
    assert d["remark"] == "甲 / 丙"
    assert (d["channel"], d["case_type"]) == ("1", "2")
    assert d["contact_phone"] == "13863810427"
    assert d["item_code"] == "XK00011"
    assert (d["promised_time_limit"], d["time_limit_unit"], d["material_count"]) == (5, "G", 3)


def test_paths_reach_into_nested_elements_lists_and_chinese_headers(tmp_path: Path) -> None:
    fields = """\
      case_no: A/SBLSH
      applicant_type: {const: "1"}
      applicant_name: 申请人名称
      applicant_id_type: {const: "111"}
      applicant_id_no: ids.0.no
      submitted_at: [A, times, -1]
      region_code: {path: "A/@region"}
"""
    m = inbound(tmp_path, fields)
    payload = {
        "A": {"SBLSH": {"#text": "SD9", "@type": "x"}, "times": ["20260101000000", "20260929091522"], "@region": "370602"},
        "申请人名称": "王晓梅",
        "ids": [{"no": PERSON_ID}, {"no": "x"}],
    }
    mapped = one(m, payload)
    assert mapped.errors == []
    assert mapped.data is not None
    assert mapped.data["case_no"] == "SD9"
    assert mapped.data["applicant_id_no"] == PERSON_ID
    assert mapped.data["submitted_at"] == "2026-09-29T09:15:22+08:00"


def test_outputs_are_chosen_by_when(tmp_path: Path) -> None:
    body = """\
        name: t
        version: 2
        direction: inbound
        input: {format: xml, record: APPROVEDATAINFO}
        outputs:
          - kind: acceptance
            when: {exists: SPSHOULI}
            fields:
              case_no: SPSHOULI/SBLSH
              department_name: SPSHOULI/SLBMMC
              status: SPSHOULI/SLZTDM
              accepted_at: SPSHOULI/SLSJ
          - kind: evaluation
            when: {equals: {path: TYPE, value: PJ}}
            fields:
              evaluation_id: PJBH
              channel: {const: mobile}
              satisfaction: {path: MYD, lookup: satisfaction_hcp}
              evaluated_at: PJSJ
        """
    m = load_mapping(write(tmp_path, body))
    assert isinstance(m, InboundMapping)
    assert m.kinds == ("acceptance", "evaluation")
    accept = {"SPSHOULI": {"SBLSH": "A1", "SLBMMC": "局", "SLZTDM": "1", "SLSJ": "20260929103000"}}
    assert [r.kind for r in m.map(accept)] == ["acceptance"]
    rating = {"TYPE": "PJ", "PJBH": "P1", "MYD": "5", "PJSJ": "2026-10-13 09:12:00"}
    (mapped,) = m.map(rating)
    assert mapped.errors == []
    assert mapped.data is not None and mapped.data["satisfaction"] == "1"  # national 5 非常满意 → GB/T 39046 1
    assert len(m.map({**accept, **rating})) == 2
    (nothing,) = m.map({"SPSHOULI": "", "TYPE": "X"})
    assert nothing.data is None
    assert [(e.field, e.rule) for e in nothing.errors] == [("SPSHOULI", "no_output")]
    assert "when exists SPSHOULI" in nothing.errors[0].message


# --------------------------------------------------------------------------- run-time errors become FieldErrors


def test_a_bad_date_is_a_field_error_naming_the_rule_and_value(tmp_path: Path) -> None:
    mapped = one(inbound(tmp_path), {**PAYLOAD, "SBSJ": "20261340256100"})
    (error,) = mapped.errors
    assert (error.kind, error.field, error.rule, error.value) == ("case", "submitted_at", "datetime_format", "20261340256100")
    assert "申报时间" in error.message
    assert one(inbound(tmp_path), {**PAYLOAD, "SBSJ": "29/09/2026"}).errors[0].rule == "datetime_format"


@pytest.mark.parametrize("raw", ["2026- 9-29 09:15:22", "2026-+9-29 09:15:22", "2026-09-٢٩ 09:15:22", "2026-09-00 09:15:22",
                                 "2025-02-29 09:15:22", "20250229091522"])
def test_a_date_whose_parts_are_not_ascii_digits_of_a_real_day_is_refused(tmp_path: Path, raw: str) -> None:
    # int() would read " 9", "+9" and other scripts' digits as a month or day, and "2026- 9-29T…" would be stored
    mapped = one(inbound(tmp_path), {**PAYLOAD, "SBSJ": raw})
    assert [(e.field, e.rule) for e in mapped.errors] == [("submitted_at", "datetime_format")]


def test_an_invalid_credit_code_is_a_field_error(tmp_path: Path) -> None:
    fields = CASE_FIELDS + "      department_credit_code: SSJGDM\n"
    mapped = one(inbound(tmp_path, fields), {**PAYLOAD, "SSJGDM": CREDIT[:17] + "0"})
    assert errors_of(mapped) == {"department_credit_code": "credit_code_check"}
    mapped = one(inbound(tmp_path, fields), {**PAYLOAD, "SSJGDM": "91370602MA3C4L7HIG"})
    assert errors_of(mapped) == {"department_credit_code": "credit_code_charset"}


def test_an_unknown_code_is_a_field_error(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_id_type: SQRZJLX", "applicant_id_type: {path: SQRZJLX, lookup: t.id_type}")
    mapped = one(inbound(tmp_path, fields, tables=LOCAL_TABLES), {**PAYLOAD, "SQRZJLX": "30"})
    (error,) = mapped.errors
    assert (error.field, error.rule, error.value) == ("applicant_id_type", "code_unknown", "30")
    assert "t.id_type" in error.message
    assert mapped.original == {"applicant_id_type": "30"}


def test_a_wrong_id_number_is_masked_in_its_error(tmp_path: Path) -> None:
    mapped = one(inbound(tmp_path), {**PAYLOAD, "SQRZJHM": PERSON_ID[:17] + "9"})
    (error,) = mapped.errors
    assert (error.field, error.rule, error.value) == ("applicant_id_no", "id_number_check", "370602********1239")
    assert PERSON_ID[6:14] not in str(error)


def test_missing_required_values_and_several_errors_at_once(tmp_path: Path) -> None:
    mapped = one(inbound(tmp_path), {"SBLSH": "", "SQRLX": "8", "SQRZJLX": "111", "SBSJ": "x", "XZQHDM": "000000"})
    assert errors_of(mapped) == {
        "case_no": "required",
        "applicant_type": "code_invalid",
        "applicant_name": "required",
        "applicant_id_no": "required",
        "submitted_at": "datetime_format",
        "region_code": "region_code_province",
    }
    # what could be mapped is still there, for accept-with-finding configurations
    assert mapped.data is not None and mapped.data["applicant_id_type"] == "111"


def test_structures_where_values_belong_are_field_errors_not_crashes(tmp_path: Path) -> None:
    m = inbound(tmp_path)
    assert errors_of(one(m, {**PAYLOAD, "SQRMC": {"a": "b"}})) == {"applicant_name": "value_type"}
    assert errors_of(one(m, {**PAYLOAD, "SQRMC": ["张三", "李四"]})) == {"applicant_name": "path_ambiguous"}
    assert errors_of(one(m, {**PAYLOAD, "SQRMC": float("nan")})) == {"applicant_name": "value_type"}
    assert one(m, {**PAYLOAD, "SQRMC": ["张三"]}).errors == []


def test_a_repeated_section_makes_the_path_ambiguous(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("case_no: SBLSH", "case_no: S/SBLSH")
    mapped = one(inbound(tmp_path, fields), {**PAYLOAD, "S": [{"SBLSH": "A"}, {"SBLSH": "B"}]})
    assert errors_of(mapped) == {"case_no": "path_ambiguous"}


@pytest.mark.parametrize("payload", [None, "text", 42, ["a"], b"bytes"])
def test_map_never_raises_on_a_payload_that_is_not_a_mapping(tmp_path: Path, payload: Any) -> None:
    (mapped,) = inbound(tmp_path).map(payload)
    assert mapped.data is None
    assert mapped.errors[0].rule == "value_type"


def test_numbers_from_json_are_read_as_text(tmp_path: Path) -> None:
    fields = CASE_FIELDS + "      promised_time_limit: CNSX\n      remark: BZ\n"
    mapped = one(inbound(tmp_path, fields), {**PAYLOAD, "SBLSH": 370602000017, "CNSX": 5, "BZ": 1.5})
    assert mapped.errors == []
    assert mapped.data is not None
    assert (mapped.data["case_no"], mapped.data["promised_time_limit"], mapped.data["remark"]) == ("370602000017", 5, "1.5")


def test_several_codes_in_one_field_are_split_and_translated(tmp_path: Path) -> None:
    fields = """\
      decision_no: WSH
      result_type: {const: penalty}
      counterpart_name: MC
      counterpart_category: {const: 法人及非法人组织}
      penalty_category: CFLB
      content: NR
      decided_on: JDRQ
      authority: JG
      authority_code: JGDM
"""
    m = inbound(tmp_path, fields, kind="supervision_result")
    base = {"WSH": "罚1", "MC": "公司", "NR": "警告", "JDRQ": "2026-11-03", "JG": "局", "JGDM": CREDIT}
    mapped = one(m, {**base, "CFLB": "警告、罚款；没收违法所得"})
    assert mapped.errors == []
    assert mapped.data is not None and mapped.data["penalty_category"] == "警告;罚款;没收违法所得"
    assert errors_of(one(m, {**base, "CFLB": "警告;打板子"})) == {"penalty_category": "code_invalid"}


def test_user_text_never_becomes_code(tmp_path: Path) -> None:
    hostile = "x'); __import__('os').system('false'); ('"
    fields = f"""\
      case_no: {{path: [{hostile!r}]}}
      applicant_type: {{const: "1"}}
      applicant_name: {{const: {hostile!r}}}
      applicant_id_type: {{const: "990"}}
      applicant_id_no: {{concat: [A, {{const: "\\"\\"\\""}}, B], separator: "'''"}}
      submitted_at: SBSJ
      region_code: XZQHDM
"""
    m = inbound(tmp_path, fields)
    mapped = one(m, {hostile: "SD1", "A": "a", "B": "b", "SBSJ": "20260929091522", "XZQHDM": "370602"})
    assert mapped.errors == []
    assert mapped.data is not None
    assert mapped.data["case_no"] == "SD1"
    assert mapped.data["applicant_name"] == hostile
    assert mapped.data["applicant_id_no"] == "A'''\"\"\"'''B"


# --------------------------------------------------------------------------- compile-time errors


def load_error(tmp_path: Path, body: str, tables: str | None = None, name: str = "t.in.yaml") -> MappingError:
    path = write(tmp_path, body, name=name, tables=tables)
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    error = info.value
    assert error.file == str(path)
    assert str(path) in str(error)
    return error


def case_mapping(fields: str) -> str:
    return "name: t\nversion: 1\ndirection: inbound\ninput: {format: jsonl}\noutputs:\n  - kind: case\n    fields:\n" + fields


def test_an_unknown_rule_is_refused_with_line_and_field(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_name: SQRMC", "applicant_name: {path: SQRMC, trnasform: upper}")
    error = load_error(tmp_path, case_mapping(fields))
    assert (error.rule, error.kind, error.field, error.line, error.value) == ("unknown_rule", "case", "applicant_name", 10, "trnasform")
    assert f"{error.file}:10: case.applicant_name: unknown_rule" in str(error)


def test_an_unknown_field_is_refused(tmp_path: Path) -> None:
    error = load_error(tmp_path, case_mapping(CASE_FIELDS + "      applicant_phone: LXRSJ\n"))
    assert (error.rule, error.field, error.line) == ("unknown_field", "applicant_phone", 15)
    assert "contact_phone" in str(error)  # the message lists the fields there are


def test_an_unknown_code_table_is_refused(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_id_type: SQRZJLX", "applicant_id_type: {path: SQRZJLX, lookup: t.id_typ}")
    error = load_error(tmp_path, case_mapping(fields), tables=LOCAL_TABLES)
    assert (error.rule, error.field, error.value, error.line) == ("unknown_table", "applicant_id_type", "t.id_typ", 11)
    assert "t.id_type" in str(error)


def test_a_table_for_other_codes_is_refused(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_type: SQRLX", "applicant_type: {path: SQRLX, lookup: t.id_type}")
    error = load_error(tmp_path, case_mapping(fields), tables=LOCAL_TABLES)
    assert (error.rule, error.field) == ("table_target", "applicant_type")


def test_a_bad_date_format_spec_is_refused(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("submitted_at: SBSJ", "submitted_at: {path: SBSJ, format: DD/MM/YYYY}")
    error = load_error(tmp_path, case_mapping(fields))
    assert (error.rule, error.field, error.value, error.line) == ("bad_format", "submitted_at", "DD/MM/YYYY", 13)
    fields = CASE_FIELDS.replace("applicant_name: SQRMC", "applicant_name: {path: SQRMC, format: YYYYMMDD}")
    assert load_error(tmp_path, case_mapping(fields)).rule == "bad_format"


def test_a_missing_required_output_field_is_refused(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("      applicant_name: SQRMC\n", "")
    error = load_error(tmp_path, case_mapping(fields))
    assert (error.rule, error.kind, error.field, error.line) == ("missing_required", "case", "applicant_name", 7)
    assert "申请人名称" in str(error)


def test_constants_and_defaults_are_checked_at_load(tmp_path: Path) -> None:
    fields = CASE_FIELDS.replace("applicant_type: SQRLX", 'applicant_type: {const: "9"}')
    error = load_error(tmp_path, case_mapping(fields))
    assert (error.rule, error.field, error.value) == ("bad_const", "applicant_type", "9")
    fields = CASE_FIELDS.replace("region_code: XZQHDM", 'region_code: {path: XZQHDM, default: "000000"}')
    assert load_error(tmp_path, case_mapping(fields)).rule == "bad_default"
    fields = CASE_FIELDS.replace("applicant_type: SQRLX", "applicant_type: {const: 01}")
    error = load_error(tmp_path, case_mapping(fields))
    assert error.rule == "bad_const" and "quote" in str(error)


def test_other_vocabulary_mistakes_are_refused(tmp_path: Path) -> None:
    cases = {
        "applicant_name: {path: SQRMC, fn: titlecase}": "unknown_function",
        "applicant_name: {path: SQRMC, const: x}": "source",
        "applicant_name: {fn: upper}": "source",
        "applicant_name: {path: SQRMC, lookup: {map: {a: 1}}}": "bad_const",
        "applicant_name: {path: SQRMC, zone: Mars/Olympus}": "bad_zone",
        "applicant_name: {path: ''}": "bad_path",
        "applicant_name: {path: SQRMC, separator: ','}": "unknown_rule",
    }
    for replacement, rule in cases.items():
        error = load_error(tmp_path, case_mapping(CASE_FIELDS.replace("applicant_name: SQRMC", replacement)))
        assert (error.rule, error.field) == (rule, "applicant_name"), replacement


def test_file_level_mistakes_are_refused(tmp_path: Path) -> None:
    assert load_error(tmp_path, "name: t\nversion: 1\ndirection: inbound\ninput: [\n").rule == "yaml"
    no_input = "name: t\nversion: 1\ndirection: inbound\noutputs: []\n"
    assert load_error(tmp_path, no_input).rule == "bad_input"
    xml_without_record = case_mapping(CASE_FIELDS).replace("{format: jsonl}", "{format: xml}")
    error = load_error(tmp_path, xml_without_record)
    assert (error.rule, error.line) == ("bad_input", 4)
    wrong_kind = case_mapping(CASE_FIELDS).replace("kind: case", "kind: cases")
    assert load_error(tmp_path, wrong_kind).rule == "unknown_kind"
    assert load_error(tmp_path, case_mapping(CASE_FIELDS), name="t.out.yaml").rule == "mapping_format"
    duplicate = case_mapping(CASE_FIELDS + "      case_no: X\n")
    error = load_error(tmp_path, duplicate)
    assert (error.rule, error.line) == ("yaml", 15)
    unknown_top = "colour: red\n" + case_mapping(CASE_FIELDS)
    assert load_error(tmp_path, unknown_top).rule == "unknown_key"


def test_a_broken_local_code_table_is_reported(tmp_path: Path) -> None:
    tables = 'id: t.id_type\ntitle: x\ntarget: id_type\nmap:\n  "10": "112"\n'
    path = write(tmp_path, case_mapping(CASE_FIELDS), tables=tables)
    with pytest.raises(MappingError) as info:
        load_mapping(path)
    error = info.value
    assert error.rule == "code_table" and "'112'" in str(error)
    assert error.file == str(tmp_path / "codetables" / "local.yaml")
    assert str(path) in str(error)


# --------------------------------------------------------------------------- outbound


OUT = """\
name: t_out
version: 3
direction: outbound
format: json
outputs:
  - kind: case
    fields:
      type: {const: CASE}
      caseNo: {path: data.case_no, required: true}
      idType: {path: data.applicant_id_type, lookup: {table: t.id_type, reverse: true}}
      submitTime: {path: data.submitted_at, format: "YYYY-MM-DD hh:mm:ss", required: true}
      submitDate: {path: data.submitted_at, format: YYYYMMDD}
      appType: {path: data.applicant_type, lookup: {table: applicant_type, value: label}}
      meta.source: provenance.source_system
      meta.rawIdType: provenance.original.applicant_id_type
      meta.version: {path: data.version, default: 1}
      note: {concat: [data.item_code, data.item_name], separator: " "}
      phone: data.contact_phone
"""

RECORD = {
    "kind": "case",
    "schema_version": "1",
    "data": {
        "case_no": "SD1",
        "applicant_type": "1",
        "applicant_id_type": "111",
        "submitted_at": "2026-09-29T01:15:22Z",
        "item_code": "XK00011",
        "item_name": "食品经营许可",
    },
    "provenance": {"source_system": "provincial", "original": {"applicant_id_type": "1"}},
}


def outbound(tmp_path: Path, body: str = OUT) -> OutboundMapping:
    m = load_mapping(write(tmp_path, body, name="t.out.yaml", tables=LOCAL_TABLES))
    assert isinstance(m, OutboundMapping)
    return m


def test_outbound_renders_a_stored_record_into_the_counterparts_shape(tmp_path: Path) -> None:
    m = outbound(tmp_path)
    assert (m.direction, m.kinds, m.version) == ("outbound", ("case",), "3")
    assert m.render(RECORD) == {
        "type": "CASE",
        "caseNo": "SD1",
        "idType": "10",
        "submitTime": "2026-09-29 09:15:22",
        "submitDate": "20260929",
        "appType": "自然人",
        "meta": {"source": "provincial", "rawIdType": "1", "version": 1},
        "note": "XK00011 食品经营许可",
    }


def test_outbound_refuses_a_record_missing_a_required_value(tmp_path: Path) -> None:
    record = {**RECORD, "data": {k: v for k, v in RECORD["data"].items() if k != "submitted_at"}}
    with pytest.raises(MappingError) as info:
        outbound(tmp_path).render(record)
    error = info.value
    assert (error.kind, error.field, error.rule, error.line) == ("case", "submitTime", "required", 11)
    assert "data/submitted_at" in str(error)


def test_outbound_refuses_codes_without_a_counterpart_code_and_unknown_kinds(tmp_path: Path) -> None:
    m = outbound(tmp_path)
    with pytest.raises(MappingError) as info:
        m.render({**RECORD, "data": {**RECORD["data"], "applicant_id_type": "414"}})
    assert (info.value.field, info.value.rule, info.value.value) == ("idType", "code_unknown", "414")
    with pytest.raises(MappingError) as info:
        m.render({**RECORD, "kind": "completion"})
    assert info.value.rule == "kind_not_mapped"


def test_outbound_xml_is_rendered_with_lxml(tmp_path: Path) -> None:
    body = OUT.replace("format: json", "format: xml\nroot: CASEINFO").replace("meta.", "META.")
    xml = outbound(tmp_path, body).render(RECORD)
    assert isinstance(xml, bytes) and xml.startswith(b"<?xml")
    root = etree.fromstring(xml)
    assert root.tag == "CASEINFO"
    assert root.findtext("caseNo") == "SD1"
    assert root.findtext("META/source") == "provincial"


def test_outbound_compile_time_mistakes(tmp_path: Path) -> None:
    bad_field = OUT.replace("data.contact_phone", "data.contact_mobile")
    error = load_error(tmp_path, bad_field, tables=LOCAL_TABLES, name="t.out.yaml")
    assert (error.rule, error.field, error.line) == ("unknown_field", "phone", 18)
    bad_root = OUT.replace("phone: data.contact_phone", "phone: record.contact_phone")
    assert load_error(tmp_path, bad_root, tables=LOCAL_TABLES, name="t.out.yaml").rule == "bad_path"
    format_on_text = OUT.replace("phone: data.contact_phone", "phone: {path: data.contact_phone, format: YYYYMMDD}")
    assert load_error(tmp_path, format_on_text, tables=LOCAL_TABLES, name="t.out.yaml").rule == "bad_format"
    clash = OUT.replace("note: {concat", "meta: {concat")
    assert load_error(tmp_path, clash, tables=LOCAL_TABLES, name="t.out.yaml").rule == "bad_path"


def test_functions_must_fit_the_field(tmp_path: Path) -> None:
    error = load_error(tmp_path, case_mapping(CASE_FIELDS.replace("applicant_name: SQRMC", "applicant_name: {path: SQRMC, fn: int}")))
    assert (error.rule, error.field, error.value) == ("unknown_function", "applicant_name", "int")
    fields = CASE_FIELDS + "      promised_time_limit: {const: 5, fn: upper}\n"
    assert load_error(tmp_path, case_mapping(fields)).rule == "unknown_function"
