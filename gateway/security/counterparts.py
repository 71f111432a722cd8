"""Counterpart identities: how each pushing system proves who it is, and the check of every push.

A push system names its credentials in gateway.toml (``[sources.NAME.auth]``, see
docs/security.md, "Counterparts"):

``client_certificate``
    a mutual-TLS client certificate bound to the system by SHA-256 fingerprint(s) and/or
    subject (and optionally issuer); the API's ``client_ca`` decides which CA may issue it.
``tokens``
    ``Authorization: Bearer`` tokens stored only as SHA-256 hashes, each with an optional
    ``not_after``, so a new token and the old one overlap during a rotation.
``hmac``
    requests signed with the canonical string of :mod:`gateway.security.request_signing`,
    with keys by id (rotation with ``not_after``), a timestamp window and single-use nonces.
``wsse``
    WS-Security on ``/soap/NAME``: UsernameToken (PasswordDigest) and/or an X.509 signature
    over Body and Timestamp with the system's configured certificate.
``anonymous = true``
    development only: anyone who reaches the port may push as the system.

A push system with no ``auth`` at all is refused (403) until credentials are configured.
Every credential a request presents must verify; a credential that belongs to another
system is refused with 403, a missing or invalid one with 401. The check itself is pure
(no HTTP, no store): the API feeds it what the connection and the request carry.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.adapters import ConfigPath
from gateway.config import parse_duration
from gateway.security.request_signing import (
    KEY_ID_HEADER,
    NONCE_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    canonical_string,
    signature_matches,
)
from gateway.security.secrets import SecretError, SecretReader, SecretRef

CHINA = dt.timezone(dt.timedelta(hours=8), "Asia/Shanghai")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_COMMA = re.compile(r"(?<!\\)\s*,\s*")


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    """A time without a zone is China time, as everywhere in the gateway's configuration."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=CHINA)
    return value


def normalise_fingerprint(text: str) -> str:
    """``AB:CD:…`` (as openssl prints it) or ``abcd…`` → 64 lowercase hex characters."""
    clean = text.strip().lower().removeprefix("sha256:").replace(":", "").replace(" ", "")
    if not _HEX64.match(clean):
        raise ValueError(f"{text!r} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    return clean


def fingerprint_text(hex_digest: str) -> str:
    """``ab12…`` → ``AB:12:…`` as openssl prints it."""
    return ":".join(hex_digest[i:i + 2] for i in range(0, len(hex_digest), 2)).upper()


def parse_name(text: str) -> x509.Name:
    """An RFC 4514 distinguished name (``CN=county_hall,O=…,C=CN``); spaces after commas are allowed."""
    try:
        return x509.Name.from_rfc4514_string(_COMMA.sub(",", text.strip()))
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 4514 distinguished name such as 'CN=county_hall,O=Hall,C=CN' "
                         "(`gateway certs show FILE` prints a certificate's subject in this form)") from None


# --------------------------------------------------------------------------- configuration


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClientCertificateAuth(_Model):
    """A mutual-TLS client certificate bound to one system; every constraint given must hold."""

    fingerprints: tuple[str, ...] = ()
    """SHA-256 fingerprints of the certificates themselves; several while one replaces another."""
    subject: str | None = None
    """The certificate subject (RFC 4514); a renewed certificate with the same subject keeps working."""
    issuer: str | None = None
    """The issuing CA's subject, when ``client_ca`` holds several CAs."""

    @field_validator("fingerprints")
    @classmethod
    def _fingerprints(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_fingerprint(v) for v in value)

    @field_validator("subject", "issuer")
    @classmethod
    def _names(cls, value: str | None) -> str | None:
        return None if value is None else parse_name(value).rfc4514_string()

    @model_validator(mode="after")
    def _something(self) -> ClientCertificateAuth:
        if not self.fingerprints and self.subject is None:
            raise ValueError("client_certificate needs fingerprints, a subject, or both "
                             "(`gateway certs issue SYSTEM` prints them)")
        return self

    def matches(self, cert: PeerCertificate) -> bool:
        if self.fingerprints and cert.fingerprint not in self.fingerprints:
            return False
        if self.subject is not None and cert.subject != parse_name(self.subject):
            return False
        return self.issuer is None or cert.issuer == parse_name(self.issuer)


class TokenHash(_Model):
    """One bearer token, stored as the SHA-256 of its text (`gateway counterparts token SYSTEM` makes one)."""

    sha256: str
    not_after: dt.datetime | None = None
    label: str | None = None  # shown in logs and metrics instead of the hash, e.g. "2026-q3"

    @field_validator("sha256")
    @classmethod
    def _hash(cls, value: str) -> str:
        return normalise_fingerprint(value)

    @field_validator("not_after")
    @classmethod
    def _zone(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _aware(value)

    @property
    def name(self) -> str:
        return self.label or f"sha256:{self.sha256[:12]}"


class HmacKey(_Model):
    """One HMAC key of a system; the counterpart names it in ``X-Key-Id``."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
    secret: SecretRef
    encoding: Literal["utf-8", "hex", "base64"] = "utf-8"
    not_after: dt.datetime | None = None

    @field_validator("not_after")
    @classmethod
    def _zone(cls, value: dt.datetime | None) -> dt.datetime | None:
        return _aware(value)


class HmacAuth(_Model):
    """HMAC-SHA256 signed requests (the REST sink's contract), with a replay window."""

    keys: tuple[HmacKey, ...] = Field(min_length=1)
    max_skew: float = 300.0
    """Seconds a timestamp may differ from our clock; nonces are remembered this long (twice, to be safe)."""
    timestamp_header: str = TIMESTAMP_HEADER
    nonce_header: str = NONCE_HEADER
    signature_header: str = SIGNATURE_HEADER
    key_id_header: str = KEY_ID_HEADER

    @field_validator("max_skew", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 1 <= seconds <= 3600:
            raise ValueError("max_skew must be between 1 second and 1 hour")
        return seconds

    @model_validator(mode="after")
    def _unique_ids(self) -> HmacAuth:
        ids = [k.id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError(f"hmac key ids must be unique: {ids}")
        return self


class UsernameTokenAuth(_Model):
    """WS-Security UsernameToken with PasswordDigest (the password itself never crosses the wire)."""

    username: str = Field(min_length=1, max_length=128)
    password: SecretRef


class WsseAuth(_Model):
    """WS-Security checks on ``/soap/SYSTEM``; every part configured here is required."""

    username_token: UsernameTokenAuth | None = None
    certificates: tuple[ConfigPath, ...] = ()
    """PEM certificates whose keys may sign the Body and Timestamp (several while one replaces another)."""
    max_skew: float = 300.0

    @field_validator("max_skew", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        seconds = parse_duration(value)
        if not 1 <= seconds <= 3600:
            raise ValueError("max_skew must be between 1 second and 1 hour")
        return seconds

    @model_validator(mode="after")
    def _something(self) -> WsseAuth:
        if self.username_token is None and not self.certificates:
            raise ValueError("wsse needs username_token, certificates (for X.509 signatures), or both")
        return self


class CounterpartAuth(_Model):
    """How one push system authenticates (``[sources.NAME.auth]``)."""

    anonymous: bool = False
    client_certificate: ClientCertificateAuth | None = None
    tokens: tuple[TokenHash, ...] = ()
    hmac: HmacAuth | None = None
    wsse: WsseAuth | None = None

    @model_validator(mode="after")
    def _coherent(self) -> CounterpartAuth:
        methods = self.methods
        if self.anonymous and methods:
            raise ValueError(f"anonymous = true admits anyone; it cannot be combined with {', '.join(methods)}")
        if not self.anonymous and not methods:
            raise ValueError("configure at least one of client_certificate, tokens, hmac or wsse "
                             "(or anonymous = true, for development only)")
        hashes_ = [t.sha256 for t in self.tokens]
        if len(set(hashes_)) != len(hashes_):
            raise ValueError("the same token hash is listed twice")
        return self

    @property
    def methods(self) -> list[str]:
        out = []
        if self.client_certificate is not None:
            out.append("client_certificate")
        if self.tokens:
            out.append("tokens")
        if self.hmac is not None:
            out.append("hmac")
        if self.wsse is not None:
            out.append("wsse")
        return out

    @property
    def transport_methods(self) -> list[str]:
        """The methods a REST push (and a SOAP push, besides WS-Security) can use."""
        return [m for m in self.methods if m != "wsse"]


# --------------------------------------------------------------------------- what a request presents


@dataclass(frozen=True, slots=True)
class PeerCertificate:
    """The client certificate the TLS layer verified against ``client_ca``."""

    fingerprint: str  # SHA-256 of the DER, lowercase hex
    subject: x509.Name
    issuer: x509.Name
    not_after: dt.datetime

    @classmethod
    def from_der(cls, der: bytes) -> PeerCertificate:
        cert = x509.load_der_x509_certificate(der)
        return cls(cert.fingerprint(hashes.SHA256()).hex(), cert.subject, cert.issuer, cert.not_valid_after_utc)

    def describe(self) -> str:
        return f"{self.subject.rfc4514_string()} (SHA-256 {fingerprint_text(self.fingerprint)[:23]}…)"


@dataclass(frozen=True, slots=True)
class HmacHeaders:
    timestamp: str
    nonce: str
    signature: str
    key_id: str | None


@dataclass(frozen=True, slots=True)
class Presented:
    """The credentials one request carries, before any of them is checked."""

    method: str
    path_qs: str  # the raw request target, exactly as sent
    certificate: PeerCertificate | None = None
    bearer: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def hmac_headers(self, auth: HmacAuth | None) -> HmacHeaders | None:
        names = auth or HmacAuth.model_construct(keys=())
        signature = self.headers.get(names.signature_header)
        if signature is None:
            return None
        return HmacHeaders(self.headers.get(names.timestamp_header, ""), self.headers.get(names.nonce_header, ""),
                           signature, self.headers.get(names.key_id_header))

    @property
    def kinds(self) -> list[str]:
        found = []
        if self.certificate is not None:
            found.append("a client certificate")
        if self.bearer is not None:
            found.append("a bearer token")
        if SIGNATURE_HEADER in self.headers:
            found.append("an HMAC signature")
        return found


@dataclass(frozen=True, slots=True)
class Counterpart:
    """An authenticated push: which system, by which method, with which credential (safe to log)."""

    system: str
    method: str  # client_certificate | token | hmac | wsse | anonymous
    credential: str


class Refusal(Exception):
    """A push refused for who sent it; ``reason`` is a short code (metric label), ``message`` says what to do."""

    def __init__(self, status: int, reason: str, system: str, message: str, *, challenges: Iterable[str] = (),
                 credential: str | None = None, credential_system: str | None = None,
                 wsse_code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.system = system
        self.message = message
        self.challenges = list(challenges)
        self.credential = credential
        self.credential_system = credential_system
        self.wsse_code = wsse_code


# --------------------------------------------------------------------------- single-use values


class ReplayCache:
    """Values seen within a window (HMAC nonces, UsernameToken nonces, signature values): a second use is a replay.

    Bounded: when it is full of values still inside their window, new requests are refused
    rather than old values forgotten, because forgetting one would let it be replayed.
    """

    def __init__(self, ttl: float, max_entries: int = 200_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: dict[str, float] = {}
        self._lock = threading.Lock()
        self._inserts = 0

    def first_use(self, value: str) -> bool | None:
        """True the first time, False for a replay, None when the cache is full (refuse, do not record)."""
        now = self._clock()
        with self._lock:
            expiry = self._seen.get(value)
            if expiry is not None and expiry > now:
                return False
            self._inserts += 1
            if len(self._seen) >= self.max_entries or self._inserts % 10_000 == 0:
                self._seen = {k: e for k, e in self._seen.items() if e > now}
                if len(self._seen) >= self.max_entries:
                    return None
            self._seen[value] = now + self.ttl
            return True


@dataclass(frozen=True, slots=True)
class ReplayClaim:
    """A single-use value a push worker saw: which system's cache ("hmac" or "wsse") and the value."""

    cache: str
    system: str
    value: str


_CLAIMS: contextvars.ContextVar[list[ReplayClaim] | None] = contextvars.ContextVar("replay_claims", default=None)


class DeferredReplayCache:
    """A push worker's stand-in for a ``ReplayCache``: it notes each value for the current request and says
    "first use"; before the request is accepted the worker asks the gateway process, whose caches are the
    only ones (``PushCheck.settle_replays``). Outside a request that collects claims it refuses to answer."""

    def __init__(self, cache: str, system: str) -> None:
        self.cache = cache
        self.system = system

    def first_use(self, value: str) -> bool | None:
        claims = _CLAIMS.get()
        if claims is None:
            raise RuntimeError("a single-use value was checked outside a push that collects replay claims")
        claims.append(ReplayClaim(self.cache, self.system, value))
        return True


def collect_claims() -> None:
    """Start collecting the current request's replay claims (each request runs in a task of its own)."""
    _CLAIMS.set([])


def collected_claims() -> list[ReplayClaim]:
    """The current request's claims so far, and no more collecting for it."""
    claims = _CLAIMS.get() or []
    _CLAIMS.set([])
    return claims


# --------------------------------------------------------------------------- the check


def _decode_key(key: HmacKey, text: str) -> bytes:
    import base64
    import binascii

    try:
        if key.encoding == "hex":
            return bytes.fromhex(text)
        if key.encoding == "base64":
            return base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise SecretError(f"the HMAC key {key.id!r} in {key.secret.describe()} is not valid {key.encoding}: "
                          f"{exc}") from exc
    return text.encode("utf-8")


class _System:
    """One system's credentials, ready to check: secrets readable, nonces remembered."""

    def __init__(self, name: str, auth: CounterpartAuth | None) -> None:
        self.name = name
        self.auth = auth
        self.hmac_keys: list[tuple[HmacKey, SecretReader]] = []
        if auth is not None and auth.hmac is not None:
            for key in auth.hmac.keys:
                self.hmac_keys.append((key, SecretReader(key.secret, owner=f"sources.{name}.auth.hmac",
                                                         what=f"HMAC key {key.id!r}")))
        skew = auth.hmac.max_skew if auth is not None and auth.hmac is not None else 300.0
        self.nonces = ReplayCache(2 * skew)
        self.wsse: Any = None  # gateway.security.wsse.WsseVerifier, built by the guard when configured

    def challenges(self, *, soap: bool, error: str | None = None) -> list[str]:
        auth = self.auth
        realm = f'realm="exchange-gateway/{self.name}"'
        if auth is None:
            return []
        out = []
        if auth.tokens:
            extra = f', error="{error}"' if error else ""
            out.append(f"Bearer {realm}{extra}")
        if auth.hmac is not None:
            h = auth.hmac
            out.append(f'HMAC-SHA256 {realm}, headers="{h.timestamp_header} {h.nonce_header} '
                       f'{h.signature_header}"')
        if auth.client_certificate is not None:
            out.append(f"ClientCertificate {realm}")
        if soap and auth.wsse is not None:
            out.append(f"WS-Security {realm}")
        return out

    def hmac_key_bytes(self) -> list[tuple[HmacKey, bytes]]:
        return [(key, _decode_key(key, reader.value())) for key, reader in self.hmac_keys]


class CounterpartGuard:
    """Checks pushes against every push system's configured credentials.

    Built once when the API starts; safe to share between requests. ``clock`` is wall-clock
    seconds (timestamps and not_after are wall-clock facts).
    """

    def __init__(self, systems: Mapping[str, CounterpartAuth | None], *,
                 clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self.systems = {name: _System(name, auth) for name, auth in systems.items()}
        for sys in self.systems.values():
            if sys.auth is not None and sys.auth.wsse is not None:
                from gateway.security.wsse import WsseVerifier

                sys.wsse = WsseVerifier(sys.name, sys.auth.wsse)

    def read_secrets(self) -> list[str]:
        """Read every HMAC key and WS-Security password now; the problems, so start-up can refuse early."""
        problems = []
        for sys in self.systems.values():
            try:
                sys.hmac_key_bytes()
                if sys.wsse is not None:
                    sys.wsse.read_secrets()
            except SecretError as exc:
                problems.append(str(exc))
        return problems

    def auth_of(self, system: str) -> CounterpartAuth | None:
        entry = self.systems.get(system)
        return entry.auth if entry is not None else None

    def start(self, system: str, presented: Presented, *, soap: bool = False) -> PushCheck:
        """Check what can be checked before the body is read; raises Refusal."""
        check = PushCheck(self, self.systems[system], presented, soap)
        check.before_body()
        return check

    # ----------------------------------------------------------------- whose is this credential?

    def certificate_owner(self, cert: PeerCertificate, *, besides: str) -> str | None:
        for sys in self.systems.values():
            if sys.name != besides and sys.auth is not None and sys.auth.client_certificate is not None \
                    and sys.auth.client_certificate.matches(cert):
                return sys.name
        return None

    def token_owner(self, digest: str, *, besides: str) -> str | None:
        for sys in self.systems.values():
            if sys.name == besides or sys.auth is None:
                continue
            for token in sys.auth.tokens:
                if hmac.compare_digest(token.sha256, digest):
                    return sys.name
        return None

    def hmac_owner(self, canonical: bytes, signature: str, *, besides: str) -> str | None:
        for sys in self.systems.values():
            if sys.name == besides or not sys.hmac_keys:
                continue
            try:
                keys = sys.hmac_key_bytes()
            except SecretError:
                continue
            if any(signature_matches(secret, canonical, signature) for _, secret in keys):
                return sys.name
        return None


class PushCheck:
    """The check of one push, in the order the request arrives: headers, then body, then (SOAP) envelope."""

    def __init__(self, guard: CounterpartGuard, system: _System, presented: Presented, soap: bool) -> None:
        self.guard = guard
        self.sys = system
        self.presented = presented
        self.soap = soap
        self.passed: list[Counterpart] = []
        self._hmac: HmacHeaders | None = None
        self._wsse_pending = False

    @property
    def name(self) -> str:
        return self.sys.name

    def _refuse(self, status: int, reason: str, message: str, *, error: str | None = None,
                **kw: Any) -> Refusal:
        challenges = self.sys.challenges(soap=self.soap, error=error) if status == 401 else []
        return Refusal(status, reason, self.name, message, challenges=challenges, **kw)

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.guard.clock(), dt.UTC)

    def before_body(self) -> None:
        auth = self.sys.auth
        if auth is None:
            raise self._refuse(403, "not_configured", (
                f"system {self.name!r} accepts no pushes until its credentials are configured in gateway.toml "
                f"([sources.{self.name}.auth]: client_certificate, tokens, hmac or wsse; see docs/security.md)"))
        if auth.anonymous:
            self.passed.append(Counterpart(self.name, "anonymous", "anonymous (development setting)"))
            return
        self._certificate(auth)
        self._token(auth)
        self._hmac = self.presented.hmac_headers(auth.hmac)
        if self._hmac is None and auth.hmac is None:
            # Another system's HMAC headers (default names) are still a credential to judge.
            self._hmac = self.presented.hmac_headers(None)
        if self._hmac is not None:
            self._hmac_window(auth.hmac)
        self._wsse_pending = self.soap and auth.wsse is not None
        if not self.passed and self._hmac is None and not self._wsse_pending:
            self._missing(auth)

    def _missing(self, auth: CounterpartAuth) -> None:
        methods = auth.transport_methods if not self.soap else auth.methods
        if not methods:
            raise self._refuse(401, "missing_credentials", (
                f"system {self.name!r} authenticates with WS-Security only: push through /soap/{self.name}"))
        shown = ", ".join(self.presented.kinds) or "none"
        raise self._refuse(401, "missing_credentials", (
            f"system {self.name!r} must authenticate with {' or '.join(methods)}; "
            f"credentials presented: {shown}"))

    def _certificate(self, auth: CounterpartAuth) -> None:
        cert = self.presented.certificate
        if cert is None:
            return
        binding = auth.client_certificate
        if binding is not None and binding.matches(cert):
            self.passed.append(Counterpart(self.name, "client_certificate", f"SHA-256 {cert.fingerprint[:16]}"))
            return
        owner = self.guard.certificate_owner(cert, besides=self.name)
        if owner is not None:
            raise self._refuse(403, "credential_of_other_system", (
                f"the client certificate {cert.describe()} belongs to system {owner!r}; it cannot push as "
                f"{self.name!r}"), credential=f"SHA-256 {cert.fingerprint}", credential_system=owner)
        if binding is not None:
            raise self._refuse(403, "certificate_not_bound", (
                f"the client certificate {cert.describe()} is not bound to system {self.name!r} "
                f"(sources.{self.name}.auth.client_certificate)"), credential=f"SHA-256 {cert.fingerprint}")

    def _token(self, auth: CounterpartAuth) -> None:
        token = self.presented.bearer
        if token is None:
            return
        digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
        for entry in auth.tokens:
            if hmac.compare_digest(entry.sha256, digest):
                if entry.not_after is not None and self._now() > entry.not_after:
                    raise self._refuse(401, "expired_token", (
                        f"the token {entry.name} of system {self.name!r} expired at "
                        f"{entry.not_after.isoformat()}; use its replacement"), error="invalid_token",
                        credential=entry.name)
                self.passed.append(Counterpart(self.name, "token", entry.name))
                return
        owner = self.guard.token_owner(digest, besides=self.name)
        if owner is not None:
            raise self._refuse(403, "credential_of_other_system", (
                f"the bearer token belongs to system {owner!r}; it cannot push as {self.name!r}"),
                credential=f"token sha256:{digest[:12]}", credential_system=owner)
        if auth.tokens:
            raise self._refuse(401, "invalid_token", f"the bearer token is not a token of system {self.name!r}",
                               error="invalid_token")

    def _hmac_window(self, config: HmacAuth | None) -> None:
        assert self._hmac is not None
        skew = config.max_skew if config is not None else 300.0
        ts = self._hmac.timestamp
        if not ts.isdigit() or len(ts) > 12:
            raise self._refuse(401, "stale_timestamp", (
                f"the HMAC timestamp {ts[:20]!r} is not whole Unix seconds"))
        if abs(self.guard.clock() - int(ts)) > skew:
            raise self._refuse(401, "stale_timestamp", (
                f"the HMAC timestamp {ts} is more than {skew:g}s from the gateway's clock; sign each request "
                "when it is sent and keep clocks synchronised (NTP)"))
        nonce = self._hmac.nonce
        if not 16 <= len(nonce) <= 128 or not nonce.isascii() or not nonce.isprintable():
            raise self._refuse(401, "invalid_signature", "the HMAC nonce must be 16 to 128 printable characters")

    @property
    def needs_body(self) -> bool:
        return self._hmac is not None

    def after_body(self, body: bytes) -> None:
        """The HMAC signature over method, path, timestamp, nonce and the body."""
        h = self._hmac
        if h is None:
            return
        canonical = canonical_string(self.presented.method, self.presented.path_qs, h.timestamp, h.nonce, body)
        try:
            keys = self.sys.hmac_key_bytes()
        except SecretError as exc:
            raise self._refuse(401, "unknown_key", f"the gateway cannot read its HMAC key for {self.name!r}: {exc}"
                               ) from None
        candidates = [(k, s) for k, s in keys if h.key_id is None or k.id == h.key_id]
        for key, secret in candidates:
            if not signature_matches(secret, canonical, h.signature):
                continue
            if key.not_after is not None and self._now() > key.not_after:
                raise self._refuse(401, "expired_key", (
                    f"HMAC key {key.id!r} of system {self.name!r} expired at {key.not_after.isoformat()}; "
                    "sign with its replacement"), credential=f"key {key.id}")
            refusal = self._nonce_refusal(self.sys.nonces.first_use(h.nonce), f"key {key.id}")
            if refusal is not None:
                raise refusal
            self.passed.append(Counterpart(self.name, "hmac", f"key {key.id}"))
            return
        owner = self.guard.hmac_owner(canonical, h.signature, besides=self.name)
        if owner is not None:
            raise self._refuse(403, "credential_of_other_system", (
                f"the request is signed with an HMAC key of system {owner!r}; it cannot push as {self.name!r}"),
                credential=f"key {h.key_id}" if h.key_id else None, credential_system=owner)
        if h.key_id is not None and not candidates:
            raise self._refuse(401, "unknown_key", (
                f"system {self.name!r} has no HMAC key {h.key_id!r} (configured: "
                f"{', '.join(k.id for k, _ in keys) or 'none'})"), credential=f"key {h.key_id}")
        raise self._refuse(401, "invalid_signature", (
            "the HMAC signature does not match the canonical request (METHOD, path and query as sent, "
            "timestamp, nonce, SHA-256 of the body: see adapters/rest/README.md, 'Signed requests')"))

    def _nonce_refusal(self, first: bool | None, credential: str) -> Refusal | None:
        """What the replay cache's answer (see ``ReplayCache.first_use``) for this request's HMAC nonce means."""
        assert self._hmac is not None
        if first is None:
            return self._refuse(401, "replay_cache_full", (
                "too many signed requests within the replay window to remember their nonces; send again "
                "shortly"), credential=credential)
        if not first:
            return self._refuse(401, "replayed", (
                f"the HMAC nonce {self._hmac.nonce[:32]!r} was already used within the replay window: a replayed "
                "request; sign every request with a fresh nonce"), credential=credential)
        return None

    def settle_replays(self, claims: Sequence[ReplayClaim], verdicts: Sequence[bool | None]) -> None:
        """Raise the refusal of the first single-use value another process's cache has seen (a push worker asks
        the gateway process, which holds the one cache per system: ``DeferredReplayCache``)."""
        for claim, first in zip(claims, verdicts, strict=True):
            if first:
                continue
            if claim.cache == "hmac":
                hmac_pass = [c for c in self.passed if c.method == "hmac"]
                refusal = self._nonce_refusal(first, hmac_pass[0].credential if hmac_pass else "")
                assert refusal is not None
                raise refusal
            from gateway.security.wsse import replay_failure

            failure = replay_failure(first, claim.value)
            raise self._refuse(401, failure.reason, failure.message, wsse_code=failure.code)

    def envelope(self, root: Any) -> None:
        """WS-Security of a SOAP envelope, when the system requires it."""
        if not self._wsse_pending:
            return
        from gateway.security.wsse import WsseFailure

        try:
            who = self.sys.wsse.verify(root, self.guard.clock())
        except WsseFailure as exc:
            owner = self._wsse_owner(root) if exc.reason == "wsse_invalid" else None
            if owner is not None:
                raise self._refuse(403, "credential_of_other_system", (
                    f"the WS-Security credential belongs to system {owner!r}; it cannot push as {self.name!r}"),
                    credential_system=owner, wsse_code="FailedAuthentication") from None
            raise self._refuse(401, exc.reason, exc.message, wsse_code=exc.code) from None
        self.passed.append(Counterpart(self.name, "wsse", who))

    def _wsse_owner(self, root: Any) -> str | None:
        for sys in self.guard.systems.values():
            if sys.name != self.name and sys.wsse is not None and sys.wsse.would_accept(root, self.guard.clock()):
                return sys.name
        return None

    def result(self) -> Counterpart:
        """The authenticated counterpart once every stage passed; raises Refusal if nothing did."""
        if not self.passed:
            assert self.sys.auth is not None
            self._missing(self.sys.auth)
        return self.passed[0]


def push_auth_options(options: Any) -> tuple[CounterpartAuth | None, tuple[str, ...] | None]:
    """``auth`` and ``kinds`` of a push source's validated options (the push plugin's model, or a dict)."""
    if isinstance(options, Mapping):
        auth, kinds = options.get("auth"), options.get("kinds")
    else:
        auth, kinds = getattr(options, "auth", None), getattr(options, "kinds", None)
    if auth is not None and not isinstance(auth, CounterpartAuth):
        auth = CounterpartAuth.model_validate(auth if isinstance(auth, Mapping) else auth.model_dump())
    return auth, (tuple(kinds) if kinds is not None else None)


def token_digest(token: str) -> str:
    """What ``tokens[].sha256`` holds for a token."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_bindings(auths: Mapping[str, CounterpartAuth | None]) -> list[str]:
    """Configuration problems between systems: one credential bound to two of them would make identities ambiguous."""
    problems: list[str] = []
    seen_fp: dict[str, str] = {}
    seen_subject: dict[str, str] = {}
    seen_token: dict[str, str] = {}
    for name, auth in auths.items():
        if auth is None:
            continue
        cc = auth.client_certificate
        if cc is not None:
            for fp in cc.fingerprints:
                if fp in seen_fp:
                    problems.append(f"sources.{name}.auth.client_certificate: fingerprint {fingerprint_text(fp)[:23]}… "
                                    f"is also bound to system {seen_fp[fp]!r}")
                seen_fp.setdefault(fp, name)
            if cc.subject is not None and not cc.fingerprints:
                key = f"{cc.subject}|{cc.issuer}"
                if key in seen_subject:
                    problems.append(f"sources.{name}.auth.client_certificate: subject {cc.subject!r} is also bound "
                                    f"to system {seen_subject[key]!r}; bind by fingerprint or use distinct subjects")
                seen_subject.setdefault(key, name)
        for token in auth.tokens:
            if token.sha256 in seen_token:
                problems.append(f"sources.{name}.auth.tokens: token {token.name} is also a token of system "
                                f"{seen_token[token.sha256]!r}")
            seen_token.setdefault(token.sha256, name)
    return problems
