"""Cutting a large file into record-aligned parts that can be read on their own, side by side.

A large XML or JSON-lines file is read faster by two helper processes, each reading every
other part, while the gateway commits the parts in file order. ``split_file`` plans the
parts with one streaming pass over the bytes (regular expressions, no parsing): where each
record starts, how many records each part holds, which line each part starts on. It
splits only where that is cheap to check and likely to hold:

- XML: an ASCII-compatible encoding (UTF-8, GB18030 …); records the direct children of the
  root element (checked at the start, at every cut and at the end); no part more than four
  times the asked size (records nested in records refuse cuts). Each part is read as the XML
  declaration and the root's start tag (``head``, one line), its own bytes, and the root's
  end tag.
- JSON lines: cut at line starts; items are the non-blank lines.

Anything else (CSV, whose quoted values may hold line breaks; a JSON document; an XML file
that fails a check) is not split and is read whole. The plan counts start tags by pattern,
so a record tag inside a comment or a CDATA section, or a record with a namespace prefix
the first block did not show, makes a count wrong or a part unparsable. The reader of a part
therefore checks both before it hands on any item (``Part.items`` must equal what it parsed),
and on a mismatch the caller reads the rest of the file whole from that part's first item:
splitting is an optimisation, never a change in what is read.
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

_BLOCK = 1024 * 1024  # the planning pass holds two of these at a time
_HEAD_LIMIT = 1024 * 1024
_BACKWARD = 4096  # bytes looked at before a cut for the previous record's end tag
_MAX_PART = 4  # a part may hold this many times the asked items (its reader holds it whole)
_NAME = rb"(?:[A-Za-z_][\w.\-]*:)?"


@dataclass(frozen=True, slots=True)
class Part:
    """A record-aligned slice of a file: bytes ``start`` to ``end``, holding items ``first_item`` + 1 …"""

    no: int
    start: int
    end: int
    first_item: int  # items before this part in the file
    items: int
    first_line: int  # the line this part's first byte is on (1-based)
    head: bytes = b""  # XML: declaration and the root's start tag, on one line, to read the part with
    tail: bytes = b""  # XML: the root's end tag


def split_file(path: Path, options: Mapping[str, Any], items_per_part: int) -> list[Part] | None:
    """Parts of about ``items_per_part`` items each, or None when the file is not to be split."""
    from gateway.formats._read import format_of

    fmt = format_of(path, options)
    if fmt == "xml":
        record = options.get("record")
        if not record:
            return None
        record = str(record)
        return _split_xml(path, record[record.index("}") + 1:] if record.startswith("{") else record,
                          items_per_part)
    if fmt == "jsonl":
        return _split_lines(path, items_per_part)
    return None


def _blocks(path: Path) -> Any:
    """(offset, bytes) blocks of the file, in order."""
    with open(path, "rb") as stream:
        offset = 0
        while True:
            data = stream.read(_BLOCK)
            if not data:
                return
            yield offset, data
            offset += len(data)


# --------------------------------------------------------------------------- XML


def _xml_head(path: Path) -> tuple[int, bytes, bytes, bytes] | None:
    """(offset after the root's start tag, head bytes, root end tag, root name) or None when not splittable."""
    with open(path, "rb") as stream:
        data = stream.read(_HEAD_LIMIT)
    start = 0
    if data.startswith(codecs.BOM_UTF8):
        start = 3
    elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or data[:2] in (b"\x00<", b"<\x00"):
        return None  # not ASCII-compatible: the byte patterns below would not see the tags
    declaration = b""
    pos = start
    if data.startswith(b"<?xml", pos):
        end = data.find(b"?>", pos)
        if end < 0:
            return None
        declaration = data[pos:end + 2]
        if re.search(rb"encoding\s*=\s*[\"']utf-?(16|32)", declaration, re.IGNORECASE):
            return None
        pos = end + 2
    # Between the declaration and the root only blanks and (refused) doctypes or comments may stand.
    while True:
        while pos < len(data) and data[pos:pos + 1].isspace():
            pos += 1
        if data.startswith(b"<!--", pos):
            end = data.find(b"-->", pos)
            if end < 0:
                return None
            pos = end + 3
            continue
        break
    if not data.startswith(b"<", pos) or data.startswith((b"<!", b"<?"), pos):
        return None
    match = re.compile(rb"<(" + _NAME + rb"[A-Za-z_][\w.\-]*)").match(data, pos)
    if match is None:
        return None
    name = match.group(1)
    # The start tag ends at the first ">" outside a quoted attribute value.
    i, quote = match.end(), None
    while i < len(data):
        c = data[i:i + 1]
        if quote is not None:
            if c == quote:
                quote = None
        elif c in (b'"', b"'"):
            quote = c
        elif c == b">":
            break
        i += 1
    if i >= len(data) or data[i - 1:i] == b"/":
        return None  # no end of the start tag in the head, or an empty root
    tag = data[pos:i + 1]
    head = re.sub(rb"[\r\n]", b" ", declaration) + re.sub(rb"[\r\n]", b" ", tag)
    return i + 1, head, b"</" + name + b">", name


def _split_xml(path: Path, record: str, per_part: int) -> list[Part] | None:
    found = _xml_head(path)
    if found is None:
        return None
    body_start, head, tail, root = found
    name = record.encode("ascii", "ignore")
    if not name or not re.fullmatch(rb"[A-Za-z_][\w.\-]*", name):
        return None
    tag = re.escape(name)
    # A literal start ("<TAG") lets the regular expression engine search at memory speed; a namespace
    # prefix ("<ns:TAG") needs the general pattern, which stops at every "<" — only when the file has one.
    plain = re.compile(rb"<" + tag + rb"[\s/>]")
    prefixed = re.compile(rb"<" + _NAME + tag + rb"[\s/>]")
    end_tag = re.compile(rb"</" + _NAME + tag + rb"\s*>$")
    cuts: list[tuple[int, int, int]] = []  # (item index, byte offset, line) where a part starts
    items = 0
    end_of_data = 0
    lines_before = 0  # line feeds before the window's new bytes
    context = b""  # the last scanned bytes, for looking back from a cut at the previous record's end tag
    leftover = b""  # bytes from the last "<" of the previous block on: a tag that may continue in this one
    blocks = iter(_blocks(path))
    pattern: re.Pattern[bytes] | None = None
    while True:
        block = next(blocks, None)
        final = block is None
        offset, data = (end_of_data, b"") if block is None else block
        window = context + leftover + data
        base = offset - len(leftover) - len(context)
        fresh = len(context)
        scan_from = max(fresh, body_start - base)
        # Scan up to the last "<": a record's start tag holds no other "<", so none is cut in two.
        endpos = len(window) if final else max(scan_from, window.rfind(b"<", scan_from))
        if pattern is None:  # the first block shows whether records carry a namespace prefix
            pattern = prefixed if window.find(b":" + name, scan_from) >= 0 else plain
        counted, lines = fresh, lines_before  # line feeds in window[:counted], counted on demand
        found = pattern.finditer(window, scan_from, endpos)
        while True:
            if cuts and items - cuts[-1][0] < per_part:
                # Between cuts only the count matters: take the matches in bulk, at the engine's speed.
                want = per_part - (items - cuts[-1][0])
                got = len(list(islice(found, want)))
                items += got
                if got < want:
                    break
                continue
            m = next(found, None)
            if m is None:
                break
            at = m.start()
            if items == 0 or end_tag.search(window[max(0, at - _BACKWARD):at].rstrip()):
                if items == 0 and window[scan_from:at].strip():
                    return None  # something other than records (a wrapper element, text) comes first
                lines += window.count(b"\n", counted, at)
                counted = at
                cuts.append((items, base + at, lines + 1))
            items += 1
        lines_before += window.count(b"\n", fresh, endpos)
        context = window[max(0, endpos - _BACKWARD):endpos]
        leftover = window[endpos:]
        if final:
            break
        end_of_data = offset + len(data)
    if len(cuts) < 2:
        return None
    # The root's end tag closes the last part; only blanks may follow the last record before it.
    with open(path, "rb") as stream:
        stream.seek(max(0, end_of_data - _BACKWARD))
        end_region = stream.read()
    at = end_region.rfind(b"</" + root)
    if at < 0 or not end_tag.search(end_region[:at].rstrip()):
        return None
    root_end = max(0, end_of_data - _BACKWARD) + at
    parts = []
    for n, (first, start, line) in enumerate(cuts):
        nxt_first, nxt_start = (cuts[n + 1][0], cuts[n + 1][1]) if n + 1 < len(cuts) else (items, root_end)
        if nxt_first - first > _MAX_PART * per_part:
            return None  # cuts were refused again and again: records inside records, not a flat list
        parts.append(Part(n, start, nxt_start, first, nxt_first - first, line, head, tail))
    return parts


# --------------------------------------------------------------------------- JSON lines


def _split_lines(path: Path, per_part: int) -> list[Part] | None:
    parts: list[Part] = []
    items = 0  # non-blank lines so far
    line = 1  # the line the next byte is on
    part_start, part_items, part_line, part_first = 0, 0, 1, 0
    offset = 0
    rest = b""
    for block_offset, data in _blocks(path):
        data = rest + data
        base = block_offset - len(rest)
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        pos = 0
        for piece in data[:cut].split(b"\n")[:-1]:
            if part_items >= per_part:
                parts.append(Part(len(parts), part_start, base + pos, part_first, part_items, part_line))
                part_start, part_items, part_line, part_first = base + pos, 0, line, items
            if piece.strip():
                items += 1
                part_items += 1
            pos += len(piece) + 1
            line += 1
        offset = base + cut
    if rest.strip():
        part_items += 1
        items += 1
    end = offset + len(rest)
    parts.append(Part(len(parts), part_start, end, part_first, part_items, part_line))
    return parts if len(parts) > 1 else None
