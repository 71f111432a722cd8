"""Rows of the seal and archive bookkeeping as the store hands them to the audit code (no crypto here)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from gateway.audit.chain import GENESIS

SEAL_TYPE = "gateway.audit.seal/2"
SEAL_TYPE_V1 = "gateway.audit.seal/1"  # seals made before the chain recorded their making and signing
SEAL_TYPES = (SEAL_TYPE_V1, SEAL_TYPE)
ARCHIVE_TYPE = "gateway.audit.archive/1"
MERKLE_SCHEME = "rfc6962"


class SealConflict(Exception):
    """Another sealer (another process) sealed first; re-read the seal head and try again."""


@dataclass(slots=True)
class SealRow:
    """One seal: the statement over entries from_seq..to_seq, and its signature once signed.

    A seal is signed exactly when it carries a signature; nothing else says so. ``attempts`` and
    ``last_error`` are the sealer's bookkeeping while it waits for a signer, not evidence.
    """

    seal: int
    from_seq: int
    to_seq: int
    statement: bytes  # canonical JSON, exactly the bytes that are (or will be) signed
    statement_hash: str
    signature: bytes | None
    key_id: str | None
    signature_algorithm: str | None
    attempts: int = 0
    last_error: str | None = None

    @property
    def state(self) -> str:
        return "pending" if self.signature is None else "signed"

    def decoded(self) -> dict[str, Any]:
        return json.loads(self.statement)


@dataclass(slots=True)
class SealHead:
    """Where the next seal starts: the last seal (in the database or, after archiving, in an archive)."""

    seal: int = 0
    to_seq: int = 0
    head_hash: str = GENESIS  # entry hash at to_seq
    statement_hash: str = GENESIS


@dataclass(slots=True)
class ArchiveRow:
    """Bookkeeping for one archive file: which entries and seals left the database for it."""

    archive: int
    file: str
    manifest_hash: str
    from_seq: int
    to_seq: int
    prev_hash: str  # entry hash before from_seq
    last_hash: str  # entry hash at to_seq
    first_seal: int
    last_seal: int
    last_seal_hash: str
    entries: int
    created_at: str
