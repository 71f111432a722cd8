"""each: a repeated section becomes one record per occurrence, compiled once, errors naming the occurrence."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from lxml import etree

from gateway.formats import element_to_dict
from gateway.mapping import InboundMapping, MappingError, load_mapping
from gateway.schema import KINDS

STEPS = """\
name: steps
version: 1
direction: inbound
input: {format: xml, record: APPROVEDATAINFO}
outputs:
  - kind: process_step
    each: SPGUOCHENG
    fields:
      case_no: {first_nonempty: [SBLSH, /SPSHENQIN/SBLSH]}
      step_code: SPHJDM
      step_name: SPHJMC
      handled_at: SPSJ
      version: {path: /VERSION, default: 1}
"""


def compile_text(tmp_path: Path, text: str) -> InboundMapping:
    path = tmp_path / "t.in.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    m = load_mapping(path)
    assert isinstance(m, InboundMapping)
    return m


def report(*steps: str, version: str = "3") -> dict:
    xml = (f"<APPROVEDATAINFO><VERSION>{version}</VERSION><SPSHENQIN><SBLSH>SD-1</SBLSH></SPSHENQIN>"
           + "".join(steps) + "</APPROVEDATAINFO>")
    return element_to_dict(etree.fromstring(xml))


def step(code: str, at: str, extra: str = "") -> str:
    return f"<SPGUOCHENG>{extra}<SPHJDM>{code}</SPHJDM><SPHJMC>环节{code}</SPHJMC><SPSJ>{at}</SPSJ></SPGUOCHENG>"


def test_several_occurrences_become_several_records_each_with_its_own_key(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS)
    out = m.map(report(step("1", "20260929100000"), step("2", "20260930100000"), step("3", "20261008100000")))
    assert [r.errors for r in out] == [[], [], []]
    assert [(r.data["case_no"], r.data["step_code"], r.data["version"]) for r in out] == [
        ("SD-1", "1", 3), ("SD-1", "2", 3), ("SD-1", "3", 3)
    ]
    keys = [KINDS["process_step"].record_key(r.data) for r in out]
    assert keys == ["SD-1|1|2026-09-29T10:00:00+08:00", "SD-1|2|2026-09-30T10:00:00+08:00",
                    "SD-1|3|2026-10-08T10:00:00+08:00"]


def test_an_occurrence_names_its_own_case_before_the_reports(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS)
    (r,) = m.map(report(step("1", "20260929100000", "<SBLSH>SD-OWN</SBLSH>")))
    assert r.data["case_no"] == "SD-OWN"


def test_one_occurrence_is_one_record_and_none_is_no_output(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS)
    assert len(m.map(report(step("1", "20260929100000")))) == 1
    (nothing,) = m.map(report())
    assert nothing.data is None and nothing.errors[0].rule == "no_output"
    assert "each SPGUOCHENG" in nothing.errors[0].message
    # an empty element is no occurrence
    assert len(m.map(report("<SPGUOCHENG/>", step("2", "20260930100000")))) == 1


def test_errors_name_the_occurrence_and_the_other_occurrences_still_map(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS)
    out = m.map(report(step("1", "20260929100000"), step("7", "bad"), step("3", "20261008100000")))
    assert [bool(r.errors) for r in out] == [False, True, False]
    assert {(e.where, e.field, e.rule) for e in out[1].errors} == {
        ("SPGUOCHENG #2", "step_code", "code_invalid"), ("SPGUOCHENG #2", "handled_at", "datetime_format")
    }
    assert str(out[1].errors[0]).startswith("SPGUOCHENG #2: process_step.")
    assert out[1].errors[0].as_dict()["where"] == "SPGUOCHENG #2"


def test_a_json_array_of_steps_and_an_occurrence_that_is_a_bare_value(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS.replace("format: xml, record: APPROVEDATAINFO", "format: json"))
    payload = {"VERSION": 1, "SPSHENQIN": {"SBLSH": "SD-9"},
               "SPGUOCHENG": [{"SPHJDM": "1", "SPSJ": "2026-09-29 10:00:00"}, "oops", {"SPHJDM": 2, "SPSJ": "20260930"}]}
    out = m.map(payload)
    assert out[0].errors == [] and out[0].data["step_code"] == "1"
    assert (out[1].data, out[1].errors[0].rule, out[1].errors[0].where) == (None, "value_type", "SPGUOCHENG #2")
    assert out[2].errors[0].field == "handled_at"  # 20260930 is a date, not a date and time


def test_a_wrapper_repeated_on_the_way_is_flattened(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS.replace("each: SPGUOCHENG", "each: STEPS/SPGUOCHENG"))
    payload = {"SPSHENQIN": {"SBLSH": "SD-2"}, "STEPS": [
        {"SPGUOCHENG": [{"SPHJDM": "1", "SPSJ": "20260929100000"}, {"SPHJDM": "2", "SPSJ": "20260929110000"}]},
        {"SPGUOCHENG": {"SPHJDM": "3", "SPSJ": "20260929120000"}},
    ]}
    assert [r.data["step_code"] for r in m.map(payload)] == ["1", "2", "3"]


def test_when_inside_each_is_asked_of_each_occurrence(tmp_path: Path) -> None:
    text = STEPS.replace("    each: SPGUOCHENG\n", "    each: SPGUOCHENG\n    when: {equals: {path: SPHJMC, value: 环节2}}\n")
    m = compile_text(tmp_path, text)
    out = m.map(report(step("1", "20260929100000"), step("2", "20260930100000")))
    assert [r.data["step_code"] for r in out] == ["2"]


def test_outside_each_a_leading_slash_is_the_item_itself(tmp_path: Path) -> None:
    text = STEPS.replace("    each: SPGUOCHENG\n", "").replace("SBLSH, /SPSHENQIN/SBLSH", "/SPSHENQIN/SBLSH")
    text = text.replace("step_code: SPHJDM", "step_code: /SPGUOCHENG/SPHJDM").replace(
        "step_name: SPHJMC", "step_name: SPGUOCHENG/SPHJMC").replace("handled_at: SPSJ", "handled_at: SPGUOCHENG/SPSJ")
    m = compile_text(tmp_path, text)
    (r,) = m.map(report(step("1", "20260929100000")))
    assert r.errors == [] and (r.data["case_no"], r.data["step_code"]) == ("SD-1", "1")


def test_each_is_compiled_once_into_the_generated_code(tmp_path: Path) -> None:
    m = compile_text(tmp_path, STEPS)
    assert "def _out0(payload, occ):" in m.source
    assert "for n, o in enumerate(_each" in m.source
    assert "occ.get('SPHJDM')" in m.source and "payload.get('VERSION')" in m.source


@pytest.mark.parametrize(
    ("change", "line", "words"),
    [
        (("each: SPGUOCHENG", "each: SPGUOCHENG/0"), 7, "leave out the index"),
        (("each: SPGUOCHENG", "each: 7"), 7, "a path is text"),
        (("each: SPGUOCHENG", "each: ''"), 7, "path step '' is not a key or an index"),
    ],
)
def test_a_wrong_each_is_refused_at_load_with_file_and_line(tmp_path: Path, change: tuple[str, str], line: int,
                                                            words: str) -> None:
    with pytest.raises(MappingError) as caught:
        compile_text(tmp_path, STEPS.replace(*change))
    assert caught.value.line == line and words in str(caught.value)
    assert str(caught.value).startswith(f"{tmp_path / 't.in.yaml'}:{line}: process_step:")
