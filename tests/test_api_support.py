"""Shared set-up for the API tests: a real gateway on loopback with push sources, a file sink and a client.

This module holds fixtures and payload builders only; the test modules import them
(fixtures under a ``_fixture`` name, used as ``gw`` and ``http``).
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.app import Gateway
from gateway.config import load_config
from gateway.security import credentials
from gateway.shipped import shipped_mappings

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = shipped_mappings()  # the installed copy: the tests exercise the lookup the demo uses

# A 居民身份证号 that passes GB 11643 (the standard's own example) and a mobile number.
ID_NO = "11010519491231002X"
PHONE = "13812345678"

# hall_platform pushes with this bearer token (gateway.toml holds only its SHA-256);
# hall_json_only is configured for anonymous pushes, the development setting.
PUSH_TOKEN = "test-push-token-hall-platform-6f1c2a"
PUSH_AUTH = {"Authorization": f"Bearer {PUSH_TOKEN}"}

CONFIG = """\
[gateway]
name = "api-test"
store = "sqlite:///gateway.db"
adapters = ["push", "filedrop"]

[api]
port = 0
max_body_bytes = {max_body}

[delivery]
poll_interval = "0.1s"
backoff_initial = "0.1s"

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{token_sha256}", label = "test" }}] }}

[sources.hall_json_only]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
accept = ["json"]
max_items = 3
auth = {{ anonymous = true }}

[sources.county_files]
adapter = "filedrop"
mapping = "mappings/hall_platform.in.yaml"
path = "drop"
poll_interval = 0.2

{sinks}
"""

SINKS = """\
[sinks.archive]
adapter = "filedrop"
mapping = "mappings/hall_platform.out.yaml"
path = "out"
fsync = false

[[routes]]
name = "hall-to-archive"
sources = ["hall_platform"]
to = ["archive"]
"""


def write_gateway_dir(root: Path, *, max_body: int = 65536, sinks: bool = True) -> Path:
    """A gateway directory: the project's mappings and code tables, drop folders, gateway.toml."""
    shutil.copytree(MAPPINGS, root / "mappings")
    (root / "drop").mkdir()
    (root / "out").mkdir()
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(max_body=max_body, sinks=SINKS if sinks else "",
                                    token_sha256=hashlib.sha256(PUSH_TOKEN.encode()).hexdigest()), encoding="utf-8")
    return config


def case_item(case_no: str, *, version: int = 1, id_no: str = ID_NO, **fields: Any) -> dict[str, Any]:
    """A 办件 as the hall platform pushes it (camelCase JSON, dataType CASE)."""
    item: dict[str, Any] = {
        "dataType": "CASE", "caseNo": case_no, "itemCode": "3706000001", "itemName": "食品经营许可",
        "applicantType": "PERSON", "applicantName": "张三", "applicantIdType": "10", "applicantIdNo": id_no,
        "contactName": "张三", "contactPhone": PHONE, "submitTime": "2026-09-29 10:00:00",
        "regionCode": "370602", "version": version,
    }
    item.update(fields)
    return item


def acceptance_item(case_no: str) -> dict[str, Any]:
    """A 受理 as the hall platform pushes it (dataType ACCEPT)."""
    return {"dataType": "ACCEPT", "caseNo": case_no, "deptName": "烟台市芝罘区行政审批服务局",
            "handler": "王五", "status": "ACCEPTED", "acceptTime": "2026-09-29 11:00:00"}


def xml_records(items: list[dict[str, Any]]) -> bytes:
    """The same items as an XML document: <records><record><caseNo>…</caseNo>…</record>…</records>."""
    out = ['<?xml version="1.0" encoding="UTF-8"?>', "<records>"]
    for item in items:
        out.append("<record>" + "".join(f"<{k}>{v}</{k}>" for k, v in item.items()) + "</record>")
    out.append("</records>")
    return "\n".join(out).encode("utf-8")


@pytest.fixture(name="gw")
async def gw_fixture(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A running gateway (sources, delivery, API on an ephemeral loopback port)."""
    gw = Gateway(load_config(write_gateway_dir(tmp_path)))
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


@pytest.fixture(name="http")
async def http_fixture() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# --------------------------------------------------------------------------- people

PASSWORD = "correct-horse-battery-staple"


async def add_user(gw: Gateway, name: str, role: str, systems: list[str] | None = None,
                   password: str | None = PASSWORD) -> None:
    """An account made directly in the store (what `gateway users add` does)."""
    hashed = await credentials.hash_password(password) if password is not None else None
    await gw.store.add_user(name, role, systems, None, hashed, "test")  # type: ignore[union-attr]


async def token_for(gw: Gateway, name: str, role: str = "engineer", systems: list[str] | None = None,
                    lifetime: float = 3600.0) -> dict[str, str]:
    """A new account with an API token; the Authorization header that carries it."""
    if await gw.store.get_user(name) is None:  # type: ignore[union-attr]
        await add_user(gw, name, role, systems, password=None)
    token_id, token = credentials.new_token()
    parsed = credentials.parse_token(token)
    assert parsed is not None
    await gw.store.create_token(token_id, credentials.token_secret_hash(token_id, parsed.secret), name,  # type: ignore[union-attr]
                                "test", time.time() + lifetime, "test")
    return {"Authorization": f"Bearer {token}"}


async def login(http: aiohttp.ClientSession, base_url: str, user: str, password: str = PASSWORD) -> dict[str, Any]:
    """Log in as the console does (whoami gives the login CSRF token); returns the login answer."""
    async with http.get(base_url + "/api/v1/auth/whoami") as r:
        pre = await r.json()
    async with http.post(base_url + "/api/v1/auth/login", json={"user": user, "password": password},
                         headers={"X-CSRF-Token": pre["csrf_token"]}) as r:
        answer = await r.json()
        assert r.status == 200, answer
    return answer
