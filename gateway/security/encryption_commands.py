"""The ``gateway encryption`` commands: keys for encryption at rest, what is encrypted under which, re-encryption.

Rotation, in order: ``keygen`` (the new key becomes the last, active one), restart the
gateway (new records are sealed with it, old ones still open), ``reencrypt`` (every stored
personal field under the active key), ``status`` (nothing left under the old key), then
delete the old key's line. ``decrypt`` undoes encryption at rest after ``enabled = false``.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from gateway.security.commands import config_option, load_config_or_exit


@click.group()
def encryption() -> None:
    """Encryption at rest of personal fields: keys, status, re-encryption (docs/security.md)."""


def _keyring_file(config: Any) -> Path:
    enc = config.encryption
    if enc.keys is None or enc.keys.file is None:
        where = f"environment variable {enc.keys.env}" if enc.keys is not None else "nowhere yet"
        raise click.ClickException(
            f"[encryption].keys must name a file for this command (the keyring is in {where}); "
            "add keys = { file = \"secrets/field-keys\" } to gateway.toml")
    return config.resolve(enc.keys.file)


@encryption.command("keygen")
@config_option
@click.option("--id", "key_id", help="The new key's id (default: today's date, e.g. 20261130).")
def keygen(config_path: Path, key_id: str | None) -> None:
    """Append a new random key to the keyring file (created with mode 0600); it becomes the active key."""
    from gateway.security.fieldcrypt import FieldCryptError, new_key_line, parse_keyring

    config = load_config_or_exit(config_path, required=True)
    path = _keyring_file(config)
    existing: dict[str, bytes] = {}
    if path.exists():
        try:
            existing = parse_keyring(path.read_text(encoding="utf-8"), where=f"keyring {path}")
        except FieldCryptError as exc:
            raise click.ClickException(str(exc)) from exc
    key_id = key_id or f"{dt.date.today():%Y%m%d}"
    base, n = key_id, 1
    while key_id in existing:
        n += 1
        key_id = f"{base}-{n}"
    try:
        line = new_key_line(config.encryption.algorithm, key_id)
    except FieldCryptError as exc:
        raise click.ClickException(str(exc)) from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.chmod(path, 0o600)
    active = config.encryption.active_key
    click.echo(f"key {key_id!r} ({config.encryption.algorithm}) appended to {path}")
    if active and active != key_id:
        click.echo(f"[encryption].active_key = {active!r} still names the key that encrypts; change it to "
                   f"{key_id!r} to rotate")
    else:
        click.echo("it encrypts new records once the gateway restarts; then run `gateway encryption reencrypt`")
    click.echo(f"keep a copy of {path} with the backups of the store, apart from them: without it the "
               "encrypted fields cannot be read")


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _scan(config: Any, fn: Any, batch: int) -> None:
    from gateway.store import make_store

    store = make_store(config.gateway.store, base=config.base_dir, audit_algorithm=config.gateway.audit_hash)
    await store.open()
    try:
        after = 0
        while True:
            rows = await store.record_bodies(after, batch)
            if not rows:
                return
            await fn(store, rows)
            after = rows[-1][0]
    finally:
        await store.close()


@encryption.command("status")
@config_option
@click.option("--json", "as_json", is_flag=True)
def status(config_path: Path, as_json: bool) -> None:
    """How many stored personal fields are encrypted under each key, and how many are in clear."""
    from gateway.security.fieldcrypt import key_ids_of

    config = load_config_or_exit(config_path, required=True)
    counts: dict[str, int] = {}
    records = 0

    async def tally(store: Any, rows: list[tuple[int, str]]) -> None:
        nonlocal records
        for _rid, body in rows:
            records += 1
            for key_id in key_ids_of(json.loads(body)):
                counts[key_id] = counts.get(key_id, 0) + 1

    _run(_scan(config, tally, 2000))
    enc = config.encryption
    if as_json:
        click.echo(json.dumps({"enabled": enc.enabled, "algorithm": enc.algorithm, "records": records,
                               "fields": counts}, ensure_ascii=False))
        return
    click.echo(f"encryption at rest: {'on' if enc.enabled else 'off'} ({enc.algorithm}); {records:,} records")
    if not counts:
        click.echo("  no personal fields stored")
    for key_id, n in sorted(counts.items()):
        label = "in clear" if key_id == "clear" else f"under key {key_id}"
        click.echo(f"  {n:,} personal field(s) {label}")


def _cipher(config: Any) -> Any:
    from gateway.security.fieldcrypt import FieldCryptError, cipher_from_config

    try:
        cipher = cipher_from_config(config)
    except FieldCryptError as exc:
        raise click.ClickException(str(exc)) from exc
    if cipher is None:
        raise click.ClickException("no [encryption] keyring is configured in gateway.toml")
    return cipher


@encryption.command("reencrypt")
@config_option
@click.option("--batch", default=500, show_default=True, help="Records per transaction (one audit entry each).")
@click.option("--dry-run", is_flag=True, help="Count what would change; change nothing.")
def reencrypt(config_path: Path, batch: int, dry_run: bool) -> None:
    """Encrypt every stored personal field under the active key (older keys' and clear ones alike).

    Safe beside a running gateway: each record is rewritten only if its body is unchanged since it was read.
    """
    config = load_config_or_exit(config_path, required=True)
    if not config.encryption.enabled:
        raise click.ClickException("[encryption].enabled is false: nothing would stay encrypted; see `decrypt`")
    cipher = _cipher(config)
    totals = {"records": 0, "fields": {}}

    async def step(store: Any, rows: list[tuple[int, str]]) -> None:
        updates, moved = [], {}
        for rid, body in rows:
            new, changed = cipher.reseal_record(json.loads(body))
            if new is None:
                continue
            updates.append((rid, body, json.dumps(new, ensure_ascii=False, separators=(",", ":"))))
            for k, n in changed.items():
                moved[k] = moved.get(k, 0) + n
        if not updates:
            return
        done = len(updates) if dry_run else await store.rewrite_record_bodies(updates, {
            "to_key": cipher.active_key, "algorithm": cipher.algorithm, "from": moved,
            "first_record": updates[0][0], "last_record": updates[-1][0],
            "actor": f"cli:{os.environ.get('USER', 'unknown')}"})
        totals["records"] += done
        for k, n in moved.items():
            totals["fields"][k] = totals["fields"].get(k, 0) + n

    try:
        _run(_scan(config, step, batch))
    except Exception as exc:
        click.echo(f"re-encryption stopped: {exc}", err=True)
        sys.exit(1)
    verb = "would re-encrypt" if dry_run else "re-encrypted"
    moved = ", ".join(f"{n:,} from {'clear' if k == 'clear' else 'key ' + k}" for k, n in totals["fields"].items())
    click.echo(f"{verb} {totals['records']:,} records under key {cipher.active_key!r}"
               + (f" ({moved} fields)" if moved else ""))


@encryption.command("decrypt")
@config_option
@click.option("--batch", default=500, show_default=True)
def decrypt(config_path: Path, batch: int) -> None:
    """Store every personal field in clear again (after setting [encryption].enabled = false)."""
    config = load_config_or_exit(config_path, required=True)
    if config.encryption.enabled:
        raise click.ClickException("[encryption].enabled is true: new records would still be encrypted; set it to "
                                   "false (keeping keys) first")
    cipher = _cipher(config)
    total = 0

    async def step(store: Any, rows: list[tuple[int, str]]) -> None:
        nonlocal total
        updates = []
        for rid, body in rows:
            record = json.loads(body)
            opened = cipher.open_record(record)
            if opened != record:
                updates.append((rid, body, json.dumps(opened, ensure_ascii=False, separators=(",", ":"))))
        if updates:
            total += await store.rewrite_record_bodies(updates, {
                "to_key": None, "note": "encryption at rest turned off: personal fields stored in clear",
                "first_record": updates[0][0], "last_record": updates[-1][0],
                "actor": f"cli:{os.environ.get('USER', 'unknown')}"})

    _run(_scan(config, step, batch))
    click.echo(f"{total:,} records now hold their personal fields in clear")
