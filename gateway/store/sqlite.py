"""SQLite backend of the Store: WAL, synchronous=FULL, one writer thread with group commit.

Every state change runs as an *operation* on the single writer thread. The writer
takes whatever operations are queued, runs them in ONE transaction (each inside its
own savepoint, so one failing operation does not undo its neighbours), commits
once — one fsync for many callers — and only then resolves their futures. Readers
use their own connections on a small thread pool; WAL lets them run while the
writer writes.

Several processes may write the same file (``gateway run`` and a ``gateway
ingest`` beside it): each transaction starts with ``BEGIN IMMEDIATE`` and re-reads
the audit chain head inside the lock, so the chain never forks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

from gateway.audit.chain import GENESIS, HASHERS, ChainWriter
from gateway.store.base import StoreError
from gateway.store.dialect import SqliteConnection
from gateway.store.operations import (  # noqa: F401  (re-exported: older imports name them here)
    CHINA,
    _claim,
    _commit_ingest,
    _commit_supervision,
    _replay,
    _set_cursor,
    _settle,
    now_iso,
)
from gateway.store.sqlstore import GroupWriter, Queued, SqlStore
from gateway.store.sqlstore import hand_back as _hand_back

T = TypeVar("T")


def _connect(path: str, *, readonly: bool = False) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0,
                           factory=SqliteConnection)
    if not readonly:
        # A new store gets 16 KiB pages (before WAL fixes the size; an existing store keeps its own):
        # a stored record is 1.5-2 KB, and with 4 KiB pages two fit a page with a quarter of it
        # wasted. Measured on 60,000 records: 15 % less written and 10-20 % less commit CPU; claims
        # and settlements cost the same.
        conn.execute("PRAGMA page_size=16384")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.execute("PRAGMA cache_size=-8192")  # 8 MiB
    if readonly:
        conn.execute("PRAGMA query_only=1")
    return conn


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled migration, in order."""
    found = []
    for entry in resources.files("gateway.store").joinpath("sql", "sqlite").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    return found


Op = Callable[[sqlite3.Connection, ChainWriter], Any]


class _Writer(GroupWriter):
    """The one thread that writes to the SQLite file (see :class:`GroupWriter`)."""

    def __init__(self, path: str, algorithm: str) -> None:
        super().__init__(algorithm)
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> None:
        self._conn = _connect(self._path)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _chain(self, conn: sqlite3.Connection) -> ChainWriter:
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        if row is None:
            return ChainWriter(0, GENESIS, self._algorithm)
        return ChainWriter(row[0], row[1], self._algorithm)

    def _run_group(self, group: list[Queued]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _hand_back([(loop, fut, None, StoreError(f"store is unavailable: {exc}")) for _, loop, fut in group])
            return
        done = self._run_each(conn, self._chain(conn), group)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            _hand_back([(loop, fut, None, StoreError(f"commit failed: {exc}")) for loop, fut, _, _ in done])
            return
        self.transactions += 1
        _hand_back(done)


class DeliveryLock:
    """Only one process delivers from a SQLite store: leases are released at start-up on that basis."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{self.path}: another gateway process is already delivering from this store "
                             "(several delivering processes need the PostgreSQL store: docs/postgresql.md)") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class SqliteStore(SqlStore):
    """The embedded default store: one file, crash-safe, group-committed."""

    def __init__(self, path: str | Path, *, audit_algorithm: str = "sha256") -> None:
        self.path = str(path)
        self.url = f"sqlite:///{self.path}"
        if audit_algorithm not in HASHERS:
            raise StoreError(f"unknown audit hash algorithm {audit_algorithm!r}; choose one of {sorted(HASHERS)}")
        self._requested_algorithm = audit_algorithm
        self.audit_algorithm = audit_algorithm
        self._writer: _Writer | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()
        self._delivery_lock: DeliveryLock | None = None

    def lock_delivery(self) -> None:
        if self._delivery_lock is None:
            lock = DeliveryLock(Path(self.path + ".lock"))
            lock.acquire()
            self._delivery_lock = lock

    def unlock_delivery(self) -> None:
        if self._delivery_lock is not None:
            self._delivery_lock.release()
            self._delivery_lock = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._migrate)
        self._writer = _Writer(self.path, self.audit_algorithm)
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="store-reader")

    def _migrate(self) -> None:
        conn = _connect(self.path)
        try:
            # Which migrations ran is a set, not a high-water mark: parts of the gateway developed side
            # by side number theirs apart, and a store that ran 0020 must still run 0010 when it arrives.
            # Stores from before the table existed ran every migration up to their user_version.
            conn.executescript(
                "BEGIN IMMEDIATE;"
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                " applied_at TEXT NOT NULL);"
                "COMMIT;")
            applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
            if not applied:
                legacy = conn.execute("PRAGMA user_version").fetchone()[0]
                applied = {v for v, _, _ in migrations() if v <= legacy}
                conn.executemany("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)",
                                 [(v, n, now_iso()) for v, n, _ in migrations() if v in applied])
            for version, name, sql in migrations():
                if version in applied:
                    continue
                # executescript commits on its own; wrap so a migration applies whole or not at all.
                conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version={version};\n"
                                   f"INSERT INTO schema_migrations(version, name, applied_at) VALUES "
                                   f"({version}, '{name}', '{now_iso()}');\nCOMMIT;")
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute("SELECT value FROM meta WHERE key='audit_algorithm'").fetchone()
            if row is None:
                conn.execute("INSERT INTO meta(key, value) VALUES ('audit_algorithm', ?)", (self._requested_algorithm,))
                conn.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (now_iso(),))
            else:
                # A chain keeps the algorithm it was started with; switching would break verification.
                self.audit_algorithm = row[0]
            conn.execute("COMMIT")
        finally:
            conn.close()

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            self._writer = None
        self._close_readers()

    async def _write(self, op: Op) -> Any:
        if self._writer is None:
            raise StoreError("store is not open")
        return await self._writer.submit(op, asyncio.get_running_loop())

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path, readonly=True)
            self._keep_reader(conn)
        return conn

