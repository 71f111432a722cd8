"""Delivery queries for operators: a page newest first with the total, and the state of chosen ids.

Plain functions over a DB-API connection in SQL both SQLite and PostgreSQL accept, run on
the store's readers (see ``sqlite_deliveries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

COLUMNS = ["id", "destination", "state", "attempts", "case_no", "idempotency_key", "created_at", "next_attempt_at",
           "settled_at", "last_error", "remote_id", "kind", "record_key", "system", "version"]
_SELECT = ("SELECT o.id, o.destination, o.state, o.attempts, o.case_no, o.idem_key, o.created_at, o.next_attempt_at,"
           " o.settled_at, o.last_error, o.remote_id, r.kind, r.record_key, r.system, r.version"
           " FROM outbox o JOIN records r ON r.id = o.record_id")


def _filters(state: str | None, destination: str | None, case_no: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    for col, val in (("o.state", state), ("o.destination", destination), ("o.case_no", case_no)):
        if val is not None:
            where.append(f"{col} = ?")
            args.append(val)
    return where, args


def newest_page(conn: Any, *, state: str | None = None, destination: str | None = None, case_no: str | None = None,
                limit: int = 50, before_id: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """(up to ``limit`` deliveries, newest first, below ``before_id``; how many match in all)."""
    where, args = _filters(state, destination, case_no)
    total_sql = "SELECT count(*) FROM outbox o" + (f" WHERE {' AND '.join(where)}" if where else "")
    total = int(conn.execute(total_sql, args).fetchone()[0])
    if before_id is not None:
        where.append("o.id < ?")
        args.append(before_id)
    sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "") + " ORDER BY o.id DESC LIMIT ?"
    rows = [dict(zip(COLUMNS, row, strict=True)) for row in conn.execute(sql, [*args, limit])]
    return rows, total


def states_of(conn: Any, ids: Sequence[int]) -> dict[int, str]:
    """The state of each delivery id that exists."""
    out: dict[int, str] = {}
    ids = list(dict.fromkeys(ids))
    for i in range(0, len(ids), 500):
        chunk = ids[i:i + 500]
        out.update(conn.execute(f"SELECT id, state FROM outbox WHERE id IN ({','.join('?' * len(chunk))})",
                                chunk).fetchall())
    return out
