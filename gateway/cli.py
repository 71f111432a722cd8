"""The ``gateway`` command: run, check, ingest, deliveries, demo — and the subsystems' own groups."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.security.cli import ReadAccess, present_rows, reader_options

T = TypeVar("T")
DEFAULT_CONFIG = "gateway.toml"


def _verbose_level(verbose: int, base: int = logging.WARNING) -> int:
    return max(logging.DEBUG, base - 10 * verbose)


def _setup_logging(verbose: int, log_format: str | None) -> None:
    """Every command logs through gateway.observability.logs: JSON lines, or readable on a terminal;
    ID and mobile numbers never reach a log line in full."""
    from gateway.observability.logs import configure_logging

    ctx = click.get_current_context()
    ctx.obj = {"verbose": verbose, "log_format": log_format}
    configure_logging(fmt=log_format or "auto", level=_verbose_level(verbose))


def config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG), show_default="$GATEWAY_CONFIG or gateway.toml",
        help="The gateway.toml to use.",
    )(f)


def load_or_exit(path: Path) -> GatewayConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)


def run_async(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


async def with_store(config: GatewayConfig, fn: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.store import make_store

    store = make_store(config.gateway.store, base=config.base_dir, audit_algorithm=config.gateway.audit_hash)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]), envvar="GATEWAY_LOG_FORMAT",
              help="Log lines as JSON or for a terminal; auto: console on a terminal outside a container, JSON "
                   "otherwise. Default: [logging] format, else auto. [env: GATEWAY_LOG_FORMAT]")
@click.version_option(package_name="exchange-gateway")
def main(verbose: int, log_format: str | None) -> None:
    """Inter-system data-exchange gateway for government service halls (政务服务数据交换网关)."""
    _setup_logging(verbose, log_format)


# ---------------------------------------------------------------------------- run / check


@main.command()
@config_option
def run(config_path: Path) -> None:
    """Run the gateway: sources, delivery workers, API, until SIGINT/SIGTERM.

    Starts every part or none: if any part cannot start (the API port is taken, a sink or
    source fails to start, the store cannot be opened) it says which and why, stops what
    had started and exits with code 1 (2 for a configuration error).
    """
    from gateway.app import Gateway, StartupError
    from gateway.observability.logs import configure_logging
    from gateway.observability.settings import level_number

    log = logging.getLogger("gateway")
    options = click.get_current_context().find_root().obj or {}
    try:
        config = load_config(config_path)
    except ConfigError as exc:  # the log stream is where a container's operator looks: say it there
        log.critical(f"configuration error in {exc}")
        sys.exit(2)
    # The log of a long-running gateway: JSON lines unless on a terminal, [logging] levels, warnings included.
    verbose = int(options.get("verbose") or 0)
    level = min(level_number(config.logging.level), _verbose_level(verbose) if verbose else logging.CRITICAL)
    configure_logging(fmt=options.get("log_format") or config.logging.format, level=level,
                      levels=config.logging.levels, capture_warnings=True)
    try:
        run_async(Gateway(config).run_until_signalled(tune_gc=True))
    except ConfigError as exc:
        log.critical(f"cannot start: {exc}")
        sys.exit(2)
    except StartupError as exc:
        log.critical(f"cannot start: {exc}")
        sys.exit(1)
    except Exception as exc:  # a bug, not a configuration: the traceback at debug level, the reason always
        log.debug("gateway run failed", exc_info=True)
        log.critical(f"the gateway stopped on an unexpected error: {type(exc).__name__}: {exc} "
                     "(run with -vv for the traceback)")
        sys.exit(1)


@main.command()
@config_option
@click.option("--strict", is_flag=True, help="Exit 1 when there are security warnings (for deployment pipelines).")
def check(config_path: Path, strict: bool) -> None:
    """Check the configuration, adapters, mappings, routes, folders and files; non-zero exit on any problem.

    Deprecated settings (old key names, durations as bare seconds) are warnings: they work. Security
    warnings (push systems without credentials, development keys, certificates near expiry, key files
    others can read, an API without TLS off loopback) are listed after it; --strict makes them fail.
    """
    from gateway.app import build
    from gateway.checks import deprecations, run_checks
    from gateway.security.checks import security_warnings

    config = load_or_exit(config_path)
    try:
        comp = build(config)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        for warning in deprecations(config, None):
            click.echo(f"  warning: {warning}", err=True)
        sys.exit(2)
    report = run_checks(config, comp)
    for warning in report.warnings:
        click.echo(f"warning: {warning}", err=True)
    if report.problems:
        click.echo(f"configuration error in {ConfigError(config_path, report.problems)}", err=True)
        sys.exit(2)
    click.echo(f"{config_path}: OK" + (f" ({len(report.warnings)} warning(s))" if report.warnings else ""))
    for name, m in comp.inbound.items():
        click.echo(f"  source {name}: adapter {config.sources[name].adapter}, mapping {m.name}@{m.version} "
                   f"({', '.join(m.kinds)})")
    for name, m in comp.outbound.items():
        click.echo(f"  sink   {name}: adapter {config.sinks[name].adapter}, mapping {m.name}@{m.version} "
                   f"({', '.join(m.kinds)})")
    for r in config.routes:
        conditions = [f"{label} {', '.join(values)}" for label, values in (
            ("事项编码", r.items), ("事项类型", r.item_types), ("许可类别", r.license_categories), ("区划", r.regions))
            if values]
        click.echo(f"  route  {r.name}: {', '.join(r.kinds or ['*'])} from {', '.join(r.sources or ['*'])} "
                   + (f"where {'; '.join(conditions)} " if conditions else "") + f"→ {', '.join(r.to)}")
    from gateway.exchange.commands import describe_config

    for line in describe_config(config):
        click.echo(f"  {line}")
    warnings = security_warnings(config, comp)
    for w in warnings:
        click.echo(f"WARNING {w}")
    if warnings and strict:
        sys.exit(1)


# ---------------------------------------------------------------------------- ingest


@main.command()
@config_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--system", help="The configured source the file comes from (default: the only source).")
@click.option("--batch", default=1000, show_default=True, help="Records per transaction.")
@click.option("--again", is_flag=True,
              help="Read the file from the start even if it was ingested before (after a mapping fix).")
@click.option("--progress-every", default=10.0, show_default=True, type=click.FloatRange(min=0),
              help="Seconds between progress lines when the output is not a terminal (a terminal gets a bar).")
def ingest(config_path: Path, file: Path, system: str | None, batch: int, again: bool,
           progress_every: float) -> None:
    """Ingest one FILE now, with progress; deliveries go to the outbox for `gateway run`.

    An interrupted run resumes where it stopped; records ingested before are
    recognised by their business key either way and never delivered twice. Items that
    cannot be accepted are quarantined one by one (`gateway quarantine list`).

    Exit codes: 0 the file was read to its end (quarantined items included), 1 the file
    was refused, 2 a configuration error, 3 the store failed or another error, 130 interrupted.
    """
    config = load_or_exit(config_path)
    if system is None:
        if len(config.sources) != 1:
            click.echo(f"--system is needed: configured sources are {', '.join(config.sources) or 'none'}", err=True)
            sys.exit(2)
        system = next(iter(config.sources))
    if system not in config.sources:
        click.echo(f"unknown system {system!r}: configured sources are {', '.join(config.sources)}", err=True)
        sys.exit(2)
    summary: dict[str, Any] = {"file": str(file), "system": system}
    try:
        run_async(_ingest_file(config, system, file, batch, again, progress_every, summary))
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo(f"\ninterrupted after {summary.get('items', 0):,} items; run the same command again to resume",
                   err=True)
        sys.exit(130)
    except Exception as exc:  # never a traceback for an operator: the reason, and where the details are
        from gateway.app import STORE_FAILURES

        logging.getLogger("gateway").debug("gateway ingest failed", exc_info=True)
        what = "the store failed" if isinstance(exc, STORE_FAILURES) else "ingest stopped on an unexpected error"
        click.echo(f"{what}: {type(exc).__name__}: {exc}; {summary.get('items', 0):,} items were committed and "
                   "the same command resumes after them (-vv shows the traceback)", err=True)
        summary["failed"] = f"{type(exc).__name__}: {exc}"
        click.echo(json.dumps(summary, ensure_ascii=False))
        sys.exit(3)
    click.echo(json.dumps(summary, ensure_ascii=False))
    if summary.get("refused"):
        sys.exit(1)


async def _ingest_file(config: GatewayConfig, system: str, file: Path, batch: int, again: bool,
                       progress_every: float, summary: dict[str, Any]) -> None:
    from gateway.adapters import FileUnreadable
    from gateway.app import build, tune_collector
    from gateway.pipeline.fileingest import ingest_file
    from gateway.pipeline.ingest import Ingestor
    from gateway.progress import FileProgress

    comp = build(config)
    started = time.monotonic()
    progress = FileProgress(file.name, file.stat().st_size, every=progress_every)

    def on_batch(consumed: int, position: int, outcomes: dict[str, int]) -> None:
        summary["items"] = consumed
        progress.update(consumed, position, outcomes)

    async def go(store: Any) -> None:
        assert comp.router is not None
        ingestor = Ingestor(store, comp.router, comp.inbound,
                            cipher=comp.cipher if config.encryption.enabled else None)
        # A process of its own, like `gateway run`: what is loaded now is frozen and the young
        # collections come in larger steps (main process 35.5-36.1 → 30.9-32.0 µs per file record).
        tune_collector()
        complete = False
        try:
            # A cursor per file content: ingesting the same file again is a no-op, a changed file is new.
            digest = await asyncio.to_thread(_file_digest, file)
            cursor = f"ingest:{system}:{digest}"
            stored = None if again else await store.get_cursor(cursor)
            if stored:
                summary["resumed_after"] = int(stored)
                summary["items"] = int(stored)
            result = await ingest_file(ingestor, system, file, ref_prefix=file.name, cursor=cursor,
                                       skip=int(stored or 0), batch=batch, on_batch=on_batch)
            complete = result.complete
        except FileUnreadable as exc:
            summary["refused"] = exc.reason
            return
        finally:
            progress.close(complete=complete)
        summary.update(items=result.consumed, **result.outcomes)
        summary["seconds"] = round(time.monotonic() - started, 2)

    await with_store(config, go)


def _file_digest(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:32]


# ---------------------------------------------------------------------------- deliveries


@main.group()
def deliveries() -> None:
    """Backlog, failures and dead letters; replay after the counterpart fixed its side."""


def _print_rows(rows: list[dict[str, Any]], cols: list[str], as_json: bool) -> None:
    if as_json:
        for r in rows:
            click.echo(json.dumps(r, ensure_ascii=False, default=str))
        return
    if not rows:
        click.echo("(none)")
        return
    widths = {c: max(len(c), *(len(str(r.get(c, "")))for r in rows)) for c in cols}
    widths = {c: min(w, 60) for c, w in widths.items()}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r.get(c, "") if r.get(c) is not None else "")[: widths[c]].ljust(widths[c])
                             for c in cols))


@deliveries.command("list")
@config_option
@click.option("--state", type=click.Choice(["pending", "inflight", "delivered", "dead"]))
@click.option("--destination")
@click.option("--case", "case_no")
@click.option("--limit", default=50, show_default=True)
@click.option("--before", "before_id", type=int, help="Only deliveries older than this id (the next page).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@reader_options
def deliveries_list(config_path: Path, state: str | None, destination: str | None, case_no: str | None,
                    limit: int, before_id: int | None, as_json: bool, access: ReadAccess) -> None:
    """List deliveries, newest first, and how many match in all; personal data masked unless an auditor unmasks."""
    config = load_or_exit(config_path)

    async def go(s: Any) -> tuple[list[dict[str, Any]], int]:
        rows, total = await s.deliveries_newest(state=state, destination=destination, case_no=case_no, limit=limit,
                                                before_id=before_id)
        return await present_rows(s, config, rows, "deliveries", access), total

    rows, total = run_async(with_store(config, go))
    if not as_json:
        more = f"; older ones: --before {rows[-1]['id']}" if rows and len(rows) == limit < total else ""
        click.echo(f"{len(rows)} of {total:,} deliveries, newest first{more}")
    _print_rows(rows, ["id", "state", "destination", "kind", "case_no", "attempts", "last_error"], as_json)


@deliveries.command("dead")
@config_option
@click.option("--destination")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@reader_options
def deliveries_dead(config_path: Path, destination: str | None, limit: int, as_json: bool,
                    access: ReadAccess) -> None:
    """List dead letters with their last error (personal data masked unless an auditor unmasks)."""
    config = load_or_exit(config_path)

    async def go(s: Any) -> list[dict[str, Any]]:
        rows = await s.list_deliveries(state="dead", destination=destination, limit=limit)
        return await present_rows(s, config, rows, "dead letters", access)

    rows = run_async(with_store(config, go))
    _print_rows(rows, ["id", "destination", "kind", "case_no", "attempts", "last_error"], as_json)


@deliveries.command("replay")
@config_option
@click.argument("ids", nargs=-1, type=int)
@click.option("--destination", help="Only this destination.")
@click.option("--state", "states", multiple=True, default=["dead"], show_default=True,
              type=click.Choice(["dead", "delivered", "pending"]), help="Which states to replay (repeatable).")
@click.option("--dry-run", is_flag=True, help="Show what would be replayed; change nothing.")
def deliveries_replay(config_path: Path, ids: tuple[int, ...], destination: str | None, states: tuple[str, ...],
                      dry_run: bool) -> None:
    """Send deliveries again (default: every dead letter), with the same idempotency keys.

    Named IDS are all replayed or none: an unknown id, or one whose state is not among
    --state, is refused with a message and nothing changes.
    """
    config = load_or_exit(config_path)
    actor = f"cli:{os.environ.get('USER', 'unknown')}"

    async def work(store: Any) -> list[int] | list[str]:
        if ids:
            known = await store.delivery_states(ids)
            refused = [f"{i}: no such delivery" if i not in known else
                       f"{i}: it is {known[i]}, not {' or '.join(states)}"
                       + (" (add --state delivered to send a delivered one again)" if known[i] == "delivered"
                          else " (it is being sent now)" if known[i] == "inflight" else "")
                       for i in dict.fromkeys(ids) if known.get(i) not in states]
            if refused:
                return refused
        return await store.replay(list(ids) or None, destination=destination, states=states, dry_run=dry_run,
                                  actor=actor)

    done = run_async(with_store(config, work))
    if done and isinstance(done[0], str):
        click.echo("nothing replayed:\n" + "\n".join(f"  {line}" for line in done), err=True)
        sys.exit(1)
    verb = "would replay" if dry_run else "replayed"
    click.echo(f"{verb} {len(done)} deliveries" + (f": {', '.join(map(str, done[:50]))}" if done else ""))
    if not dry_run and done:
        click.echo("a running gateway picks them up at its next poll")


@deliveries.command("quarantine")
@config_option
@click.option("--system")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@reader_options
def deliveries_quarantine(config_path: Path, system: str | None, limit: int, as_json: bool,
                          access: ReadAccess) -> None:
    """Deprecated: use `gateway quarantine list` (this is the same command)."""
    from gateway.pipeline.quarantine_cli import list_entries

    click.echo("`gateway deliveries quarantine` is deprecated; use `gateway quarantine list`", err=True)
    list_entries(config_path, system, "open", limit, as_json, access)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
def status(config_path: Path, as_json: bool) -> None:
    """Counts: records, duplicates, quarantine, deliveries by state and destination."""
    import dataclasses

    config = load_or_exit(config_path)

    async def work(store: Any) -> tuple[Any, int]:
        return await store.counts(), await store.quarantine_count(state="open")

    counts, quarantine_open = run_async(with_store(config, work))
    data = {**dataclasses.asdict(counts), "quarantine_open": quarantine_open}
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False))
        return
    click.echo(f"records {counts.records:,}  duplicates {counts.duplicates:,}  quarantined {counts.quarantined:,} "
               f"({quarantine_open:,} open)  audit entries {counts.audit_entries:,}")
    click.echo(f"deliveries: pending {counts.pending:,}  in flight {counts.inflight:,}  "
               f"delivered {counts.delivered:,}  dead {counts.dead:,}")
    for dest, by in sorted(counts.by_destination.items()):
        click.echo(f"  {dest}: " + "  ".join(f"{k} {v:,}" for k, v in sorted(by.items())))


# ---------------------------------------------------------------------------- demo


def _duration_option(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    from gateway.durations import parse_duration

    if value is None:
        return None
    try:
        seconds = parse_duration(value)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"{value!r}: {exc}") from exc
    if seconds <= 0:
        raise click.BadParameter(f"{value!r}: give a duration longer than zero, such as \"2m\"")
    return seconds


@main.command()
@click.option("--records", "n_records", type=click.IntRange(min=1),
              help="A finite run: this many cases from the county drop and the provincial feed, the second act, "
                   "a summary, exit (`make demo`: 200).")
@click.option("--duration", callback=_duration_option,
              help='Run for this long (e.g. "2m"), then drain and print the summary. Without --records or '
                   "--duration the demo runs until Ctrl-C.")
@click.option("--dir", "workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Working directory to leave the store, drop folders and configuration in.")
@click.option("--timeout", default=300.0, show_default=True,
              help="With --records: give up after this many seconds.")
def demo(n_records: int | None, duration: float | None, workdir: Path | None, timeout: float) -> None:
    """The whole picture on loopback: a county front-end machine (files in and out), a provincial platform
    (REST feed the gateway pulls), the hall platform (REST, both ways), a market-regulation ministry (SOAP);
    supervision alerts, 并联审批, licence effects, 对账, and the console with a demo login."""
    from gateway.demo.scenario import run_demo

    if n_records is not None and duration is not None:
        raise click.UsageError("give --records or --duration, not both")
    logging.getLogger().setLevel(min(logging.getLogger().level, logging.WARNING))
    ok = run_async(run_demo(n_records, workdir, timeout, echo=click.echo, duration=duration))
    sys.exit(0 if ok else 1)


def _add_subsystem_groups() -> None:
    """Subsystem command groups live beside their code."""
    from gateway.audit.commands import audit
    from gateway.exchange.commands import exchange, reconcile
    from gateway.mapping.commands import mapping
    from gateway.observability.probe import probe_command
    from gateway.pipeline.destinations_cli import destinations
    from gateway.pipeline.quarantine_cli import quarantine
    from gateway.reference import docs
    from gateway.scaffold.commands import adapters
    from gateway.schema.commands import schema
    from gateway.security.commands import certs, counterparts
    from gateway.security.encryption_commands import encryption
    from gateway.security.people_commands import tokens, users
    from gateway.store.backup import backup
    from gateway.store.commands import store

    for group in (schema, mapping, audit, adapters, quarantine, certs, counterparts, encryption, users, tokens,
                  destinations, exchange, reconcile, docs, backup, probe_command, store):
        main.add_command(group)


_add_subsystem_groups()
