"""JSON readers: JSON lines (one object per line) and a JSON document holding an array of items.

Both stream: JSON lines line by line, a JSON document element by element through an
incremental decoder, so a large export never sits in memory whole.
"""

from __future__ import annotations

import codecs
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

MAX_ITEM_CHARS = 64 * 1024 * 1024
"""One JSON item larger than this is reported as an error instead of being buffered further."""

_CHUNK = 1024 * 1024
_WHITESPACE = " \t\r\n"
_DECODER = json.JSONDecoder()


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _codec(path: Path, options: Mapping[str, Any]) -> str:
    encoding = normalise_encoding(path, options.get("encoding", "auto"))
    # JSON is UTF-8 by RFC 8259; a BOM is tolerated.  GB18030 only when the mapping says so.
    return "utf-8-sig" if encoding in ("auto", "utf-8", "utf-8-sig") else encoding


def read_jsonl(path: Path, options: Mapping[str, Any]) -> Iterator[RawItem]:
    """One item per non-blank line; ``ref`` is ``"line N"`` counting every physical line from 1."""
    codec = _codec(path, options)
    with open(path, "rb") as stream:
        for number, (offset, data, too_long) in enumerate(iter_lines(stream), start=1):
            ref = f"line {number}"
            if too_long:
                yield RawItem(
                    None, ref, None, error=f"line {number} is longer than {_items.MAX_LINE_BYTES} bytes"
                )
                continue
            raw = strip_line_end(data)
            if number == 1 and codec == "utf-8-sig" and raw.startswith(codecs.BOM_UTF8):
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
                    f"{offset + exc.start} are not valid {'UTF-8' if codec == 'utf-8-sig' else codec.upper()}",
                )
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                yield RawItem(
                    None, ref, raw, error=f"line {number} column {exc.colno} is not valid JSON: {exc.msg}"
                )
                continue
            if not isinstance(value, dict):
                yield RawItem(
                    None, ref, raw, error=f"line {number} is {_kind(value)}, expected a JSON object"
                )
                continue
            yield RawItem(value, ref, raw)


class _Stream:
    """A window of decoded text over a binary file, with positions reported as line and column."""

    def __init__(self, path: Path, stream: BinaryIO, codec: str) -> None:
        self.path = path
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder(codec)()
        self.label = "UTF-8" if codec == "utf-8-sig" else codec.upper()
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.bytes_read = 0
        self.lines_before = 0  # line feeds in text already dropped from the window

    def fill(self) -> bool:
        """Read more text; False at end of file.  Grows geometrically so a big item is not re-parsed often."""
        if self.eof:
            return False
        data = self.stream.read(max(_CHUNK, len(self.buf) - self.pos))
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as exc:
            raise _Broken(
                f"bytes at byte offset {self.bytes_read + exc.start} are not valid {self.label}",
                self.where(len(self.buf)),
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

    def value(self) -> tuple[Any, str]:
        """Decode the JSON value at the next non-blank position; returns it with its source text."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
            except json.JSONDecodeError as exc:
                # Only an error at the end of the window (or an open string) may be a cut, not a fault.
                cut = exc.msg.startswith("Unterminated string") or exc.pos >= len(self.buf) - 6
                if cut and len(self.buf) - self.pos <= MAX_ITEM_CHARS and self.fill():
                    continue
                if cut and len(self.buf) - self.pos > MAX_ITEM_CHARS:
                    raise _Broken(
                        f"an item is larger than {MAX_ITEM_CHARS} characters or never ends",
                        self.where(self.pos),
                    ) from exc
                raise _Broken(f"not valid JSON: {exc.msg}", self.where(exc.pos)) from exc
            if end == len(self.buf) and not self.eof and self.fill():
                continue  # a number or literal may go on in the next chunk
            text = self.buf[self.pos : end]
            self.pos = end
            return value, text

    def expect(self, char: str, context: str) -> None:
        found = self.peek()
        if found != char:
            shown = repr(found) if found else "end of file"
            raise _Broken(f"expected {char!r} {context}, found {shown}", self.where(self.pos))
        self.pos += 1


class _Broken(Exception):
    def __init__(self, reason: str, where: tuple[int, int]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.line, self.column = where


def read_json(path: Path, options: Mapping[str, Any]) -> Iterator[RawItem]:
    """Items of a JSON document: a top-level array, an array under ``options["record"]``, or one object.

    ``ref`` is ``"item N"`` counting array elements from 1.  A document that breaks
    part-way yields the items before the break, then one error item naming the line
    and column.  A document of another shape raises :class:`FileRefused`.
    """
    record = options.get("record")
    with open(path, "rb") as stream:
        doc = _Stream(path, stream, _codec(path, options))
        count = 0
        try:
            first = doc.peek()
            if first == "{" and record:
                doc.pos += 1
                found = _seek_key(doc, str(record))
                if not found:
                    raise FileRefused(
                        path, f"the JSON object has no key {record!r}; check input.record in the mapping"
                    )
                if doc.peek() != "[":
                    value, text = doc.value()
                    if not isinstance(value, dict):
                        raise FileRefused(
                            path,
                            f"the value under {record!r} is {_kind(value)}, expected an array of objects",
                        )
                    yield RawItem(value, "item 1", text.encode("utf-8"))
                    return
            if doc.peek() == "[":
                doc.pos += 1
                for value, text in _array(doc):
                    count += 1
                    ref = f"item {count}"
                    if isinstance(value, dict):
                        yield RawItem(value, ref, text.encode("utf-8"))
                    else:
                        yield RawItem(
                            None,
                            ref,
                            text.encode("utf-8"),
                            error=f"item {count} is {_kind(value)}, expected a JSON object",
                        )
                return
            if doc.peek() == "{":
                value, text = doc.value()
                yield RawItem(value, "item 1", text.encode("utf-8"))
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
            )


def _seek_key(doc: _Stream, key: str) -> bool:
    """Advance through an object's members to the value of ``key``; False when the object ends first."""
    if doc.peek() == "}":
        return False
    while True:
        if doc.peek() != '"':
            raise _Broken("expected a member name", doc.where(doc.pos))
        name, _ = doc.value()
        doc.expect(":", "after a member name")
        if name == key:
            doc.peek()
            return True
        doc.value()  # a sibling member: decoded and dropped
        if doc.peek() == "}":
            return False
        doc.expect(",", "between members")


def _array(doc: _Stream) -> Iterator[tuple[Any, str]]:
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
