"""The two backends' schemas cannot drift: after migrating, SQLite and PostgreSQL hold the same tables, columns,
primary keys and indexes, and record the same set of migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.store import postgresql, sqlite
from gateway.store.postgresql import connect, parse_url
from gateway.store.sqlite import SqliteStore

# Tables only PostgreSQL needs, and why (docs/postgresql.md).
POSTGRES_ONLY = {"audit_head"}  # the chain head every writing transaction locks (several processes, one chain)
# Declared types as SQLite spells them → PostgreSQL's (INTEGER is 64-bit in SQLite; REAL is a double).
TYPES = {"INTEGER": "bigint", "REAL": "double precision", "TEXT": "text", "BLOB": "bytea"}


def sqlite_schema(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        tables: dict[str, Any] = {}
        for (table,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"):
            columns = {}
            pk = []
            for _cid, name, declared, notnull, _default, pk_pos in conn.execute(f"PRAGMA table_info({table})"):
                columns[name] = (TYPES[declared.upper()], bool(notnull) or bool(pk_pos))
                if pk_pos:
                    pk.append((pk_pos, name))
            indexes = {}
            for _seq, name, unique, origin, partial in conn.execute(f"PRAGMA index_list({table})"):
                if origin == "pk" or name.startswith("sqlite_autoindex"):
                    continue
                cols = [c[2] for c in conn.execute(f"PRAGMA index_info({name})")]
                indexes[name] = (bool(unique), bool(partial), tuple(c if c is not None else "<expression>"
                                                                     for c in cols))
            tables[table] = {"columns": columns, "primary_key": tuple(n for _, n in sorted(pk)), "indexes": indexes}
        migrations = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        return {"tables": tables, "migrations": migrations}
    finally:
        conn.close()


def postgres_schema(url: str) -> dict[str, Any]:
    conn = connect(parse_url(url)[0])
    try:
        tables: dict[str, Any] = {}
        for (table,) in conn.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
                                     " AND table_type = 'BASE TABLE'"):
            columns = {name: (dtype, nullable == "NO") for name, dtype, nullable in conn.execute(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns"
                " WHERE table_schema = 'public' AND table_name = ?", (table,))}
            pk = tuple(r[0] for r in conn.execute(
                "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid"
                " AND a.attnum = ANY(i.indkey) WHERE i.indrelid = to_regclass(?) AND i.indisprimary"
                " ORDER BY array_position(i.indkey, a.attnum)", (table,)))
            indexes = {}
            for name, unique, partial, keys in conn.execute(
                    "SELECT c.relname, i.indisunique, i.indpred IS NOT NULL, i.indkey::text FROM pg_index i"
                    " JOIN pg_class c ON c.oid = i.indexrelid WHERE i.indrelid = to_regclass(?)"
                    " AND NOT i.indisprimary", (table,)):
                cols = []
                for attnum in (int(k) for k in keys.split()):
                    if attnum == 0:
                        cols.append("<expression>")
                    else:
                        cols.append(conn.execute("SELECT attname FROM pg_attribute WHERE attrelid = to_regclass(?)"
                                                 " AND attnum = ?", (table, attnum)).fetchone()[0])
                indexes[name] = (bool(unique), bool(partial), tuple(cols))
            tables[table] = {"columns": columns, "primary_key": pk, "indexes": indexes}
        migrations = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        return {"tables": tables, "migrations": migrations}
    finally:
        conn.close()


async def test_both_backends_migrate_to_the_same_tables_columns_keys_and_indexes(tmp_path, pg_url) -> None:
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    await s.close()
    lite = sqlite_schema(tmp_path / "g.db")
    pg = postgres_schema(pg_url)
    assert lite["migrations"] == pg["migrations"]
    assert set(pg["tables"]) - set(lite["tables"]) == POSTGRES_ONLY
    assert set(lite["tables"]) - set(pg["tables"]) == set()
    for table, expected in sorted(lite["tables"].items()):
        got = pg["tables"][table]
        assert got["columns"] == expected["columns"], table
        assert got["primary_key"] == expected["primary_key"], table
        assert got["indexes"] == expected["indexes"], table


def test_every_migration_exists_for_both_backends_under_the_same_number() -> None:
    lite = [(v, n) for v, n, _ in sqlite.migrations()]
    pg = [(v, n) for v, n, _ in postgresql.migrations()]
    assert [v for v, _ in lite] == [v for v, _ in pg]
    assert lite == pg  # the same file names too, so a reader finds one beside the other
