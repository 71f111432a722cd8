"""Turning SOAP faults, HTTP statuses and transport failures into retryable or permanent errors.

The rule: if sending the same request again later can succeed, the error is
retryable (server faults, 5xx, timeouts, resets, truncated or non-SOAP replies);
if the counterpart refuses the request as it is, it is permanent (client faults,
WS-Security failures, other 4xx, requests that do not fit the WSDL).
"""

from __future__ import annotations

import re
import ssl

import httpx
from lxml import etree
from zeep import exceptions as zeep_exc

from gateway.adapters import DeliveryError, PermanentError, RetryableError

from ._config import FaultPolicy

# Local names of fault codes whose request will never be accepted as it is. SOAP 1.1
# "Client" (and dotted refinements "Client.Xyz"), SOAP 1.2 "Sender", envelope-level
# faults, and the WS-Security 1.1 codes for a request that failed the security checks.
_PERMANENT_CODES = (
    "Client",
    "Sender",
    "VersionMismatch",
    "MustUnderstand",
    "DataEncodingUnknown",
    "FailedAuthentication",
    "FailedCheck",
    "InvalidSecurity",
    "InvalidSecurityToken",
    "UnsupportedSecurityToken",
    "UnsupportedAlgorithm",
)
# "MessageExpired" is retryable: a resend carries a fresh timestamp. Server, Receiver and
# codes nobody listed are retryable too, so nothing is dead-lettered on a guess.
_RETRYABLE_CODES = ("Server", "Receiver", "MessageExpired", "SecurityTokenUnavailable")

_RETRYABLE_HTTP = frozenset({408, 425, 429})


class PermanentSoapFault(PermanentError):
    """A SOAP fault the counterpart will repeat for this request; keeps its code and text."""

    def __init__(self, message: str, *, fault_code: str, fault_text: str) -> None:
        super().__init__(message)
        self.fault_code = fault_code
        self.fault_text = fault_text


class RetryableSoapFault(RetryableError):
    """A SOAP fault that may clear up (server side trouble); keeps its code and text."""

    def __init__(self, message: str, *, fault_code: str, fault_text: str) -> None:
        super().__init__(message)
        self.fault_code = fault_code
        self.fault_text = fault_text


class SoapFaultInfo:
    """The parts of a SOAP fault worth keeping: code, subcodes, text, actor and detail."""

    def __init__(self, fault: zeep_exc.Fault) -> None:
        self.code = (fault.code or "").strip()
        self.subcodes = [str(code) for code in (fault.subcodes or [])]
        self.message = (fault.message or "").strip()
        self.actor = fault.actor
        detail = fault.detail
        if isinstance(detail, etree._Element):
            detail = etree.tostring(detail, encoding="unicode")
        self.detail = _snippet(detail) if detail else None

    def local_codes(self) -> list[str]:
        """``soap-env:Client.Auth`` → ``Client.Auth``; subcodes ``{ns}Name`` → ``Name``."""
        codes = [_local(self.code)] if self.code else []
        codes.extend(_local(code) for code in self.subcodes)
        return codes


def _local(code: str) -> str:
    code = code.rsplit("}", 1)[-1]
    return code.rsplit(":", 1)[-1]


def _matches(code: str, names: list[str] | tuple[str, ...]) -> bool:
    return any(code == name or code.startswith(name + ".") for name in names)


def fault_is_permanent(info: SoapFaultInfo, policy: FaultPolicy) -> bool:
    codes = info.local_codes()
    # Configured overrides first, most specific code (the last subcode) first.
    for code in reversed(codes):
        if _matches(code, policy.permanent_codes):
            return True
        if _matches(code, policy.retryable_codes):
            return False
    for code in reversed(codes):
        if _matches(code, _PERMANENT_CODES):
            return True
        if _matches(code, _RETRYABLE_CODES):
            return False
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """The exception and its causes (httpx wraps httpcore, which wraps ssl and socket errors)."""
    links: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in links:
        links.append(current)
        current = current.__cause__ or current.__context__
    return links


def _snippet(content: str | bytes | None, limit: int = 300) -> str:
    if content is None:
        return ""
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    text = re.sub(r"\s+", " ", content).strip()
    return text if len(text) <= limit else text[:limit] + "…"


def classify(exc: BaseException, *, where: str, policy: FaultPolicy, timeouts: str) -> DeliveryError:
    """One failed SOAP call → a RetryableError or PermanentError whose message a person can act on.

    ``where`` names the system, operation and endpoint; ``timeouts`` describes the
    configured limits for timeout messages.
    """
    if isinstance(exc, DeliveryError):
        return exc
    if isinstance(exc, zeep_exc.Fault):
        info = SoapFaultInfo(exc)
        permanent = fault_is_permanent(info, policy)
        parts = [f"{where}: SOAP fault {info.code or '(no faultcode)'}"]
        if info.subcodes:
            parts.append(f"subcodes {', '.join(info.subcodes)}")
        parts.append(f"“{info.message}”" if info.message else "(no fault text)")
        if info.actor:
            parts.append(f"actor {info.actor}")
        if info.detail:
            parts.append(f"detail {info.detail}")
        verdict = "the counterpart refuses this request as it is" if permanent else "the counterpart may accept it later"
        message = " ".join(parts) + f" — {verdict}"
        kind = PermanentSoapFault if permanent else RetryableSoapFault
        return kind(message, fault_code=info.code, fault_text=info.message)
    if isinstance(exc, zeep_exc.SignatureVerificationFailed):
        return PermanentError(
            f"{where}: the response's WS-Security signature did not verify against wsse.verify_response_cert; "
            "the counterpart may have processed the request — check with it before replaying"
        )
    if isinstance(exc, zeep_exc.DTDForbidden | zeep_exc.EntitiesForbidden):
        return PermanentError(
            f"{where}: the response carries a DTD or entity declaration ({exc}); refused "
            "(rule: no DTDs in SOAP messages, XXE protection)"
        )
    if isinstance(exc, zeep_exc.TransportError):
        status = exc.status_code or None
        body = _snippet(exc.content)
        detail = f"{where}: HTTP {status}" if status else f"{where}: transport error"
        # zeep appends the whole body to its message; the snippet below is enough.
        reason = (exc.message or "").split("\nContent:", 1)[0]
        syntax = re.search(r"invalid XML: (.*)", reason)
        if syntax:
            reason = f"the response is not well-formed XML ({syntax.group(1).rstrip('.')})"
        text = f"{detail}: {reason}" if reason else detail
        if body:
            text += f"; body starts: {body}"
        if status is not None and 400 <= status < 500 and status not in _RETRYABLE_HTTP:
            return PermanentError(text, status=status)
        return RetryableError(text, status=status)
    if isinstance(exc, zeep_exc.XMLSyntaxError):
        # Truncated or garbled replies are a network or gateway problem far more often than a contract one.
        return RetryableError(f"{where}: the response is not well-formed XML ({exc.message}); body starts: "
                              f"{_snippet(exc.content)}")
    if isinstance(exc, httpx.TimeoutException):
        kind = type(exc).__name__.replace("Timeout", " timeout").lower().strip()
        return RetryableError(f"{where}: {kind} ({timeouts})")
    if isinstance(exc, TimeoutError):
        return RetryableError(f"{where}: no complete response within the total deadline ({timeouts})")
    tls_error = next((link for link in _chain(exc) if isinstance(link, ssl.SSLError)), None)
    if tls_error is not None:
        # The handshake, or (TLS 1.3) the first read after it: certificates, trust, protocol versions.
        return RetryableError(
            f"{where}: TLS failure: {getattr(tls_error, 'reason', None) or type(tls_error).__name__} ({tls_error}); "
            "check tls.ca_file, the client certificate and what the counterpart expects"
        )
    if isinstance(exc, httpx.TransportError):
        reason = next((str(link) for link in _chain(exc) if str(link)), "") or type(exc).__name__
        if isinstance(exc, httpx.ReadError):
            reset = any(isinstance(link, ConnectionResetError) for link in _chain(exc))
            if reason == type(exc).__name__:
                reason = "the connection closed before the answer arrived"
            # TLS 1.3 checks the client certificate after the client's side of the handshake is done, so a
            # refusal reaches the client as a closed or reset connection as often as a TLS alert.
            if "at https://" in where and (reset or reason.startswith("the connection closed")):
                reason += " (over TLS 1.3 this is also how a server refuses a missing or untrusted client certificate)"
        return RetryableError(f"{where}: {type(exc).__name__}: {reason}")
    if isinstance(exc, OSError):
        return RetryableError(f"{where}: {type(exc).__name__}: {exc}")
    if isinstance(exc, zeep_exc.ValidationError | zeep_exc.LookupError | TypeError | ValueError):
        return PermanentError(f"{where}: the request does not fit the WSDL: {exc}")
    if isinstance(exc, zeep_exc.Error):
        return PermanentError(f"{where}: the response does not fit the WSDL: {type(exc).__name__}: {exc}")
    return RetryableError(f"{where}: unexpected {type(exc).__name__}: {exc}")
