"""A development PKI in ``certs/``: a CA, the API's server certificate, client certificates for counterparts.

``gateway certs init`` and ``gateway certs issue SYSTEM`` call this. Keys are written
0600 through a temporary file and never overwritten without ``force``; ``certs/`` is
git-ignored. Production uses certificates from the counterparts' real CA (or the
government's): the development CA's key lives beside the gateway, so anyone who can read
it can issue certificates the API trusts — `gateway check` warns while it is in use.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.security.checks import DEV_CA_CN
from gateway.security.counterparts import fingerprint_text

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
CLIENTS_DIR = "clients"
DEFAULT_ORG = "exchange-gateway development"
KeyType = Literal["ec", "rsa"]
_SYSTEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


class PkiError(Exception):
    """The development PKI cannot do what was asked (a file exists, the CA is missing …)."""


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    cert: Path
    key: Path
    fingerprint: str  # lowercase hex SHA-256 of the DER
    subject: str  # RFC 4514
    not_after: dt.datetime

    @property
    def fingerprint_text(self) -> str:
        return fingerprint_text(self.fingerprint)


@dataclass(frozen=True, slots=True)
class DevPki:
    ca: CertificateFiles
    server: CertificateFiles
    seal_created: Path | None  # the seal key, when init made it


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    """PKCS#8 PEM, mode 0600 from the first byte (a temporary file renamed into place)."""
    data = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    os.replace(tmp, path)


def _new_key(key_type: KeyType) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def _files(cert: x509.Certificate, cert_path: Path, key_path: Path) -> CertificateFiles:
    return CertificateFiles(cert_path, key_path, cert.fingerprint(hashes.SHA256()).hex(),
                            cert.subject.rfc4514_string(), cert.not_valid_after_utc)


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_usage(*, ca: bool, key_encipherment: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=key_encipherment,
                         data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                         encipher_only=False, decipher_only=False)


def _san(hosts: list[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host.strip("[]"))))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def _existing(paths: list[Path]) -> list[Path]:
    return [p for p in paths if p.exists()]


def init_dev_pki(certs_dir: Path, *, hosts: list[str] | None = None, organization: str = DEFAULT_ORG,
                 days: int = 397, ca_days: int = 1825, force: bool = False, seal_key: bool = True) -> DevPki:
    """Write a development CA, a server certificate for ``hosts`` and (if absent) the audit seal key."""
    certs_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(certs_dir, 0o700)
    paths = [certs_dir / n for n in (CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY)]
    if not force and _existing(paths):
        raise PkiError(f"{', '.join(map(str, _existing(paths)))} already exist(s); pass --force to replace the "
                       "development CA (every certificate it issued stops being trusted)")
    hosts = list(dict.fromkeys(hosts or ["localhost", "127.0.0.1", "::1"]))
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name(DEV_CA_CN, organization)
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder().subject_name(_name(hosts[0], organization)).issuer_name(ca_name)
        .public_key(server_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(_san(hosts), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(server_key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private_key(certs_dir / CA_KEY, ca_key)
    _write_cert(certs_dir / CA_CERT, ca_cert)
    write_private_key(certs_dir / SERVER_KEY, server_key)
    _write_cert(certs_dir / SERVER_CERT, server_cert)
    seal_created = None
    if seal_key:
        from gateway.audit.keys import KEY_FILE, generate_seal_key

        if not (certs_dir / KEY_FILE).exists():
            seal_created = generate_seal_key(certs_dir).key_path
    return DevPki(_files(ca_cert, certs_dir / CA_CERT, certs_dir / CA_KEY),
                  _files(server_cert, certs_dir / SERVER_CERT, certs_dir / SERVER_KEY), seal_created)


def _load_ca(certs_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey]:
    cert_path, key_path = certs_dir / CA_CERT, certs_dir / CA_KEY
    if not cert_path.exists() or not key_path.exists():
        raise PkiError(f"no development CA in {certs_dir} ({CA_CERT} and {CA_KEY}); run `gateway certs init` first")
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise PkiError(f"{key_path} is not an EC or RSA key")
    return cert, key


def issue_client_certificate(certs_dir: Path, system: str, *, out_dir: Path | None = None,
                             organization: str | None = None, days: int = 365, key_type: KeyType = "ec",
                             force: bool = False) -> CertificateFiles:
    """A client certificate (TLS client auth and signing) for counterpart ``system``, CN = the system name."""
    if not _SYSTEM.match(system):
        raise PkiError(f"{system!r} is not a system name (letters, digits, _ . -)")
    ca_cert, ca_key = _load_ca(certs_dir)
    folder = out_dir or certs_dir / CLIENTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{system}.crt", folder / f"{system}.key"
    if not force and _existing([cert_path, key_path]):
        raise PkiError(f"{cert_path} already exists; pass --force to issue a new one (the old one keeps working "
                       "until removed from gateway.toml when bound by fingerprint)")
    org_attrs = ca_cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    org = organization or (str(org_attrs[0].value) if org_attrs else DEFAULT_ORG)
    now = dt.datetime.now(dt.UTC)
    key = _new_key(key_type)
    cert = (
        x509.CertificateBuilder().subject_name(_name(system, org)).issuer_name(ca_cert.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False, key_encipherment=key_type == "rsa"), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    write_private_key(key_path, key)
    _write_cert(cert_path, cert)
    return _files(cert, cert_path, key_path)


def describe_certificate(path: Path) -> list[CertificateFiles]:
    """Fingerprint, subject and expiry of every certificate in a PEM file."""
    try:
        certs = x509.load_pem_x509_certificates(path.read_bytes())
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise PkiError(f"{path} holds no PEM certificate ({exc})") from exc
    return [_files(c, path, path) for c in certs]
