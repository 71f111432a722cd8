"""Destination controls and health on the SQLite store: the operations of ``gateway.store.destinations``.

Writes run on the store's single writer thread (``self._write``), reads on its reader pool
(``self._read``), like the quarantine and audit mixins beside this one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit.chain import ChainWriter
from gateway.store import destinations as ops
from gateway.store.destinations import Backlog, DestinationControls

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def _at() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


class SqliteDestinationsMixin:
    """Mixed into SqliteStore; uses its _read/_write primitives."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, op: Callable[[sqlite3.Connection, ChainWriter], T]) -> T: ...

    async def destination_controls(self, names: Sequence[str] | None = None) -> dict[str, DestinationControls]:
        """Stored controls by destination name (a destination nobody touched has none)."""
        wanted = None if names is None else list(names)
        return await self._read(lambda conn: ops.controls(conn, wanted))

    async def destination_waiting(self, destination: str) -> tuple[int, float | None]:
        """(waiting deliveries, created_at of the oldest) of one destination."""
        return await self._read(lambda conn: ops.waiting(conn, destination))

    async def destination_backlog(self, destinations: Sequence[str], now: float) -> dict[str, Backlog]:
        """Waiting, dead, held and the recent error rate of each destination."""
        names = list(destinations)
        return await self._read(lambda conn: {n: ops.backlog(conn, n, now) for n in names})

    async def pause_destination(self, name: str, *, paused: bool, actor: str, reason: str | None = None,
                                now: float) -> tuple[DestinationControls, bool]:
        """Pause (or resume) a destination, audited; (its controls after, whether anything changed)."""
        return await self._write(lambda conn, chain: ops.set_paused(conn, chain, _at(), now, name, paused, actor,
                                                                    reason))

    async def set_destination_settings(self, name: str, changes: dict[str, Any], *, actor: str,
                                       now: float) -> tuple[DestinationControls, bool]:
        """Runtime concurrency / rate of a destination (None: back to gateway.toml), audited."""
        return await self._write(lambda conn, chain: ops.set_settings(conn, chain, _at(), now, name, dict(changes),
                                                                      actor))

    async def note_circuit(self, name: str, state: str, *, now: float, failures: int, next_probe_at: float | None,
                           error: str | None = None, audit_action: str | None = None,
                           detail: dict[str, Any] | None = None) -> int:
        """The worker's circuit state (closing it makes the waiting deliveries due); how many were made due."""
        return await self._write(lambda conn, chain: ops.note_circuit(
            conn, chain, _at(), now, name, state, failures=failures, next_probe_at=next_probe_at, error=error,
            audit_action=audit_action, detail=detail))

    async def reset_circuit(self, name: str, now: float) -> None:
        await self._write(lambda conn, chain: ops.reset_circuit(conn, name, now))

    async def note_outcomes(self, name: str, *, now: float, attempts: int, failures: int,
                            last_success_at: float | None, last_error: str | None) -> None:
        """One settled batch's attempts and failures, and the destination's last success and error."""
        await self._write(lambda conn, chain: ops.note_outcomes(conn, name, now, attempts, failures,
                                                                last_success_at, last_error))

    async def prune_destination_minutes(self, now: float) -> int:
        return await self._write(lambda conn, chain: ops.prune_minutes(conn, now))
