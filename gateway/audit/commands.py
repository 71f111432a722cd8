"""The ``gateway audit`` commands: verify, export, seal, archive, keygen.

Every command takes the store URL and certificates folder directly, so the group works
on its own; the main CLI may put defaults in ``ctx.obj`` (a dict with ``store_url``,
``certs_dir``, ``archives_dir``) and they are used when an option is not given.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import click

T = TypeVar("T")
DEFAULT_STORE = "sqlite:///gateway.db"
DEFAULT_CERTS = "certs"
DEFAULT_ARCHIVES = "archives"


def _default(ctx: click.Context, key: str, env: str, fallback: str | None) -> str | None:
    obj = ctx.find_object(dict) or {}
    value = obj.get(key) or os.environ.get(env) or fallback
    return str(value) if value is not None else None


def _store_url(ctx: click.Context, value: str | None) -> str:
    return value or _default(ctx, "store_url", "GATEWAY_STORE_URL", DEFAULT_STORE)  # type: ignore[return-value]


def _certs_dir(ctx: click.Context, value: str | None) -> Path:
    return Path(value or _default(ctx, "certs_dir", "GATEWAY_CERTS_DIR", DEFAULT_CERTS))  # type: ignore[arg-type]


def _archives_dir(ctx: click.Context, value: str | None, fallback: str | None = None) -> Path | None:
    chosen = value or _default(ctx, "archives_dir", "GATEWAY_ARCHIVES_DIR", fallback)
    return Path(chosen) if chosen else None


def _db_path(url: str) -> str:
    """The store URL, checked: a known kind, and for SQLite an existing file (verify must not create one)."""
    from gateway.store import is_store_url, sqlite_path

    if not is_store_url(url):
        raise click.UsageError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db or "
                               "postgresql://user@host:5432/database")
    if url.startswith("sqlite:///"):
        path = sqlite_path(url)
        if not path.exists():
            raise click.ClickException(f"store {url}: database file {path} does not exist")
        return f"sqlite:///{path}"
    return url


def _shown(url: str) -> str:
    """A store URL as it may be printed: without a password."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@")))


def _with_store(url: str, work: Callable[[Any], Awaitable[T]]) -> T:
    from gateway.store import make_store

    _db_path(url)

    async def run() -> T:
        store = make_store(url)
        await store.open()
        try:
            return await work(store)
        finally:
            await store.close()

    return asyncio.run(run())


def _signer(certs: Path, signer_url: str | None, signer_cert: str | None) -> Any:
    from gateway.audit.signers import SignerError, make_signer

    try:
        if signer_url:
            if not signer_cert:
                raise click.UsageError("--signer-url needs --signer-cert (the signing service's certificate, pinned)")
            # A bearer token is a secret: it comes from the environment, never from a command line or TOML.
            return make_signer("external", url=signer_url, certificate=signer_cert,
                               token=os.environ.get("GATEWAY_SIGNER_TOKEN") or None)
        return make_signer("local", certs_dir=certs)
    except SignerError as exc:
        raise click.ClickException(str(exc)) from exc


def _from_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """Fill the defaults (store, certificates, archives) from a gateway.toml."""
    path = value or os.environ.get("GATEWAY_CONFIG") or ("gateway.toml" if Path("gateway.toml").exists() else None)
    if not path:
        return value
    from gateway.config import ConfigError, load_config
    from gateway.store import sqlite_path

    try:
        config = load_config(path)
    except ConfigError as exc:
        raise click.ClickException(f"configuration error in {exc}") from exc
    store = config.gateway.store
    if store.startswith("sqlite:///"):
        store = f"sqlite:///{sqlite_path(store, config.base_dir).resolve()}"
    obj = ctx.ensure_object(dict)
    obj.setdefault("store_url", store)
    obj.setdefault("certs_dir", str(config.resolve(config.gateway.certs_dir)))
    obj.setdefault("archives_dir", str(config.resolve(config.audit.archives_dir)))
    if config.audit.witness:
        obj.setdefault("witness", str(config.resolve(config.audit.witness)))
    return value


def _witness_log(ctx: click.Context) -> Any:
    """The configured seal witness log (written by `seal`, read by `verify`), if any."""
    from gateway.audit.witness import WitnessLog

    path = _default(ctx, "witness", "GATEWAY_AUDIT_WITNESS", None)
    return WitnessLog(path) if path else None


config_option = click.option("-c", "--config", "config", metavar="FILE", expose_value=False, is_eager=True,
                             callback=_from_config,
                             help="gateway.toml to take the store, certificates and archives from "
                             "(default: $GATEWAY_CONFIG, or ./gateway.toml if present)")
store_option = click.option("--store", "store", metavar="URL", help="store URL, e.g. sqlite:///var/gateway.db or "
                            "postgresql://gateway@db:5432/gateway (default: the configured store)")
certs_option = click.option("--certs", "certs", metavar="DIR", help="certificates folder (default: certs/)")
signer_options = [
    click.option("--signer-url", metavar="URL", help="sign through this signing service instead of the local key "
                 "(bearer token, if any, from $GATEWAY_SIGNER_TOKEN)"),
    click.option("--signer-cert", metavar="FILE", help="the signing service's certificate (PEM), pinned"),
]


def _add(options: list[Callable[[Any], Any]]) -> Callable[[Any], Any]:
    def wrap(fn: Any) -> Any:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


@click.group("audit")
def audit() -> None:
    """Verify, seal, export and archive the signed audit trail."""


@audit.command("verify")
@config_option
@store_option
@certs_option
@click.option("--archives", metavar="DIR", help="folder of archive files; the chain is checked across them")
@click.option("--cert", "cert_files", multiple=True, metavar="FILE",
              help="trusted seal certificate (repeatable); default: every audit-seal*.crt in the certificates folder")
@click.option("--witness", "witness_files", multiple=True, metavar="FILE",
              help="seal witness log or a copy of the seals the supervisors received (repeatable); proves nothing "
              "witnessed was removed or rewritten. Default: the configured [audit] witness log, if it exists")
@click.option("--no-witness", is_flag=True, help="do not read the configured witness log")
@click.option("--workers", type=click.IntRange(1, 64), help="worker processes (default: one per CPU)")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
@click.pass_context
def verify_cmd(ctx: click.Context, store: str | None, certs: str | None, archives: str | None,
               cert_files: tuple[str, ...], witness_files: tuple[str, ...], no_witness: bool, workers: int | None,
               as_json: bool) -> None:
    """Check every entry, seal and archive; exit 1 and name the first broken one if anything is wrong.

    Without a witness this proves the trail is intact up to its newest signed seal; what came after
    it could have been cut off. With the witness (on by default when configured) it also proves that
    no seal the witness saw was removed, rewritten or stripped of its signature.
    """
    from gateway.audit.keys import load_certificates
    from gateway.audit.signers import SignerError
    from gateway.audit.verify import verify_path
    from gateway.store import StoreError

    url = _store_url(ctx, store)
    target = _db_path(url)
    folder = _certs_dir(ctx, certs)
    try:
        if cert_files:
            trusted, label = load_certificates(*cert_files), f"certificates given with --cert ({len(cert_files)})"
        elif folder.is_dir() and any(folder.glob("audit-seal*.crt")):
            trusted = load_certificates(folder)
            label = f"seal certificates in {folder} ({len(trusted)})"
        else:
            trusted, label = None, None
    except SignerError as exc:
        raise click.ClickException(str(exc)) from exc
    witness: list[str] = list(witness_files)
    if not witness and not no_witness:
        log = _witness_log(ctx)
        if log is not None and log.path.exists():
            witness = [str(log.path)]
    try:
        report = verify_path(target, archives_dir=_archives_dir(ctx, archives), trusted=trusted,
                             trust_label=label, workers=workers, witness=witness)
    except (ValueError, StoreError) as exc:
        raise click.ClickException(f"store {_shown(url)}: {exc}") from exc
    report.store = _shown(url)
    click.echo(json.dumps(report.to_dict(), ensure_ascii=False, indent=1) if as_json else report.render())
    if not report.ok:
        sys.exit(1)


@audit.command("export")
@config_option
@click.option("--case", "case_no", required=True, metavar="ID", help="the case (办件) number")
@click.option("-o", "--output", metavar="FILE", help="bundle file (default: evidence-<case>.json)")
@store_option
@click.option("--archives", metavar="DIR", help="also search archive files in this folder")
@click.option("--mask", is_flag=True,
              help="mask personal data in the parts of the bundle no hash covers, and name entries whose hashed body "
                   "carries some (the bundle still verifies offline)")
@click.pass_context
def export_cmd(ctx: click.Context, case_no: str, output: str | None, store: str | None, archives: str | None,
               mask: bool) -> None:
    """Write one case's evidence bundle, checkable offline with offline_verify.py."""
    from gateway.audit.evidence import export_case

    out = Path(output or f"evidence-{''.join(c if c.isalnum() or c in '-_' else '_' for c in case_no)}.json")
    summary = _with_store(_store_url(ctx, store),
                          lambda s: export_case(s, case_no, out, archives_dir=_archives_dir(ctx, archives)))
    for note in summary.notes:
        click.echo(f"note: {note}")
    if not summary.entries:
        out.unlink(missing_ok=True)
        raise click.ClickException(f"case {case_no}: no audit entries found")
    click.echo(f"wrote {out}: case {case_no}, {summary.entries} entries ({summary.provable} under signed seals, "
               f"{summary.pending} under pending seals, {summary.unsealed} not sealed yet), {summary.seals} seals")
    if mask:
        from gateway.security.bundles import mask_bundle

        done = mask_bundle(out)
        parts = f"masked {', '.join(done.masked_parts)}" if done.masked_parts else "nothing outside the proofs " \
            "needed masking"
        click.echo(f"--mask: {parts}")
        if done.carrying:
            click.echo(f"--mask: entries {', '.join(map(str, done.carrying))} carry personal data inside their hashed "
                       "bodies (written before masking at the source); they are left as they are so the bundle "
                       "verifies: mind whom you give it to", err=True)
    click.echo(f"check it anywhere with: python offline_verify.py {out} --cert <trusted seal certificate>")


@audit.command("seal")
@config_option
@store_option
@certs_option
@_add(signer_options)
@click.pass_context
def seal_cmd(ctx: click.Context, store: str | None, certs: str | None, signer_url: str | None,
             signer_cert: str | None) -> None:
    """Seal every unsealed entry now and sign pending seals."""
    from gateway.audit.seals import Sealer, SealRefused

    signer = _signer(_certs_dir(ctx, certs), signer_url, signer_cert)

    async def work(s: Any) -> tuple[list[Any], Any]:
        sealer = Sealer(s, signer, witness=_witness_log(ctx))
        try:
            made = await sealer.seal_now()
        finally:
            await signer.close()
        return made, sealer.status()

    try:
        made, status = _with_store(_store_url(ctx, store), work)
    except SealRefused as exc:
        raise click.ClickException(str(exc)) from exc
    for row in made:
        click.echo(f"seal {row.seal}: entries {row.from_seq}..{row.to_seq}")
    if not made:
        click.echo("nothing new to seal")
    if status.pending:
        raise click.ClickException(f"{status.pending} seal(s) still pending signature: {status.last_error}")
    click.echo("all seals signed")


@audit.command("archive")
@config_option
@click.option("--before-days", type=click.IntRange(0), metavar="N", help="archive sealed entries older than N days")
@click.option("--before-seq", type=click.IntRange(1), metavar="SEQ", help="archive sealed entries before this seq")
@click.option("--out", "out", metavar="DIR", help="archive folder (default: archives/)")
@store_option
@certs_option
@_add(signer_options)
@click.pass_context
def archive_cmd(ctx: click.Context, before_days: int | None, before_seq: int | None, out: str | None,
                store: str | None, certs: str | None, signer_url: str | None, signer_cert: str | None) -> None:
    """Move old entries under signed seals into signed archive files, then delete them from the database."""
    from gateway.audit.retention import ArchiveError, archive

    if before_days is None and before_seq is None:
        raise click.UsageError("give --before-days N or --before-seq SEQ")
    folder = _archives_dir(ctx, out, DEFAULT_ARCHIVES)
    signer = _signer(_certs_dir(ctx, certs), signer_url, signer_cert)

    async def work(s: Any) -> Any:
        try:
            return await archive(s, folder, signer=signer, before_seq=before_seq,  # type: ignore[arg-type]
                                 older_than=timedelta(days=before_days) if before_days is not None else None)
        finally:
            await signer.close()

    try:
        outcome = _with_store(_store_url(ctx, store), work)
    except ArchiveError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(outcome.message)


@audit.command("keygen")
@config_option
@certs_option
@click.option("--algorithm", type=click.Choice(["ed25519", "ecdsa-p256-sha256"]), default="ed25519",
              show_default=True)
@click.option("--cn", "common_name", default="exchange-gateway audit seal (development)", show_default=True,
              help="certificate subject common name")
@click.option("--org", "organization", help="certificate subject organisation (the hall's name)")
@click.option("--days", type=click.IntRange(1), default=3650, show_default=True, help="certificate validity")
@click.option("--force", is_flag=True, help="replace an existing key (its certificate is kept for verification)")
@click.pass_context
def keygen_cmd(ctx: click.Context, certs: str | None, algorithm: str, common_name: str, organization: str | None,
               days: int, force: bool) -> None:
    """Create the seal key and its self-signed certificate (development; production may use a signing service)."""
    from gateway.audit.keys import generate_seal_key
    from gateway.audit.signers import SignerError, fingerprint_text

    try:
        files = generate_seal_key(_certs_dir(ctx, certs), algorithm, common_name=common_name,
                                  organization=organization, days=days, force=force)
    except SignerError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"seal key:         {files.key_path} (keep private; never commit)")
    click.echo(f"seal certificate: {files.cert_path} (give this to verifiers)")
    click.echo(f"SHA-256 fingerprint: {fingerprint_text(files.key_id)}")
    if files.retired:
        click.echo(f"previous certificate kept as {files.retired} so older seals keep verifying")
