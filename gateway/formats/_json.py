"""JSON readers: JSON lines (one object per line) and a JSON document holding an array of items.

Both stream: JSON lines line by line, a JSON document element by element through an
incremental decoder, so a large export never sits in memory whole.  Every item is
decoded strictly (gateway.formats._strict): an item that breaks a rule becomes an
error item naming the rule, and the items around it are still read.

JSON is UTF-8 (RFC 8259 §8.1).  A UTF-8 byte-order mark is skipped; a file whose
mapping says ``encoding: gb18030`` is read as GB18030 unless it starts with a UTF-8
BOM, which wins; a UTF-16 or UTF-32 file is refused.
"""

from __future__ import annotations

import codecs
import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from gateway.formats import _items
from gateway.formats._items import (
    FileRefused,
    RawItem,
    iter_lines,
    normalise_encoding,
    strip_line_end,
)
from gateway.formats._options import InputLimits
from gateway.formats._strict import StrictJson, TooDeep

MAX_ITEM_CHARS = 64 * 1024 * 1024
"""One JSON item larger than this is reported as an error instead of being buffered further."""

_CHUNK = 1024 * 1024
_WHITESPACE = " \t\r\n"
_WIDE_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _codec(path: Path | None, options: Mapping[str, Any], head: bytes) -> str:
    """The codec a JSON file is read with: UTF-8 (BOM skipped), or GB18030 when the mapping says so and no BOM."""
    encoding = normalise_encoding(path, options.get("encoding", "auto"))
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"  # the BOM wins over a declared encoding
    if head.startswith(_WIDE_BOMS):
        raise FileRefused(path, "the file is UTF-16 or UTF-32 (byte-order mark); JSON must be UTF-8 (RFC 8259)")
    return "utf-8-sig" if encoding in ("auto", "utf-8", "utf-8-sig") else encoding


def _head(stream: BinaryIO) -> bytes:
    head = stream.read(4)
    stream.seek(0)
    return head


def read_jsonl(path: Path, options: Mapping[str, Any], part: Any = None) -> Iterator[RawItem]:
    """One item per non-blank line; ``ref`` is ``"line N"`` counting every physical line from 1.

    ``part`` (``gateway.formats._split.Part``): only the lines of that byte range, numbered as in
    the whole file.
    """
    strict = StrictJson(InputLimits.from_options(options))
    with open(path, "rb") as whole:
        codec = _codec(path, options, _head(whole))
        label = "UTF-8" if codec == "utf-8-sig" else codec.upper()
        stream: BinaryIO = whole
        first_line = 1
        if part is not None:
            whole.seek(part.start)
            stream = io.BytesIO(whole.read(part.end - part.start))
            first_line = part.first_line
        for number, (offset, data, too_long) in enumerate(iter_lines(stream), start=first_line):
            ref = f"line {number}"
            if too_long:
                yield RawItem(None, ref, None, error=f"line {number} is longer than {_items.MAX_LINE_BYTES} bytes",
                              rule="line_length")
                continue
            raw = strip_line_end(data)
            if number == 1 and offset == 0 and codec == "utf-8-sig" and raw.startswith(codecs.BOM_UTF8):
                raw = raw[3:]
                offset += 3
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8" if codec == "utf-8-sig" else codec)
            except UnicodeDecodeError as exc:
                yield RawItem(
                    None,
                    ref,
                    raw,
                    error=f"line {number}: bytes {raw[exc.start : exc.end].hex(' ')} at byte offset "
                    f"{offset + exc.start} are not valid {label}",
                    rule="encoding",
                )
                continue
            yield _line_item(strict, text, raw, number, ref)


def _line_item(strict: StrictJson, text: str, raw: bytes, number: int, ref: str) -> RawItem:
    try:
        value, problem = strict.loads(text)
    except json.JSONDecodeError as exc:
        return RawItem(None, ref, raw, error=f"line {number} column {exc.colno} is not valid JSON: {exc.msg}",
                       rule="json_syntax")
    except TooDeep as exc:
        return RawItem(None, ref, raw, error=f"line {number}: {exc.message}", rule="json_depth")
    if problem is not None:
        return RawItem(None, ref, raw, error=f"line {number}: {problem[1]}", rule=problem[0])
    if not isinstance(value, dict):
        return RawItem(None, ref, raw, error=f"line {number}: {_kind(value)} is not an object; each line must be "
                       "a JSON object", rule="json_not_object")
    return RawItem(value, ref, raw)


class _Stream:
    """A window of decoded text over a binary file, with positions reported as line and column."""

    def __init__(self, path: Path | None, stream: BinaryIO | None, codec: str, strict: StrictJson,
                 text: str | None = None) -> None:
        self.path = path
        self.stream = stream
        self.strict = strict
        self.decoder = codecs.getincrementaldecoder(codec)()
        self.label = "UTF-8" if codec == "utf-8-sig" else codec.upper()
        self.buf = text or ""
        self.pos = 0
        self.eof = stream is None  # text given whole: nothing more to read
        self.bytes_read = 0
        self.lines_before = 0  # line feeds in text already dropped from the window

    def fill(self) -> bool:
        """Read more text; False at end of file.  Grows geometrically so a big item is not re-parsed often."""
        if self.eof or self.stream is None:
            return False
        data = self.stream.read(max(_CHUNK, len(self.buf) - self.pos))
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise _Broken(
                f"bytes at byte offset {self.bytes_read + exc.start} are not valid {self.label}",
                self.where(len(self.buf)),
                "encoding",
            ) from exc
        self.bytes_read += len(data)
        if not data:
            # Keep the window as it is, so positions a caller holds still point at the right text.
            self.eof = True
            self.buf += text
            return False
        self.lines_before += self.buf.count("\n", 0, self.pos)
        self.buf = self.buf[self.pos :] + text
        self.pos = 0
        return True

    def where(self, pos: int) -> tuple[int, int]:
        line = self.lines_before + self.buf.count("\n", 0, pos) + 1
        column = pos - self.buf.rfind("\n", 0, pos)
        return line, column

    def peek(self) -> str:
        """The next non-blank character, consuming the blanks before it; "" at end of file."""
        while True:
            while self.pos < len(self.buf) and self.buf[self.pos] in _WHITESPACE:
                self.pos += 1
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.fill():
                return ""

    def value(self) -> tuple[Any, str, tuple[str, str] | None]:
        """Decode the JSON value at the next non-blank position: ``(value, its text, problem or None)``.

        A value that breaks a rule of :class:`StrictJson` comes back with the problem (and
        ``None`` as value); reading goes on after it.  Text that is not JSON raises _Broken.
        """
        self.peek()
        while True:
            try:
                value, end, problem = self.strict.raw_decode(self.buf, self.pos)
            except TooDeep as exc:
                if exc.end is None and len(self.buf) - self.pos <= MAX_ITEM_CHARS and self.fill():
                    continue
                if exc.end is None:
                    raise _Broken(exc.message, self.where(self.pos), "json_depth") from None
                text = self.buf[self.pos : exc.end]
                self.pos = exc.end
                return None, text, ("json_depth", exc.message)
            except json.JSONDecodeError as exc:
                # Only an error at the end of the window (or an open string) may be a cut, not a fault.
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - 6
                if cut and len(self.buf) - self.pos <= MAX_ITEM_CHARS and self.fill():
                    continue
                if cut and len(self.buf) - self.pos > MAX_ITEM_CHARS:
                    raise _Broken(
                        f"an item is larger than {MAX_ITEM_CHARS} characters or never ends",
                        self.where(self.pos),
                        "json_item_size",
                    ) from exc
                raise _Broken(f"not valid JSON: {exc.msg}", self.where(exc.pos), "json_syntax") from exc
            if end == len(self.buf) and not self.eof and self.fill():
                continue  # a number or literal may go on in the next chunk
            text = self.buf[self.pos : end]
            self.pos = end
            return (None if problem else value), text, problem

    def expect(self, char: str, context: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "end of file"
            raise _Broken(f"expected {char!r} {context}, found {shown}", self.where(self.pos), "json_syntax")
        self.pos += 1


class _Broken(Exception):
    def __init__(self, reason: str, where: tuple[int, int], rule: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rule = rule
        self.line, self.column = where


def read_json(path: Path, options: Mapping[str, Any]) -> Iterator[RawItem]:
    """Items of a JSON document: a top-level array, an array under ``options["record"]``, or one object.

    ``ref`` is ``"item N"`` counting array elements from 1.  A document that breaks
    part-way yields the items before the break, then one error item naming the line
    and column.  A document of another shape raises :class:`FileRefused`.
    """
    strict = StrictJson(InputLimits.from_options(options))
    with open(path, "rb") as stream:
        doc = _Stream(path, stream, _codec(path, options, _head(stream)), strict)
        yield from _document(doc, path, options.get("record"), record_optional=False)


def read_json_text(text: str, options: Mapping[str, Any], *, record_optional: bool = True) -> Iterator[RawItem]:
    """:func:`read_json` over a text already decoded (an HTTP body), item by item, with the same rules.

    With ``record_optional`` an object without ``options["record"]`` is one item
    itself (a push of a single record) instead of a refusal.
    """
    strict = StrictJson(InputLimits.from_options(options))
    doc = _Stream(None, None, "utf-8", strict, text=text[1:] if text.startswith("\ufeff") else text)
    yield from _document(doc, None, options.get("record"), record_optional=record_optional)


def _item(count: int, value: Any, text: str, problem: tuple[str, str] | None) -> RawItem:
    ref = f"item {count}"
    raw = text.encode("utf-8", "surrogatepass")
    if problem is not None:
        return RawItem(None, ref, raw, error=f"item {count}: {problem[1]}", rule=problem[0])
    if not isinstance(value, dict):
        return RawItem(None, ref, raw, error=f"item {count}: {_kind(value)} is not an object; each item must be "
                       "a JSON object", rule="json_not_object")
    return RawItem(value, ref, raw)


def _document(doc: _Stream, path: Path | None, record: Any, *, record_optional: bool) -> Iterator[RawItem]:
    count = 0
    try:
        first = doc.peek()
        if first == "{" and record:
            start = doc.pos
            doc.pos += 1
            found = _seek_key(doc, str(record))
            if not found:
                if record_optional:
                    doc.pos = start
                else:
                    raise FileRefused(
                        path, f"the JSON object has no key {record!r}; check input.record in the mapping"
                    )
            elif doc.peek() != "[":
                value, text, problem = doc.value()
                if problem is None and not isinstance(value, dict):
                    raise FileRefused(
                        path,
                        f"the value under {record!r} is {_kind(value)}, expected an array of objects",
                    )
                yield _item(1, value, text, problem)
                return
            else:
                doc.pos += 1
                for value, text, problem in _array(doc):
                    count += 1
                    yield _item(count, value, text, problem)
                # the rest of the envelope: a second array under the same key would otherwise go unread
                if _seek_key(doc, str(record), after_value=True):
                    count += 1
                    yield RawItem(None, f"item {count}", None, rule="json_duplicate_key",
                                  error=f"the envelope names {record!r} twice; the items of the second one were "
                                  f"not read (the {count - 1} items of the first were)")
                return
        if doc.peek() == "[":
            doc.pos += 1
            for value, text, problem in _array(doc):
                count += 1
                yield _item(count, value, text, problem)
            return
        if doc.peek() == "{":
            value, text, problem = doc.value()
            yield _item(1, value, text, problem)
            return
        shown = "empty" if not doc.peek() else f"starts with {doc.peek()!r}"
        raise FileRefused(path, f"the JSON document is {shown}; expected an array or an object")
    except _Broken as broken:
        yield RawItem(
            None,
            f"line {broken.line} column {broken.column}",
            None,
            error=f"JSON breaks at line {broken.line}, column {broken.column}: {broken.reason}; "
            f"the {count} items before it were read",
            rule=broken.rule,
        )


def _seek_key(doc: _Stream, key: str, *, after_value: bool = False) -> bool:
    """Advance through an object's members to the value of ``key``; False when the object ends first.

    With ``after_value`` the position is just after a member's value (a comma or the
    closing brace comes next).
    """
    if after_value:
        if doc.peek() == "}":
            doc.pos += 1
            return False
        doc.expect(",", "between members")
    if doc.peek() == "}":
        doc.pos += 1
        return False
    while True:
        if doc.peek() != '"':
            raise _Broken("expected a member name", doc.where(doc.pos), "json_syntax")
        name, _, _ = doc.value()
        doc.expect(":", "after a member name")
        if name == key:
            doc.peek()
            return True
        doc.value()  # a sibling member: decoded and dropped (a problem inside it is not an item's)
        if doc.peek() == "}":
            doc.pos += 1
            return False
        doc.expect(",", "between members")


def _array(doc: _Stream) -> Iterator[tuple[Any, str, tuple[str, str] | None]]:
    if doc.peek() == "]":
        doc.pos += 1
        return
    while True:
        yield doc.value()
        char = doc.peek()
        if char == "]":
            doc.pos += 1
            return
        doc.expect(",", "between array items")


def read_json_bytes(data: bytes, options: Mapping[str, Any]) -> Iterator[RawItem]:
    """:func:`read_json` over bytes in memory (UTF-8 or the mapping's encoding), for tests and small bodies."""
    strict = StrictJson(InputLimits.from_options(options))
    stream = io.BytesIO(data)
    doc = _Stream(None, stream, _codec(None, options, data[:4]), strict)
    yield from _document(doc, None, options.get("record"), record_optional=False)
