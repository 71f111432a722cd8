"""gateway.toml → typed, validated configuration, with errors a person can act on.

Relative paths in the file resolve against the folder that holds the file, so a
gateway directory can be moved or inspected as a unit. Secrets never live here:
adapters take the *name* of an environment variable or a file that holds them.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.durations import Duration, parse_duration, refuse_both_names, renamed
from gateway.exchange.config import ExchangeSection
from gateway.observability.settings import LoggingSection, MetricsSection

__all__ = ["ConfigError", "GatewayConfig", "config_from_dict", "load_config", "parse_duration"]

_NAME = re.compile(r"^[a-z][a-z0-9_\-]{0,62}$")


class ConfigError(Exception):
    """A configuration problem; ``problems`` lists each one as 'where: what'."""

    def __init__(self, path: Path | str, problems: list[str]) -> None:
        self.path = str(path)
        self.problems = problems
        super().__init__(f"{path}:\n" + "\n".join(f"  - {p}" for p in problems))


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _one_name(cls, data: Any) -> Any:
        return refuse_both_names(cls, data)


class GatewaySection(_Model):
    name: str = "gateway"
    store: str = "sqlite:///gateway.db"
    adapters: list[str] | None = None  # allow-list of adapter plugins; None = every installed one
    audit_hash: str = "sha256"
    certs_dir: str = "certs"

    @field_validator("audit_hash")
    @classmethod
    def _hash(cls, v: str) -> str:
        if v not in ("sha256", "sm3"):
            raise ValueError("audit_hash must be sha256 or sm3")
        return v


class DeliverySection(_Model):
    """Retries, the circuit breaker and pacing of every destination (docs/deliveries.md); sinks may override some."""

    max_age: Duration = 7 * 86400.0  # retryable failures are retried until a delivery is this old
    permanent_attempts: int = Field(1, ge=1, le=1000)  # attempts of a record the counterpart refuses as it is
    # Deprecated: a cap on every attempt, retryable ones too (an outage became dead letters). Still
    # honoured when set, and `gateway check` warns; leave it out to retry until max_age.
    max_attempts: int | None = Field(None, ge=1)
    backoff_initial: Duration = Field(1.0, gt=0)
    backoff_max: Duration = Field(300.0, gt=0)
    lease_seconds: Duration = renamed(60.0, "lease", "lease_seconds", gt=0)
    concurrency: int = Field(8, ge=1, le=256)
    rate: float | None = Field(None, gt=0)  # sends per second to each destination; none: no limit
    poll_interval: Duration = Field(1.0, gt=0)
    circuit_failures: int = Field(5, ge=1, le=100_000)  # failures in a row that open a destination's circuit
    probe_initial: Duration = Field(2.0, gt=0)  # first probe after the circuit opened; doubles per failed probe
    probe_max: Duration = Field(10.0, gt=0)  # one request per 10 s does not hammer; recovery seen within it

    @model_validator(mode="after")
    def _probes(self) -> DeliverySection:
        if self.probe_max < self.probe_initial:
            raise ValueError("delivery.probe_max is shorter than delivery.probe_initial")
        return self


def _default_api_host() -> str:
    """Loopback, unless the environment says otherwise: the container image sets GATEWAY_API_HOST=0.0.0.0
    (docs/container.md). A host written in gateway.toml always wins."""
    return os.environ.get("GATEWAY_API_HOST", "").strip() or "127.0.0.1"


class ApiSection(_Model):
    enabled: bool = True
    host: str = Field(default_factory=_default_api_host)
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024)
    tls_cert: str | None = None  # PEM certificate (chain) of the API; with tls_key, the API speaks HTTPS
    tls_key: str | None = None
    client_ca: str | None = None  # with it, clients present a certificate this CA issued (mutual TLS)
    # required: no certificate, no connection; optional: verified when presented (token/HMAC systems need none)
    client_certificates: Literal["required", "optional"] = "required"
    # People (gateway.security): reverse proxies whose X-Forwarded-For / -Proto count (addresses or
    # networks; none by default, loopback included), and console session timeouts.
    trusted_proxies: list[str] = Field(default_factory=list)
    session_idle: float = Field(1800.0, gt=0)
    session_lifetime: float = Field(12 * 3600.0, gt=0)
    # Push workers (gateway.api.push_workers): processes of their own that serve the push endpoints on push_port
    # and hand what they prepared to this process, which commits it; 0: pushes are served on the API port only.
    push_workers: int = Field(0, ge=0, le=16)
    push_port: int | None = Field(None, ge=0, le=65535)  # the push workers' port: same host and TLS as the API

    @field_validator("session_idle", "session_lifetime", mode="before")
    @classmethod
    def _durations(cls, v: Any) -> float:
        return parse_duration(v)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, v: list[str]) -> list[str]:
        from gateway.security.forwarded import parse_networks

        parse_networks(v)  # raises ValueError naming the entry
        return v

    @model_validator(mode="after")
    def _tls(self) -> ApiSection:
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("api.tls_cert and api.tls_key go together")
        if self.client_ca and not self.tls_cert:
            raise ValueError("api.client_ca needs tls_cert and tls_key: mutual TLS is TLS first")
        if self.session_idle > self.session_lifetime:
            raise ValueError("api.session_idle is longer than api.session_lifetime")
        if self.push_workers and not self.enabled:
            raise ValueError("api.push_workers needs [api] enabled = true: the workers serve the API's push endpoints")
        if self.push_workers and self.push_port is None:
            raise ValueError("api.push_workers needs api.push_port: the port the push workers listen on")
        if self.push_port is not None and not self.push_workers:
            raise ValueError("api.push_port is set but api.push_workers is 0: nothing would listen on it")
        if self.push_port is not None and self.push_port != 0 and self.push_port == self.port:
            raise ValueError(f"api.push_port = {self.push_port} is the API's own port; the push workers need a "
                             "port of their own")
        return self


class SupervisionSection(_Model):
    enabled: bool = True
    tick_interval: Duration = 300.0
    calendar_override: str | None = None
    destinations: list[str] = Field(default_factory=list)  # where alerts go, besides what routes say
    rules: dict[str, Any] = Field(default_factory=dict)  # thresholds: gateway.supervision.SupervisionConfig


class AuditSection(_Model):
    """Seals over the audit hash chain, and where archives go."""

    seal: bool = True
    seal_every_entries: int = Field(10_000, ge=1)
    seal_every_seconds: Duration = renamed(300.0, "seal_every", "seal_every_seconds")
    signer: str = "local"  # local (the key in [gateway].certs_dir, created on first start) | external
    signer_url: str | None = None  # external: the signing service; its bearer token from $GATEWAY_SIGNER_TOKEN
    signer_certificate: str | None = None  # external: the service's certificate (PEM), pinned
    archives_dir: str = "archives"
    # The seal witness: every seal made and signed is appended here, outside the store, so
    # `gateway audit verify` can prove nothing sealed was cut off or rewritten. Keep it on
    # another disk or host than the store (docs/audit-verification.md). "" turns it off.
    witness: str = "audit-witness.jsonl"
    witness_destinations: list[str] = Field(default_factory=list)  # sinks that receive each signed seal

    @model_validator(mode="after")
    def _external(self) -> AuditSection:
        if self.signer == "external" and not (self.signer_url and self.signer_certificate):
            raise ValueError("audit.signer = 'external' needs signer_url and signer_certificate")
        return self


class KeyringRef(_Model):
    """Where the encryption keyring is: exactly one of a file (mode 0600) or an environment variable."""

    file: str | None = None
    env: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> KeyringRef:
        if (self.file is None) == (self.env is None):
            raise ValueError("name exactly one of 'file' (a path) or 'env' (an environment variable)")
        return self


class EncryptionSection(_Model):
    """Encryption at rest of personal fields in stored records (gateway.security.fieldcrypt)."""

    enabled: bool = False
    algorithm: Literal["aes-256-gcm", "sm4-gcm"] = "aes-256-gcm"
    keys: KeyringRef | None = None
    active_key: str | None = None  # default: the last key of the keyring

    @model_validator(mode="after")
    def _keys(self) -> EncryptionSection:
        if self.enabled and self.keys is None:
            raise ValueError("encryption.enabled needs keys = { file = \"…\" } or { env = \"…\" }")
        return self


class SourceSection(BaseModel):
    """A counterpart we receive from: core keys here, the rest belongs to the adapter.

    ``input`` overrides reader options of the mapping's input block for this source
    (``{encoding = "utf-8-sig", delimiter = ";"}``); ``on_invalid`` lays this source's
    accept-with-finding policy over the mapping's.  Both are checked against the
    mapping when the gateway is built (gateway.formats._options, gateway.mapping._policy).
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    adapter: str
    mapping: str
    enabled: bool = True
    input: dict[str, Any] = Field(default_factory=dict)
    on_invalid: dict[str, Any] = Field(default_factory=dict)

    def adapter_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SinkSection(BaseModel):
    """A counterpart we deliver to: core keys here, the rest belongs to the adapter."""

    model_config = ConfigDict(extra="allow", frozen=True)
    adapter: str
    mapping: str
    enabled: bool = True
    concurrency: int | None = Field(None, ge=1, le=256)
    rate: float | None = Field(None, gt=0)  # sends per second; over [delivery] rate
    permanent_attempts: int | None = Field(None, ge=1, le=1000)
    max_attempts: int | None = Field(None, ge=1)  # deprecated, as [delivery] max_attempts

    def adapter_options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RouteSection(_Model):
    name: str
    to: list[str] = Field(min_length=1)
    kinds: list[str] | None = None
    sources: list[str] | None = None
    items: list[str] | None = None  # 事项编码 prefixes
    regions: list[str] | None = None  # 行政区划代码 prefixes
    item_types: list[str] | None = None  # 事项类型 codes (01 行政许可 …), exactly
    license_categories: list[str] | None = None  # 许可类别 (普通, 特许, 认可, 核准, 登记, 其他), exactly


class GatewayConfig(_Model):
    gateway: GatewaySection = GatewaySection()
    delivery: DeliverySection = DeliverySection()
    api: ApiSection = Field(default_factory=ApiSection)  # read at load: its host default comes from the environment
    supervision: SupervisionSection = SupervisionSection()
    audit: AuditSection = AuditSection()
    encryption: EncryptionSection = EncryptionSection()
    exchange: ExchangeSection = ExchangeSection()  # two-way exchange: gateway/exchange/config.py
    logging: LoggingSection = LoggingSection()  # operations: docs/operations.md
    metrics: MetricsSection = MetricsSection()
    sources: dict[str, SourceSection] = Field(default_factory=dict)
    sinks: dict[str, SinkSection] = Field(default_factory=dict)
    routes: list[RouteSection] = Field(default_factory=list)
    base_dir: Path = Path(".")
    path: Path | None = None

    @model_validator(mode="after")
    def _cross_checks(self) -> GatewayConfig:
        problems = []
        for section, names in (("sources", self.sources), ("sinks", self.sinks)):
            for name in names:
                if not _NAME.match(name):
                    problems.append(f"{section}.{name}: system names are lower-case letters, digits, _ and -")
        for i, route in enumerate(self.routes):
            for dest in route.to:
                if dest not in self.sinks:
                    problems.append(f"routes[{i}] ({route.name}): destination {dest!r} is not a configured sink")
            for src in route.sources or ():
                if src not in self.sources and src not in ("supervision", "exchange"):
                    problems.append(f"routes[{i}] ({route.name}): source {src!r} is not a configured source "
                                    "(nor 'supervision', the source of alerts, nor 'exchange', the source of "
                                    "the combined results of 并联审批)")
        for dest in self.supervision.destinations:
            if dest not in self.sinks:
                problems.append(f"supervision.destinations: {dest!r} is not a configured sink")
        for dest in self.audit.witness_destinations:
            if dest not in self.sinks:
                problems.append(f"audit.witness_destinations: {dest!r} is not a configured sink")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p


def _format_validation(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        out.append(f"{where}: {msg}")
    return out


def load_config(path: str | Path) -> GatewayConfig:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(path, ["file not found (pass -c PATH or set GATEWAY_CONFIG)"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    return config_from_dict(raw, base_dir=path.resolve().parent, path=path)


def config_from_dict(raw: dict[str, Any], *, base_dir: Path, path: Path | str = "<config>") -> GatewayConfig:
    try:
        return GatewayConfig.model_validate({**raw, "base_dir": base_dir, "path": Path(path)})
    except ValidationError as exc:
        raise ConfigError(path, _format_validation(exc)) from None
