"""The seal witness: an append-only log of every seal, kept outside the store, that proves the newest history.

A database writer without the signing key cannot forge a seal, but it can cut history off at the
end: delete the newest seals and entries, or strip the newest signatures and rewrite what they
covered as "pending". Nothing inside the database can tell that from a gateway that simply has not
sealed yet. The witness can: the sealer appends one line per seal it makes ("made": the statement)
and per seal it signs ("signed": the signature), in a file outside the store, and the same seals
travel as ``audit_seal`` records to the supervisors' own systems. ``check_witness`` then proves that
every witnessed seal is still in the store, unchanged and signed where the witness saw it signed.

Line format (JSON, one per line, UTF-8)::

    {"type": "gateway.audit.witness/1", "event": "made", "seal": N, "from_seq": a, "to_seq": b,
     "statement_hash": h, "statement": "<the statement text>", "at": t}
    {"type": "gateway.audit.witness/1", "event": "signed", "seal": N, "statement_hash": h,
     "key_id": k, "signature_algorithm": alg, "signature": "<base64>", "at": t}

What it cannot prove: anything about entries after the last witnessed seal, and anything if the
same person can rewrite both the store and every copy of the witness.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from gateway.audit.chain import digest_function
from gateway.audit.signers import can_verify, fingerprint_text, verify_signature

WITNESS_TYPE = "gateway.audit.witness/1"
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_TAIL_BYTES = 256 * 1024


class SealLike(Protocol):
    seal: int
    from_seq: int
    to_seq: int
    statement: bytes
    signature: bytes | None
    key_id: str | None
    signature_algorithm: str | None


@dataclass(slots=True)
class WitnessLine:
    """One line of a witness log: a seal made (with its statement) or signed (with its signature)."""

    event: str  # made | signed
    seal: int
    statement_hash: str
    where: str  # "file:line", for messages
    from_seq: int | None = None
    to_seq: int | None = None
    statement: bytes | None = None
    key_id: str | None = None
    signature_algorithm: str | None = None
    signature: bytes | None = None
    at: str | None = None


@dataclass
class WitnessSummary:
    """What the sealer needs at a glance: the newest seal the witness saw made, and signed."""

    last_made: WitnessLine | None = None
    last_signed: WitnessLine | None = None


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


def made_line(seal: SealLike, statement_hash: str) -> dict[str, Any]:
    return {"type": WITNESS_TYPE, "event": "made", "seal": seal.seal, "from_seq": seal.from_seq,
            "to_seq": seal.to_seq, "statement_hash": statement_hash, "statement": seal.statement.decode("utf-8"),
            "at": _now()}


def signed_line(seal: SealLike, statement_hash: str) -> dict[str, Any]:
    assert seal.signature is not None
    return {"type": WITNESS_TYPE, "event": "signed", "seal": seal.seal, "statement_hash": statement_hash,
            "key_id": seal.key_id, "signature_algorithm": seal.signature_algorithm,
            "signature": base64.b64encode(seal.signature).decode("ascii"), "at": _now()}


class WitnessLog:
    """The append-only seal log file. Each append is one ``write`` on an O_APPEND descriptor, then fsync."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, line: Mapping[str, Any]) -> None:
        data = (json.dumps(line, ensure_ascii=False, sort_keys=True, separators=(",", ":")) + "\n").encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)

    def summary(self) -> WitnessSummary:
        """The newest made and signed lines, read from the end of the file (the whole file only if needed)."""
        if not self.path.exists():
            return WitnessSummary()
        size = self.path.stat().st_size
        with open(self.path, "rb") as fh:
            start = max(0, size - _TAIL_BYTES)
            fh.seek(start)
            data = fh.read()
        lines, _ = parse_lines(data, str(self.path), first_line=0, skip_first=start > 0)
        found = _summarise(lines)
        if start > 0 and (found.last_made is None or found.last_signed is None):
            found = _summarise(read_witness(self.path)[0])
        return found


def _summarise(lines: Iterable[WitnessLine]) -> WitnessSummary:
    out = WitnessSummary()
    for w in lines:
        if w.event == "made" and (out.last_made is None or w.seal >= out.last_made.seal):
            out.last_made = w
        elif w.event == "signed" and (out.last_signed is None or w.seal >= out.last_signed.seal):
            out.last_signed = w
    return out


def parse_lines(data: bytes, name: str, *, first_line: int = 0, skip_first: bool = False
                ) -> tuple[list[WitnessLine], list[str]]:
    """Witness lines of ``data``; problems name file and line. A torn last line (a crash mid-append) is a note."""
    out: list[WitnessLine] = []
    problems: list[str] = []
    raw = data.split(b"\n")
    torn = raw[-1] != b""
    for i, text in enumerate(raw):
        if (i == 0 and skip_first) or not text.strip():
            continue
        where = f"{name}:{first_line + i + 1}" if not skip_first else name
        if i == len(raw) - 1 and torn:
            problems.append(f"{where}: last line is incomplete (written while the gateway stopped?); ignored")
            continue
        try:
            d = json.loads(text)
            if d.get("type") != WITNESS_TYPE or d.get("event") not in ("made", "signed"):
                raise ValueError(f"not a {WITNESS_TYPE} line")
            line = WitnessLine(d["event"], int(d["seal"]), str(d["statement_hash"]), where, at=d.get("at"))
            if line.event == "made":
                line.from_seq, line.to_seq = int(d["from_seq"]), int(d["to_seq"])
                line.statement = str(d["statement"]).encode("utf-8")
            else:
                line.key_id, line.signature_algorithm = str(d["key_id"]), str(d["signature_algorithm"])
                line.signature = base64.b64decode(d["signature"], validate=True)
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            problems.append(f"{where}: not a witness line ({exc})")
            continue
        out.append(line)
    return out, problems


def read_witness(*paths: str | Path) -> tuple[list[WitnessLine], list[str]]:
    """Every line of the given witness files (a log, or a copy fetched from a supervisor's system)."""
    lines: list[WitnessLine] = []
    problems: list[str] = []
    for p in paths:
        got, bad = parse_lines(Path(p).read_bytes(), str(p))
        lines.extend(got)
        problems.extend(bad)
    return lines, problems


@dataclass
class WitnessReport:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seals_witnessed: int = 0
    last_witnessed: int = 0


def check_witness(
    lines: Sequence[WitnessLine],
    seals: Mapping[int, SealLike],
    certs: Mapping[str, x509.Certificate],
    algorithm: str,
    *,
    unchecked_through: int = 0,
) -> WitnessReport:
    """Compare witnessed seals with the store's (``seals`` by number, from the database and archives).

    ``unchecked_through``: seals up to this number are archived in files that were not given,
    so they can only be noted, not compared.
    """
    report = WitnessReport()
    h = digest_function(algorithm)
    last_store = max(seals) if seals else unchecked_through
    seen: set[int] = set()
    for w in lines:
        seen.add(w.seal)
        report.last_witnessed = max(report.last_witnessed, w.seal)
        label = f"witness {w.where}: seal {w.seal}"
        if w.event == "made" and (w.statement is None or h(w.statement).hex() != w.statement_hash):
            report.problems.append(f"{label}: the witnessed statement does not match its own hash")
            continue
        if w.event == "signed":
            cert = certs.get(w.key_id or "")
            if cert is None:
                report.problems.append(f"{label}: signed by key {fingerprint_text(w.key_id or '')[:23]}..., not a "
                                       "trusted certificate")
                continue
        s = seals.get(w.seal)
        if s is None:
            if w.seal <= unchecked_through:
                continue
            if w.seal > last_store:
                report.problems.append(f"{label} is missing from the store, whose newest seal is {last_store}: "
                                       "the newest history was removed")
            else:
                report.problems.append(f"{label} is missing from the store")
            continue
        own = h(s.statement).hex()
        if own != w.statement_hash:
            report.problems.append(f"{label}: the store's seal {w.seal} has a different statement than the one "
                                   "witnessed: the sealed history was rewritten")
            continue
        if w.event == "signed":
            if w.signature is not None and w.signature_algorithm and can_verify(w.signature_algorithm):
                try:
                    verify_signature(certs[w.key_id or ""], w.signature_algorithm, s.statement, w.signature)
                except InvalidSignature:
                    report.problems.append(f"{label}: the witnessed signature does not verify")
                    continue
            if s.signature is None:
                report.problems.append(f"{label} was witnessed signed, but the store's seal {w.seal} carries no "
                                       "signature: it was stripped")
    report.seals_witnessed = len(seen)
    if unchecked_through and any(n <= unchecked_through for n in seen):
        report.notes.append(f"witnessed seals up to {unchecked_through} are archived; pass the archives folder to "
                            "compare them too")
    if seals and report.last_witnessed < max(seals):
        report.notes.append(f"seals {report.last_witnessed + 1}..{max(seals)} are newer than the witness; nothing "
                            "proves they were not cut off later")
    return report
