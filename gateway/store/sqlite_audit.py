"""Audit seals and archives on the SQLite store: seal rows, seal keys, entry ranges, archive bookkeeping.

Writes run on the store's single writer thread (``self._write``), reads on its reader
pool (``self._read``). Sealing and archiving are small operations between the
pipeline's own, so they never hold up ingest or delivery for long.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit.chain import GENESIS, ChainWriter, digest_function
from gateway.audit.model import ArchiveRow, SealConflict, SealHead, SealRow
from gateway.store.base import AuditRow
from gateway.store.dialect import SQLITE, dialect_of

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
AUDIT_INSERT = "INSERT INTO audit(seq, hash, body) VALUES (?,?,?)"
# The case index is an expression index on the body (migration 0005): queries must use this exact text
# (SQLite's; ``dialect_of(conn).audit_case`` gives each backend's).
AUDIT_CASE = SQLITE.audit_case
_SEAL_COLS = ("s.seal, s.from_seq, s.to_seq, s.statement, s.statement_hash, s.signature, s.key_id,"
              " s.signature_algorithm, a.attempts, a.last_error")
_SEALS = "audit_seals s LEFT JOIN audit_seal_attempts a ON a.seal = s.seal"
_ARCHIVE_COLS = ("archive, file, manifest_hash, from_seq, to_seq, prev_hash, last_hash, first_seal, last_seal,"
                 " last_seal_hash, entries, created_at")


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


def _blob(value: Any) -> bytes:
    """A BLOB column's bytes, also when someone stored the value as TEXT (the verifier judges it)."""
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


def _seal(row: tuple[Any, ...]) -> SealRow:
    return SealRow(row[0], row[1], row[2], _blob(row[3]), row[4], _blob(row[5]) if row[5] is not None else None,
                   row[6], row[7], row[8] or 0, row[9])


def audit_row(chain: ChainWriter, at: str, action: str, **fields: Any) -> tuple[int, str, bytes]:
    """Chain one entry in memory: the (seq, hash, body) row for AUDIT_INSERT, in the caller's transaction."""
    seq, _, _prev, digest, body = chain.append(at, action, **fields)
    return (seq, digest, body)


def append_audit(conn: Any, chain: ChainWriter, action: str, **fields: Any) -> int:
    """Chain one entry and store it, inside the caller's transaction; returns its seq."""
    seq, _, _, digest, body = chain.append(_now(), action, **fields)
    conn.execute(AUDIT_INSERT, (seq, digest, body))
    return seq


def _last_archive(conn: sqlite3.Connection) -> ArchiveRow | None:
    row = conn.execute(f"SELECT {_ARCHIVE_COLS} FROM audit_archives ORDER BY archive DESC LIMIT 1").fetchone()
    return ArchiveRow(*row) if row else None


def _seal_head(conn: sqlite3.Connection) -> SealHead:
    row = conn.execute("SELECT seal, to_seq, statement, statement_hash FROM audit_seals ORDER BY seal DESC LIMIT 1"
                       ).fetchone()
    if row is not None:
        head_hash = json.loads(_blob(row[2])).get("head_hash", GENESIS)
        return SealHead(row[0], row[1], head_hash, row[3])
    archived = _last_archive(conn)
    if archived is not None:
        return SealHead(archived.last_seal, archived.to_seq, archived.last_hash, archived.last_seal_hash)
    return SealHead()


class SqliteAuditMixin:
    """Seal and archive operations, mixed into SqliteStore; uses its _read/_write primitives."""

    if TYPE_CHECKING:
        path: str
        audit_algorithm: str

        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, op: Callable[[sqlite3.Connection, ChainWriter], T]) -> T: ...

    # ------------------------------------------------------------------ entries

    async def audit_bounds(self) -> tuple[int, int]:
        """(first, last) seq of the entries still in the database; (0, 0) when there are none."""

        def q(conn: sqlite3.Connection) -> tuple[int, int]:
            # Two queries: SQLite answers a lone min() or max() from the index, but not both in one.
            lo = conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
            hi = conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
            return (lo, hi) if lo is not None else (0, 0)

        return await self._read(q)

    async def audit_range(self, from_seq: int, to_seq: int) -> list[AuditRow]:
        """Entries from_seq..to_seq in order (whatever is stored; a verifier spots gaps)."""

        def q(conn: sqlite3.Connection) -> list[AuditRow]:
            rows = conn.execute("SELECT seq, hash, body FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                (from_seq, to_seq)).fetchall()
            return [AuditRow(r[0], r[1], _blob(r[2])) for r in rows]

        return await self._read(q)

    async def audit_rows_at(self, seqs: list[int]) -> list[AuditRow]:
        """The entries with these seqs (those that exist), in seq order."""

        def q(conn: sqlite3.Connection) -> list[AuditRow]:
            out: list[AuditRow] = []
            for i in range(0, len(seqs), 500):
                part = seqs[i : i + 500]
                rows = conn.execute(f"SELECT seq, hash, body FROM audit WHERE seq IN ({','.join('?' * len(part))})"
                                    " ORDER BY seq", part)
                out.extend(AuditRow(r[0], r[1], _blob(r[2])) for r in rows)
            return out

        return await self._read(q)

    async def audit_hashes(self, from_seq: int, to_seq: int) -> list[tuple[int, str]]:
        def q(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            return conn.execute("SELECT seq, hash FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                (from_seq, to_seq)).fetchall()

        return await self._read(q)

    async def audit_case_seqs(self, case_no: str) -> list[int]:
        def q(conn: sqlite3.Connection) -> list[int]:
            case = dialect_of(conn).audit_case
            return [r[0] for r in conn.execute(f"SELECT seq FROM audit WHERE {case} = ? ORDER BY seq", (case_no,))]

        return await self._read(q)

    async def audit_case_index(self, from_seq: int, to_seq: int) -> list[tuple[int, str]]:
        """(seq, case_no) of the entries in from_seq..to_seq that belong to a case."""

        def q(conn: sqlite3.Connection) -> list[tuple[int, str]]:
            case = dialect_of(conn).audit_case
            return conn.execute(f"SELECT seq, {case} FROM audit WHERE seq BETWEEN ? AND ? AND {case} IS NOT NULL"
                                " ORDER BY seq", (from_seq, to_seq)).fetchall()

        return await self._read(q)

    # ------------------------------------------------------------------ seals

    async def audit_seal_head(self) -> SealHead:
        return await self._read(_seal_head)

    async def add_seal(self, seal: int, from_seq: int, to_seq: int, statement: bytes, statement_hash: str) -> SealRow:
        """Store a new seal, waiting for its signature, and chain a ``seal_made`` entry naming it.

        Raises SealConflict unless it directly follows the last seal. The ``seal_made`` entry
        lets the verifier tell a seal that was deleted from one that never existed.
        """

        def op(conn: sqlite3.Connection, chain: ChainWriter) -> SealRow:
            head = _seal_head(conn)
            if (seal, from_seq) != (head.seal + 1, head.to_seq + 1):
                raise SealConflict(f"seal {seal} over {from_seq}..{to_seq} does not follow seal {head.seal} "
                                   f"(entries up to {head.to_seq})")
            conn.execute(
                "INSERT INTO audit_seals(seal, from_seq, to_seq, statement, statement_hash) VALUES (?,?,?,?,?)",
                (seal, from_seq, to_seq, statement, statement_hash),
            )
            append_audit(conn, chain, "seal_made", detail={"seal": seal, "from_seq": from_seq, "to_seq": to_seq,
                                                      "statement_hash": statement_hash})
            return SealRow(seal, from_seq, to_seq, statement, statement_hash, None, None, None)

        return await self._write(op)

    async def list_seals(self, *, after: int = 0, limit: int | None = None) -> list[SealRow]:
        def q(conn: sqlite3.Connection) -> list[SealRow]:
            rows = conn.execute(f"SELECT {_SEAL_COLS} FROM {_SEALS} WHERE s.seal > ? ORDER BY s.seal"
                                f"{dialect_of(conn).limit(limit)}", (after,))
            return [_seal(r) for r in rows]

        return await self._read(q)

    async def pending_seals(self, limit: int = 100) -> list[SealRow]:
        def q(conn: sqlite3.Connection) -> list[SealRow]:
            rows = conn.execute(f"SELECT {_SEAL_COLS} FROM {_SEALS} WHERE s.signature IS NULL ORDER BY s.seal"
                                " LIMIT ?", (limit,))
            return [_seal(r) for r in rows]

        return await self._read(q)

    async def seal_for_seq(self, seq: int) -> SealRow | None:
        """The seal whose range holds entry ``seq``, if it is sealed and the seal is still in the database."""

        def q(conn: sqlite3.Connection) -> SealRow | None:
            row = conn.execute(f"SELECT {_SEAL_COLS} FROM {_SEALS} WHERE s.to_seq >= ? ORDER BY s.to_seq LIMIT 1",
                               (seq,)).fetchone()
            return _seal(row) if row and row[1] <= seq else None

        return await self._read(q)

    async def last_signed_seal(self) -> SealRow | None:
        """The newest seal in the database that carries a signature."""

        def q(conn: sqlite3.Connection) -> SealRow | None:
            row = conn.execute(f"SELECT {_SEAL_COLS} FROM {_SEALS} WHERE s.signature IS NOT NULL"
                               " ORDER BY s.seal DESC LIMIT 1").fetchone()
            return _seal(row) if row else None

        return await self._read(q)

    async def mark_seal_signed(self, seal: int, signature: bytes, key_id: str, algorithm: str,
                               certificate_pem: str) -> bool:
        """Record the signature and chain a ``seal_signed`` entry; False if the seal was already signed.

        The entry names the seal, its statement hash, the key and a hash of the signature, so
        stripping the signature later (to pass a rewritten range off as "pending") contradicts the
        chain. A signature is only ever added, never removed or replaced.
        """
        digest = digest_function(self.audit_algorithm)

        def op(conn: sqlite3.Connection, chain: ChainWriter) -> bool:
            conn.execute("INSERT INTO audit_keys(key_id, algorithm, certificate) VALUES (?,?,?)"
                         " ON CONFLICT(key_id) DO NOTHING", (key_id, algorithm, certificate_pem))
            row = conn.execute("SELECT statement_hash FROM audit_seals WHERE seal=? AND signature IS NULL",
                               (seal,)).fetchone()
            if row is None:
                return False
            conn.execute("UPDATE audit_seals SET signature=?, key_id=?, signature_algorithm=? WHERE seal=?",
                         (signature, key_id, algorithm, seal))
            conn.execute("DELETE FROM audit_seal_attempts WHERE seal=?", (seal,))
            append_audit(conn, chain, "seal_signed", detail={
                "seal": seal, "statement_hash": row[0], "key_id": key_id, "signature_algorithm": algorithm,
                "signature_hash": digest(signature).hex()})
            return True

        return await self._write(op)

    async def note_seal_failure(self, seal: int, error: str) -> None:
        def op(conn: sqlite3.Connection, chain: ChainWriter) -> None:
            conn.execute("INSERT INTO audit_seal_attempts(seal, attempts, last_error, updated_at) VALUES (?,1,?,?)"
                         " ON CONFLICT(seal) DO UPDATE SET attempts = audit_seal_attempts.attempts + 1,"
                         " last_error = excluded.last_error, updated_at = excluded.updated_at",
                         (seal, error[:1000], _now()))

        await self._write(op)

    async def add_audit_certificate(self, key_id: str, algorithm: str, certificate_pem: str) -> None:
        def op(conn: sqlite3.Connection, chain: ChainWriter) -> None:
            conn.execute("INSERT INTO audit_keys(key_id, algorithm, certificate) VALUES (?,?,?)"
                         " ON CONFLICT(key_id) DO NOTHING", (key_id, algorithm, certificate_pem))

        await self._write(op)

    async def audit_certificates(self) -> dict[str, str]:
        """PEM certificates that signed seals or archives, by key id (a copy, not a trust anchor)."""

        def q(conn: sqlite3.Connection) -> dict[str, str]:
            return dict(conn.execute("SELECT key_id, certificate FROM audit_keys ORDER BY key_id"))

        return await self._read(q)

    # ------------------------------------------------------------------ archives

    async def list_archives(self) -> list[ArchiveRow]:
        def q(conn: sqlite3.Connection) -> list[ArchiveRow]:
            return [ArchiveRow(*r) for r in conn.execute(f"SELECT {_ARCHIVE_COLS} FROM audit_archives ORDER BY archive")]

        return await self._read(q)

    async def record_archive(self, row: ArchiveRow) -> int:
        """Book an archive file: its row, its seals leave the database, an ``archived`` entry is chained.

        The entries themselves are deleted afterwards in chunks (``delete_archived_entries``)
        so a large archive never holds the writer for long; the verifier skips entries at
        or below the last archive's to_seq.
        """

        def op(conn: sqlite3.Connection, chain: ChainWriter) -> int:
            last = _last_archive(conn)
            expected = (last.archive + 1, last.to_seq + 1) if last else (1, None)
            if row.archive != expected[0] or (expected[1] is not None and row.from_seq != expected[1]):
                raise SealConflict(f"archive {row.archive} over {row.from_seq}..{row.to_seq} does not follow "
                                   f"archive {last.archive if last else 0}")
            conn.execute(f"INSERT INTO audit_archives({_ARCHIVE_COLS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                         (row.archive, row.file, row.manifest_hash, row.from_seq, row.to_seq, row.prev_hash,
                          row.last_hash, row.first_seal, row.last_seal, row.last_seal_hash, row.entries,
                          row.created_at))
            conn.execute("DELETE FROM audit_seals WHERE seal <= ?", (row.last_seal,))
            detail = {"archive": row.archive, "file": row.file, "manifest_hash": row.manifest_hash,
                      "from_seq": row.from_seq, "to_seq": row.to_seq, "entries": row.entries,
                      "seals": [row.first_seal, row.last_seal]}
            return append_audit(conn, chain, "archived", detail=detail)

        return await self._write(op)

    async def delete_archived_entries(self, chunk: int = 20_000) -> int:
        """Delete entries already booked into archives, ``chunk`` rows per transaction; returns how many."""
        total = 0

        def op(conn: sqlite3.Connection, chain: ChainWriter) -> int:
            last = _last_archive(conn)
            if last is None:
                return 0
            first = conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
            if first is None or first > last.to_seq:
                return 0
            return conn.execute("DELETE FROM audit WHERE seq BETWEEN ? AND ?",
                                (first, min(last.to_seq, first + chunk - 1))).rowcount

        while True:
            n = await self._write(op)
            if not n:
                return total
            total += n
