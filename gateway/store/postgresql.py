"""PostgreSQL backend of the Store: several gateway processes on one database (docs/postgresql.md).

The same architecture as SQLite and the same operations (``gateway.store.operations`` and the
mixins, through ``SqlStore``): each process has ONE writer thread that runs queued operations
in grouped transactions (a savepoint per caller, one commit for many), and a few reader
connections. What several processes add:

- The audit chain stays one chain. Every writing transaction first locks the single row of
  ``audit_head`` (``SELECT … FOR UPDATE``), chains its entries from the seq and hash it holds,
  and stores the new head before it commits. Writers of all processes are so serialised exactly
  as SQLite's ``BEGIN IMMEDIATE`` serialises them, which also keeps record and outbox ids in
  commit order (followers read ``id > watermark``) and makes the claim-at-birth check of "no
  other open delivery of this case" race-free. Taking the lock first, always, means two writers
  never wait on each other in opposite orders: no deadlocks.
- Claims lock their rows with ``FOR UPDATE OF o SKIP LOCKED`` and lease them; a lease that runs
  out (its process died) returns the delivery to pending for whoever claims next. At start-up
  only EXPIRED leases are released, never those of another live process.
- ``LISTEN gateway_outbox`` (a trigger NOTIFYs when a delivery becomes pending) wakes the idle
  workers of every process.
- ``lead(role)`` elects one process for work that must run once (the sealer, the followers)
  with a session-level ``pg_try_advisory_lock``; when that process dies its session ends and
  another takes over at its next try.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
import logging
import threading
import time
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.adapt import Loader

from gateway.audit.chain import HASHERS, ChainWriter
from gateway.store import quarantine as quarantine_ops
from gateway.store.audit_source import AuditSource
from gateway.store.base import StoreError
from gateway.store.dialect import POSTGRESQL
from gateway.store.operations import _return_to_pending, now_iso
from gateway.store.sqlstore import GroupWriter, Queued, SqlStore, hand_back

log = logging.getLogger("gateway.store")
T = TypeVar("T")
Op = Callable[[Any, ChainWriter], Any]
_NOTIFY_CHANNEL = "gateway_outbox"
_DEFAULT_READERS = 2
# Keys of the session-level advisory locks (pg_advisory_lock takes one bigint).
_MIGRATE_LOCK = 0x6761_7465_7761_7901  # "gatewa" "y" 1

# An item's own data PostgreSQL refuses (a NUL in text, a number beyond bigint, bytes that are not
# UTF-8): quarantined by the poison isolation, as SQLite's DataError and IntegrityError are.
quarantine_ops.register_item_faults(psycopg.DataError, psycopg.IntegrityError)


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def parse_url(url: str) -> tuple[str, dict[str, str]]:
    """(libpq connection string, the gateway's own settings) from ``postgresql://…?readers=4``.

    The gateway's settings (``readers``) are taken out of the query string: libpq refuses
    parameters it does not know. Everything else (host, port, sslmode, passfile, …) goes to libpq.
    """
    if not is_postgres_url(url):
        raise StoreError(f"not a PostgreSQL URL: {url!r} (expected postgresql://user@host:port/database)")
    parts = urlsplit(url)
    own: dict[str, str] = {}
    rest: list[tuple[str, str]] = []
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "readers":
            own[key] = value
        else:
            rest.append((key, value))
    if not any(k == "application_name" for k, _ in rest):
        rest.append(("application_name", "exchange-gateway"))
    scheme = "postgresql"
    return urlunsplit((scheme, parts.netloc, parts.path, urlencode(rest), parts.fragment)), own


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(f"exchange-gateway:{name}".encode()).digest()[:8], "big", signed=True)


@functools.lru_cache(maxsize=8192)
def translate(sql: str) -> str:
    """``?`` placeholders to psycopg's ``%s`` (and a literal ``%`` to ``%%``), outside quoted text."""
    out: list[str] = []
    quote: str | None = None
    for ch in sql:
        if quote is not None:
            if ch == quote:
                quote = None
            out.append("%%" if ch == "%" else ch)
        elif ch in ("'", '"'):
            quote = ch
            out.append(ch)
        elif ch == "?":
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


class _NumericLoader(Loader):
    """``sum()`` of integers comes back as numeric: an int when whole (as SQLite gives), else a float."""

    def load(self, data: Any) -> int | float:
        text = bytes(data).decode("ascii")
        try:
            return int(text)
        except ValueError:
            return float(text)


class PgConnection:
    """A psycopg connection that speaks the store operations' SQL (``?`` placeholders)."""

    dialect = POSTGRESQL
    __slots__ = ("raw",)

    def __init__(self, raw: psycopg.Connection[Any]) -> None:
        self.raw = raw

    def execute(self, sql: str, params: Sequence[Any] | None = None) -> psycopg.Cursor[Any]:
        return self.raw.execute(translate(sql), tuple(params) if params is not None else ())

    def executemany(self, sql: str, rows: Any) -> psycopg.Cursor[Any]:
        cur = self.raw.cursor()
        cur.executemany(translate(sql), list(rows))
        return cur

    def close(self) -> None:
        self.raw.close()

    @property
    def broken(self) -> bool:
        return self.raw.closed or self.raw.broken


def connect(conninfo: str) -> PgConnection:
    raw = psycopg.connect(conninfo, autocommit=True)
    raw.adapters.register_loader("numeric", _NumericLoader)
    return PgConnection(raw)


def migrations() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every bundled PostgreSQL migration, in order (the same numbers as SQLite's)."""
    found = []
    for entry in resources.files("gateway.store").joinpath("sql", "postgresql").iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:4].isdigit():
            found.append((int(name[:4]), name, entry.read_text(encoding="utf-8")))
    found.sort()
    return found


def _unavailable(exc: BaseException, what: str) -> StoreError:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return StoreError(f"{what}: {text}")


class _Writer(GroupWriter):
    """The one thread of this process that writes: grouped transactions, each holding the chain head
    (see :class:`GroupWriter`)."""

    def __init__(self, conninfo: str, algorithm: str) -> None:
        super().__init__(algorithm)
        self._conninfo = conninfo
        self._conn: PgConnection | None = None
        self.lock_wait = 0.0  # seconds spent waiting for the chain head (other processes' transactions)
        self.busy = 0.0  # seconds inside transactions, lock wait included

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _connection(self) -> PgConnection:
        if self._conn is not None and self._conn.broken:
            self._conn.close()
            self._conn = None
        if self._conn is None:
            self._conn = connect(self._conninfo)
        return self._conn

    @staticmethod
    def _fail(group: Sequence[tuple[Op, asyncio.AbstractEventLoop, asyncio.Future[Any]]], error: BaseException) -> None:
        hand_back([(loop, fut, None, error) for _, loop, fut in group])

    def _run_group(self, group: list[Queued]) -> None:
        started = time.perf_counter()
        try:
            conn = self._connection()
            conn.execute("BEGIN")
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE").fetchone()
        except psycopg.Error as exc:
            self._abandon()
            self._fail(group, _unavailable(exc, "store is unavailable"))
            return
        self.lock_wait += time.perf_counter() - started
        if row is None:
            self._abandon()
            self._fail(group, StoreError("store is not migrated: the audit_head row is missing"))
            return
        chain = ChainWriter(row[0], row[1], self._algorithm)
        first_seq = chain.seq
        done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]] = []
        try:
            if len(group) == 1:  # one caller alone needs no savepoint: its failure is the transaction's
                op, loop, fut = group[0]
                if fut.cancelled():  # its caller stopped waiting before it ran: it does not run
                    self._abandon()
                    return
                try:
                    done.append((loop, fut, op(conn, chain), None))
                except BaseException as exc:
                    self._abandon()
                    hand_back([(loop, fut, None, exc)])
                    return
            else:
                done = self._run_each(conn, chain, group)
            if chain.seq != first_seq:
                conn.execute("UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1", (chain.seq, chain.head))
            conn.execute("COMMIT")
        except psycopg.Error as exc:
            self._abandon()
            self._fail(group, _unavailable(exc, "commit failed"))  # none of the group's work was kept
            return
        finally:
            self.busy += time.perf_counter() - started
        self.transactions += 1
        hand_back(done)

    def _abandon(self) -> None:
        """Roll back whatever is open; a connection that cannot is dropped and made anew next time."""
        if self._conn is None:
            return
        try:
            self._conn.execute("ROLLBACK")
        except psycopg.Error:
            self._conn.close()
            self._conn = None


class _Listener(threading.Thread):
    """LISTEN on the outbox channel; each notification (a destination name) goes to the callbacks."""

    def __init__(self, conninfo: str) -> None:
        super().__init__(name="store-listener", daemon=True)
        self._conninfo = conninfo
        self._stopping = threading.Event()
        self._callbacks: list[tuple[asyncio.AbstractEventLoop, Callable[[str], None]]] = []
        self.notifications = 0

    def add(self, loop: asyncio.AbstractEventLoop, callback: Callable[[str], None]) -> None:
        self._callbacks.append((loop, callback))

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                conn = connect(self._conninfo)
            except psycopg.Error as exc:
                log.warning("store: cannot LISTEN for pending deliveries (%s); workers poll until it works", exc)
                self._stopping.wait(5.0)
                continue
            try:
                conn.raw.execute(f"LISTEN {_NOTIFY_CHANNEL}")
                while not self._stopping.is_set():
                    for note in conn.raw.notifies(timeout=0.5):
                        self.notifications += 1
                        for loop, callback in list(self._callbacks):
                            try:
                                loop.call_soon_threadsafe(callback, note.payload)
                            except RuntimeError:  # that loop is closed
                                pass
            except psycopg.Error as exc:
                if not self._stopping.is_set():
                    log.warning("store: the LISTEN connection failed (%s); reconnecting", exc)
                    self._stopping.wait(1.0)
            finally:
                conn.close()


class PgStore(SqlStore):
    """The scale-out store: several gateway processes on one PostgreSQL (or compatible) database."""

    def __init__(self, url: str, *, audit_algorithm: str = "sha256") -> None:
        self.url = url
        self.conninfo, own = parse_url(url)
        try:
            self.reader_count = max(1, int(own.get("readers", _DEFAULT_READERS)))
        except ValueError:
            raise StoreError(f"store URL {redacted(url)}: readers must be a number") from None
        if audit_algorithm not in HASHERS:
            raise StoreError(f"unknown audit hash algorithm {audit_algorithm!r}; choose one of {sorted(HASHERS)}")
        self._requested_algorithm = audit_algorithm
        self.audit_algorithm = audit_algorithm
        self._writer: _Writer | None = None
        self._readers: concurrent.futures.ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[PgConnection] = []
        self._reader_lock = threading.Lock()
        self._listener: _Listener | None = None
        self._leaders: dict[str, PgConnection] = {}

    def __repr__(self) -> str:
        return f"PgStore({redacted(self.url)!r})"

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        try:
            await asyncio.to_thread(self._migrate)
        except psycopg.Error as exc:
            raise _unavailable(exc, f"cannot open the PostgreSQL store {redacted(self.url)}") from exc
        self._writer = _Writer(self.conninfo, self.audit_algorithm)
        self._writer.start()
        self._readers = concurrent.futures.ThreadPoolExecutor(max_workers=self.reader_count,
                                                              thread_name_prefix="store-reader")

    def _migrate(self) -> None:
        conn = connect(self.conninfo)
        try:
            encoding, collation = conn.execute(
                "SELECT current_setting('server_encoding'), datcollate FROM pg_database"
                " WHERE datname = current_database()").fetchone()
            if encoding.upper() not in ("UTF8", "UTF-8"):
                raise StoreError(f"the database of {redacted(self.url)} is encoded {encoding}; the gateway stores "
                                 "Chinese text and needs UTF8 (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)")
            if collation not in ("C", "POSIX", "C.UTF-8", "C.utf8"):
                log.warning("store: the database collation is %s, not C: text sorts by that locale's rules (case "
                            "search pages and prefixes may order differently from SQLite); see docs/postgresql.md",
                            collation)
            # Processes starting together migrate one at a time; the others then find nothing to do.
            conn.execute("SELECT pg_advisory_lock(?)", (_MIGRATE_LOCK,))
            try:
                conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY,"
                             " name TEXT NOT NULL, applied_at TEXT NOT NULL)")
                applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                for version, name, sql in migrations():
                    if version in applied:
                        continue
                    with conn.raw.transaction():
                        conn.raw.execute(sql)  # no parameters: several statements, sent as they are
                        conn.execute("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?,?,?)",
                                     (version, name, now_iso()))
                with conn.raw.transaction():
                    row = conn.execute("SELECT value FROM meta WHERE key='audit_algorithm'").fetchone()
                    if row is None:
                        conn.execute("INSERT INTO meta(key, value) VALUES ('audit_algorithm', ?)",
                                     (self._requested_algorithm,))
                        conn.execute("INSERT INTO meta(key, value) VALUES ('created_at', ?)", (now_iso(),))
                    else:
                        # A chain keeps the algorithm it was started with; switching would break verification.
                        self.audit_algorithm = row[0]
            finally:
                conn.execute("SELECT pg_advisory_unlock(?)", (_MIGRATE_LOCK,))
        finally:
            conn.close()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            await asyncio.to_thread(self._listener.join)
            self._listener = None
        for role in list(self._leaders):
            await self.resign(role)
        if self._writer is not None:
            self._writer.stop()
            await asyncio.to_thread(self._writer.join)
            w = self._writer
            if w.transactions:  # what the one audit chain cost this process (docs/postgresql.md)
                log.info("store: %d write transactions, %.1f s in them, %.1f s of that waiting for the audit chain "
                         "head (other processes' transactions)", w.transactions, w.busy, w.lock_wait,
                         extra={"transactions": w.transactions, "busy_seconds": round(w.busy, 3),
                                "chain_lock_wait_seconds": round(w.lock_wait, 3)})
            self._writer = None
        self._close_readers()

    def writer_stats(self) -> dict[str, float]:
        """This process's writer: transactions, seconds in them, seconds of those waiting for the chain head."""
        w = self._writer
        if w is None:
            return {"transactions": 0, "busy_seconds": 0.0, "chain_lock_wait_seconds": 0.0}
        return {"transactions": w.transactions, "busy_seconds": w.busy, "chain_lock_wait_seconds": w.lock_wait}

    async def _write(self, op: Op) -> Any:
        if self._writer is None:
            raise StoreError("store is not open")
        try:
            return await self._writer.submit(op, asyncio.get_running_loop())
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, "store is unavailable") from exc

    def _reader(self) -> PgConnection:
        conn: PgConnection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.broken:
            conn.close()
            conn = None
        if conn is None:
            conn = connect(self.conninfo)
            self._keep_reader(conn)
        return conn

    def _run_read(self, fn: Callable[[PgConnection], T]) -> T:
        try:
            return fn(self._reader())
        except psycopg.OperationalError as exc:
            raise _unavailable(exc, "store is unavailable") from exc

    # ------------------------------------------------------------------ several processes

    async def release_leases(self) -> int:
        """Return in-flight deliveries whose lease has EXPIRED to pending (never another live process's)."""
        now = time.time()

        def op(conn: Any, chain: ChainWriter) -> int:
            return _return_to_pending(conn, chain, "state='inflight' AND lease_until < ?", (now,),
                                      "start-up: lease expired (its process stopped)")

        return await self._write(op)

    def watch_deliveries(self, callback: Callable[[str], None]) -> None:
        """Call ``callback(destination)`` (on the running loop) whenever any process makes a delivery pending."""
        loop = asyncio.get_running_loop()
        if self._listener is None:
            self._listener = _Listener(self.conninfo)
            self._listener.add(loop, callback)
            self._listener.start()
        else:
            self._listener.add(loop, callback)

    async def lead(self, role: str) -> bool:
        """Whether this process holds (or now takes) the one lead of ``role`` among all processes."""
        held = self._leaders.get(role)
        if held is not None:
            try:
                await asyncio.to_thread(lambda: held.execute("SELECT 1").fetchone())
                return True
            except psycopg.Error:
                self._leaders.pop(role, None)  # its session ended, and the lock with it
                held.close()

        def take() -> PgConnection | None:
            conn = connect(self.conninfo)
            if conn.execute("SELECT pg_try_advisory_lock(?)", (lock_key(role),)).fetchone()[0]:
                return conn
            conn.close()
            return None

        try:
            conn = await asyncio.to_thread(take)
        except psycopg.Error as exc:
            raise _unavailable(exc, "store is unavailable") from exc
        if conn is None:
            return False
        self._leaders[role] = conn
        return True

    async def resign(self, role: str) -> None:
        conn = self._leaders.pop(role, None)
        if conn is not None:
            await asyncio.to_thread(conn.close)  # the session's advisory lock ends with it


class PgAuditSource(AuditSource):
    """The audit tables read in a read-only session; entry bodies come in binary (no hex to decode)."""

    chunk = 32_768  # a round trip costs more than cache misses do

    @classmethod
    def open(cls, url: str) -> PgAuditSource:
        conninfo, _ = parse_url(url)
        try:
            conn = connect(conninfo)
        except psycopg.Error as exc:
            raise _unavailable(exc, f"cannot open the PostgreSQL store {redacted(url)}") from exc
        conn.execute("SET default_transaction_read_only = on")
        return cls(conn, redacted(url))

    def entries(self, first: int, last: int) -> tuple[list[Any], list[Any]]:
        cur = self.conn.raw.cursor(binary=True)
        rows = cur.execute("SELECT hash, body FROM audit WHERE seq BETWEEN %s AND %s ORDER BY seq",
                           (first, last)).fetchall()
        return [r[0] for r in rows], [r[1] for r in rows]
