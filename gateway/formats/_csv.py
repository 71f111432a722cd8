"""CSV reader: UTF-8, UTF-8 with BOM or GB18030, decoded row by row so one bad row stays one bad item.

Windows exports from counterpart systems are often GB18030 (GBK) with CRLF and a
Chinese header row, sometimes UTF-8 with a BOM.  The file is framed into physical
lines as bytes (a line feed byte never occurs inside a UTF-8 or GB18030 multi-byte
character), each line is decoded on its own, and the decoded lines are handed to the
standard ``csv`` parser, which joins the lines of a quoted field with embedded
newlines.  A row touched by an undecodable or oversized line becomes an error item;
its neighbours still parse.

A UTF-8 byte-order mark wins over the mapping's ``encoding``: an export tool that
writes one is writing UTF-8, whatever the mapping expected (the case of a UTF-8-with-BOM
file arriving for a mapping that says GB18030).
"""

from __future__ import annotations

import codecs
import csv
from collections import deque
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gateway.formats import _items
from gateway.formats._items import (
    FileRefused,
    RawItem,
    iter_lines,
    normalise_encoding,
    strip_line_end,
)
from gateway.formats._options import delimiter_char

SAMPLE_BYTES = 256 * 1024
"""How much of a file ``encoding: auto`` looks at when the header row alone cannot decide."""

_REFUSED_BOMS = (
    (codecs.BOM_UTF32_LE, "UTF-32"),
    (codecs.BOM_UTF32_BE, "UTF-32"),
    (codecs.BOM_UTF16_LE, "UTF-16"),
    (codecs.BOM_UTF16_BE, "UTF-16"),
)

_LABELS = {"utf-8": "UTF-8", "gb18030": "GB18030"}


def _decodes_as_utf8(data: bytes) -> bool:
    # final=False: a character cut at the end of the sample is not a decoding error.
    try:
        codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(sample: bytes) -> str:
    """``utf-8-sig``, ``utf-8`` or ``gb18030`` for a file that starts with ``sample``.

    A UTF-8 BOM decides at once.  Otherwise a header row with non-ASCII bytes (a
    Chinese header) decides: UTF-8 if it decodes as UTF-8, else GB18030.  An ASCII
    header cannot tell, so the non-ASCII lines of the sample vote: GB18030 only when
    most of them are not valid UTF-8 (GB18030 text is almost never valid UTF-8, so
    a single broken row in a UTF-8 file does not turn the whole file to mojibake).
    """
    if sample.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    lines = [line for line in sample.split(b"\n") if line.strip()]
    if not lines:
        return "utf-8"
    if not lines[0].isascii():
        return "utf-8" if _decodes_as_utf8(lines[0]) else "gb18030"
    good = bad = 0
    for line in lines[1:]:
        if line.isascii():
            continue
        if _decodes_as_utf8(line):
            good += 1
        else:
            bad += 1
    return "gb18030" if bad > good else "utf-8"


def _delimiter(path: Path, value: Any) -> str:
    char = delimiter_char(value if value is not None else ",")
    if char is None:
        raise FileRefused(
            path, f"input.delimiter {value!r} must be one character other than a quote or newline"
        )
    return char


def _flag(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "no", "0", "off", "")
    return bool(value)


def _header_names(path: Path, fields: list[str]) -> list[str]:
    names: list[str] = []
    seen: dict[str, int] = {}
    for number, field in enumerate(fields, start=1):
        name = field.strip().lstrip("\ufeff").strip()
        if not name:
            name = f"column {number}"
        if name in seen:
            raise FileRefused(
                path,
                f"the header row names column {name!r} twice (columns {seen[name]} and {number}); "
                "rename one of them in the export",
            )
        seen[name] = number
        names.append(name)
    return names


def read_csv(path: Path, options: Mapping[str, Any]) -> Iterator[RawItem]:
    """Rows of a CSV file as items keyed by the header row.

    ``ref`` is ``"line N"``: the line an editor shows for the row, counting every
    physical line of the file from 1 (the header is line 1); a row whose quoted field
    spans several lines is named by the line it starts on.  Without a header
    (``header: false``) the keys are the column numbers ``"1"``, ``"2"`` … and the first
    row sets the expected width.  ``raw`` is the row's bytes without its line ending.
    """
    delimiter = _delimiter(path, options.get("delimiter", ","))
    has_header = _flag(options.get("header"), True)
    quotechar = str(options.get("quotechar") or '"')
    encoding = normalise_encoding(path, options.get("encoding", "auto"))
    with open(path, "rb") as stream:
        sample = stream.read(SAMPLE_BYTES)
        for bom, name in _REFUSED_BOMS:
            if sample.startswith(bom):
                raise FileRefused(
                    path, f"the file is {name} (byte-order mark); export it as UTF-8 or GB18030"
                )
        if sample.startswith(codecs.BOM_UTF8):
            encoding = "utf-8-sig"  # the BOM wins over whatever the mapping declared
        elif encoding == "auto":
            encoding = detect_encoding(sample)
        codec = "utf-8" if encoding == "utf-8-sig" else encoding
        # Skip the BOM by position so that reported byte offsets stay offsets into the file.
        stream.seek(3 if codec == "utf-8" and sample.startswith(codecs.BOM_UTF8) else 0)
        yield from _rows(path, stream, codec, delimiter, quotechar, has_header)


def _rows(
    path: Path, stream: Any, codec: str, delimiter: str, quotechar: str, has_header: bool
) -> Iterator[RawItem]:
    label = _LABELS.get(codec, codec)
    # Physical lines the csv parser has pulled but whose row we have not emitted yet:
    # (line number, byte offset, bytes, (rule, problem) or None).
    pending: deque[tuple[int, int, bytes, tuple[str, str] | None]] = deque()

    def decoded_lines() -> Iterator[str]:
        for number, (offset, data, too_long) in enumerate(iter_lines(stream), start=1):
            if too_long:
                problem = f"line {number} at byte offset {offset} is longer than {_items.MAX_LINE_BYTES} bytes"
                pending.append((number, offset, data, ("line_length", problem)))
                yield "\n"
                continue
            try:
                text = data.decode(codec)
            except UnicodeDecodeError as exc:
                bad = data[exc.start : exc.end].hex(" ")
                problem = f"bytes {bad} at byte offset {offset + exc.start} (line {number}) are not valid {label}"
                pending.append((number, offset, data, ("encoding", problem)))
                # Decode with replacement so the csv parser stays in step with the file:
                # neither codec turns a quote or a line feed into part of a bad sequence.
                text = data.decode(codec, "replace")
            else:
                pending.append((number, offset, data, None))
            yield text

    reader = csv.reader(decoded_lines(), delimiter=delimiter, quotechar=quotechar, strict=False)
    consumed = 0

    def take() -> list[tuple[int, int, bytes, tuple[str, str] | None]]:
        nonlocal consumed
        count = reader.line_num - consumed
        consumed = reader.line_num
        return [pending.popleft() for _ in range(count)]

    keys: list[str] | None = None
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            lines = take()
            if keys is None and has_header:
                raise FileRefused(path, f"the header row is not valid CSV: {exc}") from exc
            first = lines[0][0] if lines else reader.line_num
            yield RawItem(
                None,
                f"line {first}",
                strip_line_end(b"".join(data for _, _, data, _ in lines)),
                error=f"line {first} is not valid CSV: {exc}",
                rule="csv_syntax",
            )
            continue
        lines = take()
        problems = [problem for _, _, _, problem in lines if problem]
        if not fields and not problems:
            continue  # a blank line is not a row
        raw = strip_line_end(b"".join(data for _, _, data, _ in lines))
        if keys is None and has_header:
            if problems:
                raise FileRefused(
                    path,
                    f"the header row cannot be decoded: {problems[0][1]}; set input.encoding in the mapping, or "
                    "input = {encoding = …} under the source in gateway.toml",
                )
            keys = _header_names(path, fields)
            continue
        first = lines[0][0]
        ref = f"line {first}"
        if problems:
            rule, problem = problems[0]
            yield RawItem(None, ref, raw, error=f"line {first}: {problem}", rule=rule)
            continue
        if keys is None:
            keys = [str(number) for number in range(1, len(fields) + 1)]
        if len(fields) != len(keys):
            error, missing = _column_count(first, fields, keys, has_header)
            yield RawItem(None, ref, raw, error=error, field=missing, rule="csv_columns")
            continue
        yield RawItem(dict(zip(keys, fields, strict=True)), ref, raw)


def _column_count(line: int, fields: list[str], keys: list[str], has_header: bool) -> tuple[str, str | None]:
    """The error for a row of the wrong width, naming the columns without a value or the extra values.

    Columns are matched by position, so the missing ones are the last ones; where the
    fault really lies (a lost delimiter, an unquoted delimiter inside a value) can be
    anywhere before them, which the message says.
    """
    expected, found = len(keys), len(fields)
    against = "the header has" if has_header else "the first row has"
    head = f"line {line} has {found} columns where {against} {expected}"
    if found < expected:
        missing = keys[found:]
        shown = ", ".join(missing[:6]) + (f" … ({len(missing)} in all)" if len(missing) > 6 else "")
        return (f"{head}: no value for {shown}; a lost delimiter or a line break inside an unquoted value "
                "shifts the columns after it", missing[0])
    extra = found - expected
    return (f"{head}: {extra} extra value{'s' if extra > 1 else ''} after the last column {keys[-1]!r} "
            f"(columns {expected + 1}–{found}); an unquoted delimiter inside a value shifts the columns after it",
            None)
