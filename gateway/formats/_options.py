"""Reader options: the limits every reader enforces, and the per-source overrides of a mapping's input block.

A mapping's ``input:`` block says how its counterpart's files are read; a source in
gateway.toml may override some of it (``input = {encoding = "utf-8-sig"}``), because
two counterparts that share a mapping do not always share an export tool.  The merged
options are what every reader of that source uses: the file drop, ``gateway ingest``,
its helper process and the push API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ENCODINGS = ("auto", "utf-8", "utf-8-sig", "gb18030")

LIMIT_KEYS = ("max_depth", "max_key_chars", "max_string_chars", "max_members")

OVERRIDE_KEYS = ("encoding", "delimiter", "quotechar", "record", *LIMIT_KEYS)
"""What a source may override.  Not ``format`` or ``header``: the mapping's paths depend on them."""

# Lowest and highest value of each limit.  max_depth stays well below Python's recursion limit, so a
# document at the limit is parsed, never refused for the parser's sake.
_BOUNDS = {
    "max_depth": (1, 500),
    "max_key_chars": (1, 1 << 20),
    "max_string_chars": (1, 64 << 20),
    "max_members": (1, 10_000_000),
}


@dataclass(frozen=True, slots=True)
class InputLimits:
    """Limits on one item, enforced while it is read; each refusal names its rule.

    ``max_depth`` (rule ``json_depth``): objects and arrays nested inside one item, the
    item itself counting 1.  ``max_key_chars`` (``json_key_length``): characters in one
    member name.  ``max_string_chars`` (``json_string_length``): characters in one
    string.  ``max_members`` (``json_members``): members of one object or elements of
    one array.  Integers must fit in 64 bits (``json_integer_range``) whatever the
    limits say: the store keeps them as signed 64-bit numbers.
    """

    max_depth: int = 32
    max_key_chars: int = 256
    max_string_chars: int = 1 << 20
    max_members: int = 10_000

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> InputLimits:
        given = {k: options[k] for k in LIMIT_KEYS if options.get(k) is not None}
        if not given:
            return DEFAULT_LIMITS
        return cls(**{k: int(v) for k, v in given.items()})


DEFAULT_LIMITS = InputLimits()


def delimiter_char(value: Any) -> str | None:
    """The one delimiter character ``value`` names ("tab" and "\\t" name TAB), or None when it is not one."""
    text = value if isinstance(value, str) else None
    if text is None:
        return None
    if text.lower() in ("\\t", "tab"):
        return "\t"
    if len(text) != 1 or text in '\r\n"':
        return None
    return text


def option_problem(key: str, value: Any, fmt: str | None = None) -> str | None:
    """What is wrong with one input option (None when nothing is); ``fmt`` is the mapping's input format."""
    if key == "encoding":
        if value not in ENCODINGS:
            return f"input.encoding is one of {', '.join(ENCODINGS)}, not {value!r}"
    elif key in ("delimiter", "quotechar"):
        if fmt is not None and fmt != "csv":
            return f"input.{key} applies to csv input; this mapping reads {fmt}"
        if key == "delimiter" and delimiter_char(value) is None:
            return f"input.delimiter is one character (or tab), not {value!r}"
        if key == "quotechar" and (not isinstance(value, str) or len(value) != 1 or value in "\r\n"):
            return f"input.quotechar is one character, not {value!r}"
    elif key == "record":
        if fmt is not None and fmt not in ("xml", "json"):
            return f"input.record applies to xml and json input; this mapping reads {fmt}"
        if not isinstance(value, str) or not value.strip():
            return f"input.record is an element tag (xml) or a key (json), not {value!r}"
    elif key in _BOUNDS:
        low, high = _BOUNDS[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"input.{key} is a whole number from {low} to {high}, not {value!r}"
    else:
        return f"input.{key} is not a reader option; a source may set {', '.join(OVERRIDE_KEYS)}"
    return None


def override_problems(overrides: Mapping[str, Any], fmt: str | None = None) -> list[str]:
    """Every problem of a source's ``input`` table (empty when it is fine)."""
    problems = []
    for key, value in overrides.items():
        if key in ("format", "header"):
            problems.append(f"input.{key} cannot be overridden per source: the mapping's paths depend on it; "
                            "use another mapping")
            continue
        problem = option_problem(str(key), value, fmt)
        if problem:
            problems.append(problem)
    return problems


def merge_input(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A mapping's input block with a source's overrides laid over it (overrides already checked)."""
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = delimiter_char(value) if key == "delimiter" else value
    return merged
