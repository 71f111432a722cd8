"""Code tables: the national tables of the common schema and counterpart-local translation tables.

A *domain* table lists the codes a schema field may hold (``codes:``); a
*translation* table turns a counterpart's raw values into the codes of a domain
table (``map:`` plus ``target:``).  Tables are data files (YAML), so that one edit
fixes every mapping that uses them.  Schema tables live beside this module;
counterpart tables live in ``mappings/codetables/`` and carry a dotted id
(``hall.id_type``) so they can never shadow a national one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from gateway.schema._text import nfc
from gateway.schema._yaml import Document, YamlLoadError, load_with_lines

SCHEMA_TABLE_DIR = Path(__file__).with_name("codetables")

_SCHEMA_ID = re.compile(r"^[a-z][a-z0-9_]*$")
_LOCAL_ID = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_TABLE_KEYS = frozenset({"id", "title", "source", "note", "codes", "map", "target"})
_ENTRY_KEYS = frozenset({"label", "note", "severity"})


class CodeTableError(Exception):
    """A code table file is malformed; the message names the file, line, table and problem."""

    def __init__(self, file: str, line: int | None, message: str) -> None:
        self.file = file
        self.line = line
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class CodeTable:
    """One code table.

    ``codes`` maps code → label for a domain table; ``map`` maps raw value → code of
    ``target`` for a translation table (then ``codes`` is empty).
    """

    id: str
    title: str
    codes: Mapping[str, str] = field(default_factory=dict)
    map: Mapping[str, str] | None = None
    target: str | None = None
    source: str = ""
    note: str = ""
    attributes: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    file: str = ""

    @property
    def is_translation(self) -> bool:
        return self.map is not None

    def label(self, code: str) -> str | None:
        return self.codes.get(code)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "title": self.title}
        if self.source:
            out["source"] = self.source
        if self.note:
            out["note"] = self.note
        if self.map is not None:
            out["target"] = self.target
            out["map"] = dict(self.map)
        else:
            out["codes"] = dict(self.codes)
        return out


def _str_key(doc: Document, loc: tuple, key: Any, table: str, what: str) -> str:
    if not isinstance(key, str):
        # YAML reads 01 as 1 and 010 as 8: an unquoted code silently changes meaning.
        raise CodeTableError(
            doc.file,
            doc.line(loc),
            f"table {table!r}: {what} {key!r} must be a quoted string (write \"{key}\" with the exact digits)",
        )
    # values are compared after the mapping normalised them to NFC, so the table's keys are too
    return key if key.isascii() else nfc(key)


def _parse_table(doc: Document, raw: Any, loc: tuple, local: bool) -> CodeTable:
    if not isinstance(raw, dict):
        raise CodeTableError(doc.file, doc.line(loc), "a code table must be a mapping with id, title and codes or map")
    unknown = set(raw) - _TABLE_KEYS
    table_id = raw.get("id")
    if unknown:
        bad = sorted(map(str, unknown))[0]
        raise CodeTableError(
            doc.file, doc.line(loc + (bad,)), f"table {table_id!r}: unknown key {bad!r} (allowed: {sorted(_TABLE_KEYS)})"
        )
    pattern = _LOCAL_ID if local else _SCHEMA_ID
    if not isinstance(table_id, str) or not pattern.match(table_id):
        shape = "a dotted id like hall.id_type" if local else "a snake_case id"
        raise CodeTableError(doc.file, doc.line(loc + ("id",)), f"table id {table_id!r} must be {shape}")
    title = raw.get("title")
    if not isinstance(title, str) or not title:
        raise CodeTableError(doc.file, doc.line(loc + ("title",)), f"table {table_id!r}: title is required")
    has_codes, has_map = "codes" in raw, "map" in raw
    if has_codes == has_map:
        raise CodeTableError(doc.file, doc.line(loc), f"table {table_id!r}: give exactly one of codes: or map:")
    text = {k: raw.get(k) or "" for k in ("source", "note")}
    for k, v in text.items():
        if not isinstance(v, str):
            raise CodeTableError(doc.file, doc.line(loc + (k,)), f"table {table_id!r}: {k} must be text")
    if has_codes:
        codes_raw = raw["codes"]
        if not isinstance(codes_raw, dict) or not codes_raw:
            raise CodeTableError(doc.file, doc.line(loc + ("codes",)), f"table {table_id!r}: codes must be a non-empty mapping")
        if raw.get("target") is not None:
            raise CodeTableError(doc.file, doc.line(loc + ("target",)), f"table {table_id!r}: target belongs to map: tables")
        codes: dict[str, str] = {}
        attributes: dict[str, Mapping[str, str]] = {}
        for key, entry in codes_raw.items():
            code = _str_key(doc, loc + ("codes", key), key, table_id, "code")
            eloc = loc + ("codes", key)
            if isinstance(entry, str):
                codes[code] = entry
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("label"), str) or set(entry) - _ENTRY_KEYS:
                raise CodeTableError(
                    doc.file, doc.line(eloc), f"table {table_id!r}: code {code!r} needs a label (text, or label/note/severity)"
                )
            codes[code] = entry["label"]
            attributes[code] = MappingProxyType({k: str(v) for k, v in entry.items() if k != "label"})
        return CodeTable(
            id=table_id,
            title=title,
            codes=MappingProxyType(codes),
            source=text["source"],
            note=text["note"],
            attributes=MappingProxyType(attributes),
            file=doc.file,
        )
    map_raw = raw["map"]
    if not isinstance(map_raw, dict) or not map_raw:
        raise CodeTableError(doc.file, doc.line(loc + ("map",)), f"table {table_id!r}: map must be a non-empty mapping")
    target = raw.get("target")
    if not isinstance(target, str) or not target:
        raise CodeTableError(doc.file, doc.line(loc + ("target",)), f"table {table_id!r}: a map: table needs target:")
    mapping: dict[str, str] = {}
    for key, value in map_raw.items():
        k = _str_key(doc, loc + ("map", key), key, table_id, "raw value")
        v = _str_key(doc, loc + ("map", key), value, table_id, f"code for {k!r}")
        mapping[k] = v
    return CodeTable(
        id=table_id,
        title=title,
        map=MappingProxyType(mapping),
        target=target,
        source=text["source"],
        note=text["note"],
        file=doc.file,
    )


def load_table_file(path: str | Path, *, local: bool) -> list[CodeTable]:
    """Tables of one file: either one table, or ``tables: [...]`` holding several."""
    try:
        doc = load_with_lines(path)
    except YamlLoadError as exc:
        raise CodeTableError(exc.file, exc.line, exc.message) from exc
    value = doc.value
    if isinstance(value, dict) and set(value) == {"tables"}:
        items = value["tables"]
        if not isinstance(items, list) or not items:
            raise CodeTableError(doc.file, doc.line(("tables",)), "tables: must be a non-empty list of tables")
        return [_parse_table(doc, item, ("tables", i), local) for i, item in enumerate(items)]
    return [_parse_table(doc, value, (), local)]


def resolve_tables(tables: Iterable[CodeTable], base: Mapping[str, CodeTable] | None = None) -> dict[str, CodeTable]:
    """Index ``tables`` by id on top of ``base`` and check every translation's target codes."""
    out = dict(base or {})
    added: list[CodeTable] = []
    for table in tables:
        if table.id in out:
            other = out[table.id]
            raise CodeTableError(table.file, None, f"table id {table.id!r} is defined twice (also in {other.file})")
        out[table.id] = table
        added.append(table)
    for table in added:
        if table.map is None:
            continue
        target = out.get(table.target or "")
        if target is None or target.is_translation:
            raise CodeTableError(
                table.file, None, f"table {table.id!r}: target {table.target!r} is not a known domain code table"
            )
        for raw, code in table.map.items():
            if code not in target.codes:
                raise CodeTableError(
                    table.file,
                    None,
                    f"table {table.id!r}: {raw!r} maps to {code!r}, which is not a code of {target.id!r}"
                    f" (codes: {', '.join(target.codes)})",
                )
    return out


def load_local_tables(directory: str | Path, base: Mapping[str, CodeTable]) -> dict[str, CodeTable]:
    """Counterpart-local tables of ``directory`` (every ``*.yaml``) merged over ``base``."""
    found: list[CodeTable] = []
    for path in sorted(Path(directory).glob("*.yaml")):
        found.extend(load_table_file(path, local=True))
    return resolve_tables(found, base)


@lru_cache(maxsize=1)
def _schema_tables() -> Mapping[str, CodeTable]:
    found: list[CodeTable] = []
    for path in sorted(SCHEMA_TABLE_DIR.glob("*.yaml")):
        found.extend(load_table_file(path, local=False))
    return MappingProxyType(resolve_tables(found))


def code_tables() -> Mapping[str, CodeTable]:
    """The common schema's code tables by id (loaded once, read-only)."""
    return _schema_tables()
