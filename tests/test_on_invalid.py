"""on_invalid: field errors accepted as findings where the mapping or the source says so, and counted by supervision."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.adapters import RawRecord
from gateway.app import build
from gateway.cli import main
from gateway.config import load_config
from gateway.mapping import InboundMapping, MappingError, OverrideError, load_mapping
from gateway.pipeline.fileingest import ingest_file
from gateway.pipeline.ingest import Ingestor
from gateway.pipeline.router import Router
from gateway.supervision import SupervisionEngine
from gateway.supervision.clock import CHINA_TZ

REPO = Path(__file__).resolve().parents[1]
GOOD_CC = "11370600MB2855918R"
WRONG_CHECK = "11370600MB2855918X"  # the 18th character does not match GB 32100
TOO_SHORT = "11370600MB285591"

ACCEPTANCE = """\
name: acc
version: 1
direction: inbound
input: {{format: jsonl}}
{top}outputs:
  - kind: acceptance
    fields:
      case_no: SBLSH
      department_name: DEPT
      department_credit_code: {cc}
      status: {{const: "1"}}
      accepted_at: {at}
"""

PAYLOAD = {"SBLSH": "SD-1", "DEPT": "烟台市行政审批服务局", "CC": WRONG_CHECK, "SLSJ": "20260929100000"}


def mapping(tmp_path: Path, *, top: str = "", cc: str = "CC", at: str = "SLSJ") -> InboundMapping:
    path = tmp_path / "acc.in.yaml"
    path.write_text(ACCEPTANCE.format(top=textwrap.dedent(top), cc=cc, at=at), encoding="utf-8")
    m = load_mapping(path)
    assert isinstance(m, InboundMapping)
    return m


def load_error(tmp_path: Path, **kw: str) -> MappingError:
    with pytest.raises(MappingError) as caught:
        mapping(tmp_path, **kw)
    return caught.value


# --------------------------------------------------------------------------- the policy in a mapping


def test_without_on_invalid_a_wrong_check_character_quarantines(tmp_path: Path) -> None:
    (r,) = mapping(tmp_path).map(PAYLOAD)
    assert [(e.field, e.rule) for e in r.errors] == [("department_credit_code", "credit_code_check")]
    assert r.findings == []


def test_a_rule_accepted_mapping_wide_keeps_the_value_and_carries_the_finding(tmp_path: Path) -> None:
    m = mapping(tmp_path, top="on_invalid: {credit_code_check: accept_with_finding}\n")
    (r,) = m.map(PAYLOAD)
    assert r.errors == []
    assert [(f.field, f.rule, f.value) for f in r.findings] == [
        ("department_credit_code", "credit_code_check", WRONG_CHECK)
    ]
    assert r.data["department_credit_code"] == WRONG_CHECK  # only its check failed: it keeps its shape
    (clean,) = m.map({**PAYLOAD, "CC": GOOD_CC})
    assert clean.findings == [] and clean.errors == []


def test_a_field_level_policy_empties_a_value_that_lost_its_shape(tmp_path: Path) -> None:
    m = mapping(tmp_path, cc="{path: CC, on_invalid: accept_with_finding}")
    (r,) = m.map({**PAYLOAD, "CC": TOO_SHORT})
    assert r.errors == [] and [f.rule for f in r.findings] == ["credit_code_length"]
    assert "department_credit_code" not in r.data  # the stored record still satisfies the JSON Schema


def test_a_field_and_rule_policy_accepts_only_that_rule(tmp_path: Path) -> None:
    m = mapping(tmp_path, cc="{path: CC, on_invalid: {credit_code_check: accept_with_finding}}")
    assert m.map(PAYLOAD)[0].errors == []
    (short,) = m.map({**PAYLOAD, "CC": TOO_SHORT})
    assert [e.rule for e in short.errors] == ["credit_code_length"]


def test_the_most_specific_entry_wins(tmp_path: Path) -> None:
    m = mapping(
        tmp_path,
        top="on_invalid: {credit_code_check: accept_with_finding}\n",
        cc="{path: CC, on_invalid: quarantine}",
    )
    assert [e.rule for e in m.map(PAYLOAD)[0].errors] == ["credit_code_check"]
    m = mapping(tmp_path, top="on_invalid:\n  acceptance.department_credit_code: accept_with_finding\n")
    assert m.map(PAYLOAD)[0].errors == []


def test_a_record_with_one_error_not_accepted_is_quarantined_with_every_reason(tmp_path: Path) -> None:
    m = mapping(tmp_path, top="on_invalid: {credit_code_check: accept_with_finding}\n")
    (r,) = m.map({**PAYLOAD, "SLSJ": "yesterday"})
    assert {e.rule for e in r.errors} == {"credit_code_check", "datetime_format"}
    assert r.findings == []


def test_a_required_value_emptied_by_a_finding_still_quarantines(tmp_path: Path) -> None:
    m = mapping(tmp_path, at="{path: SLSJ, on_invalid: accept_with_finding}")
    (r,) = m.map({**PAYLOAD, "CC": GOOD_CC, "SLSJ": "yesterday"})
    assert [e.rule for e in r.errors] == ["datetime_format"]


@pytest.mark.parametrize(
    ("kw", "line", "words"),
    [
        ({"top": "on_invalid: {case_no: accept_with_finding}\n"}, 5,
         "acceptance.case_no is part of the record's key"),
        ({"top": "on_invalid: {required: accept_with_finding}\n"}, 5, "rule 'required' always quarantines"),
        ({"top": "on_invalid: {credit_code_chek: accept_with_finding}\n"}, 5, "neither a rule nor a field"),
        ({"top": "on_invalid: {credit_code_check: accept}\n"}, 5, "use quarantine or accept_with_finding"),
        ({"cc": "{path: CC, on_invalid: {max_lenght: accept_with_finding}}"}, 10, "'max_lenght' is not a rule"),
    ],
)
def test_a_wrong_policy_is_refused_at_load_with_file_and_line(tmp_path: Path, kw: dict, line: int, words: str) -> None:
    error = load_error(tmp_path, **kw)
    assert error.line == line and error.rule == "on_invalid" and words in str(error)


def test_a_source_lays_its_own_policy_over_the_mappings_and_is_checked(tmp_path: Path) -> None:
    m = mapping(tmp_path)
    relaxed = m.for_source(on_invalid={"credit_code_check": "accept_with_finding"})
    assert relaxed.map(PAYLOAD)[0].errors == [] and m.map(PAYLOAD)[0].errors  # the file's own stays strict
    assert "credit_code_check = accept_with_finding" in relaxed.show()
    with pytest.raises(OverrideError) as caught:
        m.for_source(input={"encoding": "latin-1"}, on_invalid={"case_no": "accept_with_finding"})
    assert caught.value.problems == [
        "input.encoding is one of auto, utf-8, utf-8-sig, gb18030, not 'latin-1'",
        "on_invalid.case_no: acceptance.case_no is part of the record's key; a record with an invalid key is "
        "always quarantined",
    ]


# --------------------------------------------------------------------------- stored, said, counted


async def test_an_accepted_record_carries_its_findings_in_its_body_and_its_outcome(store, tmp_path: Path) -> None:
    m = mapping(tmp_path, top="on_invalid: {credit_code_check: accept_with_finding}\n")
    ingestor = Ingestor(store, Router([]), {"ministry": m})
    outcomes = await ingestor.ingest("ministry", [RawRecord("ministry", PAYLOAD, "f.jsonl line 1"),
                                                  RawRecord("ministry", {**PAYLOAD, "SBLSH": "SD-2", "CC": GOOD_CC},
                                                            "f.jsonl line 2")])
    assert [o.status for o in outcomes] == ["accepted", "accepted"]
    assert [f["rule"] for f in outcomes[0].findings] == ["credit_code_check"] and outcomes[1].findings == []
    rows = {r["record_key"]: r["record"] for r in await store.list_records(kind="acceptance")}
    assert rows["SD-1"]["findings"] == [{
        "field": "department_credit_code", "rule": "credit_code_check", "value": WRONG_CHECK,
        "message": "受理部门统一社会信用代码: 统一社会信用代码 check character (18th) does not match (GB 32100)",
        "kind": "acceptance",
    }]
    assert "findings" not in rows["SD-2"]  # a clean record's body is what it always was
    assert await store.list_quarantine() == []


def test_supervision_counts_findings_per_case_and_raises_one_notice_per_record() -> None:
    engine = SupervisionEngine()
    at = datetime(2026, 9, 29, 11, 0, tzinfo=CHINA_TZ)
    finding = {"field": "department_credit_code", "rule": "credit_code_check", "value": WRONG_CHECK,
               "message": "…", "kind": "acceptance"}
    record = {"kind": "acceptance", "data": {"case_no": "SD-1", "department_name": "局", "status": "1",
                                              "accepted_at": "2026-09-29T10:00:00+08:00", "version": 1},
              "provenance": {"source_system": "ministry", "source_id": "SD-1"}, "findings": [finding]}
    state, alerts = engine.on_record(None, record, at)
    assert state.finding_count() == 1 and engine.finding_counts(state) == {"credit_code_check": 1}
    (notice,) = [a for a in alerts if a["alert_type"] == "data_quality_finding"]
    assert notice["severity"] == "info" and WRONG_CHECK not in notice["description"]
    assert "department_credit_code（credit_code_check）" in notice["description"]
    again, repeated = engine.on_record(state, record, at)
    assert again.finding_count() == 1 and not [a for a in repeated if a["alert_type"] == "data_quality_finding"]
    fixed = {**record, "data": {**record["data"], "version": 2}}
    fixed.pop("findings")
    cleared, _ = engine.on_record(again, fixed, at)
    assert cleared.finding_count() == 0


# --------------------------------------------------------------------------- the ministry feed, end to end


def _ministry_site(tmp_path: Path, on_invalid: str = "") -> Path:
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    config = tmp_path / "gateway.toml"
    config.write_text(textwrap.dedent(f"""\
        [gateway]
        store = "sqlite:///gateway.db"
        adapters = ["push"]

        [api]
        enabled = false

        [supervision]
        enabled = false

        [sources.ministry]
        adapter = "push"
        mapping = "mappings/ministry_progress.in.yaml"
        {on_invalid}
        """), encoding="utf-8")
    return config


def _ministry_feed(path: Path, n: int) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i in range(n):
            f.write(json.dumps({
                "caseNo": f"SC3706002026100{i:05d}", "itemCode": "0120030001", "version": 1,
                "dept": {"name": "烟台市市场监督管理局", "creditCode": "11370000004317AB9X"},  # wrong check character
                "result": {"code": "6", "desc": "准予许可", "time": "2026-10-10 11:30:00"},
            }, ensure_ascii=False) + "\n")
    return path


def test_a_ministry_feed_with_wrong_check_characters_lands_when_its_source_accepts_them(tmp_path: Path) -> None:
    strict = tmp_path / "strict"
    strict.mkdir()
    feed = _ministry_feed(tmp_path / "feed.jsonl", 137)
    runner = CliRunner()
    result = runner.invoke(main, ["ingest", "-c", str(_ministry_site(strict)), str(feed)])
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["quarantined"] == 137 and "accepted" not in summary  # today's behaviour, still the default

    relaxed = tmp_path / "relaxed"
    relaxed.mkdir()
    config = _ministry_site(relaxed, 'on_invalid = {credit_code_check = "accept_with_finding"}')
    result = runner.invoke(main, ["ingest", "-c", str(config), str(feed)])
    summary = json.loads(result.output.strip().splitlines()[-1])
    assert summary["accepted"] == 137 and "quarantined" not in summary, result.output


async def test_the_helper_process_applies_the_sources_overrides_too(tmp_path: Path) -> None:
    config = load_config(_ministry_site(
        tmp_path, 'on_invalid = {credit_code_check = "accept_with_finding"}\ninput = {max_depth = 8}'))
    comp = build(config)
    assert comp.inbound["ministry"].input["max_depth"] == 8
    feed = _ministry_feed(tmp_path / "feed.jsonl", 40)
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "gateway.db")
    await store.open()
    try:
        ingestor = Ingestor(store, comp.router, comp.inbound)
        result = await ingest_file(ingestor, "ministry", feed, ref_prefix="feed.jsonl", cursor="c", batch=10,
                                   parallel=True)
        assert result.complete and result.outcomes == {"accepted": 40}
        row = (await store.list_records(kind="completion", limit=1))[0]["record"]
        assert row["findings"][0]["rule"] == "credit_code_check"
    finally:
        await store.close()


def test_check_names_a_wrong_source_override(tmp_path: Path) -> None:
    config = _ministry_site(tmp_path, 'input = {delimiter = ";", colour = "red"}\non_invalid = {required = "accept_with_finding"}')
    result = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert result.exit_code == 2
    assert "sources.ministry.input.delimiter applies to csv input; this mapping reads jsonl" in result.output
    assert "sources.ministry.input.colour is not a reader option" in result.output
    assert "sources.ministry.on_invalid.required: rule 'required' always quarantines" in result.output


async def test_a_push_answer_tells_the_counterpart_which_findings_its_record_was_accepted_with(tmp_path: Path) -> None:
    import aiohttp
    from test_api_support import PUSH_AUTH, case_item, write_gateway_dir

    from gateway.app import Gateway

    config = write_gateway_dir(tmp_path)
    text = config.read_text(encoding="utf-8").replace(
        'mapping = "mappings/hall_platform.in.yaml"\n',
        'mapping = "mappings/hall_platform.in.yaml"\non_invalid = {id_number_check = "accept_with_finding"}\n', 1)
    config.write_text(text, encoding="utf-8")
    gw = Gateway(load_config(config))
    await gw.start()
    try:
        bad_id = "110105194912310021"  # wrong check character
        async with aiohttp.ClientSession() as http, http.post(
            gw.api.url + "/api/v1/inbound/hall_platform/case", json=[case_item("HP-F-1", id_no=bad_id)],
            headers=PUSH_AUTH,
        ) as r:
            assert r.status == 202
            body = await r.json()
        (record,) = body["items"][0]["records"]
        assert record["status"] == "accepted"
        assert [(f["field"], f["rule"], f["value"]) for f in record["findings"]] == [
            ("applicant_id_no", "id_number_check", "110105********0021")
        ]
        assert bad_id not in json.dumps(body)
    finally:
        await gw.stop()


def test_mapping_test_prints_accepted_findings_and_still_succeeds(tmp_path: Path) -> None:
    from gateway.mapping.commands import mapping as mapping_cli

    m = mapping(tmp_path, top="on_invalid: {credit_code_check: accept_with_finding}\n")
    sample = tmp_path / "acc.jsonl"
    sample.write_text(json.dumps(PAYLOAD, ensure_ascii=False) + "\n", encoding="utf-8")
    result = CliRunner().invoke(mapping_cli, ["test", str(m.path), str(sample)])
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert json.loads(line)["findings"][0]["rule"] == "credit_code_check"
    assert ("FINDING acc.jsonl line 1: acceptance.department_credit_code: credit_code_check:" in result.stderr
            and "(accepted: on_invalid)" in result.stderr)
    assert "1 items, 1 records, 0 errors, 1 findings accepted" in result.stderr
