"""The ``gateway mapping`` command group: check mapping files and try them on sample files."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from gateway.mapping._errors import MappingError
from gateway.mapping._inbound import InboundMapping
from gateway.mapping._load import load_mapping
from gateway.mapping._outbound import OutboundMapping


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def _load_or_exit(path: Path) -> InboundMapping | OutboundMapping:
    try:
        return load_mapping(path)
    except MappingError as exc:
        click.echo(f"mapping error: {exc}", err=True)
        sys.exit(1)


@click.group("mapping")
def mapping_group() -> None:
    """Mapping files: check them, try them on sample files, show the code they compile to."""


@mapping_group.command("check")
@click.argument("mappings", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def check_command(mappings: tuple[Path, ...]) -> None:
    """Load and compile each MAPPING file; report every error (exit code 1 if any)."""
    failed = 0
    for path in mappings:
        try:
            m = load_mapping(path)
        except MappingError as exc:
            failed += 1
            click.echo(f"FAIL {exc}")
            continue
        click.echo(f"ok   {path}: {m.direction} {m.name}@{m.version} ({', '.join(m.kinds)})")
    if failed:
        sys.exit(1)


@mapping_group.command("show")
@click.argument("mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def show_command(mapping: Path) -> None:
    """Print the Python that MAPPING compiles to, to read what it does.

    Each output is one function; its comments name the YAML file and line of every
    field, and say what each bound name holds (a code table, a date parser, a field).
    A mapping that does not load is reported with its file and line (exit code 1).
    """
    m = _load_or_exit(mapping)
    if isinstance(m, InboundMapping):
        click.echo(m.show())
    else:
        click.echo(f"# {m.ref}: outbound mapping compiled from {m.path}\n# renders: {', '.join(m.kinds)}\n")
        click.echo(m.source)


def _outbound_records(sample: Path) -> Iterator[tuple[str, Any]]:
    """Stored records from a JSON file (one record or a list), else from JSON lines."""
    text = sample.read_text(encoding="utf-8-sig")
    try:
        whole = json.loads(text)
    except ValueError:
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                yield f"line {number}", line
        return
    for number, item in enumerate(whole if isinstance(whole, list) else [whole], 1):
        yield f"item {number}", item


@mapping_group.command("test")
@click.argument("mapping", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("sample", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--errors-only", is_flag=True, help="Print only the errors, not the mapped records.")
def test_command(mapping: Path, sample: Path, errors_only: bool) -> None:
    """Run MAPPING over SAMPLE and print each record as JSON, or each error.

    Inbound: SAMPLE is a counterpart file read as the mapping's input block says;
    every mapped record is printed as one JSON line, every error (file, record,
    field, rule, value) on standard error.  Outbound: SAMPLE holds stored common
    records (JSON or JSON lines); each rendered body is printed.  Exit code 1 when
    anything failed.
    """
    m = _load_or_exit(mapping)
    if isinstance(m, OutboundMapping):
        _test_outbound(m, sample, errors_only)
    else:
        _test_inbound(m, sample, errors_only)


def _test_inbound(m: InboundMapping, sample: Path, errors_only: bool) -> None:
    from gateway.formats import FileRefused, read_items  # lazy: the readers pull in lxml and csv machinery

    items = records = errors = findings = 0
    try:
        for item in read_items(sample, m.input):
            items += 1
            where = f"{sample.name} {item.ref}"
            if item.error is not None or item.payload is None:
                errors += 1
                field = f" field {item.field}:" if item.field else ""
                rule = item.rule or "read"
                click.echo(f"ERROR {where}:{field} {rule}: {item.error or 'no payload'}", err=True)
                continue
            for mapped in m.map(item.payload):
                records += 1
                if mapped.errors:
                    for e in mapped.errors:
                        errors += 1
                        click.echo(f"ERROR {where}: {_describe(e, mapped.kind)}", err=True)
                    continue
                for e in mapped.findings:
                    findings += 1
                    click.echo(f"FINDING {where}: {_describe(e, mapped.kind)} (accepted: on_invalid)", err=True)
                if not errors_only:
                    out = {"ref": where, "kind": mapped.kind, "data": mapped.data, "original": mapped.original}
                    if mapped.findings:
                        out["findings"] = [e.as_dict() for e in mapped.findings]
                    click.echo(_dumps(out))
    except FileRefused as exc:
        errors += 1
        click.echo(f"ERROR {sample.name}: file refused: {exc.reason}", err=True)
    except OSError as exc:
        errors += 1
        click.echo(f"ERROR {sample}: cannot read: {exc.strerror or exc}", err=True)
    tail = f", {findings} findings accepted" if findings else ""
    click.echo(f"{m.ref}: {items} items, {records} records, {errors} errors{tail}", err=True)
    if errors:
        sys.exit(1)


def _describe(e: Any, kind: str) -> str:
    shown = f" (value {e.value!r})" if e.value else ""
    where = f"{e.where}: " if getattr(e, "where", None) else ""
    return f"{where}{e.kind or kind}.{e.field}: {e.rule}: {e.message}{shown}"


def _test_outbound(m: OutboundMapping, sample: Path, errors_only: bool) -> None:
    count = errors = 0
    try:
        entries = list(_outbound_records(sample))
    except (OSError, ValueError) as exc:
        click.echo(f"ERROR {sample}: not a JSON file of stored records: {exc}", err=True)
        sys.exit(1)
    for ref, entry in entries:
        count += 1
        where = f"{sample.name} {ref}"
        try:
            record = json.loads(entry) if isinstance(entry, str) else entry
            body = m.render(record)
        except ValueError as exc:
            errors += 1
            click.echo(f"ERROR {where}: not JSON: {exc}", err=True)
            continue
        except MappingError as exc:
            errors += 1
            click.echo(f"ERROR {where}: {exc}", err=True)
            continue
        if not errors_only:
            if isinstance(body, bytes):
                click.echo(body.decode("utf-8"))
            else:
                click.echo(_dumps(body))
    click.echo(f"{m.ref}: {count} records, {errors} errors", err=True)
    if errors:
        sys.exit(1)


mapping = mapping_group
"""Alias: ``cli.add_command(gateway.mapping.commands.mapping)`` adds ``gateway mapping test``."""
