"""What differs between SQLite's and PostgreSQL's SQL, in one place, so one set of store operations runs on both.

Store operations are plain functions over a DB-API connection written in SQL both databases
accept (``?`` placeholders, ``INSERT … ON CONFLICT … DO UPDATE``, standard types). Where the
two cannot share a statement, an operation asks ``dialect_of(conn)``: id allocation, the audit
case index expression, the claim's row locks, "the newest version per key", an open-ended
LIMIT. A SQLite connection is a plain ``sqlite3.Connection`` (``SqliteConnection`` only adds a
class attribute, so it costs nothing); a PostgreSQL connection is ``postgresql.PgConnection``,
which turns ``?`` into ``%s`` once per statement text.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any


class Dialect:
    """SQLite, the embedded default; ``PostgresDialect`` overrides what PostgreSQL says differently."""

    name = "sqlite"
    # The audit case index is an expression index on the body (migration 0005): queries must use this exact text.
    audit_case = "json_extract(CAST(body AS TEXT), '$.case')"
    # Appended to the claim query: SQLite has one writer at a time and no row locks.
    claim_lock = ""

    def ids(self, conn: Any, table: str, hint: int) -> Iterator[int]:
        """New ids for ``table``, in increasing order, for rows the caller inserts with explicit ids.

        SQLite: max(id)+1 onwards — the caller's transaction is the only writer. ``hint`` (how
        many the caller may need) lets PostgreSQL take them from the sequence in one trip.
        """
        first = (conn.execute(f"SELECT max(id) FROM {table}").fetchone()[0] or 0) + 1
        return itertools.count(first)

    def newest_versions(self, conn: Any, system: str, kind: str, keys: Sequence[str]) -> Any:
        """(record_key, id, version) of the newest stored version of each of ``keys``."""
        # SQLite's bare-column rule: id comes from the row that holds max(version).
        return conn.execute(
            "SELECT record_key, id, max(version) FROM records WHERE system=? AND kind=? AND record_key IN "
            f"({','.join('?' * len(keys))}) GROUP BY record_key", (system, kind, *keys))

    def limit(self, limit: int | None) -> str:
        """A LIMIT clause; None means all rows."""
        return " LIMIT -1" if limit is None else f" LIMIT {int(limit)}"

    def table_exists(self, conn: Any, name: str) -> bool:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (name,)).fetchone() is not None


class PostgresDialect(Dialect):
    name = "postgresql"
    # An immutable SQL function over the body (postgresql/0005), so the expression index can use it.
    audit_case = "gateway_audit_case(body)"
    # Several processes claim at once: a row another transaction holds is skipped, not waited for.
    claim_lock = " FOR UPDATE OF o SKIP LOCKED"

    def ids(self, conn: Any, table: str, hint: int) -> Iterator[int]:
        """Ids from the table's identity sequence, fetched in blocks of ``hint`` when first needed.

        Every writing transaction holds the audit chain head (``postgresql``), so ids are taken
        in commit order and a follower reading ``id > watermark`` never skips a row committed late.
        """
        block = max(1, hint)
        while True:
            rows = conn.execute(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) FROM"
                                " generate_series(1, ?)", (block,)).fetchall()
            for (value,) in rows:
                yield value

    def newest_versions(self, conn: Any, system: str, kind: str, keys: Sequence[str]) -> Any:
        # One index probe per key (the unique receipt index, read backwards from the newest version). A plain
        # IN list lets the planner pick a scan of the whole table while its statistics still think it small:
        # a bulk ingest into a fresh store then slowed down batch by batch.
        return conn.execute(
            "SELECT k.key, r.id, r.version FROM unnest(?::text[]) AS k(key) CROSS JOIN LATERAL ("
            " SELECT id, version FROM records WHERE system=? AND kind=? AND record_key=k.key"
            " ORDER BY version DESC LIMIT 1) r",
            (list(keys), system, kind))

    def limit(self, limit: int | None) -> str:
        return "" if limit is None else f" LIMIT {int(limit)}"

    def table_exists(self, conn: Any, name: str) -> bool:
        return conn.execute("SELECT to_regclass(?) IS NOT NULL", (name,)).fetchone()[0]


SQLITE = Dialect()
POSTGRESQL = PostgresDialect()


def dialect_of(conn: Any) -> Dialect:
    """The dialect of a store connection (a plain sqlite3 connection is SQLite)."""
    return getattr(conn, "dialect", SQLITE)


class SqliteConnection(sqlite3.Connection):
    """A sqlite3 connection that says which dialect it speaks (``sqlite3.connect(factory=...)``)."""

    dialect = SQLITE
