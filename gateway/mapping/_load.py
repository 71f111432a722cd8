"""``load_mapping``: read, validate and compile one mapping file."""

from __future__ import annotations

from pathlib import Path

from gateway.mapping._errors import MappingError
from gateway.mapping._inbound import InboundMapping
from gateway.mapping._outbound import OutboundMapping
from gateway.mapping._spec import parse_plan
from gateway.schema import CodeTableError, code_tables
from gateway.schema._codetables import load_local_tables
from gateway.schema._yaml import YamlLoadError, load_with_lines

LOCAL_TABLE_DIR = "codetables"
"""Counterpart-local code tables live in this folder beside the mapping files."""


def load_mapping(path: str | Path) -> InboundMapping | OutboundMapping:
    """Load ``path``, check it against the closed vocabulary and compile it once.

    Code tables are the schema's plus every table in ``codetables/`` beside the
    file.  Raises :class:`MappingError` naming the file, line, field, rule and value.
    """
    path = Path(path)
    try:
        doc = load_with_lines(path)
    except YamlLoadError as exc:
        raise MappingError(exc.message, file=exc.file, line=exc.line, rule="yaml") from exc
    tables = code_tables()
    local_dir = path.parent / LOCAL_TABLE_DIR
    if local_dir.is_dir():
        try:
            tables = load_local_tables(local_dir, tables)
        except CodeTableError as exc:
            # name the table file (where the fix goes) and say which mapping needed it
            message = f"{exc} (code tables of mapping {path})"
            raise MappingError(message, file=exc.file, line=exc.line, rule="code_table") from exc
    plan = parse_plan(doc, tables, path)
    if plan.direction == "inbound":
        return InboundMapping(plan, path, tables)
    return OutboundMapping(plan, path, tables)
