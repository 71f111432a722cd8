"""Inbound WS-Security (OASIS WSS 1.1) for ``/soap/{system}``: UsernameToken digests and X.509 signatures.

UsernameToken: only PasswordDigest = Base64(SHA-1(nonce + created + password)), the
profile's definition; ``Created`` must lie within the replay window and each nonce is
accepted once. X.509: a ``ds:Signature`` in the Security header, exclusive C14N, SHA-2
digests and RSA or ECDSA with SHA-2, whose references cover the envelope's own Body and
the header's own ``wsu:Timestamp`` (each id naming exactly one element, so a signed copy
moved elsewhere cannot stand in for them), checked with xmlsec against the certificate(s)
configured for the system — never a key the message brings along. The Timestamp must be
fresh and each signature value is accepted once.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from lxml import etree

from gateway.security.counterparts import ReplayCache, WsseAuth
from gateway.security.secrets import SecretError, SecretReader

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
PASSWORD_DIGEST = ("http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0"
                   "#PasswordDigest")

SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": xmlsec.Transform.RSA_SHA512,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": xmlsec.Transform.ECDSA_SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": xmlsec.Transform.ECDSA_SHA384,
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": xmlsec.Transform.ECDSA_SHA512,
}
DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256": xmlsec.Transform.SHA256,
    "http://www.w3.org/2001/04/xmldsig-more#sha384": xmlsec.Transform.SHA384,
    "http://www.w3.org/2001/04/xmlenc#sha512": xmlsec.Transform.SHA512,
}


class WsseFailure(Exception):
    """A WS-Security check failed; ``code`` is the WSS fault code (local name), ``reason`` the refusal reason."""

    def __init__(self, reason: str, code: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code
        self.message = message


_SINGLE_USE = {"nonce": "the UsernameToken nonce", "sig": "the signature (with its Timestamp)"}


def replay_failure(first: bool | None, value: str) -> WsseFailure:
    """The failure for a single-use value (``nonce:…`` or ``sig:…``) the replay cache did not take as new:
    ``first`` is its answer, False for a replay, None when it is full."""
    if first is None:
        return WsseFailure("replay_cache_full", "FailedAuthentication",
                           "too many WS-Security requests within the replay window; send again shortly")
    what = _SINGLE_USE.get(value.partition(":")[0], "a single-use value")
    return WsseFailure("replayed", "FailedAuthentication",
                       f"{what} was already used within the replay window: a replayed request")


def _time(text: str | None, what: str) -> dt.datetime:
    if not text:
        raise WsseFailure("wsse_invalid", "InvalidSecurity", f"{what} is missing")
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise WsseFailure("wsse_invalid", "InvalidSecurity", f"{what} {text[:40]!r} is not an xsd:dateTime") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class _TrustedCertificate:
    path: Path
    key: Any  # xmlsec.Key
    not_before: dt.datetime
    not_after: dt.datetime
    label: str


def _load_certificate(path: Path) -> _TrustedCertificate:
    pem = path.read_bytes()
    cert = x509.load_pem_x509_certificate(pem)
    key = xmlsec.Key.from_memory(pem, xmlsec.KeyFormat.CERT_PEM, None)
    cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    name = str(cn[0].value) if cn else cert.subject.rfc4514_string()
    label = f"X.509 {name} (SHA-256 {cert.fingerprint(hashes.SHA256()).hex()[:16]})"
    return _TrustedCertificate(path, key, cert.not_valid_before_utc, cert.not_valid_after_utc, label)


class WsseVerifier:
    """The WS-Security checks of one system (see the module docstring)."""

    def __init__(self, system: str, config: WsseAuth) -> None:
        self.system = system
        self.config = config
        self.certificates = [_load_certificate(Path(p)) for p in config.certificates]
        ut = config.username_token
        self._password = (SecretReader(ut.password, owner=f"sources.{system}.auth.wsse.username_token",
                                       what="the UsernameToken password") if ut is not None else None)
        self.replays: Any = ReplayCache(2 * config.max_skew)  # a push worker swaps in its DeferredReplayCache

    # ----------------------------------------------------------------- entry points

    def read_secrets(self) -> None:
        """Read the UsernameToken password now (SecretError if it cannot be)."""
        if self._password is not None:
            self._password.value()

    def verify(self, envelope: etree._Element, now: float) -> str:
        """Check everything configured; returns who signed in, or raises WsseFailure. Consumes nonces."""
        return self._check(envelope, now, consume=True)

    def would_accept(self, envelope: etree._Element, now: float) -> bool:
        """Whether this system's credentials verify the envelope (to tell 'another system's' from 'invalid')."""
        try:
            self._check(envelope, now, consume=False)
        except WsseFailure:
            return False
        return True

    def _check(self, envelope: etree._Element, now: float, *, consume: bool) -> str:
        security = self._security_header(envelope)
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        who: list[str] = []
        single_use: list[str] = []
        if self.config.username_token is not None:
            who.append(self._username_token(security, when, single_use))
        if self.certificates:
            who.append(self._signature(envelope, security, when, single_use))
        if consume:
            # Only a request that passed every check uses up its nonce and signature value.
            for value in single_use:
                self._first_use(value)
        return " + ".join(who)

    # ----------------------------------------------------------------- header

    def _security_header(self, envelope: etree._Element) -> etree._Element:
        header = envelope.find(f"{{{SOAP11}}}Header")
        found = header.findall(f"{{{WSSE}}}Security") if header is not None else []
        if not found:
            raise WsseFailure("wsse_missing", "InvalidSecurity",
                              f"system {self.system!r} requires WS-Security: the request has no wsse:Security header")
        if len(found) > 1:
            raise WsseFailure("wsse_invalid", "InvalidSecurity", "the request has more than one wsse:Security header")
        return found[0]

    # ----------------------------------------------------------------- UsernameToken

    def _username_token(self, security: etree._Element, now: dt.datetime, single_use: list[str]) -> str:
        assert self.config.username_token is not None and self._password is not None
        tokens = security.findall(f"{{{WSSE}}}UsernameToken")
        if len(tokens) != 1:
            raise WsseFailure("wsse_missing", "InvalidSecurity",
                              f"system {self.system!r} requires one wsse:UsernameToken; the request has {len(tokens)}")
        token = tokens[0]
        username = (token.findtext(f"{{{WSSE}}}Username") or "").strip()
        password = token.find(f"{{{WSSE}}}Password")
        nonce_text = (token.findtext(f"{{{WSSE}}}Nonce") or "").strip()
        created_text = token.findtext(f"{{{WSU}}}Created")
        if password is None or (password.get("Type") or "") != PASSWORD_DIGEST:
            raise WsseFailure("wsse_invalid", "UnsupportedSecurityToken",
                              "only PasswordDigest UsernameTokens are accepted (the password must not travel)")
        if not nonce_text or created_text is None:
            raise WsseFailure("wsse_invalid", "InvalidSecurityToken", "a PasswordDigest needs wsse:Nonce and wsu:Created")
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
        except (ValueError, binascii.Error):
            raise WsseFailure("wsse_invalid", "InvalidSecurityToken", "wsse:Nonce is not Base64") from None
        if not 8 <= len(nonce) <= 64:
            raise WsseFailure("wsse_invalid", "InvalidSecurityToken", "wsse:Nonce must be 8 to 64 bytes")
        created = _time(created_text, "the UsernameToken's wsu:Created")
        skew = self.config.max_skew
        if abs((now - created).total_seconds()) > skew:
            raise WsseFailure("wsse_expired", "MessageExpired",
                              f"the UsernameToken was created at {created_text.strip()}, more than {skew:g}s from "
                              "the gateway's clock; create a fresh token for every request")
        try:
            secret = self._password.value()
        except SecretError as exc:
            raise WsseFailure("wsse_invalid", "FailedAuthentication", f"the gateway cannot read its password: {exc}"
                              ) from None
        expected = base64.b64encode(hashlib.sha1(nonce + created_text.encode("utf-8") + secret.encode("utf-8"),
                                                 usedforsecurity=True).digest())
        user_ok = hmac.compare_digest(username.encode("utf-8"), self.config.username_token.username.encode("utf-8"))
        digest_ok = hmac.compare_digest(expected, (password.text or "").strip().encode("ascii", "replace"))
        if not (user_ok and digest_ok):
            raise WsseFailure("wsse_invalid", "FailedAuthentication",
                              f"the UsernameToken does not authenticate system {self.system!r} (user name or "
                              "password digest wrong)")
        single_use.append(f"nonce:{nonce_text}")
        return f"UsernameToken {username}"

    def _first_use(self, value: str) -> None:
        first = self.replays.first_use(value)
        if not first:
            raise replay_failure(first, value)

    # ----------------------------------------------------------------- X.509 signature

    def _signature(self, envelope: etree._Element, security: etree._Element, now: dt.datetime,
                   single_use: list[str]) -> str:
        signatures = security.findall(f"{{{DS}}}Signature")
        if len(signatures) != 1:
            raise WsseFailure("wsse_missing", "InvalidSecurity",
                              f"system {self.system!r} requires a ds:Signature in wsse:Security; the request has "
                              f"{len(signatures)}")
        signature = signatures[0]
        signed_info = signature.find(f"{{{DS}}}SignedInfo")
        if signed_info is None:
            raise WsseFailure("wsse_invalid", "InvalidSecurity", "ds:Signature has no ds:SignedInfo")
        c14n = signed_info.find(f"{{{DS}}}CanonicalizationMethod")
        if c14n is None or c14n.get("Algorithm") != EXC_C14N:
            raise WsseFailure("wsse_invalid", "UnsupportedAlgorithm", "SignedInfo must use exclusive C14N")
        method = signed_info.find(f"{{{DS}}}SignatureMethod")
        algorithm = method.get("Algorithm") if method is not None else None
        if algorithm not in SIGNATURE_METHODS:
            raise WsseFailure("wsse_invalid", "UnsupportedAlgorithm",
                              f"signature method {algorithm!r} is not accepted (RSA or ECDSA with SHA-256/384/512)")
        body = envelope.find(f"{{{SOAP11}}}Body")
        timestamp = security.find(f"{{{WSU}}}Timestamp")
        if timestamp is None:
            raise WsseFailure("wsse_missing", "InvalidSecurity", "a signed request needs a wsu:Timestamp in wsse:Security")
        referenced = self._references(envelope, signed_info)
        for element, what in ((body, "the SOAP Body"), (timestamp, "the wsu:Timestamp")):
            element_id = element.get(f"{{{WSU}}}Id") if element is not None else None
            if element_id is None or element_id not in referenced or referenced[element_id] is not element:
                raise WsseFailure("wsse_invalid", "FailedCheck", f"the signature does not cover {what}")
        self._fresh(timestamp, now)
        label = self._verify_with_configured(signature, referenced, now)
        value = "".join((signature.findtext(f"{{{DS}}}SignatureValue") or "").split())
        single_use.append("sig:" + hashlib.sha256(value.encode("ascii", "replace")).hexdigest())
        return label

    def _references(self, envelope: etree._Element, signed_info: etree._Element) -> dict[str, etree._Element]:
        references = signed_info.findall(f"{{{DS}}}Reference")
        if not references:
            raise WsseFailure("wsse_invalid", "InvalidSecurity", "the signature has no references")
        out: dict[str, etree._Element] = {}
        for reference in references:
            digest = reference.find(f"{{{DS}}}DigestMethod")
            if digest is None or digest.get("Algorithm") not in DIGEST_METHODS:
                raise WsseFailure("wsse_invalid", "UnsupportedAlgorithm",
                                  f"digest method {None if digest is None else digest.get('Algorithm')!r} is not "
                                  "accepted (SHA-256/384/512)")
            for transform in reference.findall(f"{{{DS}}}Transforms/{{{DS}}}Transform"):
                if transform.get("Algorithm") != EXC_C14N:
                    raise WsseFailure("wsse_invalid", "UnsupportedAlgorithm",
                                      f"reference transform {transform.get('Algorithm')!r} is not accepted "
                                      "(exclusive C14N only)")
            uri = reference.get("URI") or ""
            if not uri.startswith("#") or len(uri) < 2:
                raise WsseFailure("wsse_invalid", "InvalidSecurity", f"signature reference {uri[:60]!r} is not '#id'")
            element_id = uri[1:]
            # Any id-like attribute with this value, anywhere: two would be the signature-wrapping attack.
            holders = envelope.xpath(
                "//*[@*[local-name()='Id' or local-name()='ID' or local-name()='id'][.=$v]]", v=element_id)
            if len(holders) != 1 or holders[0].get(f"{{{WSU}}}Id") != element_id:
                raise WsseFailure("wsse_invalid", "InvalidSecurity",
                                  f"signature reference #{element_id[:40]} names {len(holders)} elements; it must "
                                  "name exactly one, by wsu:Id")
            if element_id in out:
                raise WsseFailure("wsse_invalid", "InvalidSecurity", f"reference #{element_id[:40]} is listed twice")
            out[element_id] = holders[0]
        return out

    def _fresh(self, timestamp: etree._Element, now: dt.datetime) -> None:
        skew = self.config.max_skew
        created_text = timestamp.findtext(f"{{{WSU}}}Created")
        created = _time(created_text, "wsu:Timestamp/wsu:Created")
        if abs((now - created).total_seconds()) > skew:
            raise WsseFailure("wsse_expired", "MessageExpired",
                              f"the wsu:Timestamp was created at {(created_text or '').strip()}, more than {skew:g}s "
                              "from the gateway's clock")
        expires_text = timestamp.findtext(f"{{{WSU}}}Expires")
        if expires_text is not None:
            expires = _time(expires_text, "wsu:Timestamp/wsu:Expires")
            if expires < now:
                raise WsseFailure("wsse_expired", "MessageExpired",
                                  f"the wsu:Timestamp expired at {expires_text.strip()}")

    def _verify_with_configured(self, signature: etree._Element, referenced: dict[str, etree._Element],
                                now: dt.datetime) -> str:
        usable = [c for c in self.certificates if c.not_before <= now <= c.not_after]
        if not usable:
            raise WsseFailure("wsse_invalid", "SecurityTokenUnavailable",
                              f"no certificate configured for system {self.system!r} is valid now "
                              f"({', '.join(f'{c.path} until {c.not_after:%Y-%m-%d}' for c in self.certificates)})")
        for trusted in usable:
            ctx = xmlsec.SignatureContext()
            for element in referenced.values():
                ctx.register_id(element, "Id", WSU)
            ctx.enable_signature_transform(xmlsec.Transform.EXCL_C14N)
            for transform in SIGNATURE_METHODS.values():
                ctx.enable_signature_transform(transform)
            ctx.enable_reference_transform(xmlsec.Transform.EXCL_C14N)
            for transform in DIGEST_METHODS.values():
                ctx.enable_reference_transform(transform)
            ctx.key = trusted.key
            try:
                ctx.verify(signature)
            except xmlsec.Error:
                continue
            return trusted.label
        raise WsseFailure("wsse_invalid", "FailedCheck",
                          f"the signature does not verify with the certificate(s) configured for system "
                          f"{self.system!r}, or the signed content was changed")
