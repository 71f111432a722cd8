"""The two-way exchange's store operations on SQLite: ``gateway.store.exchange`` on the writer and reader pool."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.adapters import IngestOutcome
from gateway.audit.chain import ChainWriter
from gateway.store import exchange as ops
from gateway.store.base import AcceptItem

T = TypeVar("T")
_CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")


def _now() -> str:
    return datetime.now(_CHINA).isoformat(timespec="milliseconds")


class SqliteExchangeMixin:
    """Mixed into SqliteStore; uses its _read/_write primitives and its batch commit."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T: ...

        async def _write(self, op: Callable[[sqlite3.Connection, ChainWriter], T]) -> T: ...

    @staticmethod
    def _exchange_ops() -> tuple[ops.CommitRecords, Callable[..., None]]:
        from gateway.store.operations import _commit_ingest, _set_cursor

        return _commit_ingest, _set_cursor

    # ------------------------------------------------------------------ the follower

    async def exchange_records_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.records_after(conn, after_id, limit))

    async def exchange_records_by_id(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        return await self._read(lambda conn: ops.records_by_id(conn, list(ids)))

    async def exchange_current_records(self, case_nos: Sequence[str], kinds: Sequence[str]) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.current_records(conn, list(case_nos), list(kinds)))

    async def exchange_destinations_of(self, record_ids: Sequence[int]) -> dict[int, set[str]]:
        return await self._read(lambda conn: ops.destinations_of(conn, list(record_ids)))

    async def exchange_licences(self, numbers: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._read(lambda conn: ops.licences(conn, list(numbers)))

    async def exchange_licences_of_credit_codes(self, codes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return await self._read(lambda conn: ops.licences_of_credit_codes(conn, list(codes)))

    async def exchange_cases_of_credit_codes(self, codes: Sequence[str]) -> dict[str, set[str]]:
        return await self._read(lambda conn: ops.cases_of_credit_codes(conn, list(codes)))

    async def exchange_unresolved_links(self, licence_nos: Sequence[str],
                                        credit_codes: Sequence[str]) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.unresolved_links(conn, list(licence_nos), list(credit_codes)))

    async def exchange_parallel_cases(self, case_nos: Sequence[str]) -> dict[str, dict[str, Any]]:
        return await self._read(lambda conn: ops.parallel_cases(conn, list(case_nos)))

    async def exchange_parallel_due(self, now: float, limit: int) -> list[str]:
        return await self._read(lambda conn: ops.parallel_due(conn, now, limit))

    async def exchange_quarantine_after(self, after_id: int, limit: int) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.quarantine_after(conn, after_id, limit))

    async def apply_exchange(self, batch: ops.ExchangeBatch) -> list[IngestOutcome]:
        """One follower step: links, case resolutions, licence effects, 并联审批 state, deliveries, records."""
        commit_records, set_cursor = self._exchange_ops()
        return await self._write(lambda conn, chain: ops.apply_batch(conn, chain, _now(), batch, commit_records,
                                                                     set_cursor))

    # ------------------------------------------------------------------ people's queries

    async def exchange_links(self, *, case_no: str | None = None, licence_no: str | None = None,
                             credit_code: str | None = None, unresolved: bool = False, after_id: int = 0,
                             limit: int = 100) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.links_page(
            conn, case_no=case_no, licence_no=licence_no, credit_code=credit_code, unresolved=unresolved,
            after_id=after_id, limit=limit))

    async def licence_detail(self, licence_no: str) -> dict[str, Any] | None:
        """A licence, its state (valid, suspended, revoked), the decisions behind it and its linked records."""
        return await self._read(lambda conn: ops.licence_detail(conn, licence_no))

    async def case_effects(self, case_no: str) -> dict[str, Any]:
        """Whether supervision affected a case (a licence of it suspended or revoked), and how."""
        return await self._read(lambda conn: ops.case_effects(conn, case_no))

    async def parallel_page(self, *, state: str | None = None, limit: int = 100,
                            after: str = "") -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.parallel_page(conn, state=state, limit=limit, after=after))

    # ------------------------------------------------------------------ reconciliation

    async def delivered_between(self, destinations: Sequence[str], start: float, end: float) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.delivered_between(conn, list(destinations), start, end))

    async def received_between(self, systems: Sequence[str], start: str, end: str) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.received_between(conn, list(systems), start, end))

    async def records_with_keys(self, systems: Sequence[str], keys: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.records_with_keys(conn, list(systems), list(keys)))

    async def deliveries_with_keys(self, keys: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        return await self._read(lambda conn: ops.deliveries_with_keys(conn, list(keys)))

    async def open_deliveries_count(self, destinations: Sequence[str]) -> dict[str, dict[str, int]]:
        return await self._read(lambda conn: ops.open_count(conn, list(destinations)))

    async def save_reconciliation(self, result: dict[str, Any], resends: Sequence[ops.ExtraDelivery],
                                  requested: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return await self._write(lambda conn, chain: ops.save_reconciliation(conn, chain, _now(), result,
                                                                             list(resends), list(requested)))

    async def reconciliations(self, *, counterpart: str | None = None, limit: int = 50,
                              before_id: int | None = None) -> list[dict[str, Any]]:
        return await self._read(lambda conn: ops.reconciliations_page(conn, counterpart=counterpart, limit=limit,
                                                                      before_id=before_id))

    async def last_reconciliations(self) -> dict[str, dict[str, Any]]:
        return await self._read(ops.last_reconciliations)

    # ------------------------------------------------------------------ contacts and watchdogs

    async def contacts(self) -> dict[tuple[str, str], float]:
        """Last contact (unix time) per (system, direction): received or delivered."""
        return await self._read(ops.contacts)

    async def last_delivered(self, destinations: Sequence[str]) -> dict[str, float]:
        return await self._read(lambda conn: ops.last_delivered(conn, list(destinations)))

    async def last_received(self, systems: Sequence[str]) -> dict[str, str]:
        return await self._read(lambda conn: ops.last_received(conn, list(systems)))

    async def watchdogs(self) -> dict[tuple[str, str], dict[str, Any]]:
        return await self._read(ops.watchdogs)

    async def set_watchdogs(self, rows: Sequence[dict[str, Any]], contact_rows: Sequence[tuple[str, str, float]],
                            alerts: Sequence[AcceptItem]) -> list[IngestOutcome]:
        commit_records, _ = self._exchange_ops()
        return await self._write(lambda conn, chain: ops.set_watchdogs(conn, chain, _now(), list(rows),
                                                                       list(contact_rows), list(alerts),
                                                                       commit_records))
