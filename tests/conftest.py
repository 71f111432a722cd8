"""Fixtures shared across test modules: an open SQLite store, a development seal signer with its certificate,
and cheap password hashing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from gateway.audit import LocalSigner, load_certificates, load_or_create_dev_signer
from gateway.security import credentials
from gateway.store.sqlite import SqliteStore


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with test-sized cost inside the test process (the real cost is ~0.2 s a hash on this machine;
    commands run as subprocesses keep it)."""
    monkeypatch.setattr(credentials, "_HASHER", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))
    credentials._dummy_hash.cache_clear()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
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
