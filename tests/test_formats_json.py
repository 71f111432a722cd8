"""JSON lines and JSON documents: objects as items, bad lines and broken tails as error items, streaming."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gateway.formats import FileRefused, read_items
from gateway.formats import _json as json_module
from gateway.formats._read import format_of


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def test_jsonl_bad_lines_are_error_items_with_their_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path, "a.jsonl", '{"SBLSH": "1"}\n\n[1, 2]\n{"SBLSH": \n{"SBLSH": "4", "MC": "烟台"}\r\n'
    )
    items = list(read_items(path, {"format": "jsonl"}))
    assert [(item.ref, item.error is None) for item in items] == [
        ("line 1", True),
        ("line 3", False),
        ("line 4", False),
        ("line 5", True),
    ]
    assert items[1].error == "line 3: an array is not an object; each line must be a JSON object"
    assert items[2].error.startswith("line 4 column ") and "not valid JSON" in items[2].error
    assert items[3].payload == {"SBLSH": "4", "MC": "烟台"}
    assert items[3].raw == '{"SBLSH": "4", "MC": "烟台"}'.encode()


def test_jsonl_with_bom_and_an_undecodable_line(tmp_path: Path) -> None:
    data = b'\xef\xbb\xbf{"a": 1}\n' + b'{"a": "\xff"}\n' + b'{"a": 3}\n'
    items = list(read_items(write(tmp_path, "b.jsonl", data), {"format": "jsonl"}))
    assert items[0].payload == {"a": 1}
    offset = data.index(b"\xff")
    assert items[1].error == f"line 2: bytes ff at byte offset {offset} are not valid UTF-8"
    assert items[2].payload == {"a": 3}


def test_json_array_items_and_non_objects(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '[{"a": 1}, 2, {"b": "中文"}]')
    items = list(read_items(path, {"format": "json"}))
    assert [item.ref for item in items] == ["item 1", "item 2", "item 3"]
    assert items[1].error == "item 2: a number is not an object; each item must be a JSON object"
    assert items[2].payload == {"b": "中文"} and items[2].raw == '{"b": "中文"}'.encode()


def test_json_object_with_the_item_array_under_the_record_key(tmp_path: Path) -> None:
    document = {"HEAD": {"COUNT": 2, "LIST": [1, [2, {"x": "]"}]]}, "DATA": [{"n": 1}, {"n": 2}], "TAIL": "x"}
    path = write(tmp_path, "d.json", json.dumps(document, indent=2))
    assert [item.payload for item in read_items(path, {"format": "json", "record": "DATA"})] == [
        {"n": 1},
        {"n": 2},
    ]
    with pytest.raises(FileRefused, match="no key 'ROWS'.*input.record"):
        list(read_items(path, {"format": "json", "record": "ROWS"}))


def test_a_single_object_document_is_one_item(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", '  {"SBLSH": "1"}  ')
    assert [(item.ref, item.payload) for item in read_items(path, {"format": "json"})] == [
        ("item 1", {"SBLSH": "1"})
    ]


def test_json_document_of_another_shape_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileRefused, match="starts with '\"'"):
        list(read_items(write(tmp_path, "f.json", '"text"'), {"format": "json"}))
    with pytest.raises(FileRefused, match="empty"):
        list(read_items(write(tmp_path, "g.json", "   "), {"format": "json"}))


def test_broken_json_tail_yields_items_before_it_then_one_error_with_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "h.json", '[\n {"a": 1},\n {"a": 2},\n {"a": tru}\n]')
    items = list(read_items(path, {"format": "json"}))
    assert [item.payload for item in items[:2]] == [{"a": 1}, {"a": 2}]
    assert len(items) == 3
    assert items[2].ref == "line 4 column 8"
    assert (
        items[2].error
        == "JSON breaks at line 4, column 8: not valid JSON: Expecting value; the 2 items before it were read"
    )


def test_missing_comma_between_items_is_reported(tmp_path: Path) -> None:
    path = write(tmp_path, "i.json", '[{"a": 1} {"a": 2}]')
    items = list(read_items(path, {"format": "json"}))
    assert items[0].payload == {"a": 1}
    assert "expected ',' between array items" in items[1].error


def test_json_document_streams_across_small_chunks_and_matches_a_whole_parse(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(json_module, "_CHUNK", 7)
    values = [
        {"n": i, "f": i / 3, "big": 9223372036854775807 - i, "s": "值" * (i % 5), "t": True, "z": None}
        for i in range(300)
    ]
    path = write(
        tmp_path, "j.json", json.dumps({"meta": {"k": [1, 2, 3]}, "DATA": values}, ensure_ascii=False)
    )
    items = list(read_items(path, {"format": "json", "record": "DATA"}))
    assert [item.payload for item in items] == values
    assert all(json.loads(item.raw) == item.payload for item in items)


def test_a_runaway_item_is_an_error_not_unbounded_memory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(json_module, "MAX_ITEM_CHARS", 10_000)
    path = write(tmp_path, "k.json", '[{"a": 1}, {"a": "' + "x" * 50_000)
    items = list(read_items(path, {"format": "json"}))
    assert items[0].payload == {"a": 1}
    assert "larger than 10000 characters or never ends" in items[1].error


def test_format_is_taken_from_options_or_inferred_from_the_suffix(tmp_path: Path) -> None:
    assert format_of(Path("x.XML"), {}) == "xml"
    assert format_of(Path("x.ndjson"), {}) == "jsonl"
    assert format_of(Path("x.dat"), {"format": "csv"}) == "csv"
    with pytest.raises(FileRefused, match="unknown format"):
        list(read_items(write(tmp_path, "x.dat", "a"), {}))
    with pytest.raises(FileRefused, match="unknown format 'yaml'"):
        list(read_items(write(tmp_path, "y.dat", "a"), {"format": "yaml"}))
    with pytest.raises(FileRefused, match="encoding 'latin-1' is not supported"):
        list(read_items(write(tmp_path, "z.csv", "a"), {"encoding": "latin-1"}))


def test_undecodable_bytes_in_a_json_document_stop_it_with_an_error_item(tmp_path: Path) -> None:
    data = b'[{"a": 1}, {"a": "\xff"}]'
    items = list(read_items(write(tmp_path, "bad.json", data), {"format": "json"}))
    assert len(items) == 1
    assert items[0].error.startswith("JSON breaks at line 1")
    assert f"bytes at byte offset {data.index(bytes([0xFF]))} are not valid UTF-8" in items[0].error
