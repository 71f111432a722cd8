"""WS-Security for outgoing requests (Timestamp, UsernameToken digest, RSA-SHA256 signature)
and the signature check of responses.

zeep's own ``Signature`` signs with RSA-SHA1 by default, re-reads and decrypts the
key on every call, and verifies every response against the *client's* certificate.
This module signs with SHA-2 and a key loaded once, and verifies responses against
the counterpart's certificate named in the configuration.
"""

from __future__ import annotations

import base64
import datetime as dt
from typing import Any

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from zeep import ns
from zeep.exceptions import SignatureVerificationFailed
from zeep.wsse.username import UsernameToken
from zeep.wsse.utils import WSSE, WSU, ensure_id, get_security_header

_X509V3 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-x509-token-profile-1.0#X509v3"
_BASE64 = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary"
_SOAP_ENVS = (ns.SOAP_ENV_11, ns.SOAP_ENV_12)

SIGNATURE_METHODS = {
    "rsa-sha256": xmlsec.Transform.RSA_SHA256,
    "rsa-sha384": xmlsec.Transform.RSA_SHA384,
    "rsa-sha512": xmlsec.Transform.RSA_SHA512,
}
DIGEST_METHODS = {
    "sha256": xmlsec.Transform.SHA256,
    "sha384": xmlsec.Transform.SHA384,
    "sha512": xmlsec.Transform.SHA512,
}


def _envelope_ns(envelope: etree._Element) -> str:
    namespace = etree.QName(envelope).namespace
    if namespace not in _SOAP_ENVS:
        raise SignatureVerificationFailed(f"not a SOAP envelope: {envelope.tag}")
    return namespace


class X509Signer:
    """Signs the Body, the Timestamp and the UsernameToken of an envelope with one X.509 key."""

    def __init__(
        self,
        key_pem: bytes,
        cert_pem: bytes,
        passphrase: str | None,
        *,
        signature_method: str = "rsa-sha256",
        digest_method: str = "sha256",
        key_reference: str = "binary_security_token",
    ) -> None:
        # Loaded once: decrypting the key per request costs more than the signature itself.
        self._key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM, passphrase)
        self._key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
        certificate = x509.load_pem_x509_certificate(cert_pem)
        self._cert_b64 = base64.b64encode(certificate.public_bytes(Encoding.DER)).decode("ascii")
        self._signature_method = SIGNATURE_METHODS[signature_method]
        self._digest_method = DIGEST_METHODS[digest_method]
        self._key_reference = key_reference

    def sign(self, envelope: etree._Element) -> None:
        soap_env = _envelope_ns(envelope)
        security = get_security_header(envelope)
        signature = xmlsec.template.create(envelope, xmlsec.Transform.EXCL_C14N, self._signature_method)
        key_info = xmlsec.template.ensure_key_info(signature)
        x509_data = None
        if self._key_reference == "binary_security_token":
            token = WSSE.BinarySecurityToken(self._cert_b64, ValueType=_X509V3, EncodingType=_BASE64)
            token_id = ensure_id(token)
            security.append(token)
            reference = etree.SubElement(key_info, etree.QName(ns.WSSE, "SecurityTokenReference"))
            etree.SubElement(reference, etree.QName(ns.WSSE, "Reference"), URI=f"#{token_id}", ValueType=_X509V3)
        else:
            x509_data = xmlsec.template.add_x509_data(key_info)
            xmlsec.template.x509_data_add_issuer_serial(x509_data)
        security.append(signature)

        ctx = xmlsec.SignatureContext()
        ctx.key = self._key
        targets = [
            envelope.find(etree.QName(soap_env, "Body")),
            security.find(etree.QName(ns.WSU, "Timestamp")),
            security.find(etree.QName(ns.WSSE, "UsernameToken")),
        ]
        for target in targets:
            if target is None:
                continue
            node_id = ensure_id(target)
            ctx.register_id(target, "Id", ns.WSU)
            ref = xmlsec.template.add_reference(signature, self._digest_method, uri=f"#{node_id}")
            xmlsec.template.add_transform(ref, xmlsec.Transform.EXCL_C14N)
        ctx.sign(signature)
        if x509_data is not None:
            # WSS wants X509Data inside a SecurityTokenReference; xmlsec only fills it where it expects it,
            # so it moves after signing (KeyInfo is not part of the signed content).
            reference = etree.SubElement(key_info, etree.QName(ns.WSSE, "SecurityTokenReference"))
            reference.append(x509_data)


def add_timestamp(envelope: etree._Element, ttl_seconds: int) -> None:
    security = get_security_header(envelope)
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    expires = now + dt.timedelta(seconds=ttl_seconds)
    timestamp = WSU.Timestamp(
        WSU.Created(now.strftime("%Y-%m-%dT%H:%M:%SZ")), WSU.Expires(expires.strftime("%Y-%m-%dT%H:%M:%SZ"))
    )
    ensure_id(timestamp)
    security.insert(0, timestamp)


def verify_response(envelope: etree._Element, key: xmlsec.Key) -> None:
    """Check that the Body is signed by ``key`` with SHA-2 algorithms; raise SignatureVerificationFailed.

    A SOAP fault without a signature is let through so it can be classified: a forged
    fault can only cause a retry or a dead letter, never a false acceptance.
    """
    soap_env = _envelope_ns(envelope)
    body = envelope.find(etree.QName(soap_env, "Body"))
    header = envelope.find(etree.QName(soap_env, "Header"))
    security = header.find(etree.QName(ns.WSSE, "Security")) if header is not None else None
    signature = security.find(etree.QName(ns.DS, "Signature")) if security is not None else None
    if signature is None:
        if body is not None and body.find(etree.QName(soap_env, "Fault")) is not None:
            return
        raise SignatureVerificationFailed("the response carries no WS-Security signature")
    if body is None or not body.get(etree.QName(ns.WSU, "Id")):
        raise SignatureVerificationFailed("the response Body has no wsu:Id, so it cannot be signed")
    references = signature.findall(f"{{{ns.DS}}}SignedInfo/{{{ns.DS}}}Reference")
    ids = []
    for reference in references:
        uri = reference.get("URI") or ""
        if not uri.startswith("#"):
            raise SignatureVerificationFailed(f"unsupported signature reference {uri!r}")
        ids.append(uri[1:])
    if body.get(etree.QName(ns.WSU, "Id")) not in ids:
        raise SignatureVerificationFailed("the signature does not cover the response Body")
    ctx = xmlsec.SignatureContext()
    for node_id in ids:
        nodes = envelope.xpath("//*[@wsu:Id=$id]", namespaces={"wsu": ns.WSU}, id=node_id)
        if len(nodes) != 1:
            # Two elements with one id is the signature-wrapping attack.
            raise SignatureVerificationFailed(f"signature reference #{node_id} matches {len(nodes)} elements")
        ctx.register_id(nodes[0], "Id", ns.WSU)
    for transform in (xmlsec.Transform.EXCL_C14N, *SIGNATURE_METHODS.values()):
        ctx.enable_signature_transform(transform)
    for transform in (xmlsec.Transform.EXCL_C14N, *DIGEST_METHODS.values()):
        ctx.enable_reference_transform(transform)
    ctx.key = key
    try:
        ctx.verify(signature)
    except xmlsec.Error as exc:
        raise SignatureVerificationFailed(f"signature check failed: {exc}") from exc


class WsseSecurity:
    """The ``wsse`` object handed to zeep: ``apply`` on requests, ``verify`` on responses."""

    def __init__(
        self,
        *,
        username_token: UsernameToken | None = None,
        signer: X509Signer | None = None,
        timestamp_ttl_seconds: int | None = None,
        response_cert_pem: bytes | None = None,
    ) -> None:
        self._username_token = username_token
        self._signer = signer
        self._timestamp_ttl = timestamp_ttl_seconds
        self._response_key = (
            xmlsec.Key.from_memory(response_cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
            if response_cert_pem is not None
            else None
        )

    def apply(self, envelope: etree._Element, headers: dict[str, Any]) -> tuple[etree._Element, dict[str, Any]]:
        if self._timestamp_ttl:
            add_timestamp(envelope, self._timestamp_ttl)
        if self._username_token is not None:
            envelope, headers = self._username_token.apply(envelope, headers)
        if self._signer is not None:
            self._signer.sign(envelope)
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        if self._response_key is not None:
            verify_response(envelope, self._response_key)
        return envelope
