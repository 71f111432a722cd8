"""Fixtures shared across test modules: an open SQLite store, and a development seal signer with its certificate."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gateway.audit import LocalSigner, load_certificates, load_or_create_dev_signer
from gateway.store.sqlite import SqliteStore


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
