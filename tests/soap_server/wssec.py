"""The test service's WS-Security checks, written independently of the adapter's code: the
UsernameToken digest, and the X.509 signature verified with xmlsec against the client
certificate the service was configured with. Failures become SOAP faults with the WS-Security
fault codes; the service can also sign its responses."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import threading
import uuid

import xmlsec
from lxml import etree

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DS = "http://www.w3.org/2000/09/xmldsig#"
DIGEST_TYPE = "#PasswordDigest"

ACCEPTED_SIGNATURE_METHODS = {
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384",
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512",
}
ACCEPTED_DIGEST_METHODS = {
    "http://www.w3.org/2001/04/xmlenc#sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512",
}


class SecurityFault(Exception):
    """A request that failed a WS-Security check; ``code`` is a wsse fault code local name."""

    def __init__(self, code: str, text: str) -> None:
        super().__init__(text)
        self.code = code
        self.text = text


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


def parse_envelope(body: bytes) -> etree._Element:
    return etree.fromstring(body, parser=_parser())


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


class NonceCache:
    """Nonces seen recently: a replayed UsernameToken is refused."""

    def __init__(self) -> None:
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def first_time(self, nonce: str) -> bool:
        with self._lock:
            if nonce in self._seen:
                return False
            self._seen.add(nonce)
            return True


def check_username_token(
    envelope: etree._Element, users: dict[str, str], nonces: NonceCache, *, max_skew: int = 300
) -> str:
    """The authenticated user name, or SecurityFault. Only PasswordDigest is accepted."""
    token = envelope.find(f"{{{SOAP11}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        raise SecurityFault("InvalidSecurity", "no wsse:UsernameToken in the request")
    username = token.findtext(f"{{{WSSE}}}Username") or ""
    password = token.find(f"{{{WSSE}}}Password")
    nonce_text = token.findtext(f"{{{WSSE}}}Nonce")
    created = token.findtext(f"{{{WSU}}}Created")
    if password is None or not (password.get("Type") or "").endswith(DIGEST_TYPE):
        raise SecurityFault("UnsupportedSecurityToken", "only PasswordDigest is accepted")
    if not nonce_text or not created:
        raise SecurityFault("InvalidSecurityToken", "PasswordDigest needs wsse:Nonce and wsu:Created")
    expected_password = users.get(username)
    if expected_password is None:
        raise SecurityFault("FailedAuthentication", f"unknown user {username!r}")
    nonce = base64.b64decode(nonce_text)
    expected = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + expected_password.encode()).digest()
    ).decode()
    if not hmac.compare_digest(expected, (password.text or "").strip()):
        raise SecurityFault("FailedAuthentication", f"password digest for {username!r} does not match")
    age = abs((dt.datetime.now(dt.UTC) - _parse_time(created)).total_seconds())
    if age > max_skew:
        raise SecurityFault("MessageExpired", f"UsernameToken created {created} is {age:.0f}s off")
    if not nonces.first_time(nonce_text):
        raise SecurityFault("FailedAuthentication", "UsernameToken nonce replayed")
    return username


def check_signature(envelope: etree._Element, trusted_cert_pem: bytes) -> dict[str, object]:
    """Verify the request's signature against the trusted client certificate.

    The Body must be among the signed references, each id must name exactly one element,
    and the algorithms must be SHA-2. Returns the signed elements' local names and the algorithms.
    """
    security = envelope.find(f"{{{SOAP11}}}Header/{{{WSSE}}}Security")
    signature = security.find(f"{{{DS}}}Signature") if security is not None else None
    if signature is None:
        raise SecurityFault("InvalidSecurity", "the request is not signed")
    method = signature.find(f"{{{DS}}}SignedInfo/{{{DS}}}SignatureMethod")
    if method is None or method.get("Algorithm") not in ACCEPTED_SIGNATURE_METHODS:
        raise SecurityFault(
            "UnsupportedAlgorithm", f"signature method {None if method is None else method.get('Algorithm')}"
        )
    body = envelope.find(f"{{{SOAP11}}}Body")
    body_id = body.get(f"{{{WSU}}}Id") if body is not None else None
    ctx = xmlsec.SignatureContext()
    signed: list[str] = []
    digests: set[str] = set()
    referenced_ids = []
    for reference in signature.findall(f"{{{DS}}}SignedInfo/{{{DS}}}Reference"):
        digest = reference.find(f"{{{DS}}}DigestMethod")
        if digest is None or digest.get("Algorithm") not in ACCEPTED_DIGEST_METHODS:
            raise SecurityFault(
                "UnsupportedAlgorithm", f"digest method {None if digest is None else digest.get('Algorithm')}"
            )
        digests.add(digest.get("Algorithm"))
        uri = reference.get("URI") or ""
        if not uri.startswith("#"):
            raise SecurityFault("InvalidSecurity", f"unsupported reference {uri!r}")
        matches = envelope.xpath("//*[@wsu:Id=$id]", namespaces={"wsu": WSU}, id=uri[1:])
        if len(matches) != 1:
            raise SecurityFault("InvalidSecurity", f"reference {uri} matches {len(matches)} elements")
        ctx.register_id(matches[0], "Id", WSU)
        referenced_ids.append(uri[1:])
        signed.append(etree.QName(matches[0]).localname)
    if body_id is None or body_id not in referenced_ids:
        raise SecurityFault("FailedCheck", "the signature does not cover the Body")
    timestamp = security.find(f"{{{WSU}}}Timestamp")
    if timestamp is not None:
        expires = timestamp.findtext(f"{{{WSU}}}Expires")
        if expires and _parse_time(expires) < dt.datetime.now(dt.UTC):
            raise SecurityFault("MessageExpired", f"wsu:Timestamp expired at {expires}")
    ctx.key = xmlsec.Key.from_memory(trusted_cert_pem, xmlsec.KeyFormat.CERT_PEM, None)
    try:
        ctx.verify(signature)
    except xmlsec.Error as exc:
        raise SecurityFault("FailedCheck", f"signature verification failed: {exc}") from exc
    return {"elements": signed, "method": method.get("Algorithm"), "digests": sorted(digests)}


def sign_response(envelope: etree._Element, key_pem: bytes, cert_pem: bytes) -> None:
    """Sign the response Body with the service's key (RSA-SHA256, SHA-256 digest)."""
    header = envelope.find(f"{{{SOAP11}}}Header")
    if header is None:
        header = etree.Element(f"{{{SOAP11}}}Header")
        envelope.insert(0, header)
    security = etree.SubElement(header, f"{{{WSSE}}}Security", nsmap={"wsse": WSSE})
    body = envelope.find(f"{{{SOAP11}}}Body")
    body_id = f"body-{uuid.uuid4()}"
    body.set(f"{{{WSU}}}Id", body_id)
    signature = xmlsec.template.create(envelope, xmlsec.Transform.EXCL_C14N, xmlsec.Transform.RSA_SHA256)
    reference = xmlsec.template.add_reference(signature, xmlsec.Transform.SHA256, uri=f"#{body_id}")
    xmlsec.template.add_transform(reference, xmlsec.Transform.EXCL_C14N)
    key_info = xmlsec.template.ensure_key_info(signature)
    xmlsec.template.add_x509_data(key_info)
    security.append(signature)
    ctx = xmlsec.SignatureContext()
    ctx.register_id(body, "Id", WSU)
    key = xmlsec.Key.from_memory(key_pem, xmlsec.KeyFormat.PEM, None)
    key.load_cert_from_memory(cert_pem, xmlsec.KeyFormat.CERT_PEM)
    ctx.key = key
    ctx.sign(signature)


def fault_envelope(code: str, text: str, *, namespace: str | None = WSSE) -> bytes:
    """A SOAP 1.1 fault; ``code`` is qualified with the wsse prefix unless ``namespace`` is None."""
    envelope = etree.Element(f"{{{SOAP11}}}Envelope", nsmap={"soap": SOAP11, "wsse": WSSE})
    body = etree.SubElement(envelope, f"{{{SOAP11}}}Body")
    fault = etree.SubElement(body, f"{{{SOAP11}}}Fault")
    etree.SubElement(fault, "faultcode").text = f"wsse:{code}" if namespace else f"soap:{code}"
    etree.SubElement(fault, "faultstring").text = text
    return etree.tostring(envelope, xml_declaration=True, encoding="utf-8")
