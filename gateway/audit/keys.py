"""Seal key material on disk: a development key and self-signed X.509 certificate, and the trusted set.

Files live in the certificates folder (``certs/`` by default, never committed):
``audit-seal.key`` (PKCS#8 PEM, mode 0600) and ``audit-seal.crt``. When a key is
replaced, the old certificate stays as ``audit-seal-<key id prefix>.crt`` so seals it
signed keep verifying; every ``audit-seal*.crt`` in the folder is trusted.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from gateway.audit.signers import ECDSA_P256, ED25519, LocalSigner, SignerError, key_id_of

KEY_FILE = "audit-seal.key"
CERT_FILE = "audit-seal.crt"
DEFAULT_CN = "exchange-gateway audit seal (development)"


@dataclass(frozen=True, slots=True)
class SealKeyFiles:
    key_path: Path
    cert_path: Path
    key_id: str
    algorithm: str
    retired: Path | None = None  # the previous certificate, kept for verification


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def generate_seal_key(
    certs_dir: str | Path,
    algorithm: str = ED25519,
    *,
    common_name: str = DEFAULT_CN,
    organization: str | None = None,
    days: int = 3650,
    force: bool = False,
) -> SealKeyFiles:
    """Create a seal key and a self-signed certificate for it in ``certs_dir``.

    Refuses to replace an existing key unless ``force``; then the old certificate is
    kept (renamed) so that everything it sealed still verifies.
    """
    folder = Path(certs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    retired: Path | None = None
    if key_path.exists() or cert_path.exists():
        if not force:
            raise SignerError(f"{key_path} already exists; pass force=True (--force) to replace the seal key")
        if cert_path.exists():
            old = x509.load_pem_x509_certificate(cert_path.read_bytes())
            retired = folder / f"audit-seal-{key_id_of(old)[:16]}.crt"
            os.replace(cert_path, retired)
    private: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey
    if algorithm == ED25519:
        private = ed25519.Ed25519PrivateKey.generate()
        sign_hash = None
    elif algorithm == ECDSA_P256:
        private = ec.generate_private_key(ec.SECP256R1())
        sign_hash = hashes.SHA256()
    else:
        raise SignerError(f"cannot generate a {algorithm!r} seal key; choose {ED25519} or {ECDSA_P256}")
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    name = x509.Name(attrs)
    now = dt.datetime.now(dt.UTC)
    public = private.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=True, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .sign(private, sign_hash)
    )
    _write_private(key_path, private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    tmp = cert_path.with_name(cert_path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, cert_path)
    return SealKeyFiles(key_path, cert_path, key_id_of(cert), algorithm, retired)


def load_local_signer(certs_dir: str | Path) -> LocalSigner:
    folder = Path(certs_dir)
    key_path, cert_path = folder / KEY_FILE, folder / CERT_FILE
    if not key_path.exists() or not cert_path.exists():
        raise SignerError(f"no seal key in {folder} (expected {KEY_FILE} and {CERT_FILE}); "
                          "create one with `gateway audit keygen`")
    try:
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (ValueError, TypeError) as exc:
        raise SignerError(f"{key_path}: not an unencrypted PEM private key ({exc})") from exc
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError as exc:
        raise SignerError(f"{cert_path}: not a PEM certificate ({exc})") from exc
    if not isinstance(key, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        raise SignerError(f"{key_path}: {type(key).__name__} is not a seal key (use Ed25519 or ECDSA P-256)")
    return LocalSigner(key, cert)


def load_or_create_dev_signer(certs_dir: str | Path, algorithm: str = ED25519) -> LocalSigner:
    """The development path: make the key on first use, then always load it."""
    if not (Path(certs_dir) / KEY_FILE).exists():
        generate_seal_key(certs_dir, algorithm)
    return load_local_signer(certs_dir)


def load_certificates(*sources: str | Path) -> dict[str, x509.Certificate]:
    """Trusted seal certificates by key id, from PEM files and from folders (every ``audit-seal*.crt``)."""
    found: dict[str, x509.Certificate] = {}
    for source in sources:
        path = Path(source)
        files = sorted(path.glob("audit-seal*.crt")) if path.is_dir() else [path]
        for file in files:
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise SignerError(f"cannot read certificate {file}: {exc.strerror}") from exc
            try:
                certs = x509.load_pem_x509_certificates(data)
            except ValueError as exc:
                raise SignerError(f"{file}: not a PEM certificate ({exc})") from exc
            for cert in certs:
                found[key_id_of(cert)] = cert
    return found
