"""Strict reading: each JSON item judged alone against named rules and limits, BOMs, per-source reader options."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from gateway.formats import (
    FileRefused,
    InputLimits,
    merge_input,
    override_problems,
    read_items,
    read_json_text,
)
from gateway.formats._options import option_problem
from gateway.formats._strict import INT64_MAX, INT64_MIN, StrictJson


def write(tmp_path: Path, name: str, data: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def outcome(items: list) -> list[tuple[str, str | None]]:
    """(ref, rule) per item: rule None for a good item."""
    return [(item.ref, item.rule if item.error else None) for item in items]


# --------------------------------------------------------------------------- one rule each, neighbours read


def test_a_duplicate_key_refuses_its_item_and_the_items_around_it_land(tmp_path: Path) -> None:
    path = write(tmp_path, "d.json", '[{"SBLSH": "1"}, {"SBLSH": "2", "SBLSH": "3"}, {"SBLSH": "4"}]')
    items = list(read_items(path, {"format": "json"}))
    assert outcome(items) == [("item 1", None), ("item 2", "json_duplicate_key"), ("item 3", None)]
    assert "'SBLSH' appears twice" in items[1].error
    assert items[1].raw == b'{"SBLSH": "2", "SBLSH": "3"}'  # kept for the quarantine
    assert items[1].payload is None and items[2].payload == {"SBLSH": "4"}


def test_duplicate_keys_are_found_in_nested_objects_and_json_lines(tmp_path: Path) -> None:
    path = write(tmp_path, "d.jsonl", '{"a": {"b": 1, "b": 2}}\n{"a": 1}\n')
    items = list(read_items(path, {"format": "jsonl"}))
    assert outcome(items) == [("line 1", "json_duplicate_key"), ("line 2", None)]
    assert items[0].error.startswith("line 1: the member 'b' appears twice")


def test_nesting_beyond_the_limit_is_refused_with_the_depth_found(tmp_path: Path) -> None:
    deep = '{"a": ' * 40 + "1" + "}" * 40
    path = write(tmp_path, "n.json", f'[{{"ok": 1}}, {deep}, {{"ok": 2}}]')
    items = list(read_items(path, {"format": "json"}))
    assert outcome(items) == [("item 1", None), ("item 2", "json_depth"), ("item 3", None)]
    assert "nested 40 deep, deeper than the limit of 32 (input.max_depth)" in items[1].error
    # the limit is the input block's to set
    assert outcome(list(read_items(path, {"format": "json", "max_depth": 40}))) == [
        ("item 1", None), ("item 2", None), ("item 3", None)
    ]


def test_a_depth_bomb_is_refused_quickly_without_a_recursion_error(tmp_path: Path) -> None:
    bomb = "[" * 100_000 + "]" * 100_000
    path = write(tmp_path, "bomb.json", f'[{{"ok": 1}}, {bomb}, {{"ok": 2}}]')
    started = time.monotonic()
    items = list(read_items(path, {"format": "json"}))
    assert time.monotonic() - started < 5
    assert outcome(items) == [("item 1", None), ("item 2", "json_depth"), ("item 3", None)]
    lines = write(tmp_path, "bomb.jsonl", '{"ok": 1}\n{"a": ' + bomb + "}\n" + '{"ok": 2}\n')
    assert outcome(list(read_items(lines, {"format": "jsonl"}))) == [
        ("line 1", None), ("line 2", "json_depth"), ("line 3", None)
    ]


def test_an_unclosed_depth_bomb_ends_the_document_with_one_error(tmp_path: Path) -> None:
    path = write(tmp_path, "open.json", '[{"ok": 1}, ' + "[" * 50_000)
    items = list(read_items(path, {"format": "json"}))
    assert items[0].payload == {"ok": 1}
    assert len(items) == 2 and items[1].rule == "json_depth" and "JSON breaks at line 1" in items[1].error


@pytest.mark.parametrize(
    ("text", "rule", "words"),
    [
        ('{"' + "k" * 300 + '": 1}', "json_key_length", "member name of 300 characters"),
        ('{"a": "' + "x" * 2000 + '"}', "json_string_length", "string of 2000 characters"),
        ('{"a": [' + ",".join(["1"] * 60) + "]}", "json_members", "array has 60 elements"),
        ("{" + ",".join(f'"k{i}": {i}' for i in range(60)) + "}", "json_members", "object has 60 members"),
        ('{"VERSION": 18446744073709551616}', "json_integer_range", "does not fit in 64 bits"),
        ('{"VERSION": -9223372036854775809}', "json_integer_range", "does not fit in 64 bits"),
        ('{"VERSION": 1' + "0" * 5000 + "}", "json_integer_range", "does not fit in 64 bits"),
        ('{"a": NaN}', "json_constant", "NaN is not a JSON value"),
        ('{"a": -Infinity}', "json_constant", "-Infinity is not a JSON value"),
        ('{"a": 1e400}', "json_number_range", "too large"),
        ('{"a": "\\ud800x"}', "json_surrogate", "lone surrogate U+D800"),
        ('{"\\udfff": 1}', "json_surrogate", "lone surrogate U+DFFF"),
    ],
)
def test_each_limit_and_rule_refuses_one_item_with_its_name(tmp_path: Path, text: str, rule: str, words: str) -> None:
    limits = {"max_string_chars": 1000, "max_members": 50}
    path = write(tmp_path, "r.jsonl", '{"before": 1}\n' + text + '\n{"after": 1}\n')
    items = list(read_items(path, {"format": "jsonl", **limits}))
    assert outcome(items) == [("line 1", None), ("line 2", rule), ("line 3", None)]
    assert words in items[1].error


def test_integers_at_the_edges_of_64_bits_and_surrogate_pairs_are_accepted() -> None:
    value, problem = StrictJson().loads(
        json.dumps({"max": INT64_MAX, "min": INT64_MIN, "big": 1e300, "emoji": "\ud83d\ude00"}, ensure_ascii=True)
    )
    assert problem is None
    assert value == {"max": INT64_MAX, "min": INT64_MIN, "big": 1e300, "emoji": "😀"}


def test_the_envelope_naming_its_item_array_twice_is_reported_not_silently_half_read(tmp_path: Path) -> None:
    path = write(tmp_path, "e.json", '{"DATA": [{"n": 1}], "HEAD": {"x": 1}, "DATA": [{"n": 2}]}')
    items = list(read_items(path, {"format": "json", "record": "DATA"}))
    assert items[0].payload == {"n": 1}
    assert items[1].rule == "json_duplicate_key" and "names 'DATA' twice" in items[1].error


def test_a_push_body_is_read_item_by_item_with_the_same_rules() -> None:
    items = list(read_json_text('[{"a": 1}, {"a": 1, "a": 2}, 3]', {}))
    assert outcome(items) == [("item 1", None), ("item 2", "json_duplicate_key"), ("item 3", "json_not_object")]
    # a single object is one item; an envelope key the object lacks makes the object the item itself
    assert [i.payload for i in read_json_text('{"caseNo": "1"}', {"record": "records"})] == [{"caseNo": "1"}]
    assert [i.payload for i in read_json_text('\ufeff{"records": [{"n": 1}, {"n": 2}]}', {"record": "records"})] == [
        {"n": 1}, {"n": 2}
    ]


# --------------------------------------------------------------------------- encodings: the BOM wins


def test_a_utf8_bom_wins_over_a_declared_gb18030_in_every_reader(tmp_path: Path) -> None:
    bom = b"\xef\xbb\xbf"
    csv_path = write(tmp_path, "b.csv", bom + "名称,数量\r\n甲,1\r\n".encode())
    json_path = write(tmp_path, "b.json", bom + '[{"名称": "甲"}]'.encode())
    lines_path = write(tmp_path, "b.jsonl", bom + '{"名称": "甲"}\n'.encode())
    xml_path = write(tmp_path, "b.xml", bom + "<R><A><名称>甲</名称></A></R>".encode())
    for path, options in (
        (csv_path, {"format": "csv"}),
        (json_path, {"format": "json"}),
        (lines_path, {"format": "jsonl"}),
        (xml_path, {"format": "xml", "record": "A"}),
    ):
        items = list(read_items(path, {**options, "encoding": "gb18030"}))
        assert [i.payload for i in items] == [{"名称": "甲", "数量": "1"} if path == csv_path else {"名称": "甲"}]


def test_json_in_utf16_is_refused_as_a_file(tmp_path: Path) -> None:
    path = write(tmp_path, "w.json", '[{"a": 1}]'.encode("utf-16"))
    with pytest.raises(FileRefused, match="UTF-16 or UTF-32.*RFC 8259"):
        list(read_items(path, {"format": "json"}))


# --------------------------------------------------------------------------- reader options and their overrides


def test_limits_come_from_the_input_block_with_safe_defaults() -> None:
    assert InputLimits.from_options({}) == InputLimits(32, 256, 1 << 20, 10_000)
    assert InputLimits.from_options({"max_depth": 8, "encoding": "auto"}).max_depth == 8


def test_source_overrides_are_checked_and_laid_over_the_mapping_input() -> None:
    base = {"format": "csv", "encoding": "gb18030", "delimiter": ",", "header": True}
    assert override_problems({"encoding": "utf-8-sig", "delimiter": "tab", "max_members": 20}, "csv") == []
    assert merge_input(base, {"encoding": "utf-8-sig", "delimiter": "tab"}) == {
        "format": "csv", "encoding": "utf-8-sig", "delimiter": "\t", "header": True
    }
    problems = override_problems(
        {"format": "json", "encoding": "latin-1", "record": "X", "max_depth": 0, "colour": "red"}, "csv"
    )
    assert problems == [
        "input.format cannot be overridden per source: the mapping's paths depend on it; use another mapping",
        "input.encoding is one of auto, utf-8, utf-8-sig, gb18030, not 'latin-1'",
        "input.record applies to xml and json input; this mapping reads csv",
        "input.max_depth is a whole number from 1 to 500, not 0",
        "input.colour is not a reader option; a source may set encoding, delimiter, quotechar, record, "
        "max_depth, max_key_chars, max_string_chars, max_members",
    ]
    assert option_problem("delimiter", ";;", "csv") == "input.delimiter is one character (or tab), not ';;'"
