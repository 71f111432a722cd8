"""Security checks of a configuration: problems that stop the gateway, warnings that `check` and `run` print.

Problems (``counterpart_problems``) are settings that cannot work: a client-certificate
binding without a client CA, an unreadable WS-Security certificate, one credential bound
to two systems. Warnings (``security_warnings``) are settings that work but should not
reach production unnoticed; ``gateway check`` prints them and ``gateway run`` logs them
at start-up (docs/security.md, "Certificates and keys", lists them all).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway.security.counterparts import CounterpartAuth, check_bindings, push_auth_options

if TYPE_CHECKING:
    from gateway.app import Components
    from gateway.config import GatewayConfig

PUSH_ADAPTER = "push"
EXPIRY_WARNING_DAYS = 30
DEV_SEAL_CN = "exchange-gateway audit seal (development)"
DEV_CA_CN = "exchange-gateway development CA"


@dataclass(frozen=True, slots=True)
class SecurityWarning:
    """One warning: ``topic`` groups them (certificates, keys, push, api, seal, encryption)."""

    topic: str
    message: str

    def __str__(self) -> str:
        return f"[{self.topic}] {self.message}"


def push_auths(config: GatewayConfig, comp: Components) -> dict[str, tuple[CounterpartAuth | None, Any]]:
    """(auth, options) of every enabled push source whose options validated."""
    out: dict[str, tuple[CounterpartAuth | None, Any]] = {}
    for name, section in config.sources.items():
        if not section.enabled or section.adapter != PUSH_ADAPTER or name not in comp.source_configs:
            continue
        options = comp.source_configs[name]
        if options is None:
            continue
        out[name] = (push_auth_options(options)[0], options)
    return out


def counterpart_problems(config: GatewayConfig, comp: Components) -> list[str]:
    from cryptography import x509

    problems: list[str] = []
    auths = push_auths(config, comp)
    for name, (auth, options) in auths.items():
        kinds = push_auth_options(options)[1]
        mapping = comp.inbound.get(name)
        if kinds is not None and mapping is not None:
            for kind in kinds:
                if kind not in mapping.kinds:
                    problems.append(f"sources.{name}.kinds: {kind!r} is not a kind its mapping {mapping.name} "
                                    f"produces ({', '.join(mapping.kinds)})")
        if auth is None:
            continue
        if auth.client_certificate is not None and not (config.api.tls_cert and config.api.client_ca):
            problems.append(f"sources.{name}.auth.client_certificate: the API asks for client certificates only "
                            "with [api] tls_cert, tls_key and client_ca (`gateway certs init` makes a development "
                            "set)")
        if auth.wsse is not None:
            for path in auth.wsse.certificates:
                try:
                    x509.load_pem_x509_certificate(Path(path).read_bytes())
                except OSError as exc:
                    problems.append(f"sources.{name}.auth.wsse.certificates: cannot read {path}: "
                                    f"{exc.strerror or exc}")
                except ValueError:
                    problems.append(f"sources.{name}.auth.wsse.certificates: {path} is not a PEM certificate")
    problems.extend(check_bindings({name: auth for name, (auth, _) in auths.items()}))
    return problems


# --------------------------------------------------------------------------- warnings


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost, or 0.0.0.0-like wildcards handled below


def _open_to_others(path: Path) -> str | None:
    """'group'/'others' when a key file's mode lets them read it, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if mode & stat.S_IROTH:
        return "others"
    if mode & stat.S_IRGRP:
        return "group"
    return None


def _certificates_in(path: Path) -> Iterator[Any]:
    from cryptography import x509

    try:
        data = path.read_bytes()
    except OSError:
        return
    try:
        yield from x509.load_pem_x509_certificates(data)
    except ValueError:
        return


def _secret_files(value: Any) -> Iterator[Path]:
    """Every ``{file = …}`` secret and every ``…key_file`` inside an adapter's (or the push auth's) options."""
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    if isinstance(value, Mapping):
        keys = set(value)
        if keys and keys <= {"env", "file"} and value.get("file") and not value.get("env"):
            yield Path(value["file"])
            return
        for key, item in value.items():
            if isinstance(key, str) and key.endswith("key_file") and isinstance(item, str | Path) and item:
                yield Path(item)  # a private key (TLS client, WS-Security signing) named directly
            else:
                yield from _secret_files(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_files(item)


def security_warnings(config: GatewayConfig, comp: Components | None = None, *,
                      now: dt.datetime | None = None) -> list[SecurityWarning]:
    """Everything about ``config`` that works but should not reach production unnoticed."""
    now = now or dt.datetime.now(dt.UTC)
    out: list[SecurityWarning] = []
    certs_dir = config.resolve(config.gateway.certs_dir)
    api = config.api

    # ---- push systems
    if comp is not None:
        for name, (auth, _options) in push_auths(config, comp).items():
            if auth is None:
                out.append(SecurityWarning("push", (
                    f"push system {name!r} has no credentials configured: the API REFUSES every push to it (403) "
                    f"until [sources.{name}.auth] names client_certificate, tokens, hmac or wsse "
                    f"(`gateway certs issue {name}` or `gateway counterparts token {name}`); "
                    "auth = { anonymous = true } admits anyone, for development only")))
            elif auth.anonymous:
                out.append(SecurityWarning("push", (
                    f"push system {name!r} accepts ANONYMOUS pushes (auth.anonymous = true): anyone who reaches "
                    "the API can send records as it; a development setting only")))
            else:
                out.extend(_credential_warnings(name, auth, config, now))

    # ---- the API's address and TLS
    if api.enabled:
        wildcard = api.host in ("0.0.0.0", "::", "")
        if (wildcard or not _is_loopback(api.host)) and not api.tls_cert:
            out.append(SecurityWarning("api", (
                f"the API listens on {api.host or '*'}:{api.port} (not loopback) WITHOUT TLS: tokens, records "
                "and personal data cross the network in clear text; set [api] tls_cert and tls_key")))

    # ---- certificates: near expiry, development CA
    seen: set[Path] = set()
    cert_files: list[tuple[str, Path]] = []
    if api.tls_cert:
        cert_files.append(("[api].tls_cert", config.resolve(api.tls_cert)))
    if api.client_ca:
        cert_files.append(("[api].client_ca", config.resolve(api.client_ca)))
    if comp is not None:
        for name, (auth, _options) in push_auths(config, comp).items():
            if auth is not None and auth.wsse is not None:
                cert_files.extend((f"sources.{name}.auth.wsse", Path(p)) for p in auth.wsse.certificates)
    if certs_dir.is_dir():
        cert_files.extend(("certificates folder", p) for p in sorted(certs_dir.rglob("*.crt"))
                          + sorted(certs_dir.rglob("*.pem")))
    for where, path in cert_files:
        path = path.resolve()
        if path in seen:
            continue
        seen.add(path)
        for cert in _certificates_in(path):
            out.extend(_certificate_warnings(where, path, cert, now))
        if where == "[api].client_ca":
            for cert in _certificates_in(path):
                if _common_name(cert) == DEV_CA_CN:
                    out.append(SecurityWarning("certificates", (
                        f"{where} {path} is the development CA made by `gateway certs init`: its key lives "
                        "beside the gateway; use the CA your counterparts' certificates come from in production")))

    # ---- key files others can read
    key_files: list[tuple[str, Path]] = []
    if api.tls_key:
        key_files.append(("[api].tls_key", config.resolve(api.tls_key)))
    if certs_dir.is_dir():
        key_files.extend(("certificates folder", p) for p in sorted(certs_dir.rglob("*.key")))
    if comp is not None:
        for name, options in {**comp.source_configs, **comp.sink_configs}.items():
            key_files.extend((f"secret of {name}", p) for p in _secret_files(options))
    enc = getattr(config, "encryption", None)
    if enc is not None and enc.enabled and enc.keys.file is not None:
        key_files.append(("[encryption].keys", config.resolve(str(enc.keys.file))))
    seen = set()
    for where, path in key_files:
        path = path.resolve()
        if path in seen:
            continue
        seen.add(path)
        who = _open_to_others(path)
        if who:
            out.append(SecurityWarning("keys", (
                f"{where}: {path} is readable by {who} (mode {stat.S_IMODE(path.stat().st_mode):o}); "
                f"chmod 600 {path}")))

    # ---- the seal key
    out.extend(_seal_warnings(config, certs_dir))
    return out


def _common_name(cert: Any) -> str | None:
    from cryptography.x509.oid import NameOID

    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _certificate_warnings(where: str, path: Path, cert: Any, now: dt.datetime) -> list[SecurityWarning]:
    left = cert.not_valid_after_utc - now
    name = cert.subject.rfc4514_string()
    if left.total_seconds() <= 0:
        return [SecurityWarning("certificates", f"{where}: {path} ({name}) EXPIRED on "
                                                f"{cert.not_valid_after_utc:%Y-%m-%d}")]
    if left <= dt.timedelta(days=EXPIRY_WARNING_DAYS):
        return [SecurityWarning("certificates", f"{where}: {path} ({name}) expires in {left.days} day(s), on "
                                                f"{cert.not_valid_after_utc:%Y-%m-%d}; renew it now")]
    return []


def _credential_warnings(name: str, auth: CounterpartAuth, config: GatewayConfig,
                         now: dt.datetime) -> list[SecurityWarning]:
    out: list[SecurityWarning] = []
    soon = now + dt.timedelta(days=EXPIRY_WARNING_DAYS)
    if auth.tokens:
        live = [t for t in auth.tokens if t.not_after is None or t.not_after > now]
        if not live:
            out.append(SecurityWarning("push", f"push system {name!r}: every token has expired; its pushes are "
                                               "refused until a new one is configured"))
        elif all(t.not_after is not None and t.not_after <= soon for t in live):
            out.append(SecurityWarning("push", f"push system {name!r}: its last valid token expires within "
                                               f"{EXPIRY_WARNING_DAYS} days; add the next one now (overlap)"))
    if auth.hmac is not None:
        live_keys = [k for k in auth.hmac.keys if k.not_after is None or k.not_after > now]
        if not live_keys:
            out.append(SecurityWarning("push", f"push system {name!r}: every HMAC key has expired"))
        for key in auth.hmac.keys:
            if key.secret.env is not None and not os.environ.get(key.secret.env):
                out.append(SecurityWarning("push", f"push system {name!r}: HMAC key {key.id!r} comes from "
                                                   f"${key.secret.env}, which is not set here"))
    if (auth.tokens or auth.hmac is not None) and config.api.client_ca \
            and config.api.client_certificates == "required" and auth.client_certificate is None:
        out.append(SecurityWarning("push", f"push system {name!r} authenticates with tokens or HMAC, but "
                                           "[api] client_certificates = 'required' also demands a client "
                                           "certificate of every client; set it to 'optional' if it has none"))
    return out


def _seal_warnings(config: GatewayConfig, certs_dir: Path) -> list[SecurityWarning]:
    from gateway.audit.keys import CERT_FILE, KEY_FILE

    audit = config.audit
    if not audit.seal or audit.signer != "local":
        return []
    key, cert = certs_dir / KEY_FILE, certs_dir / CERT_FILE
    if not key.exists():
        return [SecurityWarning("seal", (
            f"no seal key in {certs_dir}: `gateway run` will CREATE a development seal key (Ed25519, self-signed "
            "for 10 years, unencrypted on disk) to sign the audit trail; create a proper one with `gateway audit "
            "keygen --cn … --org …`, or use a signing service ([audit] signer = 'external')"))]
    for c in _certificates_in(cert):
        if _common_name(c) == DEV_SEAL_CN:
            return [SecurityWarning("seal", (
                f"the audit trail is sealed with the DEVELOPMENT seal key {key} (created automatically, "
                "unencrypted on disk): a copy of this file forges seals; for production use `gateway audit keygen "
                "--force --cn … --org …` (old seals keep verifying) or a signing service"))]
    return []
