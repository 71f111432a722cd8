"""The demo's real credentials: a development CA and server certificate, the hall platform's client certificate,
the HMAC key the REST sink signs with, and the keyring of encryption at rest — all generated into the demo's
working directory with private modes, the way an operator would with `gateway certs` and `gateway encryption`.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from gateway.security.devpki import CertificateFiles, DevPki, init_dev_pki, issue_client_certificate
from gateway.security.fieldcrypt import AES_256_GCM, new_key_line

HALL = "hall_platform"


@dataclass(frozen=True)
class DemoCredentials:
    pki: DevPki
    hall_certificate: CertificateFiles  # the hall platform's client certificate (mutual TLS when it pushes)
    hmac_key_file: Path  # hex; the gateway signs what it sends the hall with it
    keyring: Path  # encryption at rest

    @property
    def hmac_key(self) -> bytes:
        return bytes.fromhex(self.hmac_key_file.read_text(encoding="utf-8").strip())


def _private_file(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


def prepare_credentials(workdir: Path) -> DemoCredentials:
    certs = workdir / "certs"
    pki = init_dev_pki(certs, organization="exchange-gateway demo", force=True)
    hall = issue_client_certificate(certs, HALL, force=True)
    folder = workdir / "secrets"
    folder.mkdir(parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    hmac_key = folder / "hall-hmac.key"
    _private_file(hmac_key, secrets.token_hex(32) + "\n")
    keyring = folder / "field-keys"
    _private_file(keyring, new_key_line(AES_256_GCM, "demo-1") + "\n")
    return DemoCredentials(pki, hall, hmac_key, keyring)
