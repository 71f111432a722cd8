"""Quarantine workbench and poison isolation on the SQLite store: the operations of ``gateway.store.quarantine``.

Writes run on the store's single writer thread (``self._write``), reads on its reader
pool (``self._read``), exactly like the audit mixin beside this one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.adapters import IngestOutcome
from gateway.audit.chain import ChainWriter
from gateway.store import quarantine as ops
from gateway.store.base import AcceptItem, QuarantineItem, Reprocessed

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


class SqliteQuarantineMixin:
    """Mixed into SqliteStore; uses its _read/_write primitives and its batch commit."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, op: Callable[[sqlite3.Connection, ChainWriter], T]) -> T: ...

    @staticmethod
    def _batch_ops() -> tuple[ops.CommitBatch, Callable[..., None]]:
        from gateway.store.operations import _commit_ingest, _set_cursor

        return _commit_ingest, _set_cursor

    async def commit_ingest_isolated(
        self,
        accepted: Sequence[AcceptItem],
        quarantined: Sequence[QuarantineItem],
        cursor: tuple[str, str] | None = None,
        claims: Mapping[str, float] | None = None,
    ) -> list[IngestOutcome]:
        commit_batch, set_cursor = self._batch_ops()

        return await self._write(ops.IsolatedIngest(accepted, quarantined, cursor, claims, commit_batch, set_cursor,
                                                    _now))

    async def quarantine_entries(
        self, *, ids: Sequence[int] | None = None, system: str | None = None, state: str | None = None,
        limit: int = 100, after_id: int = 0, newest_first: bool = False, systems: Sequence[str] | None = None,
    ) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.list_entries(
            conn, ids=None if ids is None else list(ids), system=system, state=state, limit=limit,
            after_id=after_id, newest_first=newest_first, systems=None if systems is None else sorted(systems)))

    async def quarantine_count(self, *, system: str | None = None, state: str | None = None) -> int:
        return await self._read(lambda conn: ops.count_entries(conn, system=system, state=state))

    async def quarantine_entry(self, entry_id: int) -> dict[str, Any] | None:
        return await self._read(lambda conn: ops.get_entry(conn, entry_id))

    async def discard_quarantined(self, ids: Sequence[int], reason: str, actor: str) -> list[dict[str, Any]]:
        return await self._write(lambda conn, chain: ops.discard(conn, chain, _now(), list(ids), reason, actor))

    async def commit_reprocess(self, items: Sequence[Reprocessed], actor: str) -> list[dict[str, Any]]:
        commit_batch, _ = self._batch_ops()
        return await self._write(lambda conn, chain: ops.commit_reprocess(conn, chain, _now(), list(items), actor,
                                                                          commit_batch))
