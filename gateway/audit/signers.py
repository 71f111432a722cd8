"""Seal signers: who signs seal statements and archive manifests, and how anyone checks the signature.

A ``Signer`` signs bytes and names its key by the SHA-256 fingerprint of its X.509
certificate (``key_id``); the certificate is what a verifier trusts. Built in:

- ``LocalSigner``: a private key on disk, Ed25519 (default) or ECDSA P-256 with SHA-256;
- ``ExternalSigner``: a signing service over HTTP(S) (a 签名验签服务器 or an HSM front end).

SM2 (GB/T 32918) extension point: ``cryptography`` has no SM2, and no well-kept Python
package signs with it safely (several take the nonce from ``random``). Plug SM2 in
without touching this module:

1. signing: run a vetted SM2 signing service and use ``ExternalSigner(url, certificate,
   algorithm="sm2-sm3")``, or write a ``Signer`` subclass over a vetted library or a
   PKCS#11 device and register it with ``register_signer_backend("sm2", factory)``;
2. checking: ``register_signature_algorithm("sm2-sm3", verify)`` with a function that
   raises ``InvalidSignature`` on a bad signature. Until one is registered, seals signed
   with SM2 are reported as "cannot be checked", never as valid.
"""

from __future__ import annotations

import abc
import base64
import json
from collections.abc import Callable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

ED25519 = "ed25519"
ECDSA_P256 = "ecdsa-p256-sha256"


class SignerError(Exception):
    """Signing is unavailable or answered something unusable; seals stay pending and are retried."""


def key_id_of(certificate: x509.Certificate) -> str:
    """The key id used everywhere: SHA-256 fingerprint of the certificate DER, lowercase hex.

    Anyone can recompute it: ``openssl x509 -in cert.pem -noout -fingerprint -sha256``.
    """
    return certificate.fingerprint(hashes.SHA256()).hex()


def fingerprint_text(key_id: str) -> str:
    """``ab12…`` → ``AB:12:…`` as openssl prints it."""
    return ":".join(key_id[i : i + 2] for i in range(0, len(key_id), 2)).upper()


# ---------------------------------------------------------------------------- checking


def _verify_ed25519(certificate: x509.Certificate, data: bytes, signature: bytes) -> None:
    key = certificate.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidSignature("certificate does not hold an Ed25519 key")
    key.verify(signature, data)


def _verify_ecdsa_p256(certificate: x509.Certificate, data: bytes, signature: bytes) -> None:
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise InvalidSignature("certificate does not hold an ECDSA P-256 key")
    key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


_VERIFIERS: dict[str, Callable[[x509.Certificate, bytes, bytes], None]] = {
    ED25519: _verify_ed25519,
    ECDSA_P256: _verify_ecdsa_p256,
}


def register_signature_algorithm(name: str, verify: Callable[[x509.Certificate, bytes, bytes], None]) -> None:
    """Teach the verifiers a signature algorithm (the SM2 extension point); ``verify`` raises InvalidSignature."""
    _VERIFIERS[name] = verify


def can_verify(algorithm: str) -> bool:
    return algorithm in _VERIFIERS


def verify_signature(certificate: x509.Certificate, algorithm: str, data: bytes, signature: bytes) -> None:
    """Raise ``InvalidSignature`` unless ``signature`` is ``certificate``'s key's signature over ``data``."""
    verify = _VERIFIERS.get(algorithm)
    if verify is None:
        raise InvalidSignature(f"no verifier for signature algorithm {algorithm!r} is installed")
    try:
        verify(certificate, data, signature)
    except InvalidSignature:
        raise
    except (ValueError, TypeError) as exc:  # malformed DER signature, wrong key type …
        raise InvalidSignature(str(exc)) from exc


def algorithm_of_certificate(certificate: x509.Certificate) -> str:
    try:
        key = certificate.public_key()
    except Exception as exc:  # an SM2 key, for one, is not something cryptography can load
        raise SignerError(f"certificate key type is not supported by cryptography ({exc}); name the algorithm") from exc
    if isinstance(key, ed25519.Ed25519PublicKey):
        return ED25519
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1":
        return ECDSA_P256
    raise SignerError(f"certificate key {type(key).__name__} is not a seal key (use Ed25519 or ECDSA P-256)")


# ---------------------------------------------------------------------------- signing


class Signer(abc.ABC):
    """Signs seal statements and archive manifests. Implementations must be safe to call from asyncio."""

    algorithm: str

    @property
    @abc.abstractmethod
    def certificate(self) -> x509.Certificate:
        """The X.509 certificate a verifier trusts for this key."""

    @property
    def key_id(self) -> str:
        return key_id_of(self.certificate)

    @property
    def certificate_pem(self) -> str:
        from cryptography.hazmat.primitives.serialization import Encoding

        return self.certificate.public_bytes(Encoding.PEM).decode("ascii")

    @abc.abstractmethod
    async def sign(self, data: bytes) -> bytes:
        """The signature over ``data``; raises ``SignerError`` when signing is unavailable."""

    async def close(self) -> None:
        """Release connections; the default holds none."""
        return None


class LocalSigner(Signer):
    """A private key held by the gateway (Ed25519 or ECDSA P-256)."""

    def __init__(self, private_key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey,
                 certificate: x509.Certificate) -> None:
        if isinstance(private_key, ed25519.Ed25519PrivateKey):
            self.algorithm = ED25519
        elif isinstance(private_key, ec.EllipticCurvePrivateKey) and private_key.curve.name == "secp256r1":
            self.algorithm = ECDSA_P256
        else:
            raise SignerError(f"unsupported seal key type {type(private_key).__name__}: use Ed25519 or ECDSA P-256")
        if algorithm_of_certificate(certificate) != self.algorithm:
            raise SignerError("the seal certificate does not belong to the seal private key (key types differ)")
        self._key = private_key
        self._certificate = certificate
        probe = self._sign_sync(b"gateway seal key check")
        try:
            verify_signature(certificate, self.algorithm, b"gateway seal key check", probe)
        except InvalidSignature as exc:
            raise SignerError("the seal certificate does not belong to the seal private key") from exc

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    def _sign_sync(self, data: bytes) -> bytes:
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(data)
        return self._key.sign(data, ec.ECDSA(hashes.SHA256()))

    async def sign(self, data: bytes) -> bytes:
        return self._sign_sync(data)


class ExternalSigner(Signer):
    """Signs through a signing service over HTTP(S).

    Protocol (JSON both ways):

    - ``POST {url}`` with ``{"algorithm": ..., "key_id": ..., "data": base64(bytes)}``
      answers ``200 {"signature": base64(signature), "key_id": ...}``;
    - the certificate is pinned when the signer is built (``fetch_certificate`` reads it
      from ``GET {certificate_url}`` once, at set-up, for the operator to check and save).

    Every returned signature is checked against the pinned certificate before it is used,
    so a misbehaving service can delay seals but never get a wrong signature stored.
    """

    def __init__(
        self,
        url: str,
        certificate: x509.Certificate,
        *,
        algorithm: str | None = None,
        timeout: float = 10.0,
        ssl: Any = None,
        token: str | None = None,
        verify_locally: bool = True,
    ) -> None:
        self.url = url
        self._certificate = certificate
        self.algorithm = algorithm or algorithm_of_certificate(certificate)
        self.timeout = timeout
        self._ssl = ssl
        self._token = token
        self._verify_locally = verify_locally
        if verify_locally and not can_verify(self.algorithm):
            raise SignerError(
                f"signing service {url}: cannot check its {self.algorithm} signatures; register a verifier with "
                "register_signature_algorithm() or pass verify_locally=False"
            )
        self._session: Any = None

    @property
    def certificate(self) -> x509.Certificate:
        return self._certificate

    async def _client(self) -> Any:
        import aiohttp

        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def sign(self, data: bytes) -> bytes:
        import aiohttp

        session = await self._client()
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        payload = {"algorithm": self.algorithm, "key_id": self.key_id, "data": base64.b64encode(data).decode("ascii")}
        try:
            async with session.post(self.url, json=payload, headers=headers, ssl=self._ssl) as resp:
                text = await resp.text()
                if resp.status != 200:
                    raise SignerError(f"signing service {self.url} answered HTTP {resp.status}: {text[:200]}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise SignerError(f"signing service {self.url} unreachable: {exc!r}") from exc
        try:
            answer = json.loads(text)
            signature = base64.b64decode(answer["signature"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise SignerError(f"signing service {self.url} answered without a base64 'signature': {text[:200]}") from exc
        if answer.get("key_id") not in (None, self.key_id):
            raise SignerError(f"signing service {self.url} signed with key {answer.get('key_id')}, expected {self.key_id}")
        if self._verify_locally:
            try:
                verify_signature(self._certificate, self.algorithm, data, signature)
            except InvalidSignature as exc:
                raise SignerError(f"signing service {self.url} returned a signature that does not verify "
                                  f"against the pinned certificate {self.key_id}") from exc
        return signature

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @staticmethod
    async def fetch_certificate(certificate_url: str, *, timeout: float = 10.0, ssl: Any = None) -> x509.Certificate:
        """Read the service's PEM certificate once, at set-up; save it and pin it."""
        import aiohttp

        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.get(certificate_url, ssl=ssl) as resp:
                body = await resp.read()
                if resp.status != 200:
                    raise SignerError(f"signing service {certificate_url} answered HTTP {resp.status}")
        try:
            return x509.load_pem_x509_certificate(body)
        except ValueError as exc:
            raise SignerError(f"signing service {certificate_url} did not return a PEM certificate") from exc


# ---------------------------------------------------------------------------- backends

_BACKENDS: dict[str, Callable[..., Signer]] = {}


def register_signer_backend(name: str, factory: Callable[..., Signer]) -> None:
    """Make ``make_signer(name, **options)`` build a Signer (an SM2 backend registers here)."""
    _BACKENDS[name] = factory


def make_signer(backend: str, **options: Any) -> Signer:
    """``local`` (certs_dir=…), ``external`` (url=…, certificate=…) or a registered backend."""
    factory = _BACKENDS.get(backend)
    if factory is None:
        raise SignerError(f"unknown seal signer backend {backend!r}; known: {sorted(_BACKENDS)}")
    return factory(**options)


def _local_backend(*, certs_dir: Any, create: bool = False, algorithm: str = ED25519) -> Signer:
    from gateway.audit.keys import load_local_signer, load_or_create_dev_signer

    return load_or_create_dev_signer(certs_dir, algorithm) if create else load_local_signer(certs_dir)


def _external_backend(*, url: str, certificate: x509.Certificate | str, **options: Any) -> Signer:
    if isinstance(certificate, str):
        with open(certificate, "rb") as fh:
            certificate = x509.load_pem_x509_certificate(fh.read())
    return ExternalSigner(url, certificate, **options)


register_signer_backend("local", _local_backend)
register_signer_backend("external", _external_backend)
