"""Credentials for outbound REST: secrets from env or file, bearer tokens, HMAC signing, TLS contexts.

The HMAC canonical string is a contract with counterparts; it is spelled out in
adapters/rest/README.md and built only by :func:`gateway.security.request_signing.canonical_string`,
which the push API uses to check what counterparts sign.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from gateway.security.request_signing import canonical_string, hmac_signature

from ._config import Auth, BearerAuth, HmacAuth, SecretRef, TlsConfig


class RestConfigError(Exception):
    """The REST adapter cannot start as configured (missing secret, unreadable certificate …)."""


class SecretReader:
    """Reads a secret when asked; a file is re-read when its modification time changes (rotation)."""

    def __init__(self, ref: SecretRef, *, owner: str, what: str) -> None:
        self._ref = ref
        self._owner = owner
        self._what = what
        self._cached: str | None = None
        self._mtime: int | None = None

    def value(self) -> str:
        if self._ref.env is not None:
            if self._cached is None:
                raw = os.environ.get(self._ref.env)
                if not raw or not raw.strip():
                    raise RestConfigError(
                        f"{self._owner}: {self._what} is configured to come from environment variable "
                        f"{self._ref.env}, which is not set or empty"
                    )
                self._cached = raw.strip()
            return self._cached
        path = Path(self._ref.file)  # type: ignore[arg-type]  # the model guarantees one of the two
        try:
            mtime = path.stat().st_mtime_ns
            if self._cached is None or mtime != self._mtime:
                text = path.read_text(encoding="utf-8").strip()
                if not text:
                    raise RestConfigError(f"{self._owner}: {self._what} file {path} is empty")
                self._cached, self._mtime = text, mtime
        except OSError as exc:
            raise RestConfigError(f"{self._owner}: cannot read {self._what} file {path}: {exc.strerror}") from exc
        return self._cached


HeaderSigner = Callable[[str, str, bytes], Mapping[str, str]]
"""(method, raw path with query, body) -> headers to add to the request."""


def make_signer(auth: Auth | None, *, owner: str) -> HeaderSigner:
    """A function that yields the auth headers for one request; reads the secret once to fail early."""
    if auth is None:
        return lambda method, path_qs, body: {}
    if isinstance(auth, BearerAuth):
        token = SecretReader(auth.token, owner=owner, what="the bearer token")
        token.value()

        def bearer(method: str, path_qs: str, body: bytes) -> Mapping[str, str]:
            return {"Authorization": f"Bearer {token.value()}"}

        return bearer
    if isinstance(auth, HmacAuth):
        reader = SecretReader(auth.key, owner=owner, what="the HMAC key")
        decode = _key_decoder(auth, owner)
        decode(reader.value())

        def sign(method: str, path_qs: str, body: bytes) -> Mapping[str, str]:
            timestamp = str(int(time.time()))
            nonce = secrets.token_hex(16)
            signature = hmac_signature(
                decode(reader.value()), canonical_string(method, path_qs, timestamp, nonce, body)
            )
            headers = {
                auth.timestamp_header: timestamp,
                auth.nonce_header: nonce,
                auth.signature_header: signature,
            }
            if auth.key_id is not None:
                headers[auth.key_id_header] = auth.key_id
            return headers

        return sign
    raise RestConfigError(f"{owner}: unknown auth type {type(auth).__name__}")


def _key_decoder(auth: HmacAuth, owner: str) -> Callable[[str], bytes]:
    def decode(text: str) -> bytes:
        try:
            if auth.key_encoding == "hex":
                return bytes.fromhex(text)
            if auth.key_encoding == "base64":
                return base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error) as exc:
            raise RestConfigError(
                f"{owner}: the HMAC key in {auth.key.describe()} is not valid {auth.key_encoding}: {exc}"
            ) from exc
        return text.encode("utf-8")

    return decode


def build_ssl_context(tls: TlsConfig, *, owner: str) -> ssl.SSLContext:
    """A client context that verifies the counterpart and, with a certificate, presents ours (mTLS)."""
    try:
        context = ssl.create_default_context(
            ssl.Purpose.SERVER_AUTH, cafile=str(tls.ca_file) if tls.ca_file else None
        )
    except (OSError, ssl.SSLError) as exc:
        raise RestConfigError(f"{owner}: cannot load CA file {tls.ca_file}: {exc}") from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_3 if tls.minimum_version == "1.3" else ssl.TLSVersion.TLSv1_2
    context.check_hostname = tls.check_hostname
    if tls.cert_file is not None:
        password = None
        if tls.key_password is not None:
            password = SecretReader(tls.key_password, owner=owner, what="the client key password").value()
        try:
            context.load_cert_chain(
                str(tls.cert_file), str(tls.key_file) if tls.key_file else None, password=password
            )
        except (OSError, ssl.SSLError) as exc:
            raise RestConfigError(
                f"{owner}: cannot load client certificate {tls.cert_file}"
                f"{f' with key {tls.key_file}' if tls.key_file else ''}: {exc}"
            ) from exc
    return context
