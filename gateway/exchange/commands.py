"""``gateway reconcile`` and ``gateway exchange``: reconciliation on demand, licences, links, 并联审批, counterpart health.

``gateway reconcile SYSTEM --date D`` runs beside a running gateway: it opens the store and the
counterpart's sinks itself, asks the counterpart for its manifest, and writes what it re-sends
as outbox rows the running gateway delivers at its next poll. The person is named in the audit
trail by the OS user. What the listings print is masked like every listing.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import click

from gateway.security.masking import mask_text

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
EXIT_GAPS = 1
EXIT_UNAVAILABLE = 3


def _config_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("GATEWAY_CONFIG", "gateway.toml"),
        show_default="$GATEWAY_CONFIG or gateway.toml", help="The gateway.toml to use.",
    )(f)


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=1, default=str)


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA)


# --------------------------------------------------------------------------- gateway reconcile


@click.command()
@click.argument("counterpart")
@click.option("--date", "day", metavar="YYYY-MM-DD", help="the day to reconcile, China time (default: yesterday)")
@click.option("--from", "start", metavar="ISO", help="start of the period instead of a day (2026-11-29T08:00)")
@click.option("--to", "end", metavar="ISO", help="end of the period (exclusive)")
@click.option("--dry-run", is_flag=True, help="compare and report; send nothing again, ask for nothing")
@click.option("--json", "as_json", is_flag=True, help="the result as JSON")
@_config_option
def reconcile(counterpart: str, day: str | None, start: str | None, end: str | None, dry_run: bool, as_json: bool,
              config_path: Path) -> None:
    """Reconcile (对账) with COUNTERPART: counts and hash manifests of what was sent and received, compared.

    What the counterpart lacks is sent again (same idempotency keys; a running gateway delivers it);
    what the gateway lacks, the counterpart is asked to send again where it can. Exit 0: clean or
    repaired; 1: gaps remain; 3: the counterpart's manifest was unavailable; 2: usage or configuration.
    """
    from gateway.cli import load_or_exit, run_async
    from gateway.exchange.reconcile import ReconcileError, day_period
    from gateway.security.cli import os_actor

    config = load_or_exit(config_path)
    try:
        if start or end:
            if not (start and end) or day:
                raise click.UsageError("give --from and --to together, or --date")
            period = (_moment(start), _moment(end))
        else:
            period = day_period(date.fromisoformat(day) if day else datetime.now(CHINA).date() - timedelta(days=1))
    except ValueError as exc:
        raise click.UsageError(f"not a date or time: {exc}") from None
    try:
        result = run_async(_reconcile(config, counterpart, period, f"cli:{os_actor()}", dry_run))
    except ReconcileError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(_json(result))
    else:
        click.echo(describe(result))
    outcome = result["outcome"]
    sys.exit(0 if outcome in ("clean", "repaired") else EXIT_GAPS if outcome == "gaps" else EXIT_UNAVAILABLE)


async def _reconcile(config: Any, name: str, period: tuple[datetime, datetime], actor: str,
                     dry_run: bool) -> dict[str, Any]:
    from gateway.app import build
    from gateway.config import ConfigError
    from gateway.exchange.config import counterparts
    from gateway.exchange.reconcile import ReconcileError, Reconciliation
    from gateway.security.cli import with_store

    try:
        comp = build(config)
    except ConfigError as exc:
        raise ReconcileError(str(exc)) from None
    cp = counterparts(config).get(name)
    if cp is None:
        raise ReconcileError(f"no counterpart {name!r}; counterparts: {', '.join(counterparts(config))}")
    sinks: dict[str, Any] = {}
    try:
        for sink_name in cp.sinks:
            section = config.sinks[sink_name]
            adapter = comp.adapters[section.adapter]
            assert adapter.make_sink is not None
            sink = adapter.make_sink(sink_name, comp.sink_configs[sink_name])
            await sink.start()
            sinks[sink_name] = sink

        async def work(store: Any) -> dict[str, Any]:
            run = Reconciliation(store, cp, sinks, comp.outbound, comp.cipher if config.encryption.enabled else None)
            return await run.run(period[0], period[1], triggered_by=actor, dry_run=dry_run)

        return await with_store(config, work)
    finally:
        for sink in sinks.values():
            await sink.close()


def describe(result: dict[str, Any]) -> str:
    """A reconciliation result as an operator reads it."""
    s = result.get("summary") or {}
    lines = [f"reconciliation with {result['counterpart']}: {result['period_start']} … {result['period_end']}"
             + (" (dry run)" if result.get("dry_run") else f" (result {result.get('id')})")]
    if result.get("error"):
        lines.append(f"  unavailable: {result['error']}")
    sent, received = s.get("sent"), s.get("received")
    if sent:
        lines.append(f"  sent      ours {sent.get('ours')}, counterpart has {sent.get('theirs')}: missing "
                     f"{sent.get('missing', 0)}, content differs {sent.get('differing', 0)}, unknown to us "
                     f"{sent.get('unexpected', 0)}" + (f"; {s.get('resent', 0)} sent again" if not result.get("dry_run")
                                                       else ""))
    if received:
        lines.append(f"  received  ours {received.get('ours')}, counterpart sent {received.get('theirs')}: missing "
                     f"{received.get('missing', 0)} (newer version here {received.get('superseded', 0)}), unknown to "
                     f"it {received.get('unexpected', 0)}" + (f"; {s.get('requested', 0)} asked for again"
                                                              if not result.get("dry_run") else ""))
    for name, title in (("sent_missing", "the counterpart lacks"), ("sent_differing", "content differs"),
                        ("sent_unexpected", "the counterpart has, we never sent"),
                        ("received_missing", "we lack"), ("received_unexpected", "we have, it never listed")):
        gaps = (result.get("gaps") or {}).get(name) or []
        for gap in gaps[:20]:
            what = gap.get("record_key") or gap.get("key")
            lines.append(f"    {title}: {gap.get('kind', '')} {mask_text(str(what))} v{gap.get('version', '')}"
                         f" {gap.get('destination') or ''} {gap.get('delivered_at') or gap.get('at') or ''}".rstrip())
        if len(gaps) > 20:
            lines.append(f"    … and {len(gaps) - 20} more ({title})")
    backlog = s.get("backlog") or {}
    for sink, states in backlog.items():
        if states:
            lines.append(f"  backlog to {sink}: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))
    lines.append(f"outcome: {result['outcome']}")
    return "\n".join(lines)


def describe_config(config: Any) -> list[str]:
    """What ``gateway check`` prints about the exchange: counterparts that are watched or reconciled, schemes."""
    from gateway.durations import suggest
    from gateway.exchange.config import counterparts

    lines = []
    for cp in counterparts(config).values():
        parts = []
        if cp.watch.expect_by:
            parts.append(f"records expected by {cp.watch.expect_by} on working days")
        if cp.watch.silence:
            parts.append(f"no-contact alarm after {suggest(cp.watch.silence)}")
        if cp.reconcile.at:
            parts.append(f"reconciled daily at {cp.reconcile.at}")
        if parts or len(cp.systems) > 1:
            lines.append(f"counterpart {cp.name}: sources {', '.join(cp.sources) or '-'}, sinks "
                         f"{', '.join(cp.sinks) or '-'}" + (f"; {'; '.join(parts)}" if parts else ""))
    for scheme in config.exchange.parallel:
        lines.append(f"并联审批 {scheme.name}: items {', '.join(scheme.items)}, accepted by {scheme.lead or 'any source'}, "
                     "departments " + ", ".join(f"{d.name} ({d.system}→{d.out}, {d.time_limit}{'工作日' if d.unit == 'G' else '日'})"
                                                for d in scheme.departments))
    return lines


# --------------------------------------------------------------------------- gateway exchange …


@click.group()
def exchange() -> None:
    """The two-way exchange: counterpart health, licences, links, 并联审批, reconciliation results."""


@exchange.command()
@click.option("--json", "as_json", is_flag=True)
@_config_option
def health(as_json: bool, config_path: Path) -> None:
    """Each counterpart: last contact each way, watchdogs, backlog, the last reconciliation."""
    from gateway.cli import load_or_exit, run_async, with_store
    from gateway.exchange.service import counterpart_health

    config = load_or_exit(config_path)
    items = run_async(with_store(config, lambda store: counterpart_health(store, config)))
    if as_json:
        click.echo(_json(items))
        return
    for h in items:
        firing = [w["watch"] for w in h["watchdogs"] if w["state"] == "firing"]
        backlog = sum(n for states in h["backlog"].values() for n in states.values())
        rec = h["last_reconciliation"]
        click.echo(f"{h['counterpart']:<20} {'FIRING ' + ','.join(firing) if firing else 'ok':<22} "
                   f"received {h['last_received'] or '-':<26} delivered {h['last_delivered'] or '-':<26} "
                   f"backlog {backlog:<6} reconciled {rec['outcome'] + ' ' + rec['period_start'][:10] if rec else '-'}")


@exchange.command()
@click.argument("licence_no")
@click.option("--json", "as_json", is_flag=True)
@_config_option
def licence(licence_no: str, as_json: bool, config_path: Path) -> None:
    """A licence: its state (valid, suspended, revoked), its case, the decisions behind it, linked records."""
    from gateway.cli import load_or_exit, run_async, with_store

    config = load_or_exit(config_path)
    detail = run_async(with_store(config, lambda store: store.licence_detail(licence_no)))
    if detail is None:
        click.echo(f"no licence {licence_no!r} is known", err=True)
        sys.exit(1)
    if as_json:
        click.echo(_json(detail))
        return
    lic = detail["licence"] or {}
    click.echo(f"licence {licence_no}: {lic.get('state', 'unknown')}"
               + (f" since {lic['state_since']} by {lic['state_by']}" if lic.get("state_by") else ""))
    click.echo(f"  case {lic.get('case_no') or '-'}, approved by {lic.get('approved_by') or '-'} "
               f"(decision {lic.get('decision_no') or '-'}), valid until {lic.get('valid_until') or '-'}")
    for e in detail["effects"]:
        click.echo(f"  {e['decided_on'] or '?'}  {e['effect']:<8} {e['decision_no']}  {e['authority'] or ''} "
                   f"(from {e['system']})")
    for link in detail["links"]:
        click.echo(f"  record {link['record_id']}: {link['kind']} {mask_text(link['record_key'])} v{link['version']} "
                   f"from {link['system']}, case {link['case_no'] or '-'} ({link['resolved_by'] or 'unresolved'})")


@exchange.command()
@click.option("--case", "case_no")
@click.option("--licence", "licence_no")
@click.option("--credit-code")
@click.option("--unresolved", is_flag=True, help="supervision results not tied to a case yet, with the reason")
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_config_option
def links(case_no: str | None, licence_no: str | None, credit_code: str | None, unresolved: bool, limit: int,
          as_json: bool, config_path: Path) -> None:
    """Records in the chain of a case, a licence or a credit code."""
    from gateway.cli import load_or_exit, run_async, with_store

    config = load_or_exit(config_path)
    rows = run_async(with_store(config, lambda store: store.exchange_links(
        case_no=case_no, licence_no=licence_no, credit_code=credit_code, unresolved=unresolved, limit=limit)))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    for r in rows:
        click.echo(f"{r['record_id']:>8}  {r['kind']:<18} {mask_text(r['record_key']):<32} {r['system']:<16} "
                   f"case {r['case_no'] or '-':<24} licence {r['licence_no'] or '-':<18} "
                   f"{r['resolved_by'] or 'unresolved: ' + (r['note'] or '')}")


@exchange.command()
@click.option("--state", type=click.Choice(["open", "completed"]))
@click.option("--limit", default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_config_option
def parallel(state: str | None, limit: int, as_json: bool, config_path: Path) -> None:
    """Cases under 并联审批: each department, its limit, whether it answered and how."""
    from gateway.cli import load_or_exit, run_async, with_store

    config = load_or_exit(config_path)
    rows = run_async(with_store(config, lambda store: store.parallel_page(state=state, limit=limit)))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    now = datetime.now(CHINA)
    for r in rows:
        click.echo(f"{r['case_no']}  {r['scheme']}  {r['state']}" + (f" ({r['result']})" if r["result"] else ""))
        for d in r["departments"]:
            late = d["late_alert"] is not None or (not d["answered_at"] and datetime.fromisoformat(d["due_at"]) < now)
            click.echo(f"    {d['department']:<20} due {d['due_at'][:16]}  "
                       + (f"answered {d['answered_at'][:16]} {d['action']}" if d["answered_at"] else "waiting")
                       + ("  LATE" if late else ""))


@exchange.command()
@click.option("--counterpart")
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_config_option
def reconciliations(counterpart: str | None, limit: int, as_json: bool, config_path: Path) -> None:
    """Reconciliation results, newest first."""
    from gateway.cli import load_or_exit, run_async, with_store

    config = load_or_exit(config_path)
    rows = run_async(with_store(config, lambda store: store.reconciliations(counterpart=counterpart, limit=limit)))
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, ensure_ascii=False, default=str))
        return
    for r in rows:
        s = r["summary"]
        click.echo(f"{r['id']:>5}  {r['counterpart']:<18} {r['period_start'][:16]} … {r['period_end'][:16]}  "
                   f"{r['outcome']:<11} sent {s.get('sent', {}).get('ours', '-')}/missing "
                   f"{s.get('sent', {}).get('missing', '-')}  received {s.get('received', {}).get('ours', '-')}/"
                   f"missing {s.get('received', {}).get('missing', '-')}  resent {s.get('resent', 0)}  "
                   f"({r['triggered_by']})")
