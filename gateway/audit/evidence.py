"""Case evidence bundles: one JSON file that proves a case's audit entries to anyone, offline.

The bundle holds the case's entries (bodies exactly as stored), for each the RFC 6962
inclusion path to the seal that covers it, the seal statements and signatures (a
contiguous run, so their own chain can be checked), and the certificates. It is
checked by ``offline_verify.py``, which needs only Python and ``cryptography``.
Entries are found in the database and, when the folder is given, in archive files.
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from gateway.audit._archive_file import read_cases, read_meta
from gateway.audit.merkle import MerkleTree
from gateway.audit.model import MERKLE_SCHEME, ArchiveRow, SealRow
from gateway.audit.retention import read_archive_entries

BUNDLE_FORMAT = "gateway.audit.evidence/1"
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


@dataclass
class ExportSummary:
    path: Path
    case: str
    entries: int = 0
    provable: int = 0  # covered by a signed seal
    pending: int = 0  # covered by a seal that is not signed yet
    unsealed: int = 0
    seals: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Seal:
    seal: int
    from_seq: int
    to_seq: int
    statement: bytes
    signature: bytes | None
    key_id: str | None
    algorithm: str | None
    source: str

    @property
    def head(self) -> dict[str, Any]:
        return json.loads(self.statement)


def _text(data: bytes, name: str) -> dict[str, str]:
    """Exact bytes as JSON: the UTF-8 text when it is UTF-8 (always, for bodies the gateway wrote)."""
    try:
        return {name: data.decode("utf-8")}
    except UnicodeDecodeError:
        return {f"{name}_base64": base64.b64encode(data).decode("ascii")}


def _entry(seq: int, hx: str, prev: str, body: bytes, seal: _Seal | None, tree: MerkleTree | None) -> dict[str, Any]:
    out: dict[str, Any] = {"seq": seq, "hash": hx, "prev_hash": prev, **_text(body, "body")}
    if seal is not None and tree is not None:
        index = seq - seal.from_seq
        out.update({"seal": seal.seal, "leaf_index": index, "tree_size": tree.size,
                    "path": [p.hex() for p in tree.path(index)]})
    else:
        out["seal"] = None
    return out


async def export_case(
    store: Any,
    case_no: str,
    out_path: str | Path,
    *,
    archives_dir: str | Path | None = None,
) -> ExportSummary:
    """Write the evidence bundle for ``case_no`` to ``out_path``; returns what went into it."""
    algorithm: str = store.audit_algorithm
    summary = ExportSummary(Path(out_path), case_no)
    entries: dict[int, dict[str, Any]] = {}
    seals: dict[int, _Seal] = {}
    certificates: dict[str, str] = dict(await store.audit_certificates())
    archives: list[ArchiveRow] = await store.list_archives()

    # -- archived entries
    if archives and archives_dir is None:
        summary.notes.append(f"entries {archives[0].from_seq}..{archives[-1].to_seq} are archived and were not "
                             "searched (no archives folder given)")
    elif archives:
        for row in archives:
            path = Path(archives_dir) / row.file  # type: ignore[arg-type]
            if not path.exists():
                summary.notes.append(f"archive {row.archive} ({row.file}) not found in {archives_dir}: "
                                     f"entries {row.from_seq}..{row.to_seq} were not searched")
                continue
            found = await asyncio.to_thread(_from_archive, path, row, case_no, algorithm)
            a_entries, a_seals, a_certs = found
            entries.update(a_entries)
            seals.update(a_seals)
            for k, v in a_certs.items():
                certificates.setdefault(k, v)

    # -- entries still in the database
    db_start = archives[-1].to_seq + 1 if archives else 1
    db_seals: list[SealRow] = await store.list_seals()
    for s in db_seals:
        seals[s.seal] = _Seal(s.seal, s.from_seq, s.to_seq, s.statement, s.signature if s.state == "signed" else None,
                              s.key_id, s.signature_algorithm, "database")
    seqs = [q for q in await store.audit_case_seqs(case_no) if q >= db_start]
    rows = {r.seq: r for r in await store.audit_rows_at(seqs)}
    ends = [s.to_seq for s in db_seals]
    by_seal: dict[int, list[int]] = {}
    unsealed: list[int] = []
    for q in seqs:
        i = bisect.bisect_left(ends, q)
        if i < len(db_seals) and db_seals[i].from_seq <= q:
            by_seal.setdefault(db_seals[i].seal, []).append(q)
        else:
            unsealed.append(q)
    for seal_no, members in by_seal.items():
        seal = seals[seal_no]
        hashes = await store.audit_hashes(seal.from_seq, seal.to_seq)
        tree = await asyncio.to_thread(MerkleTree, [bytes.fromhex(h) for _, h in hashes], algorithm)
        prev_of_first = seal.head.get("prev_hash", "")
        for q in members:
            i = q - seal.from_seq
            prev = hashes[i - 1][1] if i > 0 else prev_of_first
            entries[q] = _entry(q, rows[q].hash, prev, rows[q].body, seal, tree)
    if unsealed:
        head = await store.audit_seal_head()
        for q in unsealed:
            before = await store.audit_hashes(q - 1, q - 1)
            prev = before[0][1] if before else head.head_hash
            entries[q] = _entry(q, rows[q].hash, prev, rows[q].body, None, None)

    # -- the seals that prove them: a contiguous run so their own chain can be checked
    used = sorted({e["seal"] for e in entries.values() if e.get("seal") is not None})
    run = [seals[n] for n in range(used[0], used[-1] + 1) if n in seals] if used else []
    if used and len(run) != used[-1] - used[0] + 1:
        summary.notes.append(f"seals {used[0]}..{used[-1]} are not all available; the seal chain has holes")
    for e in entries.values():
        seal = seals.get(e["seal"]) if e.get("seal") is not None else None
        if seal is None:
            summary.unsealed += 1
        elif seal.signature is None:
            summary.pending += 1
        else:
            summary.provable += 1
    key_ids = sorted({s.key_id for s in run if s.key_id and s.signature is not None})
    bundle = {
        "format": BUNDLE_FORMAT,
        "case": case_no,
        "exported_at": datetime.now(_CHINA).isoformat(timespec="seconds"),
        "algorithm": algorithm,
        "merkle": MERKLE_SCHEME,
        "notes": summary.notes,
        "certificates": {k: certificates[k] for k in key_ids if k in certificates},
        "seals": [{"seal": s.seal, "from_seq": s.from_seq, "to_seq": s.to_seq, **_text(s.statement, "statement"),
                   "signature": base64.b64encode(s.signature).decode("ascii") if s.signature is not None else None,
                   "key_id": s.key_id if s.signature is not None else None,
                   "signature_algorithm": s.algorithm if s.signature is not None else None,
                   "source": s.source} for s in run],
        "entries": [entries[q] for q in sorted(entries)],
    }
    summary.entries = len(entries)
    summary.seals = len(run)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(bundle, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)
    return summary


def _from_archive(path: Path, row: ArchiveRow, case_no: str, algorithm: str
                  ) -> tuple[dict[int, dict[str, Any]], dict[int, _Seal], dict[str, str]]:
    meta = read_meta(path)
    seals = {s["seal"]: _Seal(s["seal"], s["from_seq"], s["to_seq"], s["statement"].encode("utf-8"),
                              base64.b64decode(s["signature"]) if s.get("signature") else None, s.get("key_id"),
                              s.get("signature_algorithm"), f"archive {row.archive}") for s in meta.seals}
    seqs = read_cases(path).get(case_no, [])
    if not seqs:
        return {}, seals, meta.certificates
    ordered = sorted(seals.values(), key=lambda s: s.to_seq)
    ends = [s.to_seq for s in ordered]
    member: dict[int, _Seal] = {}
    for q in seqs:
        i = bisect.bisect_left(ends, q)
        if i < len(ordered) and ordered[i].from_seq <= q:
            member[q] = ordered[i]
    ranges = sorted({(s.from_seq, s.to_seq) for s in member.values()})
    found, hashes = read_archive_entries(path, set(seqs), ranges, row.from_seq, row.prev_hash)
    trees = {r: MerkleTree(h, algorithm) for r, h in hashes.items()}
    entries = {}
    for q, (hx, prev, body) in found.items():
        seal = member.get(q)
        entries[q] = _entry(q, hx, prev, body, seal, trees[(seal.from_seq, seal.to_seq)] if seal else None)
    return entries, seals, meta.certificates
