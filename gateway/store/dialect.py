"""What differs between SQLite's and PostgreSQL's SQL, in one place, so one set of store operations runs on both.

Store operations are plain functions over a DB-API connection written in SQL both databases
accept (``?`` placeholders, ``INSERT … ON CONFLICT … DO UPDATE``, standard types). Where the
two cannot share a statement, an operation asks ``dialect_of(conn)``: id allocation, the audit
case index expression, the claim's row locks, "the newest version per key", an open-ended
LIMIT, updating many rows by id at once. A SQLite connection is a ``sqlite3.Connection`` whose
``executemany`` writes a batch of INSERT rows in a few multi-row statements (``SqliteConnection``);
a PostgreSQL connection is ``postgresql.PgConnection``, which turns ``?`` into ``%s`` once per
statement text.
"""

from __future__ import annotations

import itertools
import re
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

# Rows per statement when a batch is written in few statements (see ``SqliteConnection``). A batch is cut
# into chunks of these sizes only, largest first, so each INSERT or UPDATE has at most five texts and
# the connection's statement cache keeps them all prepared.
_CHUNKS = (256, 64, 16, 4, 1)
# UPDATE … FROM, which ``update_by_id`` needs on SQLite, came with 3.33.0 (2020-08-14).
_UPDATE_FROM = sqlite3.sqlite_version_info >= (3, 33, 0)


class Dialect:
    """SQLite, the embedded default; ``PostgresDialect`` overrides what PostgreSQL says differently."""

    name = "sqlite"
    # The audit case index is an expression index on the body (migration 0005): queries must use this exact text.
    audit_case = "json_extract(CAST(body AS TEXT), '$.case')"
    # Appended to the claim query: SQLite has one writer at a time and no row locks.
    claim_lock = ""
    # The ids of a query's rows as one text "1,2,3" (``ids_where``): one row to fetch instead of one per id.
    id_list = "group_concat(id)"

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

    def update_by_id(self, conn: Any, table: str, fixed: str, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> None:
        """``UPDATE table SET fixed, column=value … WHERE id=…`` for each row ``(value, …, id)`` (ids distinct).

        SQLite: a few statements for the whole batch (``WITH v(…) AS (VALUES …) UPDATE … FROM v``),
        not one per row; see ``SqliteConnection`` for why the number of statements matters here.
        """
        if not rows:
            return
        if not _UPDATE_FROM:
            _update_each(conn, table, fixed, columns, rows)
            return
        names = [f"c{i}" for i in range(len(columns))]
        sets = ", ".join([*([fixed] if fixed else []), *(f"{c}=v.{n}" for c, n in zip(columns, names, strict=True))])
        _write_chunks(conn, f"WITH v({', '.join([*names, 'id'])}) AS (VALUES ",
                      "(" + ",".join("?" * (len(columns) + 1)) + ")",
                      f") UPDATE {table} SET {sets} FROM v WHERE {table}.id = v.id", rows)

    def ids_where(self, conn: Any, table: str, condition: str, ids: Sequence[int]) -> set[int]:
        """Which of ``ids`` have rows in ``table`` meeting ``condition`` (SQL without parameters): one
        fetched row per 500 ids (their list as one text), not one per id."""
        found: set[int] = set()
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            (text,) = conn.execute(f"SELECT {self.id_list} FROM {table} WHERE {condition} AND id IN "
                                   f"({','.join('?' * len(chunk))})", chunk).fetchone()
            if text:
                found.update(map(int, text.split(",")))
        return found


class PostgresDialect(Dialect):
    name = "postgresql"
    # An immutable SQL function over the body (postgresql/0005), so the expression index can use it.
    audit_case = "gateway_audit_case(body)"
    # Several processes claim at once: a row another transaction holds is skipped, not waited for.
    claim_lock = " FOR UPDATE OF o SKIP LOCKED"
    id_list = "string_agg(id::text, ',')"

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

    def update_by_id(self, conn: Any, table: str, fixed: str, columns: Sequence[str],
                     rows: Sequence[Sequence[Any]]) -> None:
        # psycopg sends an executemany as one pipeline: no round trip per row to save.
        if rows:
            _update_each(conn, table, fixed, columns, rows)


SQLITE = Dialect()
POSTGRESQL = PostgresDialect()


def dialect_of(conn: Any) -> Dialect:
    """The dialect of a store connection (a plain sqlite3 connection is SQLite)."""
    return getattr(conn, "dialect", SQLITE)


def _update_each(conn: Any, table: str, fixed: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    sets = ", ".join([*([fixed] if fixed else []), *(f"{c}=?" for c in columns)])
    conn.executemany(f"UPDATE {table} SET {sets} WHERE id=?", rows)


def _chunked(n: int, conn: Any, width: int = 1) -> Iterator[tuple[int, int]]:
    """(start, size) of the chunks a batch of ``n`` rows is written in: sizes from ``_CHUNKS``, largest first,
    each within the connection's limit of parameters per statement (``width`` per row)."""
    most = max(1, _variable_limit(conn) // max(1, width))
    start = 0
    for size in _CHUNKS:
        size = min(size, most) if size > 1 else 1
        while n - start >= size:
            yield start, size
            start += size


def _write_chunks(conn: Any, head: str, group: str, tail: str, rows: Sequence[Sequence[Any]]) -> Any:
    """Run ``head + group, group, … + tail`` over ``rows`` in chunks (``_chunked``), each row one ``group``
    of placeholders; returns the last statement's cursor (None for no rows)."""
    cursor = None
    for start, size in _chunked(len(rows), conn, group.count("?")):
        cursor = conn.execute(head + ",".join([group] * size) + tail,
                              list(itertools.chain.from_iterable(rows[start:start + size])))
    return cursor


def _variable_limit(conn: Any) -> int:
    try:
        return int(conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
    except (AttributeError, sqlite3.Error):  # not a sqlite3 connection: the oldest default
        return 999


# INSERT … VALUES (…) with one row of placeholders and plain literals, and a tail without parameters
# (ON CONFLICT … DO UPDATE SET x=excluded.x): what ``SqliteConnection.executemany`` writes in few statements.
_ITEM = r"\s*(?:\?|NULL|-?\d+(?:\.\d+)?|'[^'?]*')\s*"
_INSERT_VALUES = re.compile(rf"^(\s*INSERT\s[^?]*?\bVALUES\s*)(\({_ITEM}(?:,{_ITEM})*\))([^?]*)$", re.S | re.I)


def _blocks(rows: Iterable[Sequence[Any]], size: int) -> Iterator[list[Sequence[Any]]]:
    it = iter(rows)
    while block := list(itertools.islice(it, size)):
        yield block


class SqliteConnection(sqlite3.Connection):
    """A sqlite3 connection that says which dialect it speaks (``sqlite3.connect(factory=...)``), and writes a
    batch of INSERT rows in a few multi-row statements instead of one statement per row.

    Why: the sqlite3 module lets go of the GIL around every step of a statement, and ``executemany`` steps
    once per row. The writer thread then asks for the GIL back once per row; while the event loop is busy
    (parsing and mapping pushes), each of those waits. Pushes of 50 records at full speed gave the writer
    seven statements per record (two audit entries, the record, its outbox row, its settlement, its
    exchange link) and a writer that waited two thirds of its time. Written 256 rows a statement, the
    same rows cost a few hundred steps instead of tens of thousands (``benchmarks/RESULTS.md``).

    ``executemany`` of ``INSERT … VALUES (?, …, ?)`` (placeholders and literals; an ``ON CONFLICT`` tail
    without parameters, no ``RETURNING``) runs as multi-row INSERTs with the same rows, constraints
    and conflict handling. A row that fails fails its whole statement, and the caller's savepoint or
    transaction undoes the batch as before. The cursor returned is the last statement's, so its
    ``rowcount`` counts that statement's rows only. Any other statement runs row by row, as sqlite3
    does. SQLite copies the values it is given for the statement, so while a chunk is written its
    rows are held twice: at most 256 rows of a batch that is all in memory already.
    """

    dialect = SQLITE

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]], /) -> sqlite3.Cursor:  # type: ignore[override]
        match = _INSERT_VALUES.match(sql)
        if match is None or "RETURNING" in match.group(3).upper():
            return super().executemany(sql, parameters)
        head, group, tail = match.groups()
        # A list is cut as it is; anything else is read a block at a time, so a long iterator stays lazy.
        blocks = [parameters] if isinstance(parameters, list | tuple) else _blocks(parameters, 4096)
        cursor = None
        for rows in blocks:
            cursor = _write_chunks(self, head, group, tail, rows) if len(rows) > 1 or cursor is not None \
                else super().executemany(sql, rows)
        return cursor if cursor is not None else super().executemany(sql, [])
