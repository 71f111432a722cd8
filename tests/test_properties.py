"""Property-based tests: no input crashes a reader or a compiled mapping; what a mapping accepts, the schema accepts.

Readers get any bytes (and mutations of well-formed documents); they must yield items
(a payload or an error naming a rule) or refuse the whole file with FileRefused, and
nothing else.  Compiled mappings get any JSON-like payload; they must return records
or field errors, never raise.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.formats import FileRefused, RawItem, read_items, read_json_text
from gateway.formats._strict import INT64_MAX, INT64_MIN, StrictJson
from gateway.mapping import InboundMapping, load_mapping
from gateway.schema import KINDS

MAPPINGS = Path(__file__).resolve().parents[1] / "mappings"
SAMPLES = Path(__file__).resolve().parent / "samples" / "mapping"
# Sized to keep the whole file near ten seconds on the shared CI machine; raise max_examples to hunt locally.
SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FEW = settings(SETTINGS, max_examples=40)

@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the whole module: hypothesis runs each test many times over, a fresh tmp_path each is waste."""
    return tmp_path_factory.mktemp("properties")


def read_all(scratch: Path, data: bytes, options: dict[str, Any], suffix: str) -> list[RawItem] | None:
    """Every item of ``data`` read as a file; None when the whole file is refused."""
    path = scratch / f"input{suffix}"
    path.write_bytes(data)
    try:
        items = list(read_items(path, options))
    except FileRefused as refused:
        assert refused.reason
        return None
    for item in items:
        assert isinstance(item, RawItem) and item.ref
        if item.error is None:
            assert isinstance(item.payload, dict)
        else:
            assert item.payload is None or item.payload == {} or isinstance(item.payload, dict)
            assert isinstance(item.error, str) and item.error
            assert item.rule, item.error  # every refusal names its rule
    return items


def mutate(data: bytes, cuts: list[tuple[int, int, bytes]]) -> bytes:
    """``data`` with some spans replaced: truncations, stray bytes, lost quotes."""
    out = bytearray(data)
    for start, length, insert in cuts:
        if not out:
            break
        start %= len(out)
        out[start : start + length] = insert
    return bytes(out)


CUTS = st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 8), st.binary(max_size=4)), max_size=4)

# --------------------------------------------------------------------------- readers: any bytes


@SETTINGS
@given(st.binary(max_size=3000))
def test_the_csv_reader_survives_any_bytes(scratch: Path, data: bytes) -> None:
    read_all(scratch, data, {"format": "csv"}, ".csv")
    read_all(scratch, data, {"format": "csv", "encoding": "gb18030", "delimiter": "|"}, ".csv")


@SETTINGS
@given(st.binary(max_size=3000))
def test_the_json_readers_survive_any_bytes(scratch: Path, data: bytes) -> None:
    read_all(scratch, data, {"format": "json"}, ".json")
    read_all(scratch, data, {"format": "json", "record": "DATA"}, ".json")
    read_all(scratch, data, {"format": "jsonl"}, ".jsonl")


@SETTINGS
@given(st.binary(max_size=3000))
def test_the_xml_reader_survives_any_bytes(scratch: Path, data: bytes) -> None:
    read_all(scratch, data, {"format": "xml", "record": "APPROVEDATAINFO"}, ".xml")
    read_all(scratch, data, {"format": "xml"}, ".xml")


@SETTINGS
@given(CUTS, st.sampled_from(["provincial_approvedatainfo.xml", "shuanggongshi_xk.csv", "shuanggongshi_cf.csv",
                              "haochaping.json", "ministry_progress.jsonl", "hall_platform.jsonl"]))
def test_readers_survive_damaged_real_exports(scratch: Path, cuts: list[tuple[int, int, bytes]], sample: str) -> None:
    options = {
        ".xml": {"format": "xml", "record": "APPROVEDATAINFO"},
        ".csv": {"format": "csv", "encoding": "gb18030"},
        ".json": {"format": "json", "record": "data"},
        ".jsonl": {"format": "jsonl"},
    }
    suffix = Path(sample).suffix
    read_all(scratch, mutate((SAMPLES / sample).read_bytes(), cuts), options[suffix], suffix)


# --------------------------------------------------------------------------- strict JSON against the standard library

JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=40,
)


def _within_limits(value: Any, depth: int = 1) -> bool:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    if isinstance(value, float):
        return math.isfinite(value)
    if depth > 32:
        return False
    children = value.values() if isinstance(value, dict) else value
    return all(_within_limits(child, depth + 1) for child in children)


@SETTINGS
@given(JSON_VALUES)
def test_strict_json_reads_what_the_standard_library_reads_and_refuses_only_by_a_rule(value: Any) -> None:
    text = json.dumps(value)
    try:
        decoded, problem = StrictJson().loads(text)
    except Exception as exc:  # pragma: no cover - the property is that this never happens
        pytest.fail(f"StrictJson raised {exc!r} on {text[:200]}")
    if _within_limits(value):
        assert problem is None and decoded == json.loads(text)
    else:
        assert problem is not None and problem[0] in ("json_integer_range", "json_depth")


@FEW
@given(st.lists(JSON_VALUES, max_size=6), CUTS)
def test_a_push_body_of_anything_is_items_or_a_clean_refusal(values: list[Any], cuts: list) -> None:
    text = mutate(json.dumps(values, ensure_ascii=False).encode(), cuts).decode("utf-8", "replace")
    try:
        items = list(read_json_text(text, {"record": "records"}))
    except FileRefused:
        return
    for item in items:
        assert (item.error is None) == isinstance(item.payload, dict)
        assert item.error is None or item.rule  # every refusal names its rule


# --------------------------------------------------------------------------- compiled mappings: any payload

PAYLOAD_VALUES = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=40),
        st.sampled_from(["", " ", "1", "111", "370602", "2026-09-29 10:00:00", "20260929100000", "长期",
                         "11370600MB2855918R", "\u202e", "\x00", "ＳＤ", "e\u0301", "G", "6", "通过"]),
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=30,
)


def _keys(mapping: InboundMapping) -> list[str]:
    """Every key the mapping's paths name, so generated payloads hit real fields, not just random ones."""
    names: set[str] = set()
    for output in mapping.plan.outputs:
        for step in output.each or ():
            names.add(str(step))
        for rule in output.rules:
            sources = [rule.source, *rule.source.items]
            for source in sources:
                names.update(str(step) for step in source.path if isinstance(step, str) and step != "/")
    return sorted(names)


INBOUND = {
    path.name: load_mapping(path)
    for path in sorted(MAPPINGS.glob("*.in.yaml"))
}


def _payloads(mapping: InboundMapping) -> st.SearchStrategy[dict[str, Any]]:
    keys = _keys(mapping)
    flat = st.dictionaries(st.sampled_from(keys), PAYLOAD_VALUES, max_size=len(keys))
    nested = st.recursive(
        flat,
        lambda inner: st.dictionaries(st.sampled_from(keys), st.one_of(inner, st.lists(inner, max_size=3),
                                                                       PAYLOAD_VALUES), max_size=8),
        max_leaves=20,
    )
    return st.one_of(flat, nested)


@pytest.mark.parametrize("name", sorted(INBOUND))
def test_a_compiled_mapping_never_raises_and_what_it_accepts_the_schema_accepts(name: str) -> None:
    mapping = INBOUND[name]
    assert isinstance(mapping, InboundMapping)

    @FEW
    @given(_payloads(mapping))
    def check(payload: dict[str, Any]) -> None:
        records = mapping.map(payload)
        assert isinstance(records, list) and records
        for record in records:
            assert record.kind in KINDS
            if record.errors:
                assert all(e.rule and e.message for e in record.errors)
                continue
            assert record.data is not None
            assert KINDS[record.kind].validator(record.data) == [], (payload, record)

    check()


@SETTINGS
@given(PAYLOAD_VALUES)
def test_a_compiled_mapping_takes_any_value_as_the_whole_item(value: Any) -> None:
    for mapping in INBOUND.values():
        records = mapping.map(value)
        assert isinstance(records, list) and records
