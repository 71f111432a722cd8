"""Durable state behind one narrow interface; ``open_store`` picks the backend from a URL."""

from __future__ import annotations

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
    "make_store",
    "sqlite_path",
]


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
    """A Store for ``url``; only ``sqlite:///`` exists today."""
    if url.startswith("sqlite:///"):
        from gateway.store.sqlite import SqliteStore

        return SqliteStore(sqlite_path(url, base), audit_algorithm=audit_algorithm)
    raise StoreError(f"unsupported store URL {url!r}: use sqlite:///path/to/gateway.db")
