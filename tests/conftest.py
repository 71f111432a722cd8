"""Fixtures shared across test modules: an open store on each backend (SQLite, and PostgreSQL on a server the
tests start themselves), a development seal signer with its certificate, and cheap password hashing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.audit import LocalSigner, load_certificates, load_or_create_dev_signer
from gateway.security import credentials
from gateway.store import Store, make_store, store_url
from gateway.store.sqlite import SqliteStore
from tests.pg_server import PostgresServer, PostgresUnavailable

BACKENDS = ("sqlite", "postgresql")


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with test-sized cost inside the test process (the real cost is ~0.2 s a hash on this machine;
    commands run as subprocesses keep it)."""
    monkeypatch.setattr(credentials, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    credentials._dummy_hash.cache_clear()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole session (initdb in a temporary folder, a socket there only)."""
    try:
        server = PostgresServer().start()
    except PostgresUnavailable as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def pg_url(pg_server: PostgresServer) -> Iterator[str]:
    """A fresh, migrated, empty gateway database on the session's server (dropped afterwards)."""
    name, url = pg_server.fresh_database()
    yield url
    pg_server.drop_database(name)


async def open_store(backend: str, request: pytest.FixtureRequest, tmp_path: Path, **kwargs: object) -> Store:
    if backend == "sqlite":
        s: Store = SqliteStore(tmp_path / "g.db", **kwargs)  # type: ignore[arg-type]
    else:
        s = make_store(request.getfixturevalue("pg_url"), **kwargs)  # type: ignore[arg-type]
    await s.open()
    return s


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """An open, empty store: every test that takes it runs on SQLite and on PostgreSQL."""
    s = await open_store(request.param, request, tmp_path)
    yield s
    await s.close()


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[..., Store]:
    """Makes (unopened) stores on one database of the param's backend, to open, close and open again."""
    url = store_url(tmp_path / "g.db") if request.param == "sqlite" else request.getfixturevalue("pg_url")
    return lambda **kwargs: make_store(url, **kwargs)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """An open SQLite store, for pipeline tests whose store-level behaviour the ``store`` suites cover."""
    s = SqliteStore(tmp_path / "g.db")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
def signer(tmp_path: Path) -> LocalSigner:
    return load_or_create_dev_signer(tmp_path / "certs")


@pytest.fixture
def trusted(tmp_path: Path, signer: LocalSigner):
    return load_certificates(tmp_path / "certs")
