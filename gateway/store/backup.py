"""`gateway backup create / restore`: a consistent copy of the embedded SQLite store taken while the gateway
runs (SQLite's online backup), checked before it counts, and putting one back with the old store kept aside.
A PostgreSQL store is backed up with PostgreSQL's own tools (docs/postgresql.md).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

import click

__all__ = ["backup"]


def _store_file(config: Any) -> Path:
    from gateway.store import sqlite_path

    url = config.gateway.store
    if not url.startswith("sqlite:///"):
        raise click.ClickException(f"[gateway] store = {url!r} is not the embedded SQLite store: back it up with the "
                                   "database's own tools (docs/postgresql.md)")
    return sqlite_path(url, config.base_dir)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _facts(path: Path) -> dict[str, Any]:
    """Integrity check and what the copy holds; raises ClickException when it is not a sound gateway store."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if check != "ok":
                raise click.ClickException(f"{path}: SQLite integrity check failed: {check}")
            records = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            head = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone() or (0, "")
    except sqlite3.DatabaseError as exc:
        raise click.ClickException(f"{path}: not a gateway store ({exc})") from None
    return {"records": records, "audit_seq": head[0], "audit_hash": head[1], "sha256": _sha256(path),
            "bytes": path.stat().st_size}


async def _audit(config: Any, action: str, detail: dict[str, Any]) -> None:
    from gateway.store import make_store

    store = make_store(config.gateway.store, base=config.base_dir, audit_algorithm=config.gateway.audit_hash)
    await store.open()
    try:
        await store.audit_event(action, system="gateway", detail=detail)
    finally:
        await store.close()


def _config_option(f: Any) -> Any:
    from gateway.cli import config_option

    return config_option(f)


@click.group("backup")
def backup() -> None:
    """Back up and restore the embedded SQLite store (PostgreSQL: docs/postgresql.md)."""


@backup.command("create")
@_config_option
@click.argument("destination", type=click.Path(path_type=Path))
def backup_create(config_path: Path, destination: Path) -> None:
    """Copy the store to DESTINATION (a file, or a folder for gateway-YYYYMMDD-HHMMSS.db) while the gateway runs.

    The copy is one consistent moment of the store (SQLite online backup), checked with SQLite's integrity
    check before it is given its name, mode 0600. Keys (the encryption keyring, the seal key) are not in it:
    back them up apart from it.
    """
    from gateway.cli import load_or_exit, run_async

    config = load_or_exit(config_path)
    source = _store_file(config)
    if not source.exists():
        raise click.ClickException(f"{source}: no store there yet (start the gateway once, or check [gateway] store)")
    if destination.is_dir():
        destination = destination / f"gateway-{datetime.now():%Y%m%d-%H%M%S}.db"
    if destination.exists():
        raise click.ClickException(f"{destination} exists: a backup never overwrites one")
    partial = destination.with_name(destination.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        with sqlite3.connect(source, timeout=30) as src, sqlite3.connect(partial) as dst:
            src.backup(dst, pages=4096)  # in steps, so the running gateway keeps writing between them
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
        facts = _facts(partial)
        os.replace(partial, destination)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    run_async(_audit(config, "store_backup", {"file": destination.name, "sha256": facts["sha256"],
                                              "audit_seq": facts["audit_seq"], "records": facts["records"]}))
    click.echo(f"backup {destination}: {facts['bytes'] / 1e6:.1f} MB, {facts['records']:,} records, audit trail up "
               f"to entry {facts['audit_seq']:,}, integrity ok, sha256 {facts['sha256']}")
    click.echo("not in it: the encryption keyring and the audit seal key; keep copies of those apart from it")


@backup.command("restore")
@_config_option
@click.argument("backup_file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the current store (it is kept aside, never deleted).")
def backup_restore(config_path: Path, backup_file: Path, force: bool) -> None:
    """Put BACKUP_FILE back as the store. Stop the gateway first (a running one is detected).

    The current store (with its -wal and -shm files) is renamed to <store>.before-restore-<time>, and so is the
    audit seal witness, which belongs to that store's history; the backup is checked and copied into place, and
    a store_restored entry in the audit trail records what was restored and where the old files went.
    """
    from gateway.cli import load_or_exit
    from gateway.store import StoreError, make_store, store_url

    config = load_or_exit(config_path)
    target = _store_file(config)
    facts = _facts(backup_file)
    running = make_store(store_url(target))  # not opened: only its delivery lock, which `gateway run` holds
    try:
        running.lock_delivery()
    except StoreError:
        raise click.ClickException(f"a gateway is running on {target}: stop it first") from None
    try:
        _restore(config, target, backup_file, facts, force)
    finally:
        running.unlock_delivery()


def _restore(config: Any, target: Path, backup_file: Path, facts: dict[str, Any], force: bool) -> None:
    from gateway.cli import run_async

    aside: Path | None = None
    stamp = f"{datetime.now():%Y%m%d-%H%M%S}"
    if target.exists():
        if not force:
            raise click.ClickException(f"{target} exists: stop the gateway, then run again with --force (the current "
                                       "store is kept aside, not deleted)")
        aside = target.with_name(f"{target.name}.before-restore-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            old = target.with_name(target.name + suffix)
            if old.exists():
                os.replace(old, aside.with_name(aside.name + suffix))
    # The witness saw the seals of the store being replaced, including any made after this backup: it is that
    # store's evidence and goes aside with it (the restored store would otherwise never be sealed again).
    witness = config.resolve(config.audit.witness) if config.audit.witness else None
    witness_aside: Path | None = None
    if witness is not None and witness.exists():
        witness_aside = witness.with_name(f"{witness.name}.before-restore-{stamp}")
        os.replace(witness, witness_aside)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(backup_file, partial)
    os.chmod(partial, 0o600)
    os.replace(partial, target)
    run_async(_audit(config, "store_restored", {"file": backup_file.name, "sha256": facts["sha256"],
                                                "audit_seq": facts["audit_seq"],
                                                "previous_store": aside.name if aside else None,
                                                "previous_witness": witness_aside.name if witness_aside else None}))
    click.echo(f"restored {backup_file} as {target}: {facts['records']:,} records, audit trail up to entry "
               f"{facts['audit_seq']:,}")
    if aside is not None:
        click.echo(f"  the store it replaced: {aside}")
    if witness_aside is not None:
        click.echo(f"  its seal witness: {witness_aside} (verify the replaced store against it: "
                   f"gateway audit verify --store sqlite:///{aside} --witness {witness_aside})")
    click.echo("next: `gateway audit verify`, then `gateway reconcile SYSTEM --date D` for each day since the backup, "
               "so counterparts send again what the restored store does not have")
