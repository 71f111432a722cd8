"""Retention: move old, signed-sealed audit entries out of the database into signed, chained archive files.

Only whole seals that are signed are archived, so every archived entry stays provable.
Each archive file names the previous archive's manifest hash; its first entry chains on
from the previous archive's last entry, and the first entry left in the database chains
on from the last archived one, so ``verify_store(store, archives_dir=...)`` walks one
unbroken chain across files and database. The range is verified before anything is
deleted; the file is written and fsynced before the database forgets the entries.
"""

from __future__ import annotations

import asyncio
import base64
import os
import zipfile
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography import x509

from gateway.audit._archive_file import CASES, ENTRIES, MANIFEST, SEALS, SIGNATURE, archive_name, seal_record
from gateway.audit._scan import CHUNK, _as_bytes, scan_db
from gateway.audit.chain import GENESIS, HASHERS, canonical, digest_function
from gateway.audit.model import ARCHIVE_TYPE, MERKLE_SCHEME, ArchiveRow, SealRow
from gateway.audit.signers import Signer
from gateway.audit.verify import SealView, _check_seal

_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_README = """Audit archive of the exchange gateway.

entries.jsonl: one entry per line, "<entry hash> <canonical JSON body>", in seq order;
entry hash = H(previous entry hash bytes || body bytes), H = the manifest's "algorithm".
seals.jsonl: signed statements over ranges of these entries (RFC 6962 Merkle roots).
manifest.json: the range, the chain hashes at both ends, the previous archive's manifest
hash and digests of the other members; signature.json signs the manifest bytes.
Check it on any machine with: python offline_verify.py <this file> --cert <trusted certificate>
"""


class ArchiveError(Exception):
    """Archiving stopped before anything was deleted; the message says why and what to do."""


@dataclass(slots=True)
class ArchiveOutcome:
    row: ArchiveRow | None
    path: Path | None
    message: str
    deleted: int = 0


def _now() -> datetime:
    return datetime.now(_CHINA)


def _choose(seals: list[SealRow], start: int, before_seq: int | None, cutoff: datetime | None) -> tuple[list[SealRow], str]:
    chosen: list[SealRow] = []
    reason = "no sealed entries to archive"
    for s in seals:
        if s.state != "signed":
            reason = f"seal {s.seal} is not signed yet; archiving stops before it"
            break
        if before_seq is not None and s.to_seq >= before_seq:
            reason = f"seal {s.seal} reaches entry {s.to_seq}, not before {before_seq}"
            break
        if cutoff is not None:
            last_at = s.decoded().get("last_at")
            if not last_at or datetime.fromisoformat(last_at) >= cutoff:
                reason = f"seal {s.seal} holds entries from {last_at}, not older than {cutoff.isoformat()}"
                break
        chosen.append(s)
    if chosen and chosen[0].from_seq != start:
        raise ArchiveError(f"the first seal in the database starts at entry {chosen[0].from_seq}, but the next "
                           f"entry to archive is {start}; run `gateway audit verify`")
    return chosen, reason


def _write_file(
    url: str,
    tmp: Path,
    algorithm: str,
    from_seq: int,
    to_seq: int,
    seals: list[SealRow],
    certificates: dict[str, str],
) -> tuple[str, str, str]:
    """Write entries, cases, seals and certificates; returns the digests of the three data members."""
    from gateway.store.audit_source import open_audit_source

    entries_hash = HASHERS[algorithm]()
    cases: dict[str, list[int]] = {}
    source = open_audit_source(url)
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            with zf.open(ENTRIES, "w", force_zip64=True) as out:
                a = from_seq
                while a <= to_seq:
                    b = min(to_seq, a + CHUNK - 1)
                    rows = source.entries_with_case(a, b)
                    if len(rows) != b - a + 1:
                        raise ArchiveError(f"entries {a}..{b} are not all in the database any more; nothing archived")
                    data = b"".join(str(r[1]).encode("ascii") + b" " + _as_bytes(r[2]) + b"\n" for r in rows)
                    entries_hash.update(data)
                    out.write(data)
                    for r in rows:
                        if r[3] is not None:
                            cases.setdefault(r[3], []).append(r[0])
                    a = b + 1
            cases_bytes = canonical(cases)
            seals_bytes = b"".join(canonical(seal_record(s.seal, s.from_seq, s.to_seq, s.statement, s.signature,
                                                         s.key_id, s.signature_algorithm)) + b"\n"
                                   for s in seals)
            zf.writestr(CASES, cases_bytes)
            zf.writestr(SEALS, seals_bytes)
            for key_id, pem in sorted(certificates.items()):
                zf.writestr(f"certificates/{key_id}.pem", pem)
            zf.writestr("README.txt", _README)
    finally:
        source.close()
    h = digest_function(algorithm)
    return entries_hash.digest().hex(), h(cases_bytes).hex(), h(seals_bytes).hex()


def _finish_file(tmp: Path, manifest: bytes, signature: dict[str, Any], final: Path) -> None:
    with zipfile.ZipFile(tmp, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(MANIFEST, manifest)
        zf.writestr(SIGNATURE, canonical(signature))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, final)
    dir_fd = os.open(final.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


async def archive(
    store: Any,
    out_dir: str | Path,
    *,
    signer: Signer,
    before_seq: int | None = None,
    older_than: timedelta | datetime | None = None,
    sign_timeout: float = 30.0,
) -> ArchiveOutcome:
    """Archive the longest run of signed seals whose entries are all before ``before_seq`` / older than ``older_than``.

    ``older_than`` is an age (timedelta) or a cut-off time. Returns what was done; raises
    ArchiveError (nothing deleted) when the range does not verify or signing fails.
    """
    if before_seq is None and older_than is None:
        raise ValueError("say what to archive: before_seq or older_than")
    cutoff = (_now() - older_than) if isinstance(older_than, timedelta) else older_than
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    algorithm: str = store.audit_algorithm
    deleted = await store.delete_archived_entries()  # finish an earlier run that stopped half-way
    archives: list[ArchiveRow] = await store.list_archives()
    last = archives[-1] if archives else None
    start = last.to_seq + 1 if last else 1
    chosen, reason = _choose(await store.list_seals(), start, before_seq, cutoff)
    if not chosen:
        return ArchiveOutcome(None, None, f"nothing to archive: {reason}", deleted)
    from_seq, to_seq = start, chosen[-1].to_seq
    prev_hash = last.last_hash if last else GENESIS

    # Verify before anything leaves the database: the chain, and every seal against it.
    scan = await asyncio.to_thread(scan_db, store.url, algorithm, from_seq, to_seq, prev_hash,
                                   [(s.from_seq, s.to_seq) for s in chosen])
    if scan.problem is not None:
        raise ArchiveError(f"will not archive entries {from_seq}..{to_seq}: {scan.problem.text}; "
                           "run `gateway audit verify`")
    stored_certs: dict[str, str] = await store.audit_certificates()
    stored_certs.setdefault(signer.key_id, signer.certificate_pem)
    certs = {k: x509.load_pem_x509_certificate(v.encode("ascii")) for k, v in stored_certs.items()}
    prev = (last.last_seal, last.to_seq, last.last_seal_hash, last.last_hash) if last else (0, 0, GENESIS, GENESIS)
    for s in chosen:
        view = SealView(s.seal, s.from_seq, s.to_seq, s.statement, s.statement_hash, s.signature,
                        s.key_id, s.signature_algorithm, "database")
        problem, own_hash = _check_seal(view, prev, scan.roots, scan.hashes, certs, algorithm)
        if problem:
            raise ArchiveError(f"will not archive entries {from_seq}..{to_seq}: {problem}; run `gateway audit verify`")
        prev = (s.seal, s.to_seq, own_hash, s.decoded()["head_hash"])
    used = {s.key_id for s in chosen if s.key_id} | {signer.key_id}
    file_certs = {k: stored_certs[k] for k in used if k in stored_certs}

    number = (last.archive + 1) if last else 1
    final = folder / archive_name(number, from_seq, to_seq)
    tmp = final.with_name(final.name + ".partial")
    try:
        entries_hash, cases_hash, seals_hash = await asyncio.to_thread(
            _write_file, store.url, tmp, algorithm, from_seq, to_seq, chosen, file_certs)
        created = _now().isoformat(timespec="milliseconds")
        h = digest_function(algorithm)
        manifest = canonical({
            "type": ARCHIVE_TYPE, "archive": number, "from_seq": from_seq, "to_seq": to_seq,
            "count": to_seq - from_seq + 1, "algorithm": algorithm, "merkle": MERKLE_SCHEME,
            "prev_hash": prev_hash, "last_hash": scan.last_hash, "prev_archive": last.manifest_hash if last else GENESIS,
            "first_seal": chosen[0].seal, "last_seal": chosen[-1].seal, "last_seal_hash": prev[2],
            "entries_hash": entries_hash, "cases_hash": cases_hash, "seals_hash": seals_hash,
            "created_at": created,
        })
        try:
            signature = await asyncio.wait_for(signer.sign(manifest), sign_timeout)
        except Exception as exc:
            raise ArchiveError(f"cannot archive: the seal signer is unavailable ({exc or type(exc).__name__}); "
                               "archives must be signed, try again when it is back") from exc
        await asyncio.to_thread(_finish_file, tmp, manifest, {
            "key_id": signer.key_id, "algorithm": signer.algorithm,
            "signature": base64.b64encode(signature).decode("ascii")}, final)
    finally:
        if tmp.exists():
            tmp.unlink()
    row = ArchiveRow(number, final.name, h(manifest).hex(), from_seq, to_seq, prev_hash, scan.last_hash or GENESIS,
                     chosen[0].seal, chosen[-1].seal, prev[2], to_seq - from_seq + 1, created)
    await store.add_audit_certificate(signer.key_id, signer.algorithm, signer.certificate_pem)
    await store.record_archive(row)
    deleted += await store.delete_archived_entries()
    return ArchiveOutcome(row, final, f"archived entries {from_seq}..{to_seq} (seals {chosen[0].seal}.."
                                      f"{chosen[-1].seal}) to {final}; {deleted} entries removed from the database",
                          deleted)


def read_archive_entries(path: str | Path, seqs: set[int], ranges: list[tuple[int, int]], first_seq: int,
                         prev_hash: str) -> tuple[dict[int, tuple[str, str, bytes]], dict[tuple[int, int], list[bytes]]]:
    """For evidence export: ({seq: (hash, prev hash, body)} for ``seqs``, {range: entry hashes} for ``ranges``)."""
    from gateway.audit._archive_file import iter_entry_lines

    wanted: dict[int, tuple[str, str, bytes]] = {}
    hashes: dict[tuple[int, int], list[bytes]] = {r: [] for r in ranges}
    seq, prev = first_seq, prev_hash
    for lines in iter_entry_lines(path):
        for line in lines:
            hx = line[:64].decode("ascii", "replace")
            if seq in seqs:
                wanted[seq] = (hx, prev, line[65:-1] if line.endswith(b"\n") else line[65:])
            for (a, b), acc in hashes.items():
                if a <= seq <= b:
                    acc.append(bytes.fromhex(hx))
            prev = hx
            seq += 1
    return wanted, hashes

