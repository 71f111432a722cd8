"""Throw-away test PKI for the SOAP tests: a CA, a server certificate for 127.0.0.1, a client
certificate (TLS client auth and WS-Security signing) and a rogue self-signed client.

Keys are written only into the directory the caller gives (a pytest tmp dir); none is committed.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path  # encrypted with client_key_passphrase
    client_key_passphrase: str
    rogue_cert: Path  # self-signed, same subject as the client: must be refused
    rogue_key: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Exchange Gateway Tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _write_key(path: Path, key: rsa.RSAPrivateKey, passphrase: str | None) -> None:
    encryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption))
    path.chmod(0o600)


def _issue(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer_name: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    server: bool = False,
    client: bool = False,
    serial: int,
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
        usages = []
        if server:
            usages.append(ExtendedKeyUsageOID.SERVER_AUTH)
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
        if client:
            usages.append(ExtendedKeyUsageOID.CLIENT_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def generate_pki(directory: Path, passphrase: str = "client-key-passphrase") -> Pki:
    """Write a fresh CA, server, client and rogue client into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = _key()
    ca_cert = _issue("Test Exchange CA", ca_key, _name("Test Exchange CA"), ca_key, ca=True, serial=1)
    server_key = _key()
    server_cert = _issue("127.0.0.1", server_key, ca_cert.subject, ca_key, server=True, serial=2)
    client_key = _key()
    client_cert = _issue("hall-gateway", client_key, ca_cert.subject, ca_key, client=True, serial=3)
    rogue_key = _key()
    rogue_cert = _issue("hall-gateway", rogue_key, _name("hall-gateway"), rogue_key, client=True, serial=4)

    def cert_file(name: str, cert: x509.Certificate) -> Path:
        path = directory / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    pki = Pki(
        directory=directory,
        ca_cert=cert_file("ca.pem", ca_cert),
        server_cert=cert_file("server.pem", server_cert),
        server_key=directory / "server-key.pem",
        client_cert=cert_file("client.pem", client_cert),
        client_key=directory / "client-key.pem",
        client_key_passphrase=passphrase,
        rogue_cert=cert_file("rogue.pem", rogue_cert),
        rogue_key=directory / "rogue-key.pem",
    )
    _write_key(pki.server_key, server_key, None)
    _write_key(pki.client_key, client_key, passphrase)
    _write_key(pki.rogue_key, rogue_key, None)
    return pki
