"""The ``gateway schema`` command group: export the common schema as JSON Schema documents."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.schema._jsonschema import export_json_schemas
from gateway.schema._kinds import SCHEMA_VERSION


@click.group("schema")
def schema_group() -> None:
    """The common schema (v1): record kinds, fields and code tables."""


@schema_group.command("export")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def export_command(directory: Path) -> None:
    """Write one JSON Schema (draft 2020-12) per record kind into DIRECTORY."""
    for path in export_json_schemas(directory):
        click.echo(str(path))
    click.echo(f"common schema v{SCHEMA_VERSION}: JSON Schema written to {directory}", err=True)


schema = schema_group
"""Alias: ``cli.add_command(gateway.schema.commands.schema)`` adds ``gateway schema export``."""
