"""Configuration models of the SOAP adapter: connection, security, pull and push settings.

Everything a counterpart needs is declared here and validated once, when the
gateway loads its configuration. Secrets are never values in the configuration:
a :class:`SecretRef` names an environment variable or a file that holds them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from gateway.adapters import AdapterConfig, ConfigFacts, ConfigPath, Duration, renamed

from ._template import TemplateError, placeholders_in, split_path

BUILTIN_WSDL_DIR = Path(__file__).parent / "wsdl"
"""WSDLs shipped with the adapter; name one in the configuration as ``builtin:<file>``."""

PULL_PLACEHOLDERS = frozenset({"cursor", "page", "page_size", "token", "correlation_id"})
PUSH_PLACEHOLDERS = frozenset(
    {"idempotency_key", "delivery_id", "destination", "kind", "record_key", "case_no", "attempt", "correlation_id"}
)




class SecretError(ValueError):
    """A secret named in the configuration could not be read."""


class SecretRef(AdapterConfig):
    """Where a secret lives: ``{env = "NAME"}`` or ``{file = "/run/secrets/name"}`` (exactly one)."""

    env: str | None = None
    file: ConfigPath | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference needs exactly one of 'env' (variable name) or 'file' (path)")
        return self

    def resolve(self, what: str) -> str:
        """The secret's value; ``what`` names the system and field for the error message."""
        if self.env is not None:
            value = os.environ.get(self.env)
            if value is None:
                raise SecretError(f"{what}: environment variable {self.env} is not set")
            return value
        assert self.file is not None
        try:
            # A trailing newline is an artefact of how secret files are written, not part of the secret.
            return self.file.read_text(encoding="utf-8").rstrip("\r\n")
        except OSError as exc:
            raise SecretError(f"{what}: cannot read secret file {self.file}: {exc.strerror}") from exc


def _existing_file(value: Path | None, field: str) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"{field}: file {value} does not exist")
    return value


class Timeouts(AdapterConfig):
    """Durations ("5s"). zeep sets no operation timeout by default; this adapter always does."""

    connect: Duration = Field(5.0, gt=0)
    read: Duration = Field(30.0, gt=0)
    write: Duration = Field(30.0, gt=0)
    pool: Duration = Field(5.0, gt=0)
    total: Duration = Field(60.0, gt=0, description="deadline for one whole SOAP call, however slowly bytes trickle")
    wsdl_load: Duration = Field(30.0, gt=0, description="deadline for loading the WSDL and its schemas at start")


class TlsSettings(AdapterConfig):
    """Server verification and the client certificate for mutual TLS."""

    ca_file: ConfigPath | None = None  # trust anchors for the server; the system store when absent
    client_cert_file: ConfigPath | None = None
    client_key_file: ConfigPath | None = None
    client_key_passphrase: SecretRef | None = None
    check_hostname: bool = True
    minimum_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"

    @model_validator(mode="after")
    def _files(self) -> TlsSettings:
        _existing_file(self.ca_file, "tls.ca_file")
        _existing_file(self.client_cert_file, "tls.client_cert_file")
        _existing_file(self.client_key_file, "tls.client_key_file")
        if self.client_key_file is not None and self.client_cert_file is None:
            raise ValueError("tls.client_key_file is set but tls.client_cert_file is not")
        return self


class UsernameTokenSettings(AdapterConfig):
    username: str
    password: SecretRef
    digest: bool = True  # PasswordDigest; plain text only for counterparts that cannot do better


class SignatureSettings(AdapterConfig):
    """X.509 signature of the Body (and Timestamp, UsernameToken when present)."""

    key_file: ConfigPath
    cert_file: ConfigPath
    key_passphrase: SecretRef | None = None
    # zeep's default is RSA-SHA1 with SHA-1 digests; both are refused by current policy.
    signature_method: Literal["rsa-sha256", "rsa-sha384", "rsa-sha512"] = "rsa-sha256"
    digest_method: Literal["sha256", "sha384", "sha512"] = "sha256"
    key_reference: Literal["binary_security_token", "issuer_serial"] = "binary_security_token"

    @model_validator(mode="after")
    def _files(self) -> SignatureSettings:
        _existing_file(self.key_file, "wsse.signature.key_file")
        _existing_file(self.cert_file, "wsse.signature.cert_file")
        return self


class WsseSettings(AdapterConfig):
    username_token: UsernameTokenSettings | None = None
    signature: SignatureSettings | None = None
    timestamp_ttl: Duration | None = renamed(300.0, "timestamp_ttl", "timestamp_ttl_seconds", ge=1,
                                              description="adds a wsu:Timestamp valid this long; null leaves it out")
    # The counterpart's signing certificate: when set, every response must carry a valid signature by it.
    verify_response_cert: ConfigPath | None = None

    @field_validator("verify_response_cert")
    @classmethod
    def _cert_exists(cls, value: Path | None) -> Path | None:
        return _existing_file(value, "wsse.verify_response_cert")


class FaultPolicy(AdapterConfig):
    """Overrides for classifying SOAP fault codes (local names; ``Client`` also matches ``Client.X``)."""

    permanent_codes: list[str] = []
    retryable_codes: list[str] = []

    @model_validator(mode="after")
    def _disjoint(self) -> FaultPolicy:
        both = sorted(set(self.permanent_codes) & set(self.retryable_codes))
        if both:
            raise ValueError(f"fault codes {both} are listed as both permanent and retryable")
        return self


class SoapConnection(AdapterConfig):
    """How to reach one SOAP counterpart: WSDL, endpoint, timeouts, TLS and WS-Security."""

    wsdl: str = Field(description="local WSDL file, or builtin:<name> for a WSDL shipped with the adapter")
    service: str | None = None  # WSDL service name; the first one when absent
    port: str | None = None  # port within the service; the first one when absent
    endpoint: str | None = None  # overrides the WSDL's soap:address (tests point it at 127.0.0.1:PORT)
    timeouts: Timeouts = Timeouts()
    tls: TlsSettings | None = None
    wsse: WsseSettings | None = None
    http_headers: dict[str, str] = {}
    # Every call carries the correlation id of its page request or delivered record in this HTTP
    # header; a SOAP header can carry it too: the {correlation_id} placeholder in soap_headers.
    correlation_header: str = "X-Correlation-Id"
    max_connections: int = Field(10, ge=1)
    faults: FaultPolicy = FaultPolicy()

    @field_validator("wsdl")
    @classmethod
    def _local_wsdl(cls, value: str, info: ValidationInfo) -> str:
        if "://" in value:
            raise ValueError(
                f"wsdl {value!r} is a URL; the SOAP adapter loads WSDLs only from local files "
                "(save the WSDL and its XSDs next to each other and name the file)"
            )
        if not value.startswith("builtin:"):
            path = Path(value).expanduser()
            base = (info.context or {}).get("base_dir")
            if base is not None and not path.is_absolute():
                path = Path(base) / path
            value = str(path)
        path = wsdl_path(value)
        if not path.is_file():
            raise ValueError(f"wsdl file {path} does not exist")
        return value

    @field_validator("endpoint")
    @classmethod
    def _endpoint_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"endpoint {value!r} must be an http:// or https:// URL")
        return value

    def wsdl_file(self) -> Path:
        return wsdl_path(self.wsdl)


def wsdl_path(value: str) -> Path:
    if value.startswith("builtin:"):
        return BUILTIN_WSDL_DIR / value.removeprefix("builtin:")
    return Path(value).expanduser()


class CallSettings(AdapterConfig):
    """One operation call: the request template and where the business body goes."""

    operation: str
    soap_headers: dict[str, Any] = {}  # header element → value template; "{ns}name" keys for undeclared headers
    request: dict[str, Any] = {}  # operation arguments (template)
    body_at: str | None = None  # where the body goes in the request; merged into the arguments when absent
    body_as: Literal["object", "xml"] = "object"  # "xml": rendered as an XML document string (exchange Body)
    xml_root: str | None = None  # wraps the body's fields when rendered as XML
    response_xml_at: str | None = None  # a response string field holding an XML document to read results from

    allowed_placeholders: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="after")
    def _templates(self) -> CallSettings:
        allowed = self.allowed_placeholders
        for section in ("soap_headers", "request"):
            for where, name in placeholders_in(getattr(self, section)):
                if name not in allowed:
                    raise ValueError(
                        f"{section}.{where}: unknown placeholder {{{name}}} (allowed: {', '.join(sorted(allowed))})"
                    )
        keys = list(self.soap_headers)
        clark = [key.startswith("{") for key in keys]
        if any(clark) and not all(clark):
            raise ValueError(
                "soap_headers: use either plain names (headers declared in the WSDL) or "
                "'{namespace}name' keys (undeclared headers), not both"
            )
        for name in ("body_at", "response_xml_at"):
            value = getattr(self, name)
            if value is not None:
                try:
                    split_path(value)
                except TemplateError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        return self


class PageNumberPaging(AdapterConfig):
    mode: Literal["page"] = "page"
    first_page: int = 1
    page_size: int = Field(100, ge=1)
    has_more_path: str | None = None  # a boolean in the response; without it a short page ends the run


class TokenPaging(AdapterConfig):
    mode: Literal["token"] = "token"
    page_size: int = Field(100, ge=1)
    next_token_path: str  # the continuation token in the response; empty or absent ends the run


class NoPaging(AdapterConfig):
    mode: Literal["none"] = "none"
    page_size: int = Field(100, ge=1)


Paging = Annotated[PageNumberPaging | TokenPaging | NoPaging, Field(discriminator="mode")]


class PullSettings(CallSettings):
    """Scheduled pull: which operation, how to page, where the items and the watermark are."""

    allowed_placeholders: ClassVar[frozenset[str]] = PULL_PLACEHOLDERS

    query: dict[str, Any] = {}  # the body of a pull request (template); placed per body_at/body_as
    items_path: str  # path to the item list in the response
    paging: Paging = NoPaging()
    watermark_field: str | None = None  # path inside an item, e.g. a modification time
    watermark_type: Literal["string", "integer"] = "string"  # strings compare as text: use fixed-width formats
    initial_cursor: str | None = None  # the watermark to start from when none is stored yet
    cursor_name: str | None = None  # defaults to "soap:<system>:<operation>"
    # Items arrive in ascending watermark order, so each page may advance the stored cursor.
    # When false the cursor advances only after the last page of a run.
    items_sorted_by_watermark: bool = True
    poll_interval: Duration = renamed(60.0, "poll_interval", "interval_seconds", gt=0)
    page_attempts: int = Field(3, ge=1)  # tries per page for retryable failures before the run is abandoned
    max_pages_per_run: int = Field(10_000, ge=1)

    @model_validator(mode="after")
    def _pull_templates(self) -> PullSettings:
        for where, name in placeholders_in(self.query):
            if name not in PULL_PLACEHOLDERS:
                raise ValueError(
                    f"query.{where}: unknown placeholder {{{name}}} (allowed: {', '.join(sorted(PULL_PLACEHOLDERS))})"
                )
        for name in ("items_path", "watermark_field"):
            value = getattr(self, name)
            if value is not None:
                try:
                    split_path(value)
                except TemplateError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        if self.initial_cursor is not None and self.watermark_type == "integer":
            try:
                int(self.initial_cursor)
            except ValueError:
                raise ValueError(f"initial_cursor {self.initial_cursor!r} is not an integer") from None
        return self

    def effective_cursor_name(self, system: str) -> str:
        return self.cursor_name or f"soap:{system}:{self.operation}"

    def legacy_cursor_name(self) -> str | None:
        """The default name older releases stored the watermark under (without the system), if it applies."""
        return None if self.cursor_name else f"soap:{self.operation}"


class PushSettings(CallSettings):
    """Delivery: the operation, where Delivery.body goes, and how to read the response."""

    allowed_placeholders: ClassVar[frozenset[str]] = PUSH_PLACEHOLDERS

    remote_id_path: str | None = None  # e.g. "RESULT.DATA.RECEIPTNO"
    status_path: str | None = None  # e.g. "RESULT.STATUS"; no check when absent
    success_values: list[str] = ["0"]
    retryable_status_values: list[str] = []  # statuses meaning "busy, try later"; others are refusals
    message_path: str | None = None  # e.g. "RESULT.DESC", kept in the receipt or the error

    @model_validator(mode="after")
    def _paths(self) -> PushSettings:
        for name in ("remote_id_path", "status_path", "message_path"):
            value = getattr(self, name)
            if value is not None:
                try:
                    split_path(value)
                except TemplateError as exc:
                    raise ValueError(f"{name}: {exc}") from exc
        return self


RECONCILE_PLACEHOLDERS = frozenset({"start", "end", "counterpart"})
RESEND_PLACEHOLDERS = frozenset({"start", "end", "counterpart", "entries"})


class ManifestFields(AdapterConfig):
    """Element names inside one manifest item (and inside one entry of a resend request)."""

    key: str = "KEY"
    digest: str = "DIGEST"
    at: str = "AT"
    kind: str = "KIND"
    version: str = "VERSION"


class ResendSettings(CallSettings):
    """Asking the counterpart to send again: ``{entries}`` is the list of {kind, key, version} (named by ``fields``)."""

    allowed_placeholders: ClassVar[frozenset[str]] = RESEND_PLACEHOLDERS

    query: dict[str, Any] = {}
    status_path: str | None = None
    success_values: list[str] = ["0"]
    message_path: str | None = None


class ReconcileSettings(CallSettings):
    """Reconciliation (对账): the call that answers a manifest, and where its parts are in the answer.

    ``query`` is the body of the request (``{start}``, ``{end}``: ISO 8601 China time); the answer
    lists what the counterpart received (``received_path``: items with key, digest, at) and sent
    (``sent_path``: items with kind, key, version, at), in the gateway's manifest contract
    (docs/exchange.md).
    """

    allowed_placeholders: ClassVar[frozenset[str]] = RECONCILE_PLACEHOLDERS

    query: dict[str, Any] = {}
    status_path: str | None = None
    success_values: list[str] = ["0"]
    message_path: str | None = None
    received_path: str | None = None
    sent_path: str | None = None
    can_resend_path: str | None = None  # a boolean ("true"/"1") in the answer
    fields: ManifestFields = ManifestFields()
    resend: ResendSettings | None = None

    @model_validator(mode="after")
    def _reconcile_templates(self) -> ReconcileSettings:
        for where, name in placeholders_in(self.query):
            if name not in RECONCILE_PLACEHOLDERS:
                raise ValueError(f"reconcile.query.{where}: unknown placeholder {{{name}}} "
                                 f"(allowed: {', '.join(sorted(RECONCILE_PLACEHOLDERS))})")
        for name in ("status_path", "message_path", "received_path", "sent_path", "can_resend_path"):
            value = getattr(self, name)
            if value is not None:
                try:
                    split_path(value)
                except TemplateError as exc:
                    raise ValueError(f"reconcile.{name}: {exc}") from exc
        if self.received_path is None and self.sent_path is None:
            raise ValueError("reconcile: name received_path or sent_path (or both): where the manifest is")
        return self


class SoapSourceConfig(SoapConnection):
    """``[systems.<name>.source]`` for ``adapter = "soap"``: pull records on a schedule."""

    pull: PullSettings

    def facts(self, system: str) -> ConfigFacts:
        return ConfigFacts(cursors=(self.pull.effective_cursor_name(system),), problems=wsdl_problems(self))


class SoapSinkConfig(SoapConnection):
    """``[systems.<name>.sink]`` for ``adapter = "soap"``: deliver records by calling an operation."""

    push: PushSettings
    reconcile: ReconcileSettings | None = None  # 对账 with this counterpart (gateway reconcile)

    def facts(self, system: str) -> ConfigFacts:
        return ConfigFacts(problems=wsdl_problems(self))


def wsdl_problems(config: SoapConnection) -> tuple[str, ...]:
    """Files the WSDL imports or includes (XSDs, other WSDLs) that are missing, followed transitively.

    zeep loads them only at start (``forbid_external``: local files only), so a copied
    WSDL without its XSDs would otherwise be found out when the gateway starts.
    """
    from lxml import etree

    from gateway.formats import parse_xml_bytes

    problems: list[str] = []
    seen: set[Path] = set()
    todo = [config.wsdl_file()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            root = parse_xml_bytes(path.read_bytes())
        except OSError as exc:
            problems.append(f"wsdl: cannot read {path}: {exc.strerror or exc}")
            continue
        except Exception as exc:  # refused as hostile or not well-formed: zeep would fail on it too
            problems.append(f"wsdl: {path} is not a readable XML document: {exc}")
            continue
        for el in root.iter(etree.Element):
            local = etree.QName(el).localname
            if local not in ("import", "include", "redefine"):
                continue
            location = el.get("schemaLocation") or el.get("location")
            if not location or "://" in location:
                continue  # no location (resolved by namespace) or a URL zeep refuses anyway
            target = (path.parent / location).resolve()
            if not target.is_file():
                problems.append(f"wsdl: {path.name} {local}s {location!r}, but {target} does not exist "
                                "(copy the WSDL together with every file it imports)")
            else:
                todo.append(target)
    return tuple(problems)
