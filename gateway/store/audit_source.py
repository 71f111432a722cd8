"""Read-only, synchronous access to a store's audit tables: what the verifier and the archiver read in bulk.

``open_audit_source(url)`` opens its own read-only connection to the store named by ``url``
(any backend), so verification can run in worker processes that share nothing with the
gateway but that URL, and never through the writer. The queries are the same on every
backend; a SQLite source reads the file with ``mode=ro``, a PostgreSQL source opens a
read-only session and fetches bodies in binary.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from gateway.store.dialect import dialect_of


class AuditSource:
    """The audit tables of one store, read-only: entries by seq range, seals, archives, certificate copies."""

    chunk = 1024  # entries a bulk reader asks for at a time (see gateway.audit._scan)

    def __init__(self, conn: Any, where: str) -> None:
        self.conn = conn
        self.where = where  # the store, for messages (no password)
        self.dialect = dialect_of(conn)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> AuditSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ what the store is

    def is_gateway_store(self) -> bool:
        return self.dialect.table_exists(self.conn, "audit") and self.dialect.table_exists(self.conn, "meta")

    def has_seal_tables(self) -> bool:
        return self.dialect.table_exists(self.conn, "audit_seals")

    def algorithm(self) -> str:
        row = self.conn.execute("SELECT value FROM meta WHERE key='audit_algorithm'").fetchone()
        return row[0] if row else "sha256"

    def bounds(self) -> tuple[int, int]:
        """(first, last) seq stored; (0, 0) when there are none."""
        # Two queries: SQLite answers a lone min() or max() from the index, but not both in one.
        lo = self.conn.execute("SELECT min(seq) FROM audit").fetchone()[0]
        hi = self.conn.execute("SELECT max(seq) FROM audit").fetchone()[0]
        return (lo, hi) if lo is not None else (0, 0)

    def seals(self) -> list[tuple[Any, ...]]:
        """(seal, from_seq, to_seq, statement, statement_hash, signature, key_id, signature_algorithm), in order."""
        return self.conn.execute("SELECT seal, from_seq, to_seq, statement, statement_hash, signature, key_id,"
                                 " signature_algorithm FROM audit_seals ORDER BY seal").fetchall()

    def archives(self) -> list[tuple[Any, ...]]:
        """The archive bookkeeping rows (the fields of gateway.audit.model.ArchiveRow), in order."""
        return self.conn.execute(
            "SELECT archive, file, manifest_hash, from_seq, to_seq, prev_hash, last_hash, first_seal, last_seal,"
            " last_seal_hash, entries, created_at FROM audit_archives ORDER BY archive").fetchall()

    def certificates(self) -> dict[str, tuple[str, str]]:
        """Key id → (PEM, algorithm) of the certificate copies stored with the seals."""
        return {r[0]: (r[1], r[2]) for r in self.conn.execute("SELECT key_id, certificate, algorithm FROM audit_keys")}

    # ------------------------------------------------------------------ entries

    def hash_at(self, seq: int) -> str | None:
        row = self.conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def first_from(self, seq: int) -> int | None:
        """The lowest stored seq at or after ``seq``."""
        return self.conn.execute("SELECT min(seq) FROM audit WHERE seq >= ?", (seq,)).fetchone()[0]

    def seqs(self, first: int, last: int) -> Iterable[int]:
        return (r[0] for r in self.conn.execute("SELECT seq FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                                (first, last)))

    def entries(self, first: int, last: int) -> tuple[list[Any], list[Any]]:
        """(hashes, bodies) of the entries first..last that are stored, in seq order (gaps are the caller's to find)."""
        rows = self.conn.execute("SELECT hash, body FROM audit WHERE seq BETWEEN ? AND ? ORDER BY seq",
                                 (first, last)).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]

    def entries_with_case(self, first: int, last: int) -> list[tuple[int, Any, Any, str | None]]:
        """(seq, hash, body, case) of the entries first..last, in seq order."""
        return self.conn.execute(f"SELECT seq, hash, body, {self.dialect.audit_case} FROM audit"
                                 " WHERE seq BETWEEN ? AND ? ORDER BY seq", (first, last)).fetchall()


def open_audit_source(url: str) -> AuditSource:
    """A read-only source over the audit tables of the store at ``url``; FileNotFoundError if a SQLite file is missing."""
    if url.startswith("sqlite:///"):
        import sqlite3
        from pathlib import Path

        from gateway.store import sqlite_path
        from gateway.store.dialect import SqliteConnection

        path = sqlite_path(url)
        if not Path(path).exists():
            raise FileNotFoundError(f"audit store {path} does not exist")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False, timeout=30.0,
                               factory=SqliteConnection)
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA cache_size=-65536")
        # Read the file through a memory map: pages come straight from the OS cache instead of being
        # copied into SQLite's own, which is most of what two verification workers side by side share.
        conn.execute("PRAGMA mmap_size=17179869184")
        return AuditSource(conn, str(path))
    from gateway.store.postgresql import PgAuditSource, is_postgres_url

    if is_postgres_url(url):
        return PgAuditSource.open(url)
    from gateway.store.base import StoreError

    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db or postgresql://…")
