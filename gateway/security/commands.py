"""The ``gateway certs`` and ``gateway counterparts`` commands: development certificates and push credentials.

Each prints what to paste into gateway.toml. Secrets (private keys, tokens, HMAC keys)
go to files with mode 0600 or are printed once; gateway.toml only ever holds
fingerprints, subjects and token hashes.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click

DEFAULT_CONFIG = "gateway.toml"


def config_option(f: Any) -> Any:
    return click.option(
        "-c", "--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
        default=lambda: os.environ.get("GATEWAY_CONFIG", DEFAULT_CONFIG),
        show_default="$GATEWAY_CONFIG or gateway.toml",
        help="The gateway.toml whose [gateway].certs_dir to use (when it exists).")(f)


def load_config_or_exit(config_path: Path, *, required: bool) -> Any:
    from gateway.config import ConfigError, load_config

    if not required and not config_path.exists():
        return None
    try:
        return load_config(config_path)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)


def _certs_dir(config_path: Path, given: Path | None) -> Path:
    if given is not None:
        return given
    config = load_config_or_exit(config_path, required=False)
    return config.resolve(config.gateway.certs_dir) if config is not None else Path("certs")


def _shown(path: Path, base: Path | None) -> str:
    """A path as gateway.toml should hold it: relative to the config's folder when inside it."""
    if base is not None:
        try:
            return str(path.resolve().relative_to(base.resolve()))
        except ValueError:
            pass
    return str(path)


# ---------------------------------------------------------------------------- certs


@click.group()
def certs() -> None:
    """Development certificates in certs/: a CA, the API's server certificate, client certificates."""


@certs.command("init")
@config_option
@click.option("--dir", "certs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write (default: [gateway].certs_dir of the configuration, else ./certs).")
@click.option("--host", "hosts", multiple=True, help="A name or address the API is reached by (repeatable; "
              "default localhost, 127.0.0.1, ::1).")
@click.option("--org", "organization", default="exchange-gateway development", show_default=True)
@click.option("--days", type=click.IntRange(1, 825), default=397, show_default=True,
              help="Validity of the server certificate.")
@click.option("--force", is_flag=True, help="Replace an existing development CA (its certificates stop working).")
def certs_init(config_path: Path, certs_dir: Path | None, hosts: tuple[str, ...], organization: str, days: int,
               force: bool) -> None:
    """Create a development CA, the API's server certificate and (if absent) the audit seal key.

    Private keys are written with mode 0600. For development and tests only: production
    uses certificates from a real CA, and `gateway check` warns while the development CA is trusted.
    """
    from gateway.security.devpki import PkiError, init_dev_pki

    folder = _certs_dir(config_path, certs_dir)
    try:
        pki = init_dev_pki(folder, hosts=list(hosts) or None, organization=organization, days=days, force=force)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from exc
    base = config_path.resolve().parent if config_path.exists() else Path.cwd()
    click.echo(f"development CA:      {pki.ca.cert}  (key {pki.ca.key}, mode 0600)")
    click.echo(f"  SHA-256 {pki.ca.fingerprint_text}")
    click.echo(f"server certificate:  {pki.server.cert}  (key {pki.server.key}, mode 0600)")
    click.echo(f"  {pki.server.subject}, valid until {pki.server.not_after:%Y-%m-%d}")
    if pki.seal_created is not None:
        click.echo(f"audit seal key:      {pki.seal_created} (created: the development seal key)")
    click.echo("")
    click.echo("In gateway.toml:")
    click.echo("")
    click.echo("[api]")
    click.echo(f'tls_cert = "{_shown(pki.server.cert, base)}"')
    click.echo(f'tls_key = "{_shown(pki.server.key, base)}"')
    click.echo(f'client_ca = "{_shown(pki.ca.cert, base)}"')
    click.echo('client_certificates = "optional"   # "required": every client must present one')
    click.echo("")
    click.echo("Then give each counterpart its certificate: gateway certs issue SYSTEM")


@certs.command("issue")
@config_option
@click.argument("system")
@click.option("--dir", "certs_dir", type=click.Path(file_okay=False, path_type=Path),
              help="The folder holding the development CA (default: [gateway].certs_dir, else ./certs).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write SYSTEM.crt and SYSTEM.key (default: <certs>/clients).")
@click.option("--days", type=click.IntRange(1, 825), default=365, show_default=True)
@click.option("--key-type", type=click.Choice(["ec", "rsa"]), default="ec", show_default=True,
              help="rsa for counterparts that also sign WS-Security with it on older SOAP stacks.")
@click.option("--force", is_flag=True, help="Replace an existing certificate for SYSTEM.")
def certs_issue(config_path: Path, system: str, certs_dir: Path | None, out_dir: Path | None, days: int,
                key_type: str, force: bool) -> None:
    """Issue a client certificate for counterpart SYSTEM and print what binds it in gateway.toml."""
    from gateway.security.devpki import PkiError, issue_client_certificate

    folder = _certs_dir(config_path, certs_dir)
    try:
        files = issue_client_certificate(folder, system, out_dir=out_dir, days=days, key_type=key_type,  # type: ignore[arg-type]
                                         force=force)
    except PkiError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"client certificate:  {files.cert}")
    click.echo(f"private key:         {files.key}  (mode 0600: hand it to the counterpart securely; never commit)")
    click.echo(f"subject:             {files.subject}")
    click.echo(f"SHA-256 fingerprint: {files.fingerprint_text}")
    click.echo(f"valid until:         {files.not_after:%Y-%m-%d}")
    click.echo("")
    click.echo("In gateway.toml:")
    click.echo("")
    click.echo(f"[sources.{system}.auth.client_certificate]")
    click.echo(f'fingerprints = ["{files.fingerprint_text}"]')
    click.echo(f'subject = "{files.subject}"')


@certs.command("show")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
def certs_show(files: tuple[Path, ...]) -> None:
    """Print subject, SHA-256 fingerprint and expiry of each certificate (the values gateway.toml binds)."""
    from gateway.security.devpki import PkiError, describe_certificate

    for path in files:
        try:
            found = describe_certificate(path)
        except PkiError as exc:
            raise click.ClickException(str(exc)) from exc
        for c in found:
            click.echo(f"{path}")
            click.echo(f"  subject:             {c.subject}")
            click.echo(f"  SHA-256 fingerprint: {c.fingerprint_text}")
            click.echo(f"  valid until:         {c.not_after:%Y-%m-%d %H:%M} UTC")


# ---------------------------------------------------------------------------- counterparts


@click.group()
def counterparts() -> None:
    """Credentials of pushing counterparts: tokens, HMAC keys, and who may push what."""


@counterparts.command("token")
@click.argument("system")
@click.option("--days", type=click.IntRange(1), help="Set not_after this many days from now.")
@click.option("--label", help="A name for the token in logs and metrics (default: today's date).")
def counterparts_token(system: str, days: int | None, label: str | None) -> None:
    """Make a new bearer token for SYSTEM: print it once, and the hash line for gateway.toml.

    Rotation: add the new line beside the old one, give the old one a not_after, hand the
    new token over, and remove the old line once `gateway_counterpart_authenticated_total`
    shows it no longer used.
    """
    from gateway.security.counterparts import CHINA, token_digest

    token = secrets.token_urlsafe(32)
    label = label or f"{system}-{dt.date.today():%Y%m%d}"
    entry = f'{{ sha256 = "{token_digest(token)}", label = "{label}"'
    if days:
        not_after = (dt.datetime.now(CHINA) + dt.timedelta(days=days)).replace(microsecond=0)
        entry += f", not_after = {not_after.isoformat()}"
    entry += " }"
    click.echo(f"token (shown once; hand it to {system} securely): {token}")
    click.echo("")
    click.echo(f"In gateway.toml, [sources.{system}.auth] tokens = [ …, {entry} ]")


@counterparts.command("hmac-key")
@click.argument("system")
@click.option("--out", "out_file", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="File to write the key to (hex, mode 0600); gateway.toml references it.")
@click.option("--id", "key_id", help="The key id the counterpart sends in X-Key-Id (default: SYSTEM-YYYYMMDD).")
def counterparts_hmac_key(system: str, out_file: Path, key_id: str | None) -> None:
    """Make a random 256-bit HMAC key for SYSTEM in a 0600 file and print its gateway.toml entry."""
    if out_file.exists():
        raise click.ClickException(f"{out_file} exists; choose another file (keep the old key until rotated out)")
    out_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(secrets.token_hex(32) + "\n")
    key_id = key_id or f"{system}-{dt.date.today():%Y%m%d}"
    click.echo(f"HMAC key written to {out_file} (mode 0600); hand a copy to {system} securely")
    click.echo("")
    click.echo(f"In gateway.toml, [sources.{system}.auth.hmac] keys = [ …, "
               f'{{ id = "{key_id}", secret = {{ file = "{out_file}" }}, encoding = "hex" }} ]')


@counterparts.command("list")
@config_option
def counterparts_list(config_path: Path) -> None:
    """Each push system: how it authenticates, the kinds it may send, credentials about to expire."""
    from gateway.app import build
    from gateway.config import ConfigError
    from gateway.security.checks import push_auths
    from gateway.security.counterparts import push_auth_options

    config = load_config_or_exit(config_path, required=True)
    try:
        comp = build(config)
    except ConfigError as exc:
        click.echo(f"configuration error in {exc}", err=True)
        sys.exit(2)
    systems = push_auths(config, comp)
    if not systems:
        click.echo("no push systems are configured")
        return
    now = dt.datetime.now(dt.UTC)
    for name, (auth, options) in systems.items():
        kinds = push_auth_options(options)[1] or tuple(comp.inbound[name].kinds)
        click.echo(f"{name}: may send {', '.join(kinds)}")
        if auth is None:
            click.echo("  no credentials: every push is refused (403)")
            continue
        if auth.anonymous:
            click.echo("  ANONYMOUS: anyone may push as this system (development setting)")
            continue
        cc = auth.client_certificate
        if cc is not None:
            bound = [f"subject {cc.subject}"] if cc.subject else []
            bound += [f"fingerprint {fp[:16]}…" for fp in cc.fingerprints]
            click.echo(f"  client certificate: {'; '.join(bound)}")
        for t in auth.tokens:
            state = "expired" if t.not_after and t.not_after < now else \
                f"until {t.not_after:%Y-%m-%d}" if t.not_after else "no expiry"
            click.echo(f"  token {t.name}: {state}")
        if auth.hmac is not None:
            for k in auth.hmac.keys:
                state = "expired" if k.not_after and k.not_after < now else \
                    f"until {k.not_after:%Y-%m-%d}" if k.not_after else "no expiry"
                click.echo(f"  HMAC key {k.id} ({k.secret.describe()}): {state}; window {auth.hmac.max_skew:g}s")
        if auth.wsse is not None:
            parts = []
            if auth.wsse.username_token is not None:
                parts.append(f"UsernameToken {auth.wsse.username_token.username}")
            parts += [f"signature by {p}" for p in auth.wsse.certificates]
            click.echo(f"  WS-Security on /soap/{name}: {'; '.join(parts)}")
