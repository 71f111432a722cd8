"""The verifier's inner loops: check runs of audit entries fast, in this process or in worker processes.

Kept free of the store's writers and of asyncio so worker processes import little: a database
range is read through ``gateway.store.audit_source`` (a read-only connection opened from the
store's URL, whatever the backend). A run is
checked in cheap passes: recompute the chain (one hash per entry), compare all recomputed
hashes with the stored ones in one string comparison, and check each body's ``"seq":N`` as
bytes; only when a pass fails is the run walked slowly to name the first broken entry
precisely. Entries the verifier must read
afterwards (the chain's own record of seals made and signed, and of archives) are handed
back whole.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.audit._archive_file import iter_entry_lines
from gateway.audit.chain import HASHERS, hash_constructor
from gateway.audit.merkle import root_from_leaves

# Rows the archiver reads per query. The verifier asks each source (``AuditSource.chunk``): SQLite
# about a thousand at a time, so a chunk's rows stay in the CPU's cache between the passes over them
# (32,768 at a time made each entry cost about a quarter more); PostgreSQL more per round trip.
CHUNK = 32_768
_SEQ_KEY = b'"seq":'
# Bodies of the entries the verifier reads whole after the scan: the chain's record of seals and archives.
RECORD_PREFIXES = (b'{"action":"seal_made"', b'{"action":"seal_signed"', b'{"action":"archived"')
_RECORD_INITIALS = (b"s", b"a")


@dataclass(slots=True)
class Problem:
    """One thing wrong, with the sort key that puts the earliest first."""

    order: tuple[int, int, int]  # (source order, seq or seal, tie-break)
    text: str


@dataclass(slots=True)
class ScanResult:
    checked: int = 0
    problem: Problem | None = None
    roots: dict[tuple[int, int], str] = field(default_factory=dict)  # merkle root per wanted range
    hashes: dict[int, str] = field(default_factory=dict)  # entry hash at each wanted range's end
    last_seq: int = 0
    last_hash: str | None = None
    file_hash: str | None = None  # digest of an archive's entries file, for its manifest
    records: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, body) of seal and archive records


def _seq_problem(body: bytes, seq: int) -> str | None:
    """Slow, exact check of one body's seq (only reached when the fast check fails)."""
    try:
        decoded = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return f"entry {seq}: body is not valid JSON"
    if not isinstance(decoded, dict) or "seq" not in decoded:
        return f"entry {seq}: body has no seq field"
    if decoded["seq"] != seq:
        return f"entry {seq}: body says seq {decoded['seq']!r} but it is stored as entry {seq}"
    return None


def _as_bytes(value: object) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    return str(value).encode("utf-8")


def check_run(
    first_seq: int,
    prev: bytes | None,
    hashes: Sequence[str],
    bodies: Sequence[bytes],
    algorithm: str,
    where: str = "",
    records: list[tuple[int, bytes]] | None = None,
) -> tuple[list[bytes], str | None]:
    """Check consecutive entries first_seq.. given the hash before them.

    ``prev`` None means the predecessor is unknown (another worker holds it); the first
    entry's own stored hash is then taken as the starting point. ``records``, when given,
    collects (seq, body) of the chain's seal and archive records among the entries that
    passed. Returns the hashes (bytes) of the entries that passed, in order, and the first
    problem (text) if any.
    """
    n = len(bodies)
    out: list[bytes] = []
    start = 0
    if prev is None:
        if not n:
            return out, None
        try:
            prev = bytes.fromhex(hashes[0])
        except (ValueError, TypeError):
            return out, f"{where}entry {first_seq}: stored hash {str(hashes[0])[:80]!r} is not hexadecimal text"
        out.append(prev)
        start = 1
    app = out.append
    new = hash_constructor(algorithm)
    p = prev
    try:
        for body in bodies[start:]:
            p = new(p + body).digest()
            app(p)
    except TypeError:
        # A value of another type where a BLOB belongs (written by hand as TEXT, say): hash its bytes.
        return check_run(first_seq, None if start else prev, hashes, [_as_bytes(b) for b in bodies], algorithm, where,
                         records)
    bad_hash = n
    try:
        same = b"".join(out).hex() == "".join(hashes)
    except TypeError:  # a stored hash that is not text: the slow walk below names it
        same = False
    if not same:
        for i in range(n):
            if out[i].hex() != hashes[i]:
                bad_hash = i
                break
    # One pass over the bodies for the byte-level checks (inlined, unbound methods: this loop is the
    # verifier's cost). Keys are sorted, so the top-level ``"seq":N,`` is the LAST ``"seq":`` (only
    # "system", a string or null, follows it; inside a JSON string a quote is escaped); a body that
    # fails the fast check is parsed, and only a real difference is a problem. Byte 11 of a body is
    # the first letter of its action: "s" and "a" single out the records to hand back.
    rfind, startswith = bytes.rfind, bytes.startswith
    seq_key = _SEQ_KEY
    keep = records.append if records is not None else None
    seq = first_seq
    for i in range(bad_hash):
        body = bodies[i]
        pos = rfind(body, seq_key)
        if pos < 0 or not startswith(body, b'"seq":%d,"system":' % seq, pos):
            text = _seq_problem(body, seq)
            if text is not None:
                return out[:i], where + text
        if keep is not None and body[11:12] in _RECORD_INITIALS and startswith(body, RECORD_PREFIXES):
            keep((seq, body))
        seq += 1
    if bad_hash < n:
        return out[:bad_hash], f"{where}entry {first_seq + bad_hash}: hash does not match its body"
    return out, None


class _Merkle:
    """Collect leaves for the wanted ranges as the scan passes them; roots come out as ranges end."""

    def __init__(self, wanted: Sequence[tuple[int, int]], algorithm: str, result: ScanResult) -> None:
        self.wanted = sorted(wanted)
        self.i = 0
        self.leaves: list[bytes] = []
        self.new = hash_constructor(algorithm)
        self.algorithm = algorithm
        self.result = result

    def feed(self, first_seq: int, hashes: list[bytes]) -> None:
        """``hashes`` are the verified entry hashes of first_seq, first_seq+1, …"""
        last_seq = first_seq + len(hashes) - 1
        new = self.new
        while self.i < len(self.wanted):
            a, b = self.wanted[self.i]
            if a > last_seq:
                return
            lo, hi = max(a, first_seq), min(b, last_seq)
            if lo <= hi:
                self.leaves.extend([new(b"\x00" + h).digest() for h in hashes[lo - first_seq : hi - first_seq + 1]])
            if b > last_seq:
                return
            self.result.roots[(a, b)] = root_from_leaves(self.leaves, self.algorithm).hex()
            self.result.hashes[b] = hashes[b - first_seq].hex()
            self.leaves = []
            self.i += 1


def _gap_text(source: Any, c0: int, c1: int, end: int) -> tuple[int, str]:
    """Name the first gap in c0..c1, however far past c1 it runs: (first missing seq, text)."""
    expected = c0
    for s in source.seqs(c0, c1):
        if s != expected:
            break
        expected += 1
    nxt = source.first_from(expected)
    if nxt is None:
        return expected, f"gap: entries {expected}..{end} missing at the end of the range checked"
    if expected - 1 < 1:
        return expected, f"gap: entries {expected}..{nxt - 1} missing before {nxt}"
    return expected, f"gap: entries {expected}..{nxt - 1} missing between {expected - 1} and {nxt}"


def scan_db(
    url: str,
    algorithm: str,
    start: int,
    end: int,
    prev_hex: str | None,
    wanted: Sequence[tuple[int, int]] = (),
    *,
    order: int = 1,
) -> ScanResult:
    """Check the entries start..end of the store at ``url``; ``prev_hex`` is the hash before start (None: read it)."""
    from gateway.store.audit_source import open_audit_source

    result = ScanResult()
    merkle = _Merkle(wanted, algorithm, result)
    source = open_audit_source(url)
    try:
        prev: bytes | None
        if prev_hex is None:
            stored = source.hash_at(start - 1)
            try:
                prev = bytes.fromhex(stored) if stored is not None else None
            except (ValueError, TypeError):
                prev = None  # the worker before this one reports that entry
            if stored is None:
                # The gap runs into this task from the one before, which names it whole.
                first = source.first_from(start)
                if first is None or first > end:
                    return result
                start = first
        else:
            prev = bytes.fromhex(prev_hex)
        c0 = start
        chunk = source.chunk
        while c0 <= end:
            c1 = min(end, c0 + chunk - 1)
            # seq is the key, so a full count of rows means no gap: read first, look for the gap only then.
            hashes, bodies = source.entries(c0, c1)
            gap: tuple[int, str] | None = None
            if len(bodies) != c1 - c0 + 1:
                gap = _gap_text(source, c0, c1, end)
                keep = max(0, gap[0] - c0)  # the rows before the first missing seq are c0, c0+1, …
                hashes, bodies = hashes[:keep], bodies[:keep]
            good, text = check_run(c0, prev, hashes, bodies, algorithm, records=result.records)
            if good:
                merkle.feed(c0, good)
                result.checked += len(good)
                result.last_seq = c0 + len(good) - 1
                result.last_hash = good[-1].hex()
            if text is not None:
                result.problem = Problem((order, c0 + len(good), 0), text)
                return result
            if gap is not None:
                result.problem = Problem((order, gap[0], 0), gap[1])
                return result
            prev = good[-1] if good else prev
            c0 = c1 + 1
        return result
    finally:
        source.close()


def scan_archive(
    path: str,
    algorithm: str,
    from_seq: int,
    to_seq: int,
    prev_hex: str,
    wanted: Sequence[tuple[int, int]] = (),
    *,
    label: str = "",
    order: int = 0,
) -> ScanResult:
    """Check the entries file of one archive (``<hash> <body>`` per line) against its declared range."""
    result = ScanResult()
    merkle = _Merkle(wanted, algorithm, result)
    prev = bytes.fromhex(prev_hex)
    seq = from_seq
    file_hash = HASHERS[algorithm]()
    for lines in iter_entry_lines(path):
        file_hash.update(b"".join(lines))
        hashes = [line[:64].decode("ascii", "replace") for line in lines]
        bodies = [line[65:-1] if line.endswith(b"\n") else line[65:] for line in lines]
        if seq + len(bodies) - 1 > to_seq:
            result.problem = Problem((order, to_seq + 1, 0),
                                     f"{label}holds entries beyond {to_seq}, the end its manifest declares")
            return result
        good, text = check_run(seq, prev, hashes, bodies, algorithm, label, records=result.records)
        if good:
            merkle.feed(seq, good)
            result.checked += len(good)
            result.last_seq = seq + len(good) - 1
            result.last_hash = good[-1].hex()
            prev = good[-1]
        if text is not None:
            result.problem = Problem((order, seq + len(good), 0), text)
            return result
        seq += len(bodies)
    if seq != to_seq + 1:
        result.problem = Problem((order, seq, 0), f"{label}entries {seq}..{to_seq} missing from the entries file")
    result.file_hash = file_hash.digest().hex()
    return result


def scan_task(task: tuple | list) -> ScanResult:  # type: ignore[type-arg]
    """Run one task: ("db" | "archive", positional args, keyword args); the last positional is the wanted ranges."""
    kind, args, kwargs = task
    args = [*args[:-1], [tuple(r) for r in args[-1]]]
    if kind == "db":
        return scan_db(*args, **kwargs)
    return scan_archive(*args, **kwargs)


def result_to_json(r: ScanResult) -> dict[str, Any]:
    return {"checked": r.checked, "problem": [list(r.problem.order), r.problem.text] if r.problem else None,
            "roots": [[a, b, root] for (a, b), root in r.roots.items()], "hashes": list(r.hashes.items()),
            "last_seq": r.last_seq, "last_hash": r.last_hash, "file_hash": r.file_hash,
            "records": [[q, b.decode("utf-8", "surrogateescape")] for q, b in r.records]}


def result_from_json(d: dict[str, Any]) -> ScanResult:
    problem = Problem(tuple(d["problem"][0]), d["problem"][1]) if d["problem"] else None  # type: ignore[arg-type]
    return ScanResult(d["checked"], problem, {(a, b): root for a, b, root in d["roots"]},
                      {int(k): v for k, v in d["hashes"]}, d["last_seq"], d["last_hash"], d["file_hash"],
                      [(q, b.encode("utf-8", "surrogateescape")) for q, b in d["records"]])


def main() -> None:
    """Worker process: a JSON list of tasks on stdin, a JSON list of results on stdout."""
    tasks = json.load(sys.stdin)
    json.dump([result_to_json(scan_task(t)) for t in tasks], sys.stdout)


if __name__ == "__main__":
    main()
