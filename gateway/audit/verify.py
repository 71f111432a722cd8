"""Verify the whole audit trail: every entry's hash, seq continuity, every seal, every archive.

``verify_store(store)`` reads the store through read-only connections of its own, opened
from the store's URL by ``gateway.store.audit_source`` on any backend (in worker processes
when the chain is long), and returns a ``VerifyReport`` whose first
problem names the first broken entry or seal precisely, e.g. "entry 57: hash does not
match its body", "gap: entries 56..56 missing between 55 and 57", "seal 3: signature
invalid". Archives written by ``gateway.audit.archive()`` are checked when their folder is
given, and the chain runs on across them into the database.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from gateway.audit._archive_file import read_meta
from gateway.audit._scan import Problem, ScanResult, _as_bytes, result_from_json, scan_task
from gateway.audit.chain import GENESIS, HASHERS, digest_function
from gateway.audit.model import ARCHIVE_TYPE, SEAL_TYPE, SEAL_TYPE_V1, SEAL_TYPES, ArchiveRow
from gateway.audit.signers import (
    SignerError,
    algorithm_of_certificate,
    can_verify,
    fingerprint_text,
    key_id_of,
    verify_signature,
)

PARALLEL_FROM = 200_000  # entries; below this, starting worker processes costs more than it saves
TASK_TARGET = 250_000  # entries per worker task, rounded to seal boundaries


@dataclass(slots=True)
class SealView:
    """A seal as the verifier sees it, from the database or from an archive."""

    seal: int
    from_seq: int
    to_seq: int
    statement: bytes
    statement_hash: str | None
    signature: bytes | None
    key_id: str | None
    signature_algorithm: str | None
    source: str  # "database" or "archive N"

    @property
    def state(self) -> str:
        """Signed exactly when it carries a signature: no stored flag decides whether one is checked."""
        return "pending" if self.signature is None else "signed"


@dataclass
class VerifyReport:
    """What was checked and what is wrong; ``ok`` only when nothing is."""

    store: str
    algorithm: str
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    entries_checked: int = 0
    first_seq: int = 0
    last_seq: int = 0
    seals_checked: int = 0
    seals_signed: int = 0
    seals_pending: list[int] = field(default_factory=list)
    unsealed_entries: int = 0
    archives_checked: int = 0
    trust: str = ""
    workers: int = 1
    seconds: float = 0.0
    witness_seals: int | None = None  # seals the witness files name, when witness files were given
    witness_last: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_problem(self) -> str | None:
        return self.problems[0] if self.problems else None

    @property
    def rate(self) -> float:
        return self.entries_checked / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok, "store": self.store, "algorithm": self.algorithm, "first_problem": self.first_problem,
            "problems": self.problems, "notes": self.notes, "entries_checked": self.entries_checked,
            "first_seq": self.first_seq, "last_seq": self.last_seq, "seals_checked": self.seals_checked,
            "seals_signed": self.seals_signed, "seals_pending": self.seals_pending,
            "unsealed_entries": self.unsealed_entries, "archives_checked": self.archives_checked,
            "trust": self.trust, "workers": self.workers, "seconds": round(self.seconds, 3),
            "witness": None if self.witness_seals is None else {"seals": self.witness_seals,
                                                                 "last_seal": self.witness_last},
            "entries_per_second": round(self.rate),
        }

    def render(self) -> str:
        lines = [f"Audit trail {self.store} ({self.algorithm})"]
        if self.entries_checked:
            lines.append(f"  entries {self.first_seq}..{self.last_seq}: {self.entries_checked:,} checked in "
                         f"{self.seconds:.2f} s ({self.rate:,.0f} entries/s, {self.workers} worker(s))")
        else:
            lines.append("  no entries checked")
        lines.append(f"  seals: {self.seals_checked} checked, {self.seals_signed} signed, "
                     f"{len(self.seals_pending)} pending; {self.unsealed_entries:,} newest entries not yet sealed")
        if self.archives_checked:
            lines.append(f"  archives: {self.archives_checked} checked")
        if self.trust:
            lines.append(f"  trust: {self.trust}")
        if self.witness_seals is not None:
            lines.append(f"  witness: {self.witness_seals} seal(s) witnessed, up to seal {self.witness_last}")
        lines.extend(f"  note: {n}" for n in self.notes)
        if self.ok:
            lines.append("RESULT: OK - the chain is unbroken and every seal matches its entries"
                         + (" and carries a valid signature" if self.seals_signed else ""))
        else:
            lines.append(f"RESULT: BROKEN - {self.first_problem}")
            lines.extend(f"  problem: {p}" for p in self.problems[1:])
        return "\n".join(lines)


async def verify_store(
    store: Any,
    *,
    archives_dir: str | Path | None = None,
    trusted: Mapping[str, x509.Certificate] | None = None,
    trust_label: str | None = None,
    workers: int | None = None,
) -> VerifyReport:
    """Verify a store (open or not; any backend) or a store URL; heavy work runs off the event loop."""
    url = getattr(store, "url", store)
    return await asyncio.to_thread(verify_path, str(url), archives_dir=archives_dir, trusted=trusted,
                                   trust_label=trust_label, workers=workers)


# ---------------------------------------------------------------------------- reading the database


def _load_db(source: Any
             ) -> tuple[str, int, int, list[SealView], list[ArchiveRow], dict[str, tuple[str, str]]]:
    if not source.is_gateway_store():
        raise ValueError("not a gateway store: no audit table")
    algorithm = source.algorithm()
    lo, hi = source.bounds()
    seals: list[SealView] = []
    archives: list[ArchiveRow] = []
    certs: dict[str, tuple[str, str]] = {}  # key id -> (PEM, algorithm)
    if source.has_seal_tables():
        for r in source.seals():
            seals.append(SealView(r[0], r[1], r[2], _as_bytes(r[3]), r[4],
                                  _as_bytes(r[5]) if r[5] is not None else None, r[6], r[7], "database"))
        archives = [ArchiveRow(*r) for r in source.archives()]
        certs = source.certificates()
    return algorithm, lo or 0, hi or 0, seals, archives, certs


# ---------------------------------------------------------------------------- archives


def read_archive_meta(path: Path, label: str) -> tuple[dict[str, Any], bytes, dict[str, Any], list[SealView], dict[str, str]]:
    """(manifest, manifest bytes, signature record, seals, certificates) of an archive file."""
    meta = read_meta(path)
    seals = [SealView(s["seal"], s["from_seq"], s["to_seq"], s["statement"].encode("utf-8"), None,
                      _b64(s.get("signature")), s.get("key_id"), s.get("signature_algorithm"), label)
             for s in meta.seals]
    return meta.manifest, meta.manifest_bytes, meta.signature, seals, meta.certificates


def _b64(text: str | None) -> bytes | None:
    return base64.b64decode(text) if text else None


# ---------------------------------------------------------------------------- seals


def _check_signature(label: str, data: bytes, signature: bytes | None, key_id: str | None, algorithm: str | None,
                     at: str | None, certs: Mapping[str, x509.Certificate]) -> str | None:
    if signature is None or key_id is None or algorithm is None:
        return f"{label}: carries a signature without its key id or algorithm, or the reverse"
    cert = certs.get(key_id)
    if cert is None:
        return f"{label}: signed by key {fingerprint_text(key_id)[:23]}..., which is not a trusted certificate"
    if not can_verify(algorithm):
        return f"{label}: signature algorithm {algorithm!r} cannot be checked here (no verifier installed)"
    try:
        verify_signature(cert, algorithm, data, signature)
    except InvalidSignature:
        return f"{label}: signature invalid"
    if at:
        try:
            when = datetime.fromisoformat(at)
        except ValueError:
            return f"{label}: time {at!r} is not an ISO 8601 time"
        if when.tzinfo is not None and not (cert.not_valid_before_utc <= when <= cert.not_valid_after_utc):
            return f"{label}: made at {at}, outside the validity of certificate {key_id[:16]}"
    return None


def _check_seal(
    s: SealView,
    prev: tuple[int, int, str, str],  # (seal, to_seq, statement hash, head hash) of the seal before
    roots: Mapping[tuple[int, int], str],
    end_hashes: Mapping[int, str],
    certs: Mapping[str, x509.Certificate],
    algorithm: str,
) -> tuple[str | None, str]:
    """(first problem or None, the statement hash to chain the next seal to)."""
    label = f"seal {s.seal}"
    h = digest_function(algorithm)
    own_hash = h(s.statement).hex()
    try:
        st = json.loads(s.statement)
    except (ValueError, UnicodeDecodeError):
        st = None
    # Whatever any column says: a seal with a signature (or a key id naming one) has it checked.
    if s.signature is not None or s.key_id is not None or s.signature_algorithm is not None:
        problem = _check_signature(label, s.statement, s.signature, s.key_id, s.signature_algorithm,
                                   st.get("sealed_at") if isinstance(st, dict) else None, certs)
        if problem:
            return problem, own_hash
    if not isinstance(st, dict):
        return f"{label}: statement is not valid JSON", own_hash
    if s.statement_hash is not None and s.statement_hash != own_hash:
        return f"{label}: stored statement hash does not match its statement", own_hash
    prev_seal, prev_to, prev_statement, prev_head = prev
    if st.get("type") not in SEAL_TYPES:
        return f"{label}: statement type {st.get('type')!r} is not {SEAL_TYPE}", own_hash
    if (st.get("seal"), st.get("from_seq"), st.get("to_seq")) != (s.seal, s.from_seq, s.to_seq):
        return f"{label}: statement names seal {st.get('seal')} over {st.get('from_seq')}..{st.get('to_seq')}, " \
               f"stored as seal {s.seal} over {s.from_seq}..{s.to_seq}", own_hash
    if st.get("algorithm") != algorithm:
        return f"{label}: statement uses hash {st.get('algorithm')!r}, the chain uses {algorithm}", own_hash
    if s.seal != prev_seal + 1:
        return f"{label}: follows seal {prev_seal}; seals {prev_seal + 1}..{s.seal - 1} are missing", own_hash
    if s.from_seq != prev_to + 1 or s.to_seq < s.from_seq:
        return f"{label}: covers entries {s.from_seq}..{s.to_seq} but seal {prev_seal} ended at {prev_to}", own_hash
    if st.get("prev_seal") != prev_statement:
        return f"{label}: does not link to seal {prev_seal} (previous-seal hash differs)", own_hash
    if st.get("prev_hash") != prev_head:
        return f"{label}: starts from a chain hash that is not entry {prev_to}'s", own_hash
    if st.get("count") != s.to_seq - s.from_seq + 1:
        return f"{label}: count {st.get('count')} does not match entries {s.from_seq}..{s.to_seq}", own_hash
    root = roots.get((s.from_seq, s.to_seq))
    if root is not None:
        if st.get("merkle_root") != root:
            return f"{label}: Merkle root does not match entries {s.from_seq}..{s.to_seq}", own_hash
        if st.get("head_hash") != end_hashes.get(s.to_seq):
            return f"{label}: head hash does not match entry {s.to_seq}", own_hash
    return None, own_hash


# ---------------------------------------------------------------------------- the whole check


def _plan(start: int, end: int, ranges: Sequence[tuple[int, int]], target: int) -> list[tuple[int, int, list[tuple[int, int]]]]:
    """Cut start..end into tasks at seal boundaries, about ``target`` entries each."""
    tasks: list[tuple[int, int, list[tuple[int, int]]]] = []
    cur, wanted = start, []
    for a, b in ranges:
        wanted.append((a, b))
        if b - cur + 1 >= target:
            tasks.append((cur, b, wanted))
            cur, wanted = b + 1, []
    if wanted:
        last = wanted[-1][1]
        tasks.append((cur, last, wanted))
        cur = last + 1
    while cur <= end:
        nxt = min(end, cur + target - 1)
        tasks.append((cur, nxt, []))
        cur = nxt + 1
    return tasks


def _balance(tasks: list[tuple[Any, ...]], workers: int) -> list[list[int]]:
    """Task indices per worker, largest first onto the least loaded (entries as the measure)."""
    size = [t[1][3] - t[1][2] + 1 for t in tasks]  # (url or file, algorithm, from, to, …)
    groups: list[list[int]] = [[] for _ in range(min(workers, len(tasks)))]
    load = [0] * len(groups)
    for i in sorted(range(len(tasks)), key=lambda i: -size[i]):
        w = load.index(min(load))
        groups[w].append(i)
        load[w] += size[i]
    return [sorted(g) for g in groups if g]


def _run(tasks: list[tuple[Any, ...]], workers: int) -> list[ScanResult]:
    if workers <= 1 or len(tasks) <= 1:
        return [scan_task(t) for t in tasks]
    # Plain worker processes on ``python -m gateway.audit._scan``: they start in tens of
    # milliseconds, import only the scanner, and never inherit the caller's threads (the
    # store's writer, an event loop), which fork would.
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    started = []
    for group in _balance(tasks, workers):
        proc = subprocess.Popen([sys.executable, "-m", "gateway.audit._scan"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        assert proc.stdin is not None
        proc.stdin.write(json.dumps([tasks[i] for i in group]).encode("utf-8"))
        proc.stdin.close()
        proc.stdin = None  # written and closed: communicate() below only reads
        started.append((group, proc))
    results: list[ScanResult | None] = [None] * len(tasks)
    for group, proc in started:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"audit verification worker failed: {err.decode('utf-8', 'replace')[-2000:]}")
        for i, res in zip(group, json.loads(out), strict=True):
            results[i] = result_from_json(res)
    return results  # type: ignore[return-value]


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def verify_path(
    path: str | Path,
    *,
    archives_dir: str | Path | None = None,
    trusted: Mapping[str, x509.Certificate] | None = None,
    trust_label: str | None = None,
    workers: int | None = None,
    witness: Sequence[str | Path] = (),
) -> VerifyReport:
    """Verify the store at ``path`` — a store URL, or a SQLite file — read-only, its archives and its witness logs.

    See the module docstring; ``witness`` files (the sealer's log, copies of the seals delivered to
    supervisors) prove that no witnessed seal was removed, rewritten or stripped of its signature.
    """
    from gateway.store import store_url
    from gateway.store.audit_source import open_audit_source

    t0 = time.perf_counter()
    url = store_url(path)
    with open_audit_source(url) as source:
        algorithm, lo, hi, db_seals, archive_rows, db_certs = _load_db(source)
        where = source.where
    report = VerifyReport(store=where, algorithm=algorithm)
    if algorithm not in HASHERS:
        report.problems.append(f"store names unknown hash algorithm {algorithm!r}")
        return report
    certs: dict[str, x509.Certificate]
    if trusted is not None:
        certs = dict(trusted)
        report.trust = trust_label or f"{len(certs)} trusted certificate(s) supplied by the caller"
    else:
        certs = {}
        for k, (v, _) in db_certs.items():
            try:
                certs[k] = x509.load_pem_x509_certificate(str(v).encode("ascii"))
            except ValueError:
                pass  # reported below
        report.trust = ("certificates copied in the store itself - this proves the trail is intact against those "
                        "keys; pass trusted certificates (--certs / --cert) to prove who signed")
    problems: list[Problem] = []
    used_with = {s.key_id: s.signature_algorithm for s in db_seals if s.key_id}
    for key_id, (pem, stored_algorithm) in sorted(db_certs.items()):
        # The store's copies are a convenience, but a copy filed under another key's id, or naming
        # another algorithm than its seals were signed with, was changed.
        try:
            copy = x509.load_pem_x509_certificate(str(pem).encode("ascii"))
            # exactly the PEM the gateway stored: no byte added around it either
            canonical_pem = copy.public_bytes(serialization.Encoding.PEM).decode("ascii")
            actual = key_id_of(copy) if canonical_pem == pem else None
        except (ValueError, UnicodeError):
            actual = None
        expected_algorithm = used_with.get(key_id)
        if expected_algorithm is None and actual is not None:
            try:
                expected_algorithm = algorithm_of_certificate(copy)
            except SignerError:  # a key only a registered backend knows (SM2): nothing to derive
                expected_algorithm = stored_algorithm
        if actual != key_id or stored_algorithm != expected_algorithm:
            problems.append(Problem((9_000, 0, 0), f"stored certificate copy {str(key_id)[:16]}…: its fingerprint "
                                                   "is not its key id, or its algorithm not the one its seals use "
                                                   "(the copy was changed)"))
    for key_id in sorted({s.key_id for s in db_seals if s.key_id and s.key_id not in db_certs}):
        # The copy is stored in the same transaction as the first signature by its key.
        problems.append(Problem((9_000, 1, 0), f"the certificate of key {key_id[:16]}…, which signed seals here, is "
                                               "missing from the store's copies (deleted)"))
    # Seals in chain order; a tuple instead of a seal restarts the seal chain from bookkeeping
    # (archives not checked, or an archive file missing).
    seals: list[SealView | tuple[int, int, str, str]] = []
    tasks: list[tuple[Any, ...]] = []
    task_rows: list[ArchiveRow | None] = []
    manifests: dict[int, dict[str, Any]] = {}
    order = 0

    # -- archives: the chain starts in the first archive and runs on into the database
    prev_hash = GENESIS
    db_start = archive_rows[-1].to_seq + 1 if archive_rows else 1
    if archive_rows and archives_dir is None:
        last = archive_rows[-1]
        report.notes.append(f"entries {archive_rows[0].from_seq}..{last.to_seq} are in {len(archive_rows)} "
                            "archive file(s) and were not checked; pass the archives folder to check them")
        prev_hash = last.last_hash
        seals.append((last.last_seal, last.to_seq, last.last_seal_hash, last.last_hash))
    elif archive_rows:
        prev_manifest_hash = GENESIS
        for row in archive_rows:
            order += 1
            label = f"archive {row.archive} ({row.file}): "
            file = Path(archives_dir) / row.file  # type: ignore[arg-type]
            try:
                manifest, manifest_bytes, sig, a_seals, a_certs = read_archive_meta(file, f"archive {row.archive}")
            except FileNotFoundError:
                problems.append(Problem((order, 0, 0), f"{label}file not found in {archives_dir}"))
                a_seals = []
            except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
                problems.append(Problem((order, 0, 0), f"{label}cannot be read ({exc})"))
                a_seals = []
            else:
                report.archives_checked += 1
                if trusted is None:
                    for kid, pem in a_certs.items():
                        certs.setdefault(kid, x509.load_pem_x509_certificate(pem.encode("ascii")))
                text = _check_archive_manifest(label, row, manifest, manifest_bytes, sig, certs, algorithm,
                                               prev_hash, prev_manifest_hash)
                if text:
                    problems.append(Problem((order, 0, 0), text))
                seals.extend(a_seals)
                manifests[row.archive] = manifest
                tasks.append(("archive", (str(file), algorithm, row.from_seq, row.to_seq, prev_hash,
                                          [(s.from_seq, s.to_seq) for s in a_seals]),
                              {"label": label, "order": order}))
                task_rows.append(row)
            if not a_seals:
                seals.append((row.last_seal, row.to_seq, row.last_seal_hash, row.last_hash))
            prev_hash = row.last_hash
            prev_manifest_hash = row.manifest_hash
    if archive_rows and lo and lo <= archive_rows[-1].to_seq:
        report.notes.append(f"entries {lo}..{min(hi, archive_rows[-1].to_seq)} are already archived and still "
                            "being deleted from the database; they were skipped")

    # -- the database part
    order += 1
    seals.extend(db_seals)
    ranges: list[tuple[int, int]] = []
    cursor = db_start - 1
    for s in db_seals:
        if s.from_seq == cursor + 1 and s.from_seq <= s.to_seq <= hi:
            ranges.append((s.from_seq, s.to_seq))
            cursor = s.to_seq
    db_end = hi
    total_db = max(0, db_end - db_start + 1) if hi else 0
    n_workers = workers or default_workers()
    if total_db + sum(r.entries for r in task_rows if r is not None) < PARALLEL_FROM:
        n_workers = 1
    if total_db:
        target = max(TASK_TARGET, total_db // (n_workers * 2) + 1) if n_workers > 1 else total_db
        for i, (a, b, wanted) in enumerate(_plan(db_start, db_end, ranges, target)):
            tasks.append(("db", (url, algorithm, a, b, prev_hash if i == 0 else None, wanted), {"order": order}))
            task_rows.append(None)
    report.workers = n_workers
    results = _run(tasks, n_workers)

    # -- merge: the chain
    roots: dict[tuple[int, int], str] = {}
    end_hashes: dict[int, str] = {}
    for task, row, res in zip(tasks, task_rows, results, strict=True):
        report.entries_checked += res.checked
        roots.update(res.roots)
        end_hashes.update(res.hashes)
        if res.problem is not None:
            problems.append(res.problem)
        elif row is not None and res.last_hash != row.last_hash:
            problems.append(Problem((task[2]["order"], row.to_seq, 1),
                                    f"archive {row.archive} ({row.file}): its last entry hash differs from the one "
                                    "the database booked"))
        elif row is not None and res.file_hash != manifests[row.archive].get("entries_hash"):
            problems.append(Problem((task[2]["order"], row.to_seq, 2),
                                    f"archive {row.archive} ({row.file}): entries file digest differs from the "
                                    "signed manifest"))
    report.first_seq = (task_rows[0].from_seq if task_rows and task_rows[0] is not None else db_start) \
        if report.entries_checked else 0
    report.last_seq = db_end if total_db else (archive_rows[-1].to_seq if archive_rows else 0)

    # -- merge: the seals, in order across archives and database
    seal_problems: list[Problem] = []
    seal_prev: tuple[int, int, str, str] = (0, 0, GENESIS, GENESIS)
    for s in seals:
        if isinstance(s, tuple):
            seal_prev = s
            continue
        report.seals_checked += 1
        if s.state == "signed":
            report.seals_signed += 1
        else:
            report.seals_pending.append(s.seal)
        text, own_hash = _check_seal(s, seal_prev, roots, end_hashes, certs, algorithm)
        if text is None and s.source == "database" and s.to_seq > db_end:
            text = (f"seal {s.seal}: covers entries {s.from_seq}..{s.to_seq}, but the trail ends at entry {db_end} "
                    "(entries deleted from the end)")
        if text:
            seal_problems.append(Problem((10_000, s.seal, 0), text))
        st_head = _statement_field(s.statement, "head_hash")
        seal_prev = (s.seal, s.to_seq, own_hash, st_head if isinstance(st_head, str) else "")
    records = [r for res in results for r in res.records]
    seal_problems.extend(_check_records(records, [s for s in seals if isinstance(s, SealView)], archive_rows,
                                        archives_dir is not None, algorithm))
    if witness:
        _check_witness_files(report, seal_problems, witness, seals, archive_rows, archives_dir is not None, certs,
                             algorithm)
    if total_db:
        report.unsealed_entries = max(0, db_end - max(seal_prev[1], db_start - 1))
    if report.seals_pending:
        report.notes.append(f"{len(report.seals_pending)} seal(s) pending signature "
                            f"({_span(report.seals_pending)}): their entries are chained but not yet signed")
    if report.unsealed_entries:
        report.notes.append(f"entries {db_end - report.unsealed_entries + 1}..{db_end} are not sealed yet")
    problems.sort(key=lambda p: p.order)
    report.problems = [p.text for p in problems] + [p.text for p in seal_problems]
    report.seconds = time.perf_counter() - t0
    return report


def _check_records(
    records: Sequence[tuple[int, bytes]],
    seals: Sequence[SealView],
    archive_rows: Sequence[ArchiveRow],
    archives_checked: bool,
    algorithm: str,
) -> list[Problem]:
    """The chain's own record of seals made and signed, and of archives, against the seals and archives stored.

    A seal of the current format was stored in the same transaction as its ``seal_made`` entry,
    and signed in the same transaction as its ``seal_signed`` entry: a seal without its records,
    records without their seal, or a signature the records do not name, mean rows were deleted,
    stripped or swapped.
    """
    out: list[Problem] = []
    h = digest_function(algorithm)
    made: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    signed: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    archived: dict[int, list[tuple[int, dict[str, Any]]]] = {}
    for seq, body in records:
        try:
            entry = json.loads(body)
            action, detail = entry["action"], entry["detail"]
            number = int(detail["archive"] if action == "archived" else detail["seal"])
        except (ValueError, KeyError, TypeError):
            out.append(Problem((10_001, seq, 0), f"entry {seq}: a seal or archive record without its seal or "
                                                 "archive number"))
            continue
        {"seal_made": made, "seal_signed": signed, "archived": archived}[action].setdefault(number, []).append(
            (seq, detail))
    by_number = {s.seal: s for s in seals}
    last_archived_seal = archive_rows[-1].last_seal if archive_rows else 0
    newest_v2 = 0
    for s in seals:
        label = f"seal {s.seal}"
        kind = _statement_field(s.statement, "type")
        if kind == SEAL_TYPE_V1:
            if newest_v2:
                out.append(Problem((10_002, s.seal, 0), f"{label}: an old-format statement after seal {newest_v2} of "
                                                        "the current format (a downgrade)"))
            continue  # made before the chain recorded seals; its signature and Merkle root still hold it
        newest_v2 = s.seal
        own = h(s.statement).hex()
        m = made.get(s.seal, [])
        if len(m) != 1:
            out.append(Problem((10_002, s.seal, 1), f"{label}: the chain records its making {len(m)} times "
                                                    "(expected once: its seal_made entry was deleted or copied)"))
        else:
            seq, d = m[0]
            if (d.get("from_seq"), d.get("to_seq"), d.get("statement_hash")) != (s.from_seq, s.to_seq, own):
                out.append(Problem((10_002, s.seal, 1), f"{label}: differs from the seal entry {seq} records "
                                                        "(range or statement)"))
            elif seq <= s.to_seq:
                out.append(Problem((10_002, s.seal, 1), f"{label}: its seal_made entry {seq} lies inside the range "
                                                        "it seals"))
        g = signed.get(s.seal, [])
        if s.signature is None:
            if g:
                out.append(Problem((10_002, s.seal, 2), f"{label} carries no signature, but entry {g[0][0]} records "
                                                        "that it was signed: the signature was stripped"))
            continue
        if len(g) != 1:
            out.append(Problem((10_002, s.seal, 2), f"{label}: carries a signature the chain records {len(g)} times "
                                                    "(expected once: its seal_signed entry was deleted or copied)"))
            continue
        seq, d = g[0]
        if (d.get("statement_hash"), d.get("key_id"), d.get("signature_algorithm"), d.get("signature_hash")) != (
                own, s.key_id, s.signature_algorithm, h(s.signature).hex()):
            out.append(Problem((10_002, s.seal, 2), f"{label}: its signature is not the one entry {seq} records"))
    for number, found in sorted(made.items()):
        if number not in by_number and number > last_archived_seal:
            out.append(Problem((10_003, number, 0), f"entry {found[0][0]} records the making of seal {number}, which "
                                                    "the store does not have: the seal was deleted"))
    for number, found in sorted(signed.items()):
        if number not in by_number and number > last_archived_seal:
            out.append(Problem((10_003, number, 1), f"entry {found[0][0]} records the signing of seal {number}, which "
                                                    "the store does not have: the seal was deleted"))
    for i, row in enumerate(archive_rows):
        got = archived.get(row.archive, [])
        if not got:
            if archives_checked or i == len(archive_rows) - 1:
                out.append(Problem((10_004, row.archive, 0), f"archive {row.archive}: the chain has no record of it"))
            continue
        seq, d = got[0]
        if (d.get("file"), d.get("manifest_hash"), d.get("from_seq"), d.get("to_seq"), d.get("entries"),
                d.get("seals")) != (row.file, row.manifest_hash, row.from_seq, row.to_seq, row.entries,
                                    [row.first_seal, row.last_seal]):
            out.append(Problem((10_004, row.archive, 1), f"archive {row.archive}: its bookkeeping differs from the "
                                                         f"record in entry {seq}"))
    return out


def _check_witness_files(
    report: VerifyReport,
    problems: list[Problem],
    files: Sequence[str | Path],
    seals: Sequence[SealView | tuple[int, int, str, str]],
    archive_rows: Sequence[ArchiveRow],
    archives_checked: bool,
    certs: Mapping[str, x509.Certificate],
    algorithm: str,
) -> None:
    from gateway.audit.witness import check_witness, read_witness

    try:
        lines, bad = read_witness(*files)
    except OSError as exc:
        problems.append(Problem((11_000, 0, 0), f"witness: cannot be read ({exc.strerror or exc})"))
        return
    for i, text in enumerate(bad):
        if "incomplete" in text:
            report.notes.append(text)
        else:
            problems.append(Problem((11_000, -1, i), text))
    known = {s.seal: s for s in seals if isinstance(s, SealView)}
    unchecked = 0 if archives_checked or not archive_rows else archive_rows[-1].last_seal
    result = check_witness(lines, known, certs, algorithm, unchecked_through=unchecked)
    problems.extend(Problem((11_000, i, 0), text) for i, text in enumerate(result.problems))
    report.notes.extend(result.notes)
    report.witness_seals = result.seals_witnessed
    report.witness_last = result.last_witnessed


def _statement_field(statement: bytes, name: str) -> Any:
    try:
        return json.loads(statement).get(name)
    except (ValueError, AttributeError, UnicodeDecodeError):
        return None


def _span(numbers: list[int]) -> str:
    return f"{numbers[0]}" if len(numbers) == 1 else f"{numbers[0]}..{numbers[-1]}"


def _check_archive_manifest(
    label: str,
    row: ArchiveRow,
    manifest: dict[str, Any],
    manifest_bytes: bytes,
    signature: dict[str, Any],
    certs: Mapping[str, x509.Certificate],
    algorithm: str,
    prev_hash: str,
    prev_manifest_hash: str,
) -> str | None:
    sig_problem = _check_signature(label + "manifest", manifest_bytes, _b64(signature.get("signature")),
                                   signature.get("key_id"), signature.get("algorithm"), manifest.get("created_at"),
                                   certs)
    if sig_problem:
        return sig_problem
    h = digest_function(algorithm)
    if h(manifest_bytes).hex() != row.manifest_hash:
        return f"{label}manifest hash differs from the one the database booked"
    if manifest.get("type") != ARCHIVE_TYPE or manifest.get("algorithm") != algorithm:
        return f"{label}manifest type or hash algorithm is not {ARCHIVE_TYPE} / {algorithm}"
    if (manifest.get("archive"), manifest.get("from_seq"), manifest.get("to_seq")) != (row.archive, row.from_seq,
                                                                                       row.to_seq):
        return f"{label}manifest range differs from the one the database booked"
    if (manifest.get("last_hash"), manifest.get("last_seal"), manifest.get("last_seal_hash")) != (
            row.last_hash, row.last_seal, row.last_seal_hash):
        return f"{label}manifest's last entry or last seal differs from the one the database booked"
    if manifest.get("prev_archive") != prev_manifest_hash:
        return f"{label}does not link to the previous archive (previous-archive hash differs)"
    if manifest.get("prev_hash") != prev_hash:
        return f"{label}does not start where the previous archive ended (entry hash before {row.from_seq} differs)"
    return None
