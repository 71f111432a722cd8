"""The ``gateway destinations`` commands: list, pause, resume and set (concurrency, rate) — each change audited.

They act on the store, which every delivering process reads (within its poll interval); the
person who changes a destination is named in the audit trail by the OS user.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from gateway.pipeline.destinations import (
    DestinationError,
    change_settings,
    destination_rows,
    pause,
    settings_changes,
)


def _config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("GATEWAY_CONFIG", "gateway.toml"),
        show_default="$GATEWAY_CONFIG or gateway.toml", help="The gateway.toml to use.",
    )(f)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _run(config_path: Path, work: Callable[[Any, Any], Any]) -> Any:
    from gateway.cli import load_or_exit, run_async, with_store

    config = load_or_exit(config_path)
    try:
        return run_async(with_store(config, lambda store: work(config, store)))
    except DestinationError as exc:
        click.echo(f"refused: {exc}", err=True)
        sys.exit(2 if exc.status == 404 else 1)


def _notice() -> None:
    click.echo("a running gateway applies it within its poll interval ([delivery] poll_interval)")


@click.group()
def destinations() -> None:
    """Where records are delivered: state, backlog and health; pause, resume, concurrency and rate at runtime."""


@destinations.command("list")
@_config_option
@click.argument("names", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per destination.")
def list_command(config_path: Path, names: tuple[str, ...], as_json: bool) -> None:
    """Each destination: state (running, paused, circuit open / half-open), backlog, oldest waiting, dead
    letters and the cases held behind them, last success, last error and the recent error rate."""
    rows = _run(config_path, lambda config, store: destination_rows(config, store, names=list(names) or None))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False))
        return
    if not rows:
        click.echo("(no destinations)")
        return
    for r in rows:
        rate = f"{r['rate']:g}/s" if r["rate"] else "unlimited"
        errors = f"{r['error_rate']:.0%} of {r['attempts_recent']}" if r["error_rate"] is not None else "-"
        click.echo(f"{r['name']}: {r['state']}  (adapter {r['adapter']}, concurrency {r['concurrency']}, rate {rate})")
        if r["paused"]:
            click.echo(f"  paused {r['paused_at']} by {r['paused_by']}" + (f": {r['pause_reason']}"
                                                                          if r["pause_reason"] else ""))
        if r["circuit"] != "closed":
            probe = f", next probe {r['next_probe_at']}" if r["next_probe_at"] else ""
            click.echo(f"  circuit {r['circuit'].replace('_', '-')} since {r['circuit_since']}{probe}")
        click.echo(f"  backlog {r['backlog']:,}, oldest waiting {_age(r['oldest_waiting_seconds'])}; dead letters "
                   f"{r['dead']:,}" + (f", holding {r['held']:,} deliveries of {r['held_cases']:,} case(s)"
                                        if r["held"] else ""))
        click.echo(f"  last success {r['last_success_at'] or '-'}; errors in the last "
                   f"{r['error_window_minutes']} min: {errors}")
        if r["last_error"]:
            click.echo(f"  last error {r['last_error_at']}: {r['last_error'][:300]}")


@destinations.command("pause")
@_config_option
@click.argument("name")
@click.option("--reason", help="Why (shown to other operators and written to the audit trail).")
def pause_command(config_path: Path, name: str, reason: str | None) -> None:
    """Stop sending to NAME: waiting deliveries stay in the outbox (sends in progress finish)."""
    from gateway.security.cli import os_actor

    changed = _run(config_path, lambda config, store: pause(config, store, name, os_actor(), reason))
    click.echo(f"{name} paused" if changed else f"{name} was already paused")
    if changed:
        _notice()


@destinations.command("resume")
@_config_option
@click.argument("name")
def resume_command(config_path: Path, name: str) -> None:
    """Send to NAME again."""
    from gateway.security.cli import os_actor

    changed = _run(config_path, lambda config, store: pause(config, store, name, os_actor(), resume=True))
    click.echo(f"{name} resumed" if changed else f"{name} was not paused")
    if changed:
        _notice()


def _setting(value: str | None, kind: type, words: dict[str, Any], option: str) -> Any:
    if value is None:
        return ...
    if value.lower() in words:
        return words[value.lower()]
    try:
        return kind(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number", param_hint=option) from None


@destinations.command("set")
@_config_option
@click.argument("name")
@click.option("--concurrency", metavar="N|default", help="Concurrent sends (1-256); 'default': gateway.toml's.")
@click.option("--rate", metavar="R|off|default",
              help="Sends per second (a batch counts once); 'off': no limit; 'default': gateway.toml's.")
def set_command(config_path: Path, name: str, concurrency: str | None, rate: str | None) -> None:
    """Change NAME's concurrency and/or rate limit at runtime (kept in the store until changed again)."""
    from gateway.security.cli import os_actor

    try:
        changes = settings_changes(_setting(concurrency, int, {"default": None}, "--concurrency"),
                                   _setting(rate, float, {"default": None, "off": 0.0}, "--rate"))
    except DestinationError as exc:
        raise click.UsageError(str(exc)) from None
    changed = _run(config_path, lambda config, store: change_settings(config, store, name, changes, os_actor()))
    if not changed:
        click.echo(f"{name}: nothing changed")
        return
    shown = ", ".join(f"{k} {'as configured' if v is None else 'unlimited' if k == 'rate' and v == 0 else f'{v:g}'}"
                      for k, v in changes.items())
    click.echo(f"{name}: {shown}")
    _notice()
