"""``load_mapping``: read, validate and compile one mapping file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.mapping._errors import MappingError
from gateway.mapping._inbound import InboundMapping
from gateway.mapping._outbound import OutboundMapping
from gateway.mapping._spec import parse_plan
from gateway.schema import CodeTableError, code_tables
from gateway.schema._codetables import SCHEMA_TABLE_DIR, load_local_tables
from gateway.schema._yaml import Document, YamlLoadError, load_with_lines

LOCAL_TABLE_DIR = "codetables"
"""Counterpart-local code tables live in this folder beside the mapping files."""


def table_dirs(path: Path, doc: Document) -> list[tuple[Path, bool]]:
    """Folders of counterpart tables for the mapping at ``path``: ``(folder, named)``.

    ``codetables/`` beside the file always; then each folder the mapping names with a
    top-level ``codetables:`` (relative to the mapping file), which must exist.
    """
    dirs: list[tuple[Path, bool]] = [(path.parent / LOCAL_TABLE_DIR, False)]
    top = doc.value if isinstance(doc.value, dict) else {}
    raw: Any = top.get("codetables")
    if raw is None:
        return dirs
    entries = [raw] if isinstance(raw, str) else raw
    if not isinstance(entries, list) or not entries or not all(isinstance(e, str) and e for e in entries):
        raise MappingError("codetables is a folder or a list of folders (relative to the mapping file)",
                           file=doc.file, line=doc.line(("codetables",)), rule="code_table", value=raw)
    for i, entry in enumerate(entries):
        folder = Path(entry) if Path(entry).is_absolute() else path.parent / entry
        if not folder.is_dir():
            raise MappingError(f"codetables names {folder}, which is not a folder",
                               file=doc.file, line=doc.line(("codetables", i)) or doc.line(("codetables",)),
                               rule="code_table", value=entry)
        if folder.resolve() not in {d.resolve() for d, _ in dirs if d.is_dir()}:
            dirs.append((folder, True))
    return dirs


def load_mapping(path: str | Path) -> InboundMapping | OutboundMapping:
    """Load ``path``, check it against the closed vocabulary and compile it once.

    Code tables are the schema's plus every table in ``codetables/`` beside the file
    and in the folders its ``codetables:`` names.  Raises :class:`MappingError`
    naming the file, line, field, rule and value.
    """
    path = Path(path)
    try:
        doc = load_with_lines(path)
    except YamlLoadError as exc:
        raise MappingError(exc.message, file=exc.file, line=exc.line, rule="yaml") from exc
    tables = code_tables()
    searched = [f"the schema's national tables ({SCHEMA_TABLE_DIR})"]
    for folder, _named in table_dirs(path, doc):
        if not folder.is_dir():
            searched.append(f"{folder} (no such folder)")
            continue
        files = sorted(p.name for p in folder.glob("*.yaml"))
        searched.append(f"{folder} ({', '.join(files) if files else 'no *.yaml files'})")
        try:
            tables = load_local_tables(folder, tables)
        except CodeTableError as exc:
            # name the table file (where the fix goes) and say which mapping needed it
            message = f"{exc} (code tables of mapping {path})"
            raise MappingError(message, file=exc.file, line=exc.line, rule="code_table") from exc
    plan = parse_plan(doc, tables, path, tuple(searched))
    if plan.direction == "inbound":
        return InboundMapping(plan, path, tables)
    return OutboundMapping(plan, path, tables)
