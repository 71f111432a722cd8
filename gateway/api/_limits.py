"""Limits the push API holds each pushed XML item to: nesting depth, name and text length, members.

JSON items are held to the same limits while the strict reader reads them (gateway.formats,
rules ``json_*``); an XML item is parsed by libxml2 first and judged here on the dict it became
(rules ``xml_*``), so both forms answer to the one set of settings, the source's input limits
(``input = {max_depth = …, max_key_chars = …, max_string_chars = …, max_members = …}``). An item
over a limit is refused alone, with the rule it broke, and its neighbours go on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.formats._options import DEFAULT_LIMITS as DEFAULT_LIMITS
from gateway.formats._options import InputLimits as ItemLimits

__all__ = ["DEFAULT_LIMITS", "ItemLimits", "Violation", "check_item", "item_bytes", "limits_from_input"]


@dataclass(frozen=True, slots=True)
class Violation:
    rule: str
    field: str | None
    message: str


def limits_from_input(options: Mapping[str, Any]) -> ItemLimits:
    """The limits a source's (merged) input block sets; the defaults where it sets none."""
    return ItemLimits.from_options(options)


def _path(parts: list[str | int]) -> str | None:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def check_item(value: Any, limits: ItemLimits) -> Violation | None:
    """The first limit ``value`` (one XML item as a dict) breaks, or None. Iterative: depth cannot hurt it."""
    stack: list[tuple[Any, int, list[str | int]]] = [(value, 1, [])]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, Mapping | list):
            if depth > limits.max_depth:
                return Violation("xml_depth", _path(path), f"the item nests elements more than {limits.max_depth} "
                                                           "levels deep (input.max_depth)")
            if len(node) > limits.max_members:
                what = "child elements or attributes" if isinstance(node, Mapping) else "repeated elements"
                return Violation("xml_members", _path(path), f"{len(node)} {what} in one place; at most "
                                                             f"{limits.max_members} (input.max_members)")
            if isinstance(node, Mapping):
                for key, child in node.items():
                    key = str(key)
                    if len(key) > limits.max_key_chars:
                        return Violation("xml_key_length", _path(path),
                                         f"an element or attribute name of {len(key)} characters; at most "
                                         f"{limits.max_key_chars} (input.max_key_chars)")
                    stack.append((child, depth + 1, [*path, key]))
            else:
                stack.extend((child, depth + 1, [*path, i]) for i, child in enumerate(node))
        elif isinstance(node, str) and len(node) > limits.max_string_chars:
            return Violation("xml_string_length", _path(path), f"a text of {len(node)} characters; at most "
                                                               f"{limits.max_string_chars} (input.max_string_chars)")
    return None


def item_bytes(value: Any) -> bytes | None:
    """An item as JSON bytes for its quarantine entry (ASCII: even invalid text is kept exactly)."""
    try:
        return json.dumps(value, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    except (ValueError, TypeError, RecursionError):
        return None
