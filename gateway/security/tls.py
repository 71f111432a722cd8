"""The API's TLS: the server context from ``[api]``, the client certificate of a request, refused handshakes.

A client certificate from another CA (or, with ``client_certificates = "required"``, no
certificate at all) is refused by OpenSSL inside the handshake, before HTTP exists, so
no status code can answer it. The context built here still reports each such refusal
(through ``SSLContext.sslobject_class``, the hook asyncio's TLS layer creates its SSL
objects with), so it is counted and audited like any other refused push.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.security.counterparts import PeerCertificate

HandshakeRefused = Callable[[str, str], None]
"""(reason text from OpenSSL, certificate problem or 'other') -> None"""

# OpenSSL reasons that mean "the client's certificate was refused", as opposed to noise on the
# port (plain HTTP to the HTTPS port, scanners, clients giving up).
_CERTIFICATE_REASONS = ("CERTIFICATE_VERIFY_FAILED", "PEER_DID_NOT_RETURN_A_CERTIFICATE",
                        "CERTIFICATE_REQUIRED", "UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_EXPIRED",
                        "UNSUPPORTED_CERTIFICATE", "CERTIFICATE_UNKNOWN")


def classify_handshake_error(exc: ssl.SSLError) -> str:
    """'certificate' when the client certificate was the reason, else 'other'."""
    text = f"{getattr(exc, 'reason', '') or ''} {getattr(exc, 'verify_message', '') or ''} {exc}".upper()
    return "certificate" if any(r in text.replace(" ", "_") for r in _CERTIFICATE_REASONS) else "other"


def _observed_sslobject(on_refused: HandshakeRefused) -> type[ssl.SSLObject]:
    class ObservedSSLObject(ssl.SSLObject):
        """Reports a failed server-side handshake, then fails exactly as before."""

        def do_handshake(self) -> None:
            try:
                super().do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                raise
            except ssl.SSLError as exc:
                try:
                    detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
                    on_refused(str(detail), classify_handshake_error(exc))
                except Exception:  # reporting must never change how the handshake ends
                    pass
                raise

    return ObservedSSLObject


def server_context(cert: Path, key: Path, *, client_ca: Path | None, client_certificates: str,
                   on_refused: HandshakeRefused | None = None) -> ssl.SSLContext:
    """HTTPS for the API; with ``client_ca``, client certificates issued by it are asked for.

    ``client_certificates`` is ``required`` (no certificate, no connection) or ``optional``
    (a certificate is verified when presented; systems that use tokens or HMAC connect without one).
    """
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        ctx.verify_mode = ssl.CERT_REQUIRED if client_certificates == "required" else ssl.CERT_OPTIONAL
    if on_refused is not None:
        ctx.sslobject_class = _observed_sslobject(on_refused)
    return ctx


def peer_certificate(transport: Any) -> PeerCertificate | None:
    """The client certificate the TLS layer verified for this connection, if any."""
    if transport is None:
        return None
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return None
    return _parse_cached(der)


_CACHE: dict[bytes, PeerCertificate] = {}


def _parse_cached(der: bytes) -> PeerCertificate:
    # A handful of counterparts reconnect with the same certificate all day: parse each once.
    found = _CACHE.get(der)
    if found is None:
        if len(_CACHE) > 1024:
            _CACHE.clear()
        found = _CACHE[der] = PeerCertificate.from_der(der)
    return found
