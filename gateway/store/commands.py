"""The ``gateway store`` commands: move an installation from one store backend to another.

``gateway store migrate --from sqlite:///gateway.db --to postgresql://gateway@db/gateway`` (and
back) copies every table with a progress bar, then verifies the target's audit trail; the exit
code says whether the target holds everything and its trail verifies.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import click

from gateway.store import StoreError, is_store_url, make_store, sqlite_path


def _shown(url: str) -> str:
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgresql import redacted

        return redacted(url)
    return url


def _url(value: str, what: str, *, must_exist: bool) -> str:
    if not is_store_url(value):
        raise click.UsageError(f"--{what} {value!r} is not a store URL: use sqlite:///path/to/gateway.db or "
                               "postgresql://user@host:5432/database")
    if value.startswith("sqlite:///"):
        path = sqlite_path(value).resolve()
        if must_exist and not path.exists():
            raise click.ClickException(f"--{what}: database file {path} does not exist")
        return f"sqlite:///{path}"
    return value


async def _open_and_close(url: str) -> str:
    """Open the store once (applying its migrations, as `gateway run` would) and return its audit algorithm."""
    store = make_store(url)
    await store.open()
    algorithm = store.audit_algorithm  # type: ignore[attr-defined]
    await store.close()
    return algorithm


@click.group("store")
def store() -> None:
    """Move an installation between store backends (SQLite, PostgreSQL)."""


@store.command("migrate")
@click.option("--from", "source", required=True, metavar="URL", help="the store to copy from (stop its gateway first)")
@click.option("--to", "target", required=True, metavar="URL", help="the store to copy into (empty, or see --replace)")
@click.option("--replace", is_flag=True, help="delete everything in the target before copying")
@click.option("--certs", metavar="DIR", default="certs", show_default=True,
              help="seal certificates (audit-seal*.crt) the target's verification trusts; without any, the "
                   "certificate copies in the store")
@click.option("--archives", metavar="DIR", help="archive folder, so the verification runs across archived entries too")
@click.option("--workers", type=click.IntRange(1, 64), help="verification worker processes (default: one per CPU)")
def migrate_cmd(source: str, target: str, replace: bool, certs: str, archives: str | None,
                workers: int | None) -> None:
    """Copy every table — records, deliveries in every state, quarantine, audit entries, seals, keys, archives'
    bookkeeping, cursors, people — in key order into another store, then verify the target's audit trail.

    Stop every gateway process on the source first: the copy reads one snapshot of it.
    Exit code 0 only when every table arrived whole and the target's trail verifies.
    """
    from gateway.audit.keys import load_certificates
    from gateway.audit.signers import SignerError
    from gateway.audit.verify import verify_path
    from gateway.store.migrate import Migration

    src = _url(source, "from", must_exist=True)
    dst = _url(target, "to", must_exist=False)
    try:
        algorithm = asyncio.run(_open_and_close(src))
        target_algorithm = asyncio.run(_open_and_close(dst))
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    migration = Migration(src, dst)
    try:
        problems = migration.check(replace=replace)
        if problems:
            raise click.ClickException("will not copy:\n  " + "\n  ".join(problems))
        plan = migration.plan
        click.echo(f"copying {plan.total:,} rows in {len(plan.tables)} tables from {_shown(src)} to {_shown(dst)}")
        if target_algorithm != algorithm and not replace:
            click.echo(f"note: the target's chain takes the source's hash algorithm ({algorithm})")
        shown = {"table": ""}
        with click.progressbar(length=max(1, plan.total), label="copying", show_pos=True,
                               item_show_func=lambda _: shown["table"] or None) as bar:
            def progress(table: str, rows: int) -> None:
                shown["table"] = table
                bar.update(rows)

            migration.run(replace=replace, progress=progress)
        counts = migration.counts()
    except StoreError as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        migration.close()
    short = [(t, a, b) for t, a, b in counts if a != b]
    for table, want, got in short:
        click.echo(f"table {table}: {want:,} rows in the source, {got:,} in the target", err=True)
    click.echo(f"copied {sum(a for _, a, _ in counts):,} rows; verifying the target's audit trail")
    folder = Path(certs)
    try:
        trusted = load_certificates(folder) if folder.is_dir() and any(folder.glob("audit-seal*.crt")) else None
    except SignerError as exc:
        raise click.ClickException(str(exc)) from exc
    report = verify_path(dst, archives_dir=archives, trusted=trusted,
                         trust_label=f"seal certificates in {folder}" if trusted else None, workers=workers)
    report.store = _shown(dst)
    source_report = verify_path(src, archives_dir=archives, trusted=trusted, workers=workers)
    click.echo(report.render())
    same = (report.entries_checked, report.last_seq) == (source_report.entries_checked, source_report.last_seq)
    if not same:
        click.echo(f"the source's trail has {source_report.entries_checked:,} entries up to "
                   f"{source_report.last_seq}; the target's {report.entries_checked:,} up to {report.last_seq}",
                   err=True)
    if short or not report.ok or not same:
        click.echo("MIGRATION INCOMPLETE: see above; the source is unchanged", err=True)
        sys.exit(1)
    asyncio.run(_record(dst, src, counts))
    click.echo(f"done: {_shown(dst)} holds everything and its audit trail verifies")


async def _record(target: str, source: str, counts: list[tuple[str, int, int]]) -> None:
    """The move itself goes into the target's trail, after the entries it brought."""
    s = make_store(target)
    await s.open()
    try:
        await s.audit_event("store_migrated", detail={"from": _shown(source), "rows": {t: n for t, n, _ in counts}})
    finally:
        await s.close()
