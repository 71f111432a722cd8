"""Values the schema refuses or normalises: unsafe characters in identifiers, NFC, strict types, version range."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from gateway.adapters import RawRecord
from gateway.mapping import InboundMapping, Mapped, load_mapping
from gateway.pipeline.ingest import Ingestor
from gateway.pipeline.router import Router
from gateway.schema import KINDS
from gateway.schema._text import escape_unprintable, nfc, unsafe_in_identifier, unsafe_in_text

PAYLOAD = {
    "SBLSH": "SD37060220260929000017",
    "SQRLX": "1",
    "SQRMC": "王晓梅",
    "SQRZJLX": "111",
    "SQRZJHM": "370602198503121230",
    "SBSJ": "20260929091522",
    "XZQHDM": "370602",
    "CLSL": "3",
    "DEPT": "11370600MB2855918R",
    "VERSION": "1",
}

MAPPING = """\
name: strict
version: 1
direction: inbound
input: {format: jsonl}
outputs:
  - kind: case
    fields:
      case_no: SBLSH
      applicant_type: SQRLX
      applicant_name: SQRMC
      applicant_id_type: SQRZJLX
      applicant_id_no: SQRZJHM
      submitted_at: SBSJ
      region_code: XZQHDM
      material_count: CLSL
      department_credit_code: DEPT
      application_content: SQNR
      version: {path: VERSION, default: 1}
"""


@pytest.fixture(scope="module")
def mapping(tmp_path_factory: pytest.TempPathFactory) -> InboundMapping:
    path = tmp_path_factory.mktemp("m") / "strict.in.yaml"
    path.write_text(MAPPING, encoding="utf-8")
    m = load_mapping(path)
    assert isinstance(m, InboundMapping)
    return m


def one(m: InboundMapping, **changes: Any) -> Mapped:
    (mapped,) = m.map({**PAYLOAD, **changes})
    return mapped


def rules(mapped: Mapped) -> dict[str, str]:
    return {e.field: e.rule for e in mapped.errors}


@pytest.mark.parametrize(
    ("case_no", "rule", "named"),
    [
        ("SD3706\x0002", "control_char", "U+0000 NULL"),
        ("SD3706\x1b[31m02", "control_char", "U+001B ESCAPE"),
        ("SD3706\r\n02", "control_char", "U+000D CARRIAGE RETURN"),
        ("SD3706\t02", "control_char", "U+0009"),
        ("SD3706\u202e20", "bidi_char", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("SD3706\u2066x\u2069", "bidi_char", "U+2066 LEFT-TO-RIGHT ISOLATE"),
        ("SD3706\u200b02", "invisible_char", "U+200B ZERO WIDTH SPACE"),
        ("SD3706\ufeff02", "invisible_char", "U+FEFF ZERO WIDTH NO-BREAK SPACE"),
        ("SD3706\u2028X", "control_char", "U+2028 LINE SEPARATOR"),
        ("SD3706\ue000", "invalid_char", "U+E000"),
    ],
)
def test_a_case_number_with_a_control_bidi_or_invisible_character_is_refused(
    mapping: InboundMapping, case_no: str, rule: str, named: str
) -> None:
    mapped = one(mapping, SBLSH=case_no)
    assert rules(mapped) == {"case_no": rule}
    (error,) = mapped.errors
    assert named in error.message
    assert error.value.isprintable()  # shown escaped: the character never reaches a terminal or a console


def test_identifier_types_refuse_invisible_characters_instead_of_dropping_them(mapping: InboundMapping) -> None:
    assert rules(one(mapping, DEPT="11370600MB\u200b2855918R")) == {"department_credit_code": "invisible_char"}
    # a space typed into a credit code is still normalised away, as before
    assert one(mapping, DEPT="1137 0600 MB28 5591 8R").data["department_credit_code"] == "11370600MB2855918R"


def test_free_text_keeps_line_breaks_and_bidi_marks_but_not_nul(mapping: InboundMapping) -> None:
    ok = one(mapping, SQNR="第一行\n第二行\t附注", SQRMC="Ali \u202bعلي\u202c")
    assert ok.errors == []
    assert rules(one(mapping, SQNR="内容\x00隐藏")) == {"application_content": "control_char"}
    assert rules(one(mapping, SQNR="内容\x85隐藏")) == {"application_content": "control_char"}


def test_text_is_stored_in_nfc(mapping: InboundMapping) -> None:
    mapped = one(mapping, SQRMC="Jose\u0301 \uf900")  # a combining accent, a CJK compatibility ideograph
    assert mapped.errors == []
    assert mapped.data["applicant_name"] == "José \u8c48"


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("SBLSH", True, "type"),
        ("SBLSH", 3706.02, "type"),
        ("SQRLX", False, "type"),
        ("CLSL", True, "type"),
        ("SBSJ", 20260929091522.5, "type"),
    ],
)
def test_fields_are_typed_strictly(mapping: InboundMapping, field: str, value: Any, rule: str) -> None:
    mapped = one(mapping, **{field: value})
    assert list(rules(mapped).values()) == [rule]
    assert "boolean" in mapped.errors[0].message or "fraction" in mapped.errors[0].message


def test_a_whole_number_is_a_fine_case_number_and_count(mapping: InboundMapping) -> None:
    mapped = one(mapping, SBLSH=370602000017, CLSL=3, VERSION=2)
    assert mapped.errors == []
    assert (mapped.data["case_no"], mapped.data["material_count"], mapped.data["version"]) == ("370602000017", 3, 2)


@pytest.mark.parametrize("version", ["0", "-1", 0, "9223372036854775808", "1" + "0" * 5000, 2**64])
def test_versions_start_at_1_and_fit_in_64_bits(mapping: InboundMapping, version: Any) -> None:
    mapped = one(mapping, VERSION=version)
    assert rules(mapped) == {"version": "int_range"}
    assert "between 1 and 9223372036854775807" in mapped.errors[0].message or "64 bits" in mapped.errors[0].message


def test_the_largest_64_bit_version_is_accepted(mapping: InboundMapping) -> None:
    assert one(mapping, VERSION="9223372036854775807").data["version"] == 2**63 - 1


def test_the_stored_record_validator_applies_the_same_rules() -> None:
    validate = KINDS["case"].validator
    data = {
        "case_no": "SD\u202e1", "applicant_type": "1", "applicant_name": "王\x00", "applicant_id_type": "990",
        "applicant_id_no": "X1", "submitted_at": "2026-09-29T09:15:22+08:00", "region_code": "370602", "version": 0,
    }
    assert {e.field: e.rule for e in validate(data)} == {
        "case_no": "bidi_char", "applicant_name": "control_char", "version": "int_range"
    }


def test_character_checks_name_the_character_and_its_position() -> None:
    assert unsafe_in_identifier("AB\u200dC") == ("invisible_char", "U+200D ZERO WIDTH JOINER at character 3")
    assert unsafe_in_identifier("烟台\u3000市") is None  # an ideographic space is a space: normalisation's business
    assert unsafe_in_text("行一\r\n行二") is None
    assert escape_unprintable("A\u202eB\x00") == "A\\u202eB\\u0000"
    assert nfc("e\u0301") == "é"


async def test_a_poisoned_case_number_never_reaches_the_store(store, mapping: InboundMapping) -> None:
    ingestor = Ingestor(store, Router([]), {"county": mapping})
    raws = [RawRecord("county", {**PAYLOAD, "SBLSH": f"SD-{n}"}, f"f.jsonl line {n}") for n in range(1, 4)]
    raws[1] = RawRecord("county", {**PAYLOAD, "SBLSH": "SD-\u202e2"}, "f.jsonl line 2")
    outcomes = await ingestor.ingest("county", raws)
    assert [o.status for o in outcomes] == ["accepted", "accepted", "quarantined"]
    assert [r["record_key"] for r in await store.list_records(kind="case")] == ["SD-1", "SD-3"]
    (q,) = await store.list_quarantine()
    assert q["ref"] == "f.jsonl line 2" and q["errors"][0]["rule"] == "bidi_char"
    assert q["errors"][0]["value"] == "SD-\\u202e2"


def test_a_mapping_constant_with_an_unsafe_character_fails_at_load(tmp_path: Path) -> None:
    body = MAPPING.replace("case_no: SBLSH", 'case_no: {const: "A\\u200bB"}')
    path = tmp_path / "bad.in.yaml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    with pytest.raises(Exception, match=r"bad.in.yaml:8: case.case_no: bad_const: .*invisible"):
        load_mapping(path)
