"""Operator queries over deliveries on the SQLite store (``gateway.store.deliveries`` on the reader pool)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.store import deliveries as ops

T = TypeVar("T")


class SqliteDeliveriesMixin:
    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

    async def deliveries_newest(self, *, state: str | None = None, destination: str | None = None,
                                case_no: str | None = None, limit: int = 50,
                                before_id: int | None = None) -> tuple[list[dict[str, Any]], int]:
        return await self._read(lambda conn: ops.newest_page(conn, state=state, destination=destination,
                                                             case_no=case_no, limit=limit, before_id=before_id))

    async def delivery_states(self, ids: Sequence[int]) -> dict[int, str]:
        return await self._read(lambda conn: ops.states_of(conn, list(ids)))
