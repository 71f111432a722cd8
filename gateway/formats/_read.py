"""``read_items``: choose the reader for a file's format and stream its items."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from gateway.formats._csv import read_csv
from gateway.formats._items import FileRefused, RawItem
from gateway.formats._json import read_json, read_jsonl
from gateway.formats._xml import read_xml, read_xml_part

FORMATS = ("xml", "csv", "jsonl", "json")

_SUFFIX_FORMATS = {
    ".xml": "xml",
    ".csv": "csv",
    ".txt": "csv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
}


def format_of(path: Path, options: Mapping[str, Any]) -> str:
    """The format named in ``options["format"]``, or inferred from the file suffix when absent."""
    fmt = options.get("format")
    if fmt in (None, "", "auto"):
        fmt = _SUFFIX_FORMATS.get(path.suffix.lower())
        if fmt is None:
            raise FileRefused(
                path,
                f"unknown format: input.format is not set and the suffix {path.suffix!r} is not one of "
                f"{', '.join(sorted(_SUFFIX_FORMATS))}",
            )
        return fmt
    fmt = str(fmt).lower()
    if fmt == "ndjson":
        return "jsonl"
    if fmt not in FORMATS:
        raise FileRefused(path, f"unknown format {fmt!r} in input.format; use one of {', '.join(FORMATS)}")
    return fmt


def read_items(path: Path, options: Mapping[str, Any], part: Any = None, *, keep_raw: bool = True
               ) -> Iterator[RawItem]:
    """Stream the items of one file, in file order, in constant memory.

    ``options`` is an inbound mapping's ``input`` block: ``format`` (xml, csv, jsonl,
    json; inferred from the suffix when absent), ``encoding`` (auto, utf-8, utf-8-sig,
    gb18030), ``delimiter`` and ``header`` (CSV), ``record`` (XML element tag of one
    item, or JSON key of the item array).  The same file always yields the same
    sequence, so a caller may resume by skipping the items it already committed.

    A bad item is yielded as a :class:`RawItem` with ``error`` set and reading goes on
    (or stops after it, when the file cannot be followed any further).  A file that
    cannot be read at all raises :class:`FileRefused`; an unreadable path raises
    ``OSError``.

    ``part`` reads only one part planned by :func:`gateway.formats.split_file`, its items
    numbered as in the whole file. ``keep_raw=False`` spares an XML reader re-serialising
    each element (a file drop hashes the parsed payload; the file itself is kept whole).
    """
    path = Path(path)
    fmt = format_of(path, options)
    if fmt == "xml":
        if part is not None:
            yield from read_xml_part(path, options, part, keep_raw=keep_raw)
        else:
            yield from read_xml(path, options, keep_raw=keep_raw)
        return
    if fmt == "jsonl":
        yield from read_jsonl(path, options, part)
        return
    if part is not None:
        raise ValueError(f"{fmt} files are not read in parts")
    reader = {"csv": read_csv, "json": read_json}[fmt]
    yield from reader(path, options)
