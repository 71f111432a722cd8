"""Moving an installation between backends: every table, row for row, in key order (``gateway store migrate``).

Both stores are opened first, so each is migrated to the same schema (the schema_migrations
sets must agree). The source is then read in one read-only snapshot, table by table in key
order (ids, seqs, seals stay exactly what they were: the audit chain and every reference
between tables survive unchanged), and written into the target in one transaction per
table. PostgreSQL targets get their identity sequences and audit chain head set after the
rows, and their statistics gathered (ANALYZE); a SQLite target needs none of it. The caller
then verifies the target's audit trail.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.chain import GENESIS
from gateway.store import StoreError, is_store_url, sqlite_path

# Rows a store writes for itself when it is opened (its algorithm, creation time, the exchange's
# starting cursor): the source's replace them in an empty target.
SEEDED = ("meta", "cursors")
# Data that makes a store "not empty": the target must have none of it unless replacing is asked for.
DATA_TABLES = ("records", "outbox", "quarantine", "audit", "audit_seals", "audit_archives", "users")
FIRST = ("meta", "cursors", "records", "outbox", "users")  # referenced before referencing (foreign keys)
NOT_COPIED = {"schema_migrations", "audit_head", "sqlite_sequence"}
CHUNK = 5000


@dataclass
class TableCopy:
    name: str
    columns: list[str]
    rows: int = 0
    copied: int = 0


@dataclass
class MigrationPlan:
    tables: list[TableCopy] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(t.rows for t in self.tables)


class _Side:
    """One end of a migration: a raw connection to the store's database and what it needs to know."""

    def __init__(self, url: str) -> None:
        if not is_store_url(url):
            raise StoreError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db or postgresql://…")
        self.url = url
        self.postgres = not url.startswith("sqlite:")
        if self.postgres:
            from gateway.store.postgresql import connect, parse_url, redacted

            self.where = redacted(url)
            self.conn: Any = connect(parse_url(url)[0])
        else:
            path = sqlite_path(url)
            self.where = str(path)
            self.conn = sqlite3.connect(path, isolation_level=None)
            self.conn.execute("PRAGMA foreign_keys=OFF")  # rows arrive in key order, references all present

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        return self.conn.execute(sql, args)

    def tables(self) -> dict[str, dict[str, str]]:
        """Table → column → type (upper case: INTEGER, REAL, TEXT, BLOB, BIGINT, DOUBLE PRECISION, BYTEA)."""
        out: dict[str, dict[str, str]] = {}
        if self.postgres:
            for table, column, dtype in self.execute(
                    "SELECT table_name, column_name, data_type FROM information_schema.columns"
                    " WHERE table_schema = 'public' ORDER BY table_name, ordinal_position"):
                out.setdefault(table, {})[column] = dtype.upper()
        else:
            names = [r[0] for r in self.execute("SELECT name FROM sqlite_master WHERE type='table'"
                                                " AND name NOT LIKE 'sqlite_%'")]
            for table in names:
                out[table] = {r[1]: (r[2] or "").upper() for r in self.execute(f"PRAGMA table_info({table})")}
        return {t: c for t, c in out.items() if t not in NOT_COPIED}

    def primary_key(self, table: str) -> list[str]:
        if self.postgres:
            return [r[0] for r in self.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(?) AND i.indisprimary"
                " ORDER BY array_position(i.indkey, a.attnum)", (table,))]
        return [r[1] for r in sorted((r for r in self.execute(f"PRAGMA table_info({table})") if r[5]),
                                     key=lambda r: r[5])]

    def migrations(self) -> set[int]:
        return {r[0] for r in self.execute("SELECT version FROM schema_migrations")}

    def count(self, table: str) -> int:
        return int(self.execute(f"SELECT count(*) FROM {table}").fetchone()[0])

    # ------------------------------------------------------------------ reading (source)

    def snapshot(self) -> None:
        """One consistent, read-only view for the whole copy."""
        if self.postgres:
            self.conn.raw.autocommit = False
            self.conn.raw.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        else:
            self.execute("BEGIN")

    def stream(self, table: str, columns: Sequence[str], order: Sequence[str]) -> Iterator[list[tuple[Any, ...]]]:
        sql = f"SELECT {', '.join(columns)} FROM {table}" + (f" ORDER BY {', '.join(order)}" if order else "")
        if self.postgres:
            cur = self.conn.raw.cursor(name=f"copy_{table}", binary=False)
            cur.itersize = CHUNK
            cur.execute(sql)
        else:
            cur = self.conn.execute(sql)
        while True:
            rows = cur.fetchmany(CHUNK)
            if not rows:
                break
            yield rows
        cur.close()

    # ------------------------------------------------------------------ writing (target)

    def clear(self, tables: Sequence[str]) -> None:
        if self.postgres:
            self.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
        else:
            self.execute("BEGIN IMMEDIATE")
            for table in tables:
                self.execute(f"DELETE FROM {table}")
            self.execute("COMMIT")

    def begin(self) -> None:
        self.execute("BEGIN" if self.postgres else "BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.execute("COMMIT")

    def write(self, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
        if self.postgres:
            with self.conn.raw.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
        else:
            self.conn.executemany(f"INSERT INTO {table}({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})",
                                  rows)

    def finish(self) -> None:
        """After the rows: identity sequences past the copied ids, and the chain head at the last entry."""
        if not self.postgres:
            return
        for table, column in self.execute(
                "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = 'public'"
                " AND is_identity = 'YES'").fetchall():
            self.execute(f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'),"
                         f" coalesce((SELECT max({column}) FROM {table}), 0) + 1, false)")
        row = self.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:  # every entry archived: the chain goes on from the last archive
            row = self.execute("SELECT to_seq, last_hash FROM audit_archives ORDER BY archive DESC LIMIT 1").fetchone()
        seq, head = row if row is not None else (0, GENESIS)
        self.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (seq, head))
        # Statistics for the planner now, not when autovacuum gets round to it: until then it takes the
        # freshly filled tables for empty and may answer the first ingest's lookups by scanning them.
        self.execute("ANALYZE")


def _converter(target_type: str) -> Callable[[Any], Any] | None:
    """A value as the target column holds it (SQLite may keep any type in any column)."""
    t = target_type.upper()
    if t in ("BYTEA", "BLOB"):
        return lambda v: v.encode("utf-8") if isinstance(v, str) else (bytes(v) if isinstance(v, memoryview) else v)
    if t == "TEXT":
        return lambda v: v if v is None or isinstance(v, str) else (bytes(v).decode("utf-8")
                                                                  if isinstance(v, bytes | memoryview) else str(v))
    return None


def _order(tables: Sequence[str]) -> list[str]:
    return [t for t in FIRST if t in tables] + sorted(t for t in tables if t not in FIRST)


class Migration:
    """A planned copy from ``source`` to ``target`` (both store URLs, both already opened once)."""

    def __init__(self, source: str, target: str) -> None:
        self.source = _Side(source)
        try:
            self.target = _Side(target)
        except BaseException:
            self.source.close()
            raise
        self.plan = MigrationPlan()
        self._types: dict[str, dict[str, str]] = {}
        self._keys: dict[str, list[str]] = {}

    def close(self) -> None:
        self.source.close()
        self.target.close()

    def check(self, *, replace: bool) -> list[str]:
        """Problems that stop the copy (empty when it may go ahead); plans the tables otherwise."""
        problems = []
        if self.source.url == self.target.url:
            return ["the source and the target are the same store"]
        src_m, dst_m = self.source.migrations(), self.target.migrations()
        if src_m != dst_m:
            problems.append(f"the stores are at different schema versions (source only: {sorted(src_m - dst_m)}, "
                            f"target only: {sorted(dst_m - src_m)}); open both with this gateway version first")
        src, dst = self.source.tables(), self.target.tables()
        for table in sorted(set(src) - set(dst)):
            problems.append(f"table {table} of the source does not exist in the target")
        for table in sorted(set(src) & set(dst)):
            missing = [c for c in src[table] if c not in dst[table]]
            if missing:
                problems.append(f"table {table}: columns {', '.join(missing)} do not exist in the target")
        if not replace:
            filled = [t for t in DATA_TABLES if t in dst and self.target.count(t)]
            if filled:
                problems.append(f"the target {self.target.where} is not empty ({', '.join(filled)} hold rows); "
                                "pass --replace to delete everything in it first")
        if problems:
            return problems
        self.source.snapshot()
        for table in _order([t for t in src if t in dst]):
            columns = list(src[table])
            self._types[table] = dst[table]
            self._keys[table] = self.source.primary_key(table) or columns
            self.plan.tables.append(TableCopy(table, columns, self.source.count(table)))
        return []

    def run(self, *, replace: bool, progress: Callable[[str, int], None] = lambda table, n: None) -> MigrationPlan:
        """Copy every planned table; ``progress(table, rows)`` after each chunk."""
        tables = [t.name for t in self.plan.tables]
        self.target.clear([t for t in tables if replace or t in SEEDED])
        for t in self.plan.tables:
            convert = [_converter(self._types[t.name].get(c, "")) for c in t.columns]
            needs = any(convert)
            self.target.begin()
            try:
                for rows in self.source.stream(t.name, t.columns, self._keys[t.name]):
                    if needs:
                        rows = [tuple(v if f is None or v is None else f(v) for f, v in zip(convert, r, strict=True))
                                for r in rows]
                    self.target.write(t.name, t.columns, rows)
                    t.copied += len(rows)
                    progress(t.name, len(rows))
                self.target.commit()
            except BaseException:
                try:
                    self.target.execute("ROLLBACK")
                finally:
                    raise
        self.target.finish()
        return self.plan

    def counts(self) -> list[tuple[str, int, int]]:
        """(table, rows in the source snapshot, rows in the target now) for every copied table."""
        return [(t.name, t.rows, self.target.count(t.name)) for t in self.plan.tables]
