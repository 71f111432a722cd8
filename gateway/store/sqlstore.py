"""The Store interface implemented once over SQL: every backend that has a writer and readers inherits it.

``SqlStore`` holds the semantics — which operation runs for each Store method, and the
queries — and leaves the connections to its backend: ``_write(op)`` runs ``op(conn, chain)``
on the backend's one writer (group commit, a savepoint per caller, the audit chain head
held for the transaction), ``_read(fn)`` runs ``fn(conn)`` on a reader. SQLite
(``gateway.store.sqlite``) and PostgreSQL (``gateway.store.postgresql``) are the two.
"""

from __future__ import annotations

import abc
import asyncio
import concurrent.futures
import json
import queue
import threading
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Protocol, TypeVar

from gateway.adapters import IngestOutcome
from gateway.audit.chain import GENESIS, ChainWriter
from gateway.store.base import (
    AcceptItem,
    AuditRow,
    ClaimedDelivery,
    Claims,
    QuarantineItem,
    Settlement,
    Store,
    StoreCounts,
    StoreError,
)
from gateway.store.cases import SqliteCasesMixin
from gateway.store.dialect import dialect_of
from gateway.store.encryption import SqliteEncryptionMixin
from gateway.store.identity import IdentityStoreMixin
from gateway.store.observability import SqliteObservabilityMixin
from gateway.store.operations import (
    _claim,
    _commit_ingest,
    _commit_supervision,
    _replay,
    _return_to_pending,
    _set_cursor,
    _settle,
    now_iso,
)
from gateway.store.quarantine import savepoint
from gateway.store.sqlite_audit import AUDIT_INSERT, SqliteAuditMixin, audit_row
from gateway.store.sqlite_deliveries import SqliteDeliveriesMixin
from gateway.store.sqlite_destinations import SqliteDestinationsMixin
from gateway.store.sqlite_exchange import SqliteExchangeMixin
from gateway.store.sqlite_quarantine import SqliteQuarantineMixin

T = TypeVar("T")
Op = Callable[[Any, ChainWriter], Any]


def hand_back(results: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]]
               ) -> None:
    """Resolve the futures of a writer's group, one call per event loop (one wake-up of each loop, not one per
    operation: with one-record pushes that was a tenth of the request's cost)."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]] = {}
    for loop, fut, result, exc in results:
        by_loop.setdefault(loop, []).append((fut, result, exc))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, items)
        except RuntimeError:  # the loop closed: nobody waits any more
            pass


def _resolve(items: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for fut, result, exc in items:
        if fut.done():
            continue
        if exc is None:
            fut.set_result(result)
        else:
            fut.set_exception(exc)


Queued = tuple[Op, asyncio.AbstractEventLoop, asyncio.Future[Any]]
GROUP_LIMIT = 512  # operations per transaction at most
# Items per merged run at most: a run that fails is done again batch by batch, so this bounds the work a
# bad item costs its neighbours (one batch larger than this still runs, alone or first in its run).
MERGE_LIMIT = 2_000


class Mergeable(Protocol):
    """An operation that can run together with its like: the writer runs neighbouring operations of a group
    with the same (not None) ``merge_key``, up to :data:`MERGE_LIMIT` items (``merge_size``) together, as
    one ``run_merged`` call, which returns each one's result in order and must leave the rows and the
    chain exactly as running them one after another would, but for the order of audit entries within the
    run. A run that raises is rolled back and retried one by one."""

    merge_key: Hashable | None
    merge_size: int  # items in it, for MERGE_LIMIT

    @classmethod
    def run_merged(cls, conn: Any, chain: ChainWriter, ops: Sequence[Any]) -> list[Any]: ...


def _run_merged(conn: Any, chain: ChainWriter, run: Sequence[Queued],
                done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]]) -> bool:
    """Run ``run``'s operations (all with one merge key) as one in a savepoint; False, with nothing left of
    it, when that failed (the caller then runs them one by one)."""
    ops = [op for op, _, _ in run]
    try:
        with savepoint(conn, chain, "ops"):
            results = type(ops[0]).run_merged(conn, chain, ops)
            if len(results) != len(ops):
                raise RuntimeError(f"{type(ops[0]).__name__}.run_merged gave {len(results)} results for {len(ops)}")
    except BaseException:  # whatever it was, each operation meets it again alone and reports it
        return False
    done.extend((loop, fut, result, None) for (_, loop, fut), result in zip(run, results, strict=True))
    return True


class GroupWriter(threading.Thread, metaclass=abc.ABCMeta):
    """The one thread of a process that writes, for either backend: queued operations run in groups, one
    transaction per group (group commit, one fsync), each operation in a savepoint of its own. A backend
    says how one group's transaction runs (``_run_group``) and what the thread opens and closes."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(name="store-writer", daemon=True)
        self._algorithm = algorithm
        self._queue: queue.SimpleQueue[Queued | None] = queue.SimpleQueue()
        self.transactions = 0

    def submit(self, op: Op, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Queue ``op``; its result (or exception) arrives in the returned future of ``loop`` (a group's results
        go back to each loop in one call, see :func:`hand_back`)."""
        fut: asyncio.Future[Any] = loop.create_future()
        self._queue.put((op, loop, fut))
        return fut

    def stop(self) -> None:
        self._queue.put(None)

    def run(self) -> None:
        self._open()
        try:
            stopping = False
            while not stopping:
                first = self._queue.get()
                if first is None:
                    break
                group = [first]
                while len(group) < GROUP_LIMIT:
                    try:
                        nxt = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stopping = True
                        break
                    group.append(nxt)
                self._run_group(group)
        finally:
            self._close()

    @staticmethod
    def _run_each(conn: Any, chain: ChainWriter, group: Sequence[Queued]
                  ) -> list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]]:
        """Run the group's operations in one open transaction, each in a savepoint of its own: one that
        fails is rolled back (rows and in-memory chain head) and its neighbours go on. Skips callers that
        stopped waiting. Returns (loop, future, result, exception) per operation that ran.

        Neighbouring operations that say they can run as one (the same :class:`Mergeable` ``merge_key``,
        as one-record pushes do) run as one, in one savepoint: one set of statements for the run instead
        of one per caller. If that fails for any reason, it is rolled back and they run one by one as
        above, so a failure still costs only its own caller.
        """
        done: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[Any], Any, BaseException | None]] = []
        live = [queued for queued in group if not queued[2].cancelled()]  # a caller that stopped waiting: no run
        i = 0
        while i < len(live):
            key = getattr(live[i][0], "merge_key", None)
            j = i + 1
            if key is not None:
                size = live[i][0].merge_size
                while j < len(live) and getattr(live[j][0], "merge_key", None) == key \
                        and size + live[j][0].merge_size <= MERGE_LIMIT:
                    size += live[j][0].merge_size
                    j += 1
            if j - i > 1 and _run_merged(conn, chain, live[i:j], done):
                i = j
                continue
            for op, loop, fut in live[i:j]:
                try:
                    with savepoint(conn, chain, "op"):
                        result = op(conn, chain)
                except BaseException as exc:  # the operation's own failure; its neighbours go on
                    done.append((loop, fut, None, exc))
                else:
                    done.append((loop, fut, result, None))
            i = j
        return done

    def _open(self) -> None:
        """What the thread opens before its first group (SQLite: its connection)."""

    @abc.abstractmethod
    def _close(self) -> None:
        """Close what the thread holds, when it stops."""

    @abc.abstractmethod
    def _run_group(self, group: list[Queued]) -> None:
        """Run ``group`` in one transaction and hand every result back (:func:`hand_back`)."""


class SqlStore(SqliteQuarantineMixin, SqliteDeliveriesMixin, SqliteDestinationsMixin, SqliteAuditMixin,
               SqliteEncryptionMixin, IdentityStoreMixin, SqliteCasesMixin, SqliteExchangeMixin,
               SqliteObservabilityMixin, Store):
    """The Store's semantics over SQL; a backend supplies ``_write``, ``_reader``, ``open`` and ``close``.

    Both backends read the same way: a thread pool (``_readers``), each of its threads with a
    connection of its own (``_reader``), every one of them kept in ``_reader_conns`` to close.
    """

    audit_algorithm: str
    _writer: GroupWriter | None
    _readers: concurrent.futures.ThreadPoolExecutor | None
    _local: threading.local  # the reader thread's own connection, as ``conn``
    _reader_conns: list[Any]
    _reader_lock: threading.Lock

    @abc.abstractmethod
    async def _write(self, op: Op) -> Any:
        """Run ``op(conn, chain)`` in the writer's next transaction and return its result."""

    @abc.abstractmethod
    def _reader(self) -> Any:
        """This reader thread's connection, opened on first use (and kept with ``_keep_reader``)."""

    def _keep_reader(self, conn: Any) -> None:
        self._local.conn = conn
        with self._reader_lock:
            self._reader_conns.append(conn)

    def _run_read(self, fn: Callable[[Any], T]) -> T:
        """``fn`` on this thread's connection (a backend may translate its errors here)."""
        return fn(self._reader())

    async def _read(self, fn: Callable[[Any], T]) -> T:
        """Run ``fn(conn)`` on a reader connection and return its result."""
        if self._readers is None:
            raise StoreError("store is not open")
        return await asyncio.get_running_loop().run_in_executor(self._readers, self._run_read, fn)

    def _close_readers(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    @property
    def transactions(self) -> int:
        """Write transactions this process has committed since the store opened."""
        return self._writer.transactions if self._writer else 0

    # ------------------------------------------------------------------ ingest

    async def commit_ingest(
        self,
        accepted: Sequence[AcceptItem],
        quarantined: Sequence[QuarantineItem],
        cursor: tuple[str, str] | None = None,
        claims: Claims | None = None,
    ) -> list[IngestOutcome]:
        return await self._write(lambda conn, chain: _commit_ingest(conn, chain, accepted, quarantined, cursor,
                                                                    claims))

    async def get_cursor(self, name: str) -> str | None:
        def q(conn: Any) -> str | None:
            row = conn.execute("SELECT value FROM cursors WHERE name=?", (name,)).fetchone()
            return row[0] if row else None

        return await self._read(q)

    # ------------------------------------------------------------------ delivery

    async def claim(self, destination: str, limit: int, lease_seconds: float, now: float) -> list[ClaimedDelivery]:
        return await self._write(lambda conn, chain: _claim(conn, chain, destination, limit, lease_seconds, now))

    async def settle(self, settlements: Sequence[Settlement]) -> None:
        if settlements:
            await self._write(lambda conn, chain: _settle(conn, chain, settlements))

    async def replay(
        self,
        ids: Sequence[int] | None = None,
        *,
        destination: str | None = None,
        states: Sequence[str] = ("dead",),
        dry_run: bool = False,
        actor: str = "cli",
    ) -> list[int]:
        return await self._write(lambda conn, chain: _replay(conn, chain, ids, destination, states, dry_run, actor))

    async def release_leases(self) -> int:
        def op(conn: Any, chain: ChainWriter) -> int:
            return _return_to_pending(conn, chain, "state='inflight'", (), "start-up: left in flight by a previous run")

        return await self._write(op)

    async def next_due(self, destination: str) -> float | None:
        def q(conn: Any) -> float | None:
            row = conn.execute(
                "SELECT min(next_attempt_at) FROM outbox WHERE destination=? AND state='pending'", (destination,)
            ).fetchone()
            return row[0] if row else None

        return await self._read(q)

    # ------------------------------------------------------------------ queries

    async def list_deliveries(
        self,
        *,
        state: str | None = None,
        destination: str | None = None,
        case_no: str | None = None,
        limit: int = 100,
        after_id: int = 0,
    ) -> list[dict[str, Any]]:
        where, args = ["o.id > ?"], [after_id]
        for col, val in (("o.state", state), ("o.destination", destination), ("o.case_no", case_no)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        sql = (
            "SELECT o.id, o.destination, o.state, o.attempts, o.case_no, o.idem_key, o.created_at,"
            " o.next_attempt_at, o.settled_at, o.last_error, o.remote_id, r.kind, r.record_key, r.system, r.version"
            " FROM outbox o JOIN records r ON r.id = o.record_id"
            f" WHERE {' AND '.join(where)} ORDER BY o.id LIMIT ?"
        )
        args.append(limit)

        def q(conn: Any) -> list[dict[str, Any]]:
            cols = ["id", "destination", "state", "attempts", "case_no", "idempotency_key", "created_at",
                    "next_attempt_at", "settled_at", "last_error", "remote_id", "kind", "record_key", "system", "version"]
            return [dict(zip(cols, row, strict=True)) for row in conn.execute(sql, args)]

        return await self._read(q)

    async def list_quarantine(self, *, system: str | None = None, limit: int = 100, after_id: int = 0) -> list[dict[str, Any]]:
        where, args = ["id > ?"], [after_id]
        if system is not None:
            where.append("system = ?")
            args.append(system)
        args.append(limit)

        def q(conn: Any) -> list[dict[str, Any]]:
            rows = conn.execute(
                f"SELECT id, system, ref, kind, errors, payload, receipt_time FROM quarantine WHERE {' AND '.join(where)}"
                " ORDER BY id LIMIT ?",
                args,
            )
            return [
                {"id": r[0], "system": r[1], "ref": r[2], "kind": r[3], "errors": json.loads(r[4]),
                 "payload": json.loads(r[5]) if r[5] else None, "receipt_time": r[6]}
                for r in rows
            ]

        return await self._read(q)

    async def list_records(
        self, *, case_no: str | None = None, kind: str | None = None, limit: int = 100, after_id: int = 0
    ) -> list[dict[str, Any]]:
        where, args = ["id > ?"], [after_id]
        for col, val in (("case_no", case_no), ("kind", kind)):
            if val is not None:
                where.append(f"{col} = ?")
                args.append(val)
        args.append(limit)

        def q(conn: Any) -> list[dict[str, Any]]:
            rows = conn.execute(
                "SELECT id, system, kind, record_key, version, case_no, status, receipt_id, receipt_time, ref,"
                " correlation_id, body"
                f" FROM records WHERE {' AND '.join(where)} ORDER BY id LIMIT ?",
                args,
            )
            cols = ["id", "system", "kind", "record_key", "version", "case_no", "status", "receipt_id",
                    "receipt_time", "ref", "correlation_id"]
            out = []
            for r in rows:
                d = dict(zip(cols, r[:-1], strict=True))
                d["record"] = json.loads(r[-1])
                out.append(d)
            return out

        return await self._read(q)

    async def counts(self) -> StoreCounts:
        def q(conn: Any) -> StoreCounts:
            c = StoreCounts()
            # Both counts come from indexes; grouping by kind would read every record body.
            total = conn.execute("SELECT count(*) FROM records").fetchone()[0]
            c.alerts = conn.execute("SELECT count(*) FROM records WHERE system = 'supervision'").fetchone()[0]
            c.records = total - c.alerts
            c.quarantined = conn.execute("SELECT count(*) FROM quarantine").fetchone()[0]
            row = conn.execute("SELECT value FROM meta WHERE key='count.duplicates'").fetchone()
            c.duplicates = int(row[0]) if row else 0
            for dest, state, n in conn.execute("SELECT destination, state, count(*) FROM outbox GROUP BY 1, 2"):
                c.by_destination.setdefault(dest, {})[state] = n
                setattr(c, state, getattr(c, state) + n)
            row = conn.execute("SELECT seq FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            c.audit_entries = row[0] if row else 0
            return c

        return await self._read(q)

    # ------------------------------------------------------------------ supervision

    async def records_since(self, after_id: int, limit: int) -> list[tuple[int, str, str]]:
        def q(conn: Any) -> list[tuple[int, str, str]]:
            return conn.execute(
                "SELECT id, receipt_time, body FROM records WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)
            ).fetchall()

        return await self._read(q)

    async def case_states(self, keys: Sequence[str]) -> dict[str, str]:
        keys = list(dict.fromkeys(keys))

        def q(conn: Any) -> dict[str, str]:
            out: dict[str, str] = {}
            for i in range(0, len(keys), 500):
                chunk = keys[i:i + 500]
                out.update(conn.execute(
                    f"SELECT case_key, state FROM case_state WHERE case_key IN ({','.join('?' * len(chunk))})",
                    chunk).fetchall())
            return out

        return await self._read(q)

    async def due_case_states(self, now: float, limit: int) -> list[tuple[str, str]]:
        def q(conn: Any) -> list[tuple[str, str]]:
            return conn.execute(
                "SELECT case_key, state FROM case_state WHERE next_check IS NOT NULL AND next_check <= ?"
                " ORDER BY next_check LIMIT ?", (now, limit)).fetchall()

        return await self._read(q)

    async def commit_supervision(
        self,
        states: dict[str, tuple[str, float | None]],
        alerts: Sequence[AcceptItem],
        cursor: tuple[str, str] | None,
    ) -> list[IngestOutcome]:
        return await self._write(lambda conn, chain: _commit_supervision(conn, chain, states, alerts, cursor))

    # ------------------------------------------------------------------ audit

    async def audit_event(self, action: str, *, cursor: tuple[str, str] | None = None, **fields: Any) -> int:
        def op(conn: Any, chain: ChainWriter) -> int:
            at = now_iso()
            row = audit_row(chain, at, action, **fields)
            conn.execute(AUDIT_INSERT, row)
            if cursor is not None:
                _set_cursor(conn, cursor, at)
            return row[0]

        return await self._write(op)

    async def audit_entries(self, *, after_seq: int = 0, limit: int = 1000, case_no: str | None = None) -> list[AuditRow]:
        def q(conn: Any) -> list[AuditRow]:
            if case_no is None:
                rows = conn.execute(
                    "SELECT seq, hash, body FROM audit WHERE seq > ? ORDER BY seq LIMIT ?", (after_seq, limit)
                )
            else:
                rows = conn.execute(
                    f"SELECT seq, hash, body FROM audit WHERE {dialect_of(conn).audit_case} = ? AND seq > ?"
                    " ORDER BY seq LIMIT ?",
                    (case_no, after_seq, limit),
                )
            return [AuditRow(r[0], r[1], bytes(r[2])) for r in rows]

        return await self._read(q)

    async def audit_head(self) -> tuple[int, str, str]:
        def q(conn: Any) -> tuple[int, str, str]:
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            return (row[0], row[1], self.audit_algorithm) if row else (0, GENESIS, self.audit_algorithm)

        return await self._read(q)

