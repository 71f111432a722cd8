"""The ``gateway quarantine`` commands: list, show, reprocess (with a dry run) and discard — each change audited.

What they print is masked like every listing (``gateway.security.cli``); ``--unmask
--reason TEXT`` shows an entry in full only to an auditor, and is audited first. The
person who changes entries is named in the audit trail by the OS user.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.security.cli import reader_options
from gateway.security.masking import masker_for
from gateway.store.quarantine import STATES


def _config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("GATEWAY_CONFIG", "gateway.toml"),
        show_default="$GATEWAY_CONFIG or gateway.toml", help="The gateway.toml to use.",
    )(f)


def actor() -> str:
    from gateway.security.cli import os_actor

    return os_actor()


def reasons(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{e.get('field') or '-'}: {e.get('rule')}: {e.get('message')}" for e in errors)


@click.group()
def quarantine() -> None:
    """Items that could not be accepted: list, show, reprocess after a mapping fix, discard."""


def list_entries(config_path: Path, system: str | None, state: str, limit: int, as_json: bool,
                 access: Any) -> None:
    from gateway.cli import _print_rows, load_or_exit, run_async, with_store
    from gateway.security.cli import present_rows

    config = load_or_exit(config_path)
    wanted = None if state == "all" else state

    async def work(store: Any) -> tuple[list[dict[str, Any]], int]:
        rows = await store.quarantine_entries(system=system, state=wanted, limit=limit, newest_first=True)
        rows = await present_rows(store, config, rows, "quarantine", access, by_system=True)
        return rows, await store.quarantine_count(system=system, state=wanted)

    rows, total = run_async(with_store(config, work))
    if as_json:
        _print_rows(rows, [], True)
        return
    for r in rows:
        r["reasons"] = reasons(r["errors"])
        r["seen"] = r["seen_count"]
    what = "entries" if state == "all" else f"{state} entries"
    click.echo(f"{len(rows)} of {total} {what}{f' of {system}' if system else ''}, newest first")
    _print_rows(rows, ["id", "state", "system", "kind", "seen", "last_seen", "last_ref", "reasons"], False)


@quarantine.command("list")
@_config_option
@click.option("--system", help="Only this system.")
@click.option("--state", type=click.Choice([*STATES, "all"]), default="open", show_default=True)
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@reader_options
def list_command(config_path: Path, system: str | None, state: str, limit: int, as_json: bool, access: Any) -> None:
    """Entries, newest first, with every reason (field, rule, message) and how often each item was seen."""
    list_entries(config_path, system, state, limit, as_json, access)


@quarantine.command("show")
@_config_option
@click.argument("entry_id", type=int)
@click.option("--json", "as_json", is_flag=True)
@reader_options
def show_command(config_path: Path, entry_id: int, as_json: bool, access: Any) -> None:
    """One entry: its reasons, its history and the item as it was received (its bytes only unmasked)."""
    from gateway.cli import load_or_exit, run_async, with_store
    from gateway.security.cli import present_rows

    config = load_or_exit(config_path)

    async def work(store: Any) -> dict[str, Any] | None:
        entry = await store.quarantine_entry(entry_id)
        if entry is None:
            return None
        raw = entry.pop("raw")
        entry["raw"] = raw.decode("utf-8", "backslashreplace") if raw and access.unmask else (
            f"({len(raw)} bytes; --unmask shows them)" if raw else None)
        (shown,) = await present_rows(store, config, [entry], "quarantine entry", access, by_system=True)
        return shown

    entry = run_async(with_store(config, work))
    if entry is None:
        click.echo(f"no quarantine entry {entry_id}", err=True)
        sys.exit(1)
    if as_json:
        click.echo(json.dumps(entry, ensure_ascii=False, default=str))
        return
    click.echo(f"quarantine entry {entry['id']} ({entry['state']}): system {entry['system']}, "
               f"kind {entry['kind'] or '-'}, mapping {entry['mapping'] or '-'}")
    click.echo(f"  first seen {entry['receipt_time']} as {entry['ref']}")
    click.echo(f"  seen {entry['seen_count']} time(s), last {entry['last_seen']} as {entry['last_ref']}")
    if entry["resolution"]:
        click.echo(f"  {entry['state']} {entry['settled_at']}: {json.dumps(entry['resolution'], ensure_ascii=False)}")
    click.echo("  reasons:")
    for e in entry["errors"]:
        value = f" (value {e['value']})" if e.get("value") not in (None, "") else ""
        click.echo(f"    {e.get('kind') or '-'}.{e.get('field') or '-'}: {e.get('rule')}: {e.get('message')}{value}")
    click.echo("  payload: " + (json.dumps(entry["payload"], ensure_ascii=False) if entry["payload"] is not None
                                else "(none: the item could not be parsed)"))
    if entry["raw"] is not None:
        click.echo(f"  raw: {entry['raw']}")


@quarantine.command("reprocess")
@_config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--system", help="Every open entry of this system (with IDS: only those of it).")
@click.option("--all", "everything", is_flag=True, help="Every open entry.")
@click.option("--limit", type=int, help="At most this many entries.")
@click.option("--dry-run", is_flag=True, help="Say what would land and what would stay; change nothing.")
@click.option("--json", "as_json", is_flag=True)
def reprocess_command(config_path: Path, ids: tuple[int, ...], system: str | None, everything: bool,
                      limit: int | None, dry_run: bool, as_json: bool) -> None:
    """Run kept originals through the CURRENT mapping of their system: fixed ones land, the rest stay.

    A running gateway delivers what landed at its next poll; its own push endpoints keep
    the mapping they started with until restarted.
    """
    from gateway.app import build
    from gateway.cli import load_or_exit, run_async, with_store
    from gateway.config import ConfigError
    from gateway.pipeline.ingest import Ingestor
    from gateway.pipeline.reprocess import reprocess

    if not (ids or system or everything):
        raise click.UsageError("name the entries: IDS, --system NAME or --all")
    config = load_or_exit(config_path)
    try:
        comp = build(config)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)

    async def work(store: Any) -> Any:
        assert comp.router is not None
        return await reprocess(store, Ingestor(store, comp.router, comp.inbound), ids=list(ids) or None,
                               system=system, limit=limit, dry_run=dry_run, actor=actor())

    report = run_async(with_store(config, work))
    shown = masker_for(None)(report.as_dict())  # refs and reasons may quote personal data
    if as_json:
        click.echo(json.dumps(shown, ensure_ascii=False, default=str))
        return
    for r in shown["results"]:
        line = f"{r['id']}: {r['outcome']}"
        if r.get("records"):
            line += " → " + ", ".join(f"{x['kind']} {x['record_key']}" + (f" ({x['status']})" if "status" in x
                                                                          else "") for x in r["records"])
        if r.get("errors"):
            line += f"; still: {reasons(r['errors'])}"
        if r.get("message"):
            line += f"; {r['message']}"
        click.echo(line)
    summary = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(report.counts().items())) or "nothing open"
    click.echo(("dry run, nothing changed: " if dry_run else "") + summary)


@quarantine.command("discard")
@_config_option
@click.argument("ids", nargs=-1, type=int, required=True)
@click.option("--reason", required=True, help="Why (written to the audit trail; ID and phone numbers are masked).")
def discard_command(config_path: Path, ids: tuple[int, ...], reason: str) -> None:
    """Close entries for good, with the reason; a discarded item sent again opens a new entry."""
    from gateway.cli import load_or_exit, run_async, with_store

    if not reason.strip():
        raise click.UsageError("--reason must say why")
    config = load_or_exit(config_path)
    results = run_async(with_store(config, lambda s: s.discard_quarantined(list(ids), reason.strip(), actor())))
    for r in results:
        click.echo(f"{r['id']}: {r['outcome']}" + (f"; {r['message']}" if r.get("message") else ""))
    if any(r["outcome"] != "discarded" for r in results):
        sys.exit(1)
