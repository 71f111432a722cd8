"""Configuration models of the REST adapter: one section of ``gateway.toml`` per source or sink.

Secrets never appear here: a model names the environment variable or file that holds them
(:class:`SecretRef`), and unknown keys are errors, so a misplaced ``token = "..."`` is refused.
"""

from __future__ import annotations

import string
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from yarl import URL

from gateway.adapters import AdapterConfig, ConfigFacts, ConfigPath, Duration, renamed

from ._paths import check_path


class SecretRef(AdapterConfig):
    """Where a secret lives: exactly one of an environment variable or a file (its content, trimmed)."""

    env: str | None = None
    file: ConfigPath | None = None  # relative to the folder of gateway.toml

    @model_validator(mode="after")
    def _exactly_one(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("name exactly one of 'env' (an environment variable) or 'file' (a path)")
        return self

    def describe(self) -> str:
        return f"environment variable {self.env}" if self.env is not None else f"file {self.file}"


class BearerAuth(AdapterConfig):
    """``Authorization: Bearer <token>``; the token file is re-read when it changes (rotation)."""

    type: Literal["bearer"]
    token: SecretRef


class HmacAuth(AdapterConfig):
    """HMAC-SHA256 request signing; the canonical string is documented in adapters/rest/README.md."""

    type: Literal["hmac"]
    key: SecretRef
    key_encoding: Literal["utf-8", "hex", "base64"] = "utf-8"
    key_id: str | None = None  # sent in key_id_header so the counterpart can pick the key
    timestamp_header: str = "X-Timestamp"
    nonce_header: str = "X-Nonce"
    signature_header: str = "X-Signature"
    key_id_header: str = "X-Key-Id"


Auth = Annotated[BearerAuth | HmacAuth, Field(discriminator="type")]


class TlsConfig(AdapterConfig):
    """Server verification and, with ``cert_file``, mutual TLS (the gateway's client certificate)."""

    ca_file: ConfigPath | None = None  # trust anchors for the counterpart; None = the system store
    cert_file: ConfigPath | None = None  # client certificate (PEM); may also hold the key
    key_file: ConfigPath | None = None
    key_password: SecretRef | None = None
    check_hostname: bool = True
    minimum_version: Literal["1.2", "1.3"] = "1.2"

    @model_validator(mode="after")
    def _key_needs_cert(self) -> TlsConfig:
        if self.key_file is not None and self.cert_file is None:
            raise ValueError("key_file is set but cert_file is not: mutual TLS needs the certificate too")
        return self


class Timeouts(AdapterConfig):
    """Durations ("5s"). aiohttp has no default read timeout worth relying on, so all three are explicit."""

    connect: Duration = Field(5.0, gt=0)
    read: Duration = renamed(30.0, "read", "sock_read", gt=0)  # no byte from the server for this long
    total: Duration = Field(60.0, gt=0)


class _HttpClientConfig(AdapterConfig):
    """What both the sink and the pull source need to talk HTTP to one counterpart."""

    headers: dict[str, str] = Field(default_factory=dict)  # static extra headers (no secrets here)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    auth: Auth | None = None
    tls: TlsConfig | None = None
    max_connections: int = Field(32, ge=1, le=1024)
    max_connections_per_host: int = Field(0, ge=0, le=1024)  # 0 = only max_connections applies

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if name.lower() in {"authorization", "proxy-authorization", "x-signature"}:
                raise ValueError(
                    f"header {name!r} carries a credential: configure 'auth' with an env var or file instead"
                )
        return value


# --------------------------------------------------------------------------- sink


class BatchResults(AdapterConfig):
    """Where and how the counterpart answers a batch, one result object per record, in order.

    The default reads ``[{"status": "ok", "id": "..."}, {"status": "error", "error": "..."}]``.
    """

    items_path: str = ""  # "" = the response body is the array itself
    status_field: str = "status"
    ok_values: tuple[str, ...] = ("ok",)
    retry_values: tuple[str, ...] = ("retry",)  # item-level "try again later"
    id_field: str = "id"
    error_field: str = "error"

    @field_validator("items_path")
    @classmethod
    def _items_path(cls, value: str) -> str:
        return check_path(value)


DEFAULT_RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class RestReconcile(AdapterConfig):
    """Reconciliation (对账) with this counterpart: where it answers the gateway's manifest contract.

    ``url`` is POSTed ``{"from": …, "to": …, "counterpart": …}`` (ISO 8601, China time) and answers
    the JSON manifest (docs/exchange.md); ``resend_url``, when the counterpart can send again what
    the gateway lacks, is POSTed ``{"from": …, "to": …, "entries": [{"kind", "key", "version"}]}``
    and answers ``{"requested": n}``. Both are signed and authenticated like deliveries.
    """

    url: str
    resend_url: str | None = None

    @field_validator("url", "resend_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} must be an http:// or https:// URL")
        return value


class RestSinkConfig(_HttpClientConfig):
    """Deliver rendered records by HTTP POST (or PUT) of JSON to one counterpart."""

    url: str  # may contain {kind}: "https://hall.example/api/{kind}s"
    method: Literal["POST", "PUT"] = "POST"
    idempotency_header: str = "Idempotency-Key"
    correlation_header: str = "X-Correlation-Id"  # the record's correlation id (a batch: its records' ids)
    delivery_header: str = "X-Gateway-Delivery"  # <destination>:<delivery id>:<attempt>, to quote in a complaint
    content_type: str = "application/json; charset=utf-8"
    remote_id_path: str | None = None  # where the counterpart's id for the record is in its answer
    conflict_is_success: bool = False  # a 409 means "already received" at this counterpart
    retryable_statuses: frozenset[int] = DEFAULT_RETRYABLE_STATUSES
    batch_size: int = Field(1, ge=1, le=1000)
    batch_results: BatchResults = Field(default_factory=BatchResults)
    error_body_chars: int = Field(300, ge=0, le=10_000)  # how much of a refusal body goes into the error
    # A GET the delivery worker sends, instead of a delivery, to learn whether the counterpart is
    # back while its circuit is open (docs/deliveries.md); a 2xx answer means it is.
    health_url: str | None = None
    reconcile: RestReconcile | None = None  # 对账 with this counterpart (gateway reconcile)

    @field_validator("health_url")
    @classmethod
    def _health_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"health_url {value!r} must start with http:// or https://")
        return value

    @field_validator("url")
    @classmethod
    def _only_kind_placeholder(cls, value: str) -> str:
        for _, name, spec, conv in string.Formatter().parse(value):
            if name is None:
                continue
            if name != "kind" or spec or conv:
                raise ValueError(f"url {value!r}: the only placeholder allowed is {{kind}}, found {{{name}}}")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value

    @field_validator("remote_id_path")
    @classmethod
    def _remote_id_path(cls, value: str | None) -> str | None:
        return None if value is None else check_path(value)


# --------------------------------------------------------------------------- pull source


class CursorConfig(AdapterConfig):
    """The watermark that survives a restart, committed with each page's records.

    ``since``: the greatest value of ``field`` among committed items is sent back as ``param``
    (the feed must be ordered by that field). ``token``: the server hands out an opaque cursor at
    ``token_path`` and it is sent back as ``param``; the token also pages. ``none``: every poll
    reads the whole feed and idempotency drops what was seen.
    """

    mode: Literal["since", "token", "none"] = "since"
    param: str = "since"
    field: str = "updated_at"
    inclusive: bool = True  # does the server's since return items equal to it (>=)?
    token_path: str = "next_cursor"
    initial: str | None = None  # first value when no watermark is stored yet
    name: str | None = None  # the watermark's name in the store; default "rest:<system>:<url path>"

    @field_validator("field", "token_path")
    @classmethod
    def _paths(cls, value: str) -> str:
        return check_path(value)


class PaginationConfig(AdapterConfig):
    """How one poll walks the pages of a feed."""

    mode: Literal["none", "page", "offset", "next_link"] = "page"
    page_size: int = Field(500, ge=1, le=100_000)
    size_param: str | None = "page_size"  # page and token modes; None = do not send a size
    page_param: str = "page"
    first_page: int = Field(1, ge=0)
    offset_param: str = "offset"
    limit_param: str = "limit"
    next_from: Literal["body", "link_header"] = "body"
    next_path: str = "next"
    has_more_path: str | None = None  # a boolean in the answer that says whether to go on
    max_pages: int = Field(10_000, ge=1)  # per poll: a guard against a feed that never ends

    @field_validator("next_path")
    @classmethod
    def _next_path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("has_more_path")
    @classmethod
    def _has_more_path(cls, value: str | None) -> str | None:
        return None if value is None else check_path(value)


class RateLimit(AdapterConfig):
    """A token bucket: on average ``requests_per_second``, at most ``burst`` back to back."""

    requests_per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class RetryPolicy(AdapterConfig):
    """Retries of one failed page inside a poll: exponential backoff with jitter, bounded."""

    attempts: int = Field(5, ge=1, le=50)
    initial: Duration = Field(0.5, ge=0)
    max: Duration = Field(30.0, ge=0)
    jitter: float = Field(0.5, ge=0)  # a share of the pause, not a duration
    max_retry_after: Duration = Field(300.0, ge=0)  # cap on a server's Retry-After


class RestSourceConfig(_HttpClientConfig):
    """Poll a counterpart's REST feed on an interval and ingest what is new."""

    url: str
    params: dict[str, str] = Field(default_factory=dict)  # static query parameters
    items_path: str = "items"  # where the array of items is; "" = the body is the array
    poll_interval: Duration = renamed(30.0, "poll_interval", "interval", gt=0)  # between polls once drained
    cursor: CursorConfig = Field(default_factory=CursorConfig)
    pagination: PaginationConfig = Field(default_factory=PaginationConfig)
    rate_limit: RateLimit | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    correlation_header: str = "X-Correlation-Id"  # each page request's correlation id (its records carry it)

    def cursor_names(self, system: str) -> tuple[str, str | None]:
        """(the watermark's name in the store, the name older releases used by default, if it differs)."""
        if self.cursor.name:
            return self.cursor.name, None
        path = URL(self.url).path
        return f"rest:{system}:{path}", f"rest:{path}"

    def facts(self, system: str) -> ConfigFacts:
        if self.cursor.mode == "none":
            return ConfigFacts()
        return ConfigFacts(cursors=(self.cursor_names(system)[0],))

    @field_validator("items_path")
    @classmethod
    def _items_path(cls, value: str) -> str:
        return check_path(value)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"url {value!r} must start with http:// or https://")
        return value

    @model_validator(mode="after")
    def _token_pages_itself(self) -> RestSourceConfig:
        if self.cursor.mode == "token" and self.pagination.mode != "none":
            raise ValueError(
                "cursor.mode = 'token' pages with the token itself: set pagination.mode = 'none' "
                f"(found {self.pagination.mode!r}); pagination.size_param and page_size still apply"
            )
        return self
