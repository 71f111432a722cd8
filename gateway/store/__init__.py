"""Durable state behind one narrow interface; ``open_store`` picks the backend from a URL."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.store.base import (
    AcceptItem,
    AuditRow,
    ClaimedDelivery,
    Claims,
    QuarantineItem,
    Reprocessed,
    Settlement,
    Store,
    StoreCounts,
    StoreError,
)

__all__ = [
    "AcceptItem",
    "AuditRow",
    "ClaimedDelivery",
    "Claims",
    "QuarantineItem",
    "Reprocessed",
    "Settlement",
    "Store",
    "StoreCounts",
    "StoreError",
    "STORE_FAILURES",
    "is_store_url",
    "make_store",
    "sqlite_path",
    "store_url",
]

STORE_FAILURES: tuple[type[BaseException], ...] = (StoreError, sqlite3.OperationalError, sqlite3.DatabaseError)
"""What a store outage looks like to its callers (a lock, the disk, a lost connection), as opposed to an item's data.

The PostgreSQL backend turns its connection failures into StoreError at its boundary."""


def is_store_url(value: str) -> bool:
    return value.startswith(("sqlite:///", "postgresql://", "postgres://"))


def store_url(path_or_url: str | Path) -> str:
    """A store URL as it is, or the ``sqlite:///`` URL of a SQLite file path."""
    text = str(path_or_url)
    return text if is_store_url(text) else f"sqlite:///{text}"


def sqlite_path(url: str, base: Path | None = None) -> Path:
    """``sqlite:///relative/or/absolute.db`` → a path (relative ones against ``base``)."""
    if not url.startswith("sqlite:///"):
        raise StoreError(f"not a SQLite URL: {url!r} (expected sqlite:///path/to/gateway.db)")
    raw = url[len("sqlite:///"):]
    path = Path(raw)
    if not path.is_absolute() and not raw.startswith("/") and base is not None:
        path = base / path
    return path


def make_store(url: str, *, base: Path | None = None, audit_algorithm: str = "sha256") -> Store:
    """A Store for ``url``: ``sqlite:///path.db`` (embedded) or ``postgresql://…`` (also ``postgres://``)."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url, base), audit_algorithm=audit_algorithm)
    if url.startswith(("postgresql://", "postgres://")):
        from gateway.store.postgresql import PgStore

        return PgStore(url, audit_algorithm=audit_algorithm)
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db or "
                     "postgresql://user@host:5432/database")
