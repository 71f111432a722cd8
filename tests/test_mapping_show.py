"""gateway mapping show prints the compiled code; a missing code table names every place looked in and the fix."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.mapping import MappingError, load_mapping
from gateway.mapping.commands import mapping as mapping_cli

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "mappings"


def test_show_prints_the_generated_python_with_yaml_lines_and_bound_values() -> None:
    result = CliRunner().invoke(mapping_cli, ["show", str(MAPPINGS / "provincial_approvedatainfo.in.yaml")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert out.startswith("# provincial_approvedatainfo@2: inbound mapping compiled from ")
    assert "# on_invalid: every field error quarantines the record" in out
    assert "# output 3 (provincial_approvedatainfo.in.yaml:102): process_step (办理环节); each SPGUOCHENG" in out
    assert "def _out3(payload, occ):" in out and "def map_payload(payload):" in out
    assert "# case_no (申办流水号) ← provincial_approvedatainfo.in.yaml:27" in out
    assert "code table provincial.id_type (8 entries)" in out
    assert "the 3 codes of table step_code" in out
    # what is printed is what runs: it compiles as Python
    compile(out, "<show>", "exec")


def test_show_prints_an_outbound_mapping_too() -> None:
    result = CliRunner().invoke(mapping_cli, ["show", str(MAPPINGS / "hall_platform.out.yaml")])
    assert result.exit_code == 0
    assert "# case (办件), hall_platform.out.yaml:" in result.output and "def render(rec):" in result.output


def test_show_of_a_broken_mapping_names_the_yaml_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "x.in.yaml"
    path.write_text("name: x\nversion: 1\ndirection: inbound\ninput: {format: jsonl}\noutputs:\n"
                    "  - kind: case\n    each: A/0\n    fields: {case_no: B}\n", encoding="utf-8")
    result = CliRunner().invoke(mapping_cli, ["show", str(path)])
    assert result.exit_code == 1
    assert f"{path}:7: case: bad_path:" in result.output


def test_a_copied_mapping_without_its_tables_names_every_place_looked_in(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "county.in.yaml"
    copy.parent.mkdir()
    shutil.copy(MAPPINGS / "provincial_approvedatainfo.in.yaml", copy)
    with pytest.raises(MappingError) as caught:
        load_mapping(copy)
    error = caught.value
    assert (error.rule, error.line, error.value) == ("unknown_table", 37, "provincial.id_type")
    text = str(error)
    assert f"{copy}:37: case.applicant_id_type: unknown_table: no code table 'provincial.id_type'." in text
    assert "gateway/schema/codetables" in text
    assert f"{copy.parent / 'codetables'} (no such folder)" in text
    assert "copy the table file along (the shipped ones are in mappings/codetables/)" in text
    assert "codetables: [path/to/folder]" in text


def test_a_mapping_names_the_folder_of_its_tables_with_codetables(tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "county.in.yaml"
    copy.parent.mkdir()
    text = (MAPPINGS / "provincial_approvedatainfo.in.yaml").read_text(encoding="utf-8")
    copy.write_text(f"codetables: {MAPPINGS / 'codetables'}\n" + text, encoding="utf-8")
    assert load_mapping(copy).kinds[0] == "case"
    copy.write_text("codetables: [../nowhere]\n" + text, encoding="utf-8")
    with pytest.raises(MappingError, match=r"county.in.yaml:1: code_table: codetables names .*nowhere, which is not"):
        load_mapping(copy)
