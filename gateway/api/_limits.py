"""Limits the push API enforces on each item at its edge: nesting depth, key and string length, number range, text.

An item over a limit is refused alone, with the rule it broke, and its neighbours go on.
A JSON body too deeply nested for the parser itself is split into its items without
parsing them (a scan of its brackets and strings), so one poisoned item does not refuse
the 99 good ones beside it.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, slots=True)
class ItemLimits:
    """Per item; the defaults fit the record kinds of the common schema with room to spare."""

    max_depth: int = 32  # objects and arrays inside one another, the item itself being 1
    max_key_length: int = 256  # characters of a field name
    max_string_length: int = 65_536  # characters of one text value
    max_fields: int = 2_000  # members of one object, entries of one array


DEFAULT_LIMITS = ItemLimits()


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    field: str | None
    message: str


def _path(parts: list[str | int]) -> str | None:
    if not parts:
        return None
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _bad_text(text: str) -> bool:
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def check_item(value: Any, limits: ItemLimits) -> Violation | None:
    """The first limit ``value`` (one parsed item) breaks, or None. Iterative: depth cannot hurt the checker."""
    stack: list[tuple[Any, int, list[str | int]]] = [(value, 1, [])]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, Mapping | list):
            if depth > limits.max_depth:
                return Violation("max_depth", _path(path), f"the item is nested more than {limits.max_depth} "
                                                           "levels deep (objects and arrays inside one another)")
            if len(node) > limits.max_fields:
                what = "members" if isinstance(node, Mapping) else "entries"
                return Violation("max_fields", _path(path), f"{len(node)} {what} in one place; at most "
                                                            f"{limits.max_fields} are accepted")
            if isinstance(node, Mapping):
                for key, child in node.items():
                    key = str(key)
                    if len(key) > limits.max_key_length:
                        return Violation("max_key_length", _path(path) or None,
                                         f"a field name of {len(key)} characters; at most {limits.max_key_length}")
                    if _bad_text(key):
                        return Violation("unicode", _path(path), "a field name holds a lone surrogate "
                                                                 "(not valid Unicode)")
                    stack.append((child, depth + 1, [*path, key]))
            else:
                stack.extend((child, depth + 1, [*path, i]) for i, child in enumerate(node))
        elif isinstance(node, str):
            if len(node) > limits.max_string_length:
                return Violation("max_string_length", _path(path), f"a text of {len(node)} characters; at most "
                                                                   f"{limits.max_string_length} are accepted")
            if _bad_text(node):
                return Violation("unicode", _path(path), "the text holds a lone surrogate (an unpaired "
                                                         "\\uD800–\\uDFFF escape): it is not valid Unicode")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not INT64_MIN <= node <= INT64_MAX:
                return Violation("integer_range", _path(path), "a whole number beyond the 64-bit range "
                                                               "(-2^63 … 2^63-1); send it as a string if it is an "
                                                               "identifier")
        elif isinstance(node, float) and not math.isfinite(node):
            return Violation("number_range", _path(path), "a number too large to be represented")
    return None


def item_bytes(value: Any) -> bytes | None:
    """An item as JSON bytes for its quarantine entry (ASCII: even invalid text is kept exactly)."""
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except (ValueError, TypeError, RecursionError):
        return None


# --------------------------------------------------------------------------- splitting without parsing

_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{},:]', re.DOTALL)


def split_items(text: str, record_key: str | None) -> list[str] | None:
    """The texts of the items of a JSON body, found by scanning, or None when it has no item array.

    The item array is the top-level array, or the array under ``record_key`` of a top-level
    object (the envelope counterparts' JSON files have). Used only when the body is too
    deep to parse whole; each item text is then parsed (or refused) on its own.
    """
    stripped = text.lstrip()
    if not stripped:
        return None
    base = len(text) - len(stripped)
    if stripped[0] == "[":
        start = base
    elif stripped[0] == "{" and record_key is not None:
        start = _array_under(text, record_key)
        if start is None:
            return None
    else:
        return None
    items: list[str] = []
    depth = 0
    item_start = start + 1
    for m in _TOKENS.finditer(text, start):
        token = m.group()
        if token in "[{":
            depth += 1
        elif token in "]}":
            depth -= 1
            if depth == 0:
                last = text[item_start:m.start()].strip()
                if last:
                    items.append(last)
                return items
        elif token == "," and depth == 1:
            items.append(text[item_start:m.start()].strip())
            item_start = m.end()
    return None  # unterminated: the caller's parse error stands


def _array_under(text: str, key: str) -> int | None:
    """Offset of the ``[`` that is the value of ``key`` in the top-level object, if it is an array."""
    depth = 0
    expect_value_of: bool = False
    for m in _TOKENS.finditer(text):
        token = m.group()
        if token in "[{":
            if expect_value_of and token == "[" and depth == 1:
                return m.start()
            depth += 1
            expect_value_of = False
        elif token in "]}":
            depth -= 1
            if depth == 0:
                return None
        elif token.startswith('"') and depth == 1:
            following = text[m.end():m.end() + 64].lstrip()
            if following.startswith(":"):
                try:
                    expect_value_of = json.loads(token) == key
                except ValueError:
                    expect_value_of = False
    return None
