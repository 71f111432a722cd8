"""A corpus of poison and hostile items for the hall platform's JSON interface, with good items among them.

Each case is one item as JSON text (so it can carry what Python would not write: lone
surrogate escapes, numbers beyond any range, nesting deeper than the parser goes) and the
outcome the gateway must reach, or None where the strictness of the schema decides (those
must still end as exactly one outcome). The same texts go into a push body and, as lines,
into a dropped JSON-lines file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from test_api_support import case_item


@dataclass(frozen=True)
class Case:
    name: str
    text: str  # one item, as JSON
    expect: str | None  # accepted | duplicate | quarantined; None: any one of them
    rule: str | None = None  # the rule a quarantined item is refused under, when the test pins it


def _item(case_no: str, **fields: object) -> dict:
    return case_item(case_no, **fields)


def _text(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _with(case_no: str, key: str, raw_json_value: str) -> str:
    """A good item with one more field whose value is written as raw JSON text."""
    body = _text(_item(case_no))
    return body[:-1] + f', "{key}": {raw_json_value}' + "}"


def corpus(tag: str) -> list[Case]:
    """Cases whose case numbers start with ``tag`` (so a push and a file drop do not collide)."""
    good = [Case(f"good {i}", _text(_item(f"{tag}-GOOD-{i:03d}")), "accepted") for i in range(8)]
    deep = "[" * 100_000 + "]" * 100_000  # far past the parser's recursion limit
    # The limits are the source's input limits (the tests set max_members 2000, max_string_chars 65536):
    # the same for a push and for a file, because the same strict reader reads both.
    bad = [
        Case("nesting past the parser", _with(f"{tag}-DEEP", "extra", deep), "quarantined", "json_depth"),
        Case("nesting past max_depth", _with(f"{tag}-DEEP40", "extra", "[" * 40 + "]" * 40), "quarantined",
             "json_depth"),
        Case("lone surrogate in the case number", _text(_item(f"{tag}-SURR")).replace(f"{tag}-SURR", f"{tag}-\\ud800"),
             "quarantined", "json_surrogate"),
        Case("lone surrogate in an unmapped field", _with(f"{tag}-SURR2", "note", '"x\\udfff"'), "quarantined",
             "json_surrogate"),
        Case("version beyond 64 bits", _text(_item(f"{tag}-V70", version=2**70)), "quarantined",
             "json_integer_range"),
        Case("number beyond any float", _with(f"{tag}-INF", "fee", "1e400"), "quarantined", "json_number_range"),
        Case("text over max_string_chars", _with(f"{tag}-LONG", "remark", _text("长" * 70_000)), "quarantined",
             "json_string_length"),
        Case("field name over max_key_chars", _with(f"{tag}-KEY", "k" * 300, '"v"'), "quarantined",
             "json_key_length"),
        Case("object with too many members", _with(f"{tag}-WIDE", "extra",
                                                   _text({f"f{i}": i for i in range(2500)})),
             "quarantined", "json_members"),
        Case("an array instead of an object", "[1, 2, 3]", "quarantined", "json_not_object"),
        Case("null instead of an object", "null", "quarantined", "json_not_object"),
        Case("a wrong ID check character", _text(_item(f"{tag}-IDNO", id_no="110105194912310021")), "quarantined",
             "id_number_check"),
        Case("a channel the code table lacks", _text(_item(f"{tag}-CHAN", channel="CARRIER-PIGEON")),
             "quarantined"),
        Case("NUL and ESC in the case number", _text(_item(f"{tag}-\u0000\u001b")), None),
        Case("bidi override in the case number", _text(_item(f"{tag}-\u202eEVIL")), None),
        Case("zero-width space in the case number", _text(_item(f"{tag}-ZW\u200b")), None),
        Case("true as the case number", _text(_item(f"{tag}-BOOL")).replace(f'"{tag}-BOOL"', "true"), None),
        Case("version 0", _text(_item(f"{tag}-V0", version=0)), None),
        Case("version -1", _text(_item(f"{tag}-VNEG", version=-1)), None),
        Case("duplicate key", _text(_item(f"{tag}-DUPKEY"))[:-1] + f', "caseNo": "{tag}-DUPKEY-2"' + "}", None),
        Case("a good item twice: the first", _text(_item(f"{tag}-TWICE")), "accepted"),
        Case("a good item twice: the second", _text(_item(f"{tag}-TWICE")), "duplicate"),
    ]
    # Good ones between the bad ones: none of them may be lost because of a neighbour.
    out: list[Case] = []
    for i, case in enumerate(bad):
        out.append(case)
        if i < len(good):
            out.append(good[i])
    return out


def push_body(cases: list[Case]) -> bytes:
    return ("[" + ",\n".join(c.text for c in cases) + "]").encode("utf-8")


def jsonl(cases: list[Case]) -> bytes:
    return ("\n".join(c.text for c in cases) + "\n").encode("utf-8")
