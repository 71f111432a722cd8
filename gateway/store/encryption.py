"""Store operations for encryption at rest: page through record bodies, rewrite them re-encrypted.

Plain functions over a DB-API connection (``?`` placeholders, standard SQL only) so a
PostgreSQL backend runs the same ones; ``SqliteEncryptionMixin`` runs them on the SQLite
store's writer thread and reader pool. A rewrite is compare-and-set on the old body and
writes one audit entry per batch in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from gateway.audit.chain import ChainWriter
from gateway.store.sqlite_audit import append_audit

T = TypeVar("T")


def record_bodies(conn: Any, after_id: int, limit: int) -> list[tuple[int, str]]:
    """(id, body) of stored records with id > after_id, in id order."""
    rows = conn.execute("SELECT id, body FROM records WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit)).fetchall()
    return [(r[0], r[1] if isinstance(r[1], str) else bytes(r[1]).decode("utf-8")) for r in rows]


def rewrite_bodies(conn: Any, chain: ChainWriter, updates: Sequence[tuple[int, str, str]],
                   detail: dict[str, Any]) -> int:
    """Replace each (id, old body, new body) whose body is still the old one; one audit entry for the batch."""
    changed = 0
    for rid, old, new in updates:
        cur = conn.execute("UPDATE records SET body = ? WHERE id = ? AND body = ?", (new, rid, old))
        changed += cur.rowcount
    if changed:
        append_audit(conn, chain, "fields_reencrypted", detail={**detail, "records": changed})
    return changed


class SqliteEncryptionMixin:
    """Mixed into SqliteStore: the operations above through its reader pool and writer thread."""

    if TYPE_CHECKING:
        async def _read(self, fn: Callable[[Any], T]) -> T: ...

        async def _write(self, op: Callable[[Any, ChainWriter], T]) -> T: ...

    async def record_bodies(self, after_id: int, limit: int) -> list[tuple[int, str]]:
        return await self._read(lambda conn: record_bodies(conn, after_id, limit))

    async def rewrite_record_bodies(self, updates: Sequence[tuple[int, str, str]], detail: dict[str, Any]) -> int:
        return await self._write(lambda conn, chain: rewrite_bodies(conn, chain, updates, detail))
