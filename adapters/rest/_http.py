"""The aiohttp plumbing shared by the REST sink and pull source: sessions, Retry-After, error wording."""

from __future__ import annotations

import asyncio
import email.utils
import errno
import time

import aiohttp

from gateway.adapters import RetryableError

from ._auth import build_ssl_context
from ._config import _HttpClientConfig


class RestRetryableError(RetryableError):
    """A retryable REST failure; ``retry_after`` is the server's Retry-After in seconds, if it sent one."""

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


def make_session(config: _HttpClientConfig, *, owner: str) -> aiohttp.ClientSession:
    """One pooled session per sink or source, with explicit limits and timeouts.

    ``raise_for_status`` stays off: every status is classified by the caller, never by an exception.
    """
    ssl_option: bool | object = True
    if config.tls is not None:
        ssl_option = build_ssl_context(config.tls, owner=owner)
    connector = aiohttp.TCPConnector(
        limit=config.max_connections,
        limit_per_host=config.max_connections_per_host,
        ssl=ssl_option,  # type: ignore[arg-type]
    )
    timeout = aiohttp.ClientTimeout(
        total=config.timeouts.total,
        connect=config.timeouts.connect,
        sock_read=config.timeouts.read,
    )
    return aiohttp.ClientSession(
        connector=connector,
        timeout=timeout,
        headers=config.headers,
        raise_for_status=False,
    )


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    text = value.strip()
    try:
        # RFC 9110 says whole seconds; some servers send "1.5", which means what it says.
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def trim_body(body: bytes, limit: int) -> str:
    """The start of a response body, on one line, for an error message a person reads."""
    text = body.decode("utf-8", errors="replace")
    text = " ".join(text.split())
    if len(text) > limit:
        return text[:limit] + f"… ({len(body)} bytes)"
    return text


def describe_transport_error(exc: BaseException, timeouts: tuple[float, float, float], *, https: bool) -> str:
    """Words for a failure below HTTP: what happened and which limit was hit."""
    connect, read, total = timeouts
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return f"connect timed out after {connect:g}s (timeouts.connect)"
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return f"no data from the server for {read:g}s (timeouts.read)"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return f"request did not finish within {total:g}s (timeouts.total)"
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"DNS lookup failed: {exc.os_error}"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return f"TLS certificate of the server was not accepted: {exc.certificate_error}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect: {exc.os_error.strerror or exc.os_error}"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "the server closed the connection without answering"
    reset = isinstance(exc, aiohttp.ClientConnectionResetError | ConnectionResetError) or (
        isinstance(exc, OSError) and exc.errno == errno.ECONNRESET
    )
    if reset:
        hint = "; over TLS this often means it did not accept our client certificate (tls.cert_file)"
        return "connection reset by the server" + (hint if https else "")
    return f"{type(exc).__name__}: {exc}"


TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, asyncio.TimeoutError, OSError)
"""Failures below HTTP. All are retryable: they concern the link, never one record."""
