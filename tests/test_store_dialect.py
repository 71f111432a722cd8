"""Batched writes on SQLite: ``SqliteConnection.executemany`` and ``Dialect.update_by_id`` / ``ids_where``.

They exist to cut the number of statements the writer thread steps through (each step lets go of the
GIL and must take it back), so each test checks two things: the rows end up exactly as writing them
one by one would leave them, and how many statements that took.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.store import dialect as dialect_module
from gateway.store.dialect import SQLITE, SqliteConnection


def _connect(path: Path, factory: type[sqlite3.Connection] = SqliteConnection) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, factory=factory)
    conn.execute("PRAGMA synchronous=OFF")  # autocommit, one transaction per row for the plain connection
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, n INTEGER, f REAL, b BLOB,"
                 " state TEXT, note TEXT)")
    return conn


class Statements:
    """Counts the statements a connection starts (sqlite3's trace callback: one per statement run)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.seen: list[str] = []
        conn.set_trace_callback(self.seen.append)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.seen if s.lstrip().upper().startswith(prefix))


def _rows(n: int, start: int = 0) -> list[tuple[object, ...]]:
    return [(i, f"名称-{i}", i * 7 if i % 3 else None, i / 4, bytes([i % 256]) * 3) for i in range(start, start + n)]


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[sqlite3.Connection, sqlite3.Connection]]:
    """A batching connection and a plain sqlite3 one, on two databases of the same shape."""
    batched, plain = _connect(tmp_path / "batched.db"), _connect(tmp_path / "plain.db", sqlite3.Connection)
    yield batched, plain
    batched.close()
    plain.close()


def _table(conn: sqlite3.Connection) -> list[tuple[object, ...]]:
    return conn.execute("SELECT * FROM t ORDER BY id").fetchall()


def test_a_batch_of_inserts_is_a_few_multi_row_statements_with_the_same_rows(pair) -> None:
    batched, plain = pair
    sql = "INSERT INTO t(id, name, n, f, b, state, note) VALUES (?, ?, ?, ?, ?, 'pending', NULL)"
    rows = _rows(1000)
    counted = Statements(batched)
    batched.executemany(sql, rows)
    plain.executemany(sql, rows)
    assert _table(batched) == _table(plain)
    assert len(_table(batched)) == 1000
    assert _table(batched)[5][5:] == ("pending", None)  # the literals of the VALUES row are kept
    # 1000 = 3 x 256 + 3 x 64 + 2 x 16 + 2 x 4: ten statements instead of a thousand.
    assert counted.count("INSERT") == 10


def test_a_generator_and_a_single_row_are_taken_too(pair) -> None:
    batched, plain = pair
    sql = "INSERT INTO t(id, name, n, f, b) VALUES (?,?,?,?,?)"
    batched.executemany(sql, (r for r in _rows(300)))
    plain.executemany(sql, (r for r in _rows(300)))
    batched.executemany(sql, _rows(1, 300))
    plain.executemany(sql, _rows(1, 300))
    batched.executemany(sql, [])
    plain.executemany(sql, [])
    # A long iterator is read a block at a time (4,096 rows), each block in few statements.
    counted = Statements(batched)
    batched.executemany(sql, (r for r in _rows(9000, 1000)))
    plain.executemany(sql, (r for r in _rows(9000, 1000)))
    assert _table(batched) == _table(plain)
    assert len(_table(batched)) == 9301
    assert counted.count("INSERT") < 60


def test_an_upsert_batch_that_hits_stored_rows_and_itself_ends_as_row_by_row(pair) -> None:
    batched, plain = pair
    for conn in pair:
        conn.executemany("INSERT INTO t(id, name, n) VALUES (?,?,?)", [(i, f"k{i}", 0) for i in range(50)])
    sql = "INSERT INTO t(id, name, n) VALUES (?,?,?) ON CONFLICT(id) DO UPDATE SET n = t.n + excluded.n"
    # Keys 25..74 (half stored, half new), each sent three times within the batch.
    rows = [(i, f"k{i}", 1) for _ in range(3) for i in range(25, 75)]
    counted = Statements(batched)
    batched.executemany(sql, rows)
    plain.executemany(sql, rows)
    assert _table(batched) == _table(plain)
    assert batched.execute("SELECT n FROM t WHERE id = 30").fetchone() == (3,)
    assert counted.count("INSERT") < 10


def test_statements_it_cannot_batch_run_row_by_row(pair) -> None:
    batched, plain = pair
    for conn in pair:
        conn.execute("CREATE TABLE meta(key TEXT PRIMARY KEY, value INTEGER)")
    cases = [
        # A parameter in the conflict clause: rows and parameters would no longer line up.
        ("INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + ?",
         [("a", 1, 1), ("a", 1, 5), ("b", 2, 2)]),
        ("INSERT INTO meta(key, value) SELECT ?, ?", [("c", 3), ("d", 4)]),  # not a VALUES list
        ("INSERT INTO meta(key, value) VALUES (:k, :v)", [{"k": "e", "v": 5}, {"k": "f", "v": 6}]),  # named
        ("UPDATE meta SET value = value * 10 WHERE key = ?", [("a",), ("c",)]),
    ]
    counted = Statements(batched)
    for sql, rows in cases:
        batched.executemany(sql, rows)
        plain.executemany(sql, rows)
    assert batched.execute("SELECT * FROM meta ORDER BY key").fetchall() == \
        plain.execute("SELECT * FROM meta ORDER BY key").fetchall()
    assert counted.count("INSERT") == 3 + 2 + 2 and counted.count("UPDATE") == 2


def test_a_failing_row_fails_the_batch_and_the_savepoint_undoes_it(pair) -> None:
    batched, _ = pair
    batched.execute("INSERT INTO t(id, name) VALUES (9999, 'taken')")
    rows = [(i, f"n{i}") for i in range(600)] + [(600, "taken")] + [(i, f"n{i}") for i in range(601, 700)]
    batched.execute("SAVEPOINT s")
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed: t.name"):
        batched.executemany("INSERT INTO t(id, name) VALUES (?,?)", rows)
    batched.execute("ROLLBACK TO SAVEPOINT s")
    batched.execute("RELEASE SAVEPOINT s")
    assert _table(batched) == [(9999, "taken", None, None, None, None, None)]
    with pytest.raises(sqlite3.ProgrammingError):  # a row of the wrong width is refused, as sqlite3 does
        batched.executemany("INSERT INTO t(id, name) VALUES (?,?)", [(1, "a"), (2,)])


def test_chunks_stay_within_the_connections_limit_of_parameters(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "limited.db")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 100)  # 20 rows of five parameters
    counted = Statements(conn)
    conn.executemany("INSERT INTO t(id, name, n, f, b) VALUES (?,?,?,?,?)", _rows(1000))
    assert conn.execute("SELECT count(*) FROM t").fetchone() == (1000,)
    assert counted.count("INSERT") == 50  # 1000 rows, 20 at most a statement


@pytest.mark.parametrize("update_from", [True, False], ids=["update-from", "sqlite-before-3.33"])
def test_update_by_id_sets_each_rows_own_values_in_a_few_statements(tmp_path: Path, monkeypatch,
                                                                    update_from: bool) -> None:
    monkeypatch.setattr(dialect_module, "_UPDATE_FROM", update_from)
    conn = _connect(tmp_path / "u.db")
    conn.executemany("INSERT INTO t(id, name, n, state, note) VALUES (?,?,?,?,?)",
                     [(i, f"r{i}", 0, "inflight", "lease") for i in range(1, 701)])
    counted = Statements(conn)
    # Every other row, each with its own values (a None among them), and an id that is not stored.
    rows = [(i, f"remote-{i}" if i % 4 else None, i) for i in range(2, 701, 2)] + [(1, "x", 5000)]
    SQLITE.update_by_id(conn, "t", "state='delivered', note=NULL", ("n", "b"), rows)
    got = {r[0]: r[1:] for r in conn.execute("SELECT id, n, b, state, note FROM t")}
    assert len(got) == 700
    assert got[2] == (2, "remote-2", "delivered", None)
    assert got[4] == (4, None, "delivered", None)
    assert got[3] == (0, None, "inflight", "lease")
    assert sum(1 for v in got.values() if v[2] == "delivered") == 350
    # 351 rows = 256 + 64 + 16 + 3 x 4 + 3 x 1: nine statements instead of 351.
    assert counted.count("WITH") + counted.count("UPDATE") == (9 if update_from else 351)
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 30)  # ten rows of three parameters a statement
    SQLITE.update_by_id(conn, "t", "note='again'", ("n", "b"), rows)
    assert conn.execute("SELECT count(*) FROM t WHERE note='again'").fetchone() == (350,)
    SQLITE.update_by_id(conn, "t", "state='pending'", (), [])  # nothing to do: no statement
    SQLITE.update_by_id(conn, "t", "state='pending'", (), [(3,), (5,)])  # no value columns
    assert conn.execute("SELECT id FROM t WHERE state='pending' ORDER BY id").fetchall() == [(3,), (5,)]


def test_ids_where_answers_for_any_number_of_ids_in_one_row_per_500(tmp_path: Path) -> None:
    conn = _connect(tmp_path / "w.db")
    conn.executemany("INSERT INTO t(id, name, state) VALUES (?,?,?)",
                     [(i, f"r{i}", "inflight" if i % 3 == 0 else "pending") for i in range(1, 1201)])
    counted = Statements(conn)
    asked = list(range(1, 1301))  # 100 that are not stored
    assert SQLITE.ids_where(conn, "t", "state='inflight'", asked) == {i for i in range(1, 1201) if i % 3 == 0}
    assert counted.count("SELECT") == 3
    assert SQLITE.ids_where(conn, "t", "state='inflight'", [1, 2]) == set()
    assert SQLITE.ids_where(conn, "t", "state='inflight'", []) == set()


async def test_the_sqlite_store_writes_a_batch_of_records_and_its_deliveries_in_a_few_statements(tmp_path: Path) -> None:
    """The store's own path, end to end: 700 records committed, claimed and settled (every outcome), each step
    a few statements on the writer's connection, and every row as the per-row statements left them."""
    import time

    from gateway.store.base import Settlement
    from gateway.store.sqlite import SqliteStore
    from tests.test_store import item, verify_chain

    store = SqliteStore(tmp_path / "g.db")
    await store.open()
    try:
        await store.commit_ingest([item("warm-up")], [])  # the writer's connection is open after its first group
        assert store._writer is not None and isinstance(store._writer._conn, SqliteConnection)
        counted = Statements(store._writer._conn)
        await store.commit_ingest([item(f"K{i}") for i in range(700)], [])
        now = time.time()
        claimed = await store.claim("hall", 1000, 30, now)
        assert len(claimed) == 701
        outcomes = ["delivered"] * 400 + ["retry"] * 150 + ["dead"] * 100 + ["released"] * 51
        await store.settle([Settlement(d.delivery_id, o, "hall", d.idempotency_key, "case", d.record_key,
                                       d.case_no, 1, error=None if o == "delivered" else "503",
                                       next_attempt_at=now + 60, remote_id=f"rid-{d.record_key}")
                            for d, o in zip(claimed, outcomes, strict=True)])
        # Row by row this was 700 record and 700 outbox inserts, 1,350 audit inserts (700 received, 650 settled)
        # and 1,401 updates (claims and settlements); now each is a handful of statements per batch.
        def inserts(table: str) -> int:
            return sum(1 for s in counted.seen if s.lstrip().upper().startswith(f"INSERT INTO {table}"))

        assert 0 < inserts("RECORDS") <= 12 and 0 < inserts("OUTBOX") <= 12 and 0 < inserts("AUDIT") <= 24
        assert counted.count("UPDATE") == 0 and 0 < counted.count("WITH") <= 40  # five batches of updates
        raw = sqlite3.connect(tmp_path / "g.db")
        states = dict(raw.execute("SELECT state, count(*) FROM outbox GROUP BY state").fetchall())
        assert states == {"delivered": 400, "pending": 201, "dead": 100}
        one = raw.execute("SELECT o.attempts, o.remote_id, o.lease_until, o.last_error FROM outbox o JOIN records r"
                          " ON r.id = o.record_id WHERE r.record_key = ?", (claimed[3].record_key,)).fetchone()
        assert one == (1, f"rid-{claimed[3].record_key}", None, None)
        raw.close()
        assert await verify_chain(store) == 701 + 400 + 150 + 100  # received, delivered, failed, dead-lettered
    finally:
        await store.close()
