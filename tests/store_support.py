"""Reaching a store's database behind the gateway's back, on either backend: as an intruder with database
access would (tampering tests), or to look at rows no Store method shows."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from gateway.store import sqlite_path, store_url


def url_of(target: Any) -> str:
    """A store URL from a store, a URL, or a SQLite file path."""
    return getattr(target, "url", None) or store_url(str(target))


def backend_of(target: Any) -> str:
    return "sqlite" if url_of(target).startswith("sqlite:") else "postgresql"


class RawDb:
    """A connection of its own to the store's database, ``?`` placeholders on both backends, committing each call."""

    def __init__(self, target: Any) -> None:
        self.url = url_of(target)

    def execute(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        if self.url.startswith("sqlite:"):
            conn = sqlite3.connect(sqlite_path(self.url))
            try:
                cur = conn.execute(sql, args)
                rows = cur.fetchall()
                conn.commit()
                return rows
            finally:
                conn.close()
        from gateway.store.postgresql import connect, parse_url

        pg = connect(parse_url(self.url)[0])
        try:
            cur = pg.execute(sql, args)
            return cur.fetchall() if cur.description else []
        finally:
            pg.close()

    def executemany(self, sql: str, rows: list[tuple[Any, ...]]) -> None:
        if self.url.startswith("sqlite:"):
            conn = sqlite3.connect(sqlite_path(self.url))
            try:
                conn.executemany(sql, rows)
                conn.commit()
            finally:
                conn.close()
            return
        from gateway.store.postgresql import connect, parse_url

        pg = connect(parse_url(self.url)[0])
        try:
            with pg.raw.transaction():
                pg.executemany(sql, rows)
        finally:
            pg.close()

    def one(self, sql: str, *args: Any) -> tuple[Any, ...] | None:
        rows = self.execute(sql, *args)
        return rows[0] if rows else None

    def value(self, sql: str, *args: Any) -> Any:
        row = self.one(sql, *args)
        return row[0] if row else None


def raw(target: Any) -> RawDb:
    return RawDb(target)


def as_bytes(value: Any) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else bytes(value)


__all__ = ["Path", "RawDb", "as_bytes", "backend_of", "raw", "url_of"]
