"""The archive file format: one zip per archived range of the audit chain.

Members (all UTF-8):

- ``entries.jsonl``  one line per entry: ``<entry hash hex> <canonical body>``, in seq order;
- ``seals.jsonl``    one JSON object per seal over these entries (statement text, signature …);
- ``cases.json``     ``{case_no: [seq, …]}`` so evidence export finds a case without a scan;
- ``certificates/<key id>.pem``  the certificates that signed the seals and the manifest;
- ``manifest.json``  canonical JSON: range, chain hashes, previous archive's manifest hash,
                     digests of the members above;
- ``signature.json`` ``{"key_id", "algorithm", "signature"}`` over the manifest bytes.
"""

from __future__ import annotations

import base64
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENTRIES = "entries.jsonl"
SEALS = "seals.jsonl"
CASES = "cases.json"
MANIFEST = "manifest.json"
SIGNATURE = "signature.json"


def archive_name(archive: int, from_seq: int, to_seq: int) -> str:
    return f"audit-archive-{archive:06d}-{from_seq:012d}-{to_seq:012d}.zip"


@dataclass(slots=True)
class ArchiveMeta:
    manifest: dict[str, Any]
    manifest_bytes: bytes
    signature: dict[str, Any]
    seals: list[dict[str, Any]]
    certificates: dict[str, str]  # key id -> PEM


def read_meta(path: str | Path) -> ArchiveMeta:
    """Everything but the entries; raises OSError, KeyError, ValueError or BadZipFile on a damaged file."""
    with zipfile.ZipFile(path) as zf:
        manifest_bytes = zf.read(MANIFEST)
        signature = json.loads(zf.read(SIGNATURE))
        seals = [json.loads(line) for line in zf.read(SEALS).splitlines() if line.strip()]
        certs = {name.rsplit("/", 1)[-1].removesuffix(".pem"): zf.read(name).decode("ascii")
                 for name in zf.namelist() if name.startswith("certificates/") and name.endswith(".pem")}
    return ArchiveMeta(json.loads(manifest_bytes), manifest_bytes, signature, seals, certs)


def read_cases(path: str | Path) -> dict[str, list[int]]:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read(CASES))


def iter_entry_lines(path: str | Path, chunk_bytes: int = 1 << 20) -> Iterator[list[bytes]]:
    """Lines of entries.jsonl in chunks of about ``chunk_bytes``, each line with its newline."""
    with zipfile.ZipFile(path) as zf, zf.open(ENTRIES) as raw:
        stream = io.BufferedReader(raw, 1 << 20)  # type: ignore[arg-type]
        while True:
            lines = stream.readlines(chunk_bytes)
            if not lines:
                return
            yield lines


def seal_record(seal: int, from_seq: int, to_seq: int, statement: bytes, signature: bytes | None,
                key_id: str | None, algorithm: str | None) -> dict[str, Any]:
    """One line of seals.jsonl. When a seal was signed is in the chain (its seal_signed entry), not here."""
    return {
        "seal": seal, "from_seq": from_seq, "to_seq": to_seq, "statement": statement.decode("utf-8"),
        "signature": base64.b64encode(signature).decode("ascii") if signature is not None else None,
        "key_id": key_id, "signature_algorithm": algorithm,
    }
