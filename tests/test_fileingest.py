"""Ingesting a whole file through one path: in a thread, one helper process, or two helpers on record-aligned parts.

Whatever reads the file, every record lands once, in file order, with the reference (record
number and line) the whole-file reader gives it, and the cursor counts the items behind each
commit, so a resume starts exactly after the last committed one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_api_support import case_item

from gateway.demo.generate import generate_items, write_xml_file
from gateway.demo.scenario import MAPPINGS_DIR
from gateway.formats import read_items, split_file
from gateway.mapping import load_mapping
from gateway.pipeline.fileingest import ingest_file
from gateway.pipeline.ingest import Ingestor
from gateway.pipeline.router import Router, Rule

OPTIONS = {"format": "xml", "record": "APPROVEDATAINFO"}


def _xml(path: Path, n: int, seed: int = 3) -> Path:
    write_xml_file(path, generate_items(n, seed=seed))
    return path


def _ingestor(store) -> Ingestor:  # noqa: ANN001
    mapping = load_mapping(MAPPINGS_DIR / "provincial_approvedatainfo.in.yaml")
    router = Router([Rule(name="to-hall", to=("hall",), sources=frozenset({"county"}))])
    return Ingestor(store, router, {"county": mapping})


async def _stored(store) -> list[dict]:  # noqa: ANN001
    return sorted(await store.list_records(limit=100_000), key=lambda r: r["id"])


def _whole_refs(path: Path) -> list[str]:
    return [f"{path.name} {item.ref}" for item in read_items(path, OPTIONS)]


@pytest.mark.parametrize("parallel", [False, True])
async def test_every_record_lands_once_in_file_order_with_its_reference(store, tmp_path, parallel) -> None:
    path = _xml(tmp_path / "county.xml", 430)
    parts = split_file(path, OPTIONS, 40)
    assert parts is not None and len(parts) == 11  # two helpers take turns over the parts
    cursors: list[int] = []
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=40,
                               parallel=parallel, on_batch=lambda consumed, _pos, _out: cursors.append(consumed))
    assert result.complete and result.consumed == 430 and result.outcomes == {"accepted": 430}
    assert cursors == sorted(cursors) and cursors[-1] == 430
    assert await store.get_cursor("c") == "430"
    rows = await _stored(store)
    # committed in file order: the store's ids follow the file, and each ref is the whole reader's
    assert [r["ref"] for r in rows] == _whole_refs(path)


async def test_a_resume_inside_a_part_starts_right_after_the_last_committed_item(store, tmp_path) -> None:
    path = _xml(tmp_path / "county.xml", 300)
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=40,
                               skip=130, parallel=True)
    assert result.consumed == 300 and result.outcomes == {"accepted": 170}
    assert [r["ref"] for r in await _stored(store)] == _whole_refs(path)[130:]


async def test_a_part_that_does_not_parse_alone_makes_the_rest_be_read_whole(store, tmp_path) -> None:
    """Records wrapped half-way through in an element the planner cannot see at every cut."""
    path = _xml(tmp_path / "county.xml", 200)
    data = path.read_bytes()
    marks = [i for i in range(len(data)) if data.startswith(b"<APPROVEDATAINFO>", i)]
    # wrap records 90..160 in <BATCH>: the cut before record 120 lies inside it
    data = data[:marks[160]] + b"</BATCH>\n" + data[marks[160]:]
    data = data[:marks[90]] + b"<BATCH>\n" + data[marks[90]:]
    path.write_bytes(data)
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=40,
                               parallel=True)
    assert result.complete and result.outcomes == {"accepted": 200}
    assert [r["ref"] for r in await _stored(store)] == _whole_refs(path)


@pytest.mark.parametrize("hidden", [
    b"<!-- <APPROVEDATAINFO> in a comment -->\n",
    b"<![CDATA[ <APPROVEDATAINFO> ]]>\n",
    b"<?note <APPROVEDATAINFO> ?>\n",
])
async def test_a_record_tag_the_plan_counts_wrongly_makes_the_rest_be_read_whole(store, tmp_path, hidden) -> None:
    """The plan counts start tags by pattern; the part's reader notices the miscount before it sends anything."""
    path = _xml(tmp_path / "county.xml", 150)
    data = path.read_bytes()
    at = data.index(b"<APPROVEDATAINFO>", 30_000)
    path.write_bytes(data[:at] + hidden + data[at:])
    parts = split_file(path, OPTIONS, 40)
    assert parts is not None and sum(p.items for p in parts) == 151  # one too many
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=40,
                               parallel=True)
    assert result.complete and result.consumed == 150 and result.outcomes == {"accepted": 150}
    assert [r["ref"] for r in await _stored(store)] == _whole_refs(path)


async def test_records_with_a_namespace_prefix_the_plan_did_not_expect_are_read_whole(store, tmp_path) -> None:
    """The first block (1 MB) shows no prefix, so the plan counts plain start tags and misses a later one."""
    path = _xml(tmp_path / "county.xml", 2000)
    data = path.read_bytes()
    assert len(data) > 1_300_000
    at = data.index(b"<APPROVEDATAINFO>", 1_200_000)
    end = data.index(b"</APPROVEDATAINFO>", at) + len(b"</APPROVEDATAINFO>")
    record = data[at:end].replace(b"<APPROVEDATAINFO>", b'<p:APPROVEDATAINFO xmlns:p="urn:p">')
    record = record.replace(b"</APPROVEDATAINFO>", b"</p:APPROVEDATAINFO>")
    path.write_bytes(data[:at] + record + data[end:])
    parts = split_file(path, OPTIONS, 400)
    assert parts is not None and sum(p.items for p in parts) == 1999  # the plan misses the prefixed one
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=400,
                               parallel=True)
    assert result.complete and result.outcomes == {"accepted": 2000}
    assert [r["ref"] for r in await _stored(store)] == _whole_refs(path)


async def test_a_file_that_cannot_be_cut_is_read_whole_by_one_helper(store, tmp_path) -> None:
    """Records nested in a wrapper from the start: the planner refuses the file."""
    path = _xml(tmp_path / "county.xml", 150)
    data = path.read_bytes()
    at = data.index(b"<APPROVEDATAINFO>")
    path.write_bytes(data[:at] + b"<BATCH>\n" + data[at:].replace(b"</APPROVEDATAINFOS>", b"</BATCH></APPROVEDATAINFOS>"))
    assert split_file(path, OPTIONS, 40) is None
    result = await ingest_file(_ingestor(store), "county", path, ref_prefix=path.name, cursor="c", batch=40,
                               parallel=True)
    assert result.complete and result.outcomes == {"accepted": 150}
    assert [r["ref"] for r in await _stored(store)] == _whole_refs(path)


async def test_json_lines_are_cut_at_line_starts_and_keep_their_line_numbers(store, tmp_path) -> None:
    hall = load_mapping(MAPPINGS_DIR / "hall_platform.in.yaml")
    lines = []
    for i in range(250):
        if i % 50 == 7:
            lines.append("")  # blank lines are no items but count as lines
        lines.append(json.dumps(case_item(f"JL-{i:04d}"), ensure_ascii=False))
    path = tmp_path / "hall.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    parts = split_file(path, {"format": "jsonl"}, 40)
    assert parts is not None and sum(p.items for p in parts) == 250
    ingestor = Ingestor(store, Router([]), {"hall": hall})
    result = await ingest_file(ingestor, "hall", path, ref_prefix=path.name, cursor="c", batch=40, parallel=True)
    assert result.complete and result.consumed == 250 and result.outcomes == {"accepted": 250}
    expected = [f"{path.name} {item.ref}" for item in read_items(path, {"format": "jsonl"})]
    assert [r["ref"] for r in await _stored(store)] == expected
