"""Strict JSON: the standard library's C decoder, with every breach of the input limits noted while it reads.

What a counterpart's JSON item may not do, each with its rule (docs/strict-input.md):

* ``json_duplicate_key``: name a member twice in one object (RFC 8259 leaves the
  meaning open; readers disagree on which value wins, so the item is refused);
* ``json_depth``, ``json_key_length``, ``json_string_length``, ``json_members``:
  exceed :class:`InputLimits` (a depth bomb is refused, never a RecursionError);
* ``json_integer_range``: hold an integer outside the signed 64-bit range (the
  store's), ``json_number_range``: a number too large for a double;
* ``json_constant``: use ``NaN`` or ``Infinity`` (not JSON);
* ``json_surrogate``: hold a lone UTF-16 surrogate escape (``"\\ud800"``), which is no
  character and cannot be stored as UTF-8.

The hooks never raise (an exception would leave the reader without the item's end);
they note the first problem, and the checks that need the whole item (depth, long
strings and arrays, surrogates) run after it, each behind a C-level test on the item's
text that is false for ordinary records.  Measured on a 25-field record: about 1 µs
more than ``json.loads`` (the object hook; integers and floats each cost one call).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from gateway.formats._options import DEFAULT_LIMITS, InputLimits

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1

_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_INF = (float("inf"), float("-inf"))


def _shown(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "…")


def scan_depth(text: str, start: int = 0) -> tuple[int, int | None]:
    """(deepest nesting, end) of the JSON value at ``start``, without recursion.

    ``end`` is the index after the value's closing bracket, or None when ``text`` ends
    first.  Only for objects and arrays; strings are skipped whole.
    """
    depth = deepest = 0
    for token in _TOKENS.finditer(text, start):
        char = token.group()[0]
        if char == '"':
            if depth == 0:
                return deepest, token.end()
            continue
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
            if depth <= 0:
                return deepest, token.end()
    return deepest, None


class StrictJson:
    """Decodes one JSON value at a time and says which rule it breaks, if any.

    Not thread-safe: one per reader (a file, a request body).
    """

    def __init__(self, limits: InputLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._problem: tuple[str, str] | None = None
        self._check_keys = True
        self._objects = 0  # objects decoded in the current value: with its arrays, a bound on its depth
        self.decoder = json.JSONDecoder(
            object_pairs_hook=self._object,
            parse_int=self._int,
            parse_float=self._float,
            parse_constant=self._constant,
        )

    # ------------------------------------------------------------------ hooks (note, never raise)

    def _note(self, rule: str, message: str) -> None:
        if self._problem is None:
            self._problem = (rule, message)

    def _object(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        self._objects += 1
        obj = dict(pairs)
        if len(obj) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    self._note("json_duplicate_key", f"the member {_shown(key)} appears twice in one object "
                               "(which value counts is undefined, so the item is refused)")
                    break
                seen.add(key)
        if len(pairs) > self.limits.max_members:
            self._note("json_members", f"an object has {len(pairs)} members, more than the limit of "
                       f"{self.limits.max_members} (input.max_members)")
        # all names together within the limit: none is over it (one C-level join instead of a len per name)
        if self._check_keys and len("".join(obj)) > self.limits.max_key_chars:
            longest = max(obj, key=len)
            if len(longest) > self.limits.max_key_chars:
                self._note("json_key_length", f"a member name of {len(longest)} characters ({_shown(longest)}) is "
                           f"longer than the limit of {self.limits.max_key_chars} (input.max_key_chars)")
        return obj

    def _int(self, text: str) -> int:
        if len(text) > 18:
            value = int(text) if len(text.lstrip("-")) <= 19 else None
            if value is None or not INT64_MIN <= value <= INT64_MAX:
                self._note("json_integer_range", self._integer_message(text))
                return 0
            return value
        return int(text)

    def _float(self, text: str) -> float:
        value = float(text)
        if value in _INF:
            self._note("json_number_range", f"the number {_shown(text)} is too large for a floating-point number")
            return 0.0
        return value

    def _constant(self, name: str) -> None:
        self._note("json_constant", f"{name} is not a JSON value (RFC 8259); send null or a number")
        return None

    # ------------------------------------------------------------------ decoding

    def raw_decode(self, text: str, start: int = 0) -> tuple[Any, int, tuple[str, str] | None]:
        """``(value, end, problem)`` for the value at ``start`` (no whitespace before it).

        Raises ``json.JSONDecodeError`` for text that is not JSON, and :class:`TooDeep`
        when the nesting is too deep to decode at all (its ``end`` says where the
        value ends, when the text shows it).
        """
        self._problem = None
        self._objects = 0
        self._check_keys = len(text) - start > self.limits.max_key_chars
        try:
            value, end = self.decoder.raw_decode(text, start)
        except RecursionError:
            deepest, end = scan_depth(text, start)
            raise TooDeep(self._depth_message(deepest), end) from None
        problem = self._problem or self._after(text, start, end, value)
        return value, end, problem

    def loads(self, text: str) -> tuple[Any, tuple[str, str] | None]:
        """``(value, problem)`` for a whole text holding one JSON value (``json.loads`` with the checks)."""
        start = len(text) - len(text.lstrip(" \t\r\n"))
        value, end, problem = self.raw_decode(text, start)
        rest = text[end:]
        if rest.strip(" \t\r\n"):
            at = end + len(rest) - len(rest.lstrip(" \t\r\n"))
            raise json.JSONDecodeError("Extra data", text, at)
        return value, problem

    @staticmethod
    def _integer_message(text: str) -> str:
        return f"the integer {_shown(text)} does not fit in 64 bits ({INT64_MIN} … {INT64_MAX})"

    def _depth_message(self, deepest: int) -> str:
        return (f"objects and arrays are nested {deepest} deep, deeper than the limit of "
                f"{self.limits.max_depth} (input.max_depth)")

    def _after(self, text: str, start: int, end: int, value: Any) -> tuple[str, str] | None:
        """The checks that need the whole value; each runs only when the text could break it."""
        limits = self.limits
        # nesting needs a container per level: fewer objects and arrays than the limit cannot break it
        if self._objects + text.count("[", start, end) > limits.max_depth:
            deepest, _ = scan_depth(text, start)
            if deepest > limits.max_depth:
                return "json_depth", self._depth_message(deepest)
        if end - start > limits.max_string_chars:
            for s in _strings(value):
                if len(s) > limits.max_string_chars:
                    return "json_string_length", (f"a string of {len(s)} characters is longer than the limit of "
                                                  f"{limits.max_string_chars} (input.max_string_chars)")
        # N elements need N - 1 commas: a shorter item cannot hold an array over the limit
        if end - start > 2 * limits.max_members and text.count(",", start, end) >= limits.max_members:
            for items in _arrays(value):
                if len(items) > limits.max_members:
                    return "json_members", (f"an array has {len(items)} elements, more than the limit of "
                                            f"{limits.max_members} (input.max_members)")
        if text.find("\\u", start, end) >= 0 and _SURROGATE_ESCAPE.search(text, start, end) is not None:
            for s in _strings(value):
                try:
                    s.encode("utf-8")
                except UnicodeEncodeError as exc:
                    return "json_surrogate", (f"a string holds the lone surrogate U+{ord(s[exc.start]):04X}, "
                                              "half of a UTF-16 pair and no character; send the character itself")
        return None


class TooDeep(Exception):
    """A JSON value nested beyond what can be decoded; ``end`` is where it ends (None: not within the text)."""

    def __init__(self, message: str, end: int | None) -> None:
        super().__init__(message)
        self.message = message
        self.end = end


def _walk(value: Any) -> Iterator[Any]:
    """Every value inside ``value`` (keys included, as strings), without recursion."""
    stack = [value]
    while stack:
        current = stack.pop()
        yield current
        if isinstance(current, dict):
            stack.extend(current.keys())
            stack.extend(current.values())
        elif isinstance(current, list):
            stack.extend(current)


def _strings(value: Any) -> Iterator[str]:
    return (v for v in _walk(value) if isinstance(v, str))


def _arrays(value: Any) -> Iterator[list[Any]]:
    return (v for v in _walk(value) if isinstance(v, list))
