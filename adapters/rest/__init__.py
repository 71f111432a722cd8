"""REST adapter: deliver records by HTTP POST of JSON, and pull records from paged REST feeds.

Public surface: :data:`ADAPTER` (registered as ``rest`` under ``gateway.adapters``), the
configuration models, :class:`RestSink`, :class:`RestPullSource`, and the signing helpers a
counterpart can use to check our HMAC signatures. Everything in ``_``-modules may change.
"""

from __future__ import annotations

from gateway.adapters import Adapter

from ._auth import RestConfigError, canonical_string, hmac_signature
from ._config import (
    BatchResults,
    BearerAuth,
    CursorConfig,
    HmacAuth,
    PaginationConfig,
    RateLimit,
    RestSinkConfig,
    RestSourceConfig,
    RetryPolicy,
    SecretRef,
    Timeouts,
    TlsConfig,
)
from ._http import RestRetryableError
from ._ratelimit import TokenBucket
from ._sink import RestSink
from ._source import PageError, PullStats, RestPullSource

__version__ = "1.0.0"


def make_sink(destination: str, config: RestSinkConfig) -> RestSink:
    return RestSink(destination, config)


def make_source(system: str, config: RestSourceConfig) -> RestPullSource:
    return RestPullSource(system, config)


ADAPTER = Adapter(
    name="rest",
    version=__version__,
    description="REST over HTTP(S): JSON delivery with idempotency keys and batch results; "
    "paged pull with a committed watermark. Bearer, HMAC-SHA256 or mutual TLS.",
    source_config=RestSourceConfig,
    sink_config=RestSinkConfig,
    make_source=make_source,
    make_sink=make_sink,
)

__all__ = [
    "ADAPTER",
    "BatchResults",
    "BearerAuth",
    "CursorConfig",
    "HmacAuth",
    "PageError",
    "PaginationConfig",
    "PullStats",
    "RateLimit",
    "RestConfigError",
    "RestPullSource",
    "RestRetryableError",
    "RestSink",
    "RestSinkConfig",
    "RestSourceConfig",
    "RetryPolicy",
    "SecretRef",
    "Timeouts",
    "TlsConfig",
    "TokenBucket",
    "canonical_string",
    "hmac_signature",
    "make_sink",
    "make_source",
]
