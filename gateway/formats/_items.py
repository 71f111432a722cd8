"""The item type every reader yields, the whole-file refusal, and the options they share."""

from __future__ import annotations

import codecs
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

# Encodings the readers accept, by the codec name Python normalises them to.  GBK and
# GB2312 are subsets of GB18030, so files declared as either are decoded as GB18030.
_ENCODINGS = {
    "utf-8": "utf-8",
    "utf-8-sig": "utf-8-sig",
    "gb18030": "gb18030",
    "gbk": "gb18030",
    "gb2312": "gb18030",
}

MAX_LINE_BYTES = 16 * 1024 * 1024
"""A physical line (CSV, JSON lines) longer than this is an error item, never held in memory whole."""


@dataclass(slots=True)
class RawItem:
    """One item read from a file: a parsed ``payload`` or, when the item itself is bad, an ``error``.

    ``ref`` locates the item inside its file ("line 17" for CSV and JSON lines, "record 3
    (line 40)", "item 2 (line 5)"); the caller prefixes the file name.  ``raw`` holds the item's own bytes:
    the CSV row or JSON line without its line ending, the JSON array element's text,
    the XML element re-serialised as UTF-8.  It is ``None`` only where no bytes belong
    to the item (an error that stops a document, an oversized line).
    ``field`` names the field a per-item error concerns, when there is one, and
    ``rule`` the rule it breaks (``json_duplicate_key``, ``csv_columns`` …; see
    docs/strict-input.md).
    """

    payload: dict[str, Any] | None
    ref: str
    raw: bytes | None = None
    error: str | None = None
    field: str | None = None
    rule: str | None = None


class FileRefused(Exception):
    """The whole file cannot or must not be read: hostile, unsupported or structurally wrong.

    Raised from the first ``next()`` on :func:`read_items` (or later, for a fact only the
    end of the file reveals).  The message names the file and says what to do.
    """

    def __init__(self, path: Path | str | None, reason: str) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = reason
        where = f"{self.path.name}: " if self.path is not None else ""
        super().__init__(f"{where}{reason}")


def normalise_encoding(path: Path | None, value: Any) -> str:
    """``"auto"`` or one of the codec names in ``_ENCODINGS``; anything else refuses the file."""
    if value is None or value == "auto":
        return "auto"
    try:
        name = codecs.lookup(str(value)).name
    except LookupError:
        name = ""
    if name not in _ENCODINGS:
        raise FileRefused(
            path, f"input.encoding {value!r} is not supported; use auto, utf-8, utf-8-sig or gb18030"
        )
    return _ENCODINGS[name]


def iter_lines(stream: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
    """Physical lines as ``(byte offset, bytes, too_long)``, each at most ``MAX_LINE_BYTES``.

    An oversized line is skipped to its end and reported once with ``too_long`` set and
    only its first bytes, so a file without line breaks cannot exhaust memory.
    """
    offset = stream.tell()
    while True:
        line = stream.readline(MAX_LINE_BYTES)
        if not line:
            return
        if len(line) >= MAX_LINE_BYTES and not line.endswith(b"\n"):
            length = len(line)
            while True:
                more = stream.readline(MAX_LINE_BYTES)
                length += len(more)
                if not more or more.endswith(b"\n"):
                    break
            yield offset, line[:200], True
            offset += length
            continue
        yield offset, line, False
        offset += len(line)


def strip_line_end(line: bytes) -> bytes:
    if line.endswith(b"\r\n"):
        return line[:-2]
    if line.endswith((b"\n", b"\r")):
        return line[:-1]
    return line
