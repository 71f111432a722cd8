"""Audit seals and archives on the SQLite store (filled in by the audit trail work)."""

from __future__ import annotations


class SqliteAuditMixin:
    """Seal and archive operations, mixed into SqliteStore; uses its _read/_write primitives."""
