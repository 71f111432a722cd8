"""Correlation ids from source to sink: a real `gateway run`, a real hall platform, its JSON log and its store."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from e2e_site import wait_until
from test_api_support import ID_NO, PHONE, PUSH_AUTH, PUSH_TOKEN, case_item

from gateway.demo.counterparts import HallPlatform
from gateway.demo.generate import generate_items, write_xml_file
from gateway.demo.scenario import MAPPINGS_DIR
from gateway.observability import correlation

CONFIG = """\
[gateway]
name = "correlation-test"
store = "sqlite:///gateway.db"
adapters = ["push", "filedrop", "rest"]

[api]
port = 0

[delivery]
poll_interval = "100ms"
backoff_initial = "100ms"

[supervision]
enabled = false

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{token_sha256}" }}] }}

[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
include = ["*.xml"]
stable_for = "50ms"
poll_interval = "100ms"

[sinks.hall]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}"

[[routes]]
name = "everything-to-the-hall"
sources = ["hall_platform", "county_drop"]
to = ["hall"]
"""


def _site(root: Path, hall_url: str) -> Path:
    import shutil

    shutil.copytree(MAPPINGS_DIR, root / "mappings")
    (root / "drop").mkdir()
    config = root / "gateway.toml"
    config.write_text(CONFIG.format(token_sha256=hashlib.sha256(PUSH_TOKEN.encode()).hexdigest(),
                                    hall_url=hall_url), encoding="utf-8")
    return config


class RunningGateway:
    """`gateway run` as a process with its stderr (the log) collected line by line."""

    def __init__(self, config: Path) -> None:
        self.config = config
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> RunningGateway:
        env = {k: v for k, v in os.environ.items() if k != "GATEWAY_LOG_FORMAT"}
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "run", "-c", str(self.config), cwd=self.config.parent, env=env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, start_new_session=True)
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8"))

    def records(self) -> Iterator[dict[str, Any]]:
        for line in self.lines:
            yield json.loads(line)  # every line of the log is one JSON object

    async def api_url(self) -> str:
        await wait_until(lambda: any(r["event"].startswith("API listening on") for r in self.records()),
                         timeout=30, what="the start-up line of the API")
        (line,) = [r for r in self.records() if r["event"].startswith("API listening on")]
        return str(line["url"])

    async def stop(self) -> int:
        assert self.proc is not None
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout=30)
        if self._reader is not None:
            await self._reader
        return code

    async def __aexit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            await self.proc.wait()


def _mentions(record: dict[str, Any], cid: str) -> bool:
    return record.get("correlation_id") == cid or cid in record.get("correlation_ids", ())


def _audit(db: Path, case_no: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(db)
    try:
        rows = conn.execute("SELECT body FROM audit ORDER BY seq").fetchall()
    finally:
        conn.close()
    return [e for e in (json.loads(r[0]) for r in rows) if e["case"] == case_no]


async def test_one_records_correlation_id_is_in_the_logs_of_its_ingest_delivery_and_request_and_in_its_audit_entries(
        tmp_path: Path) -> None:
    cid = "county-push-2026-0001"
    async with HallPlatform() as hall:
        config = _site(tmp_path, hall.records_url)
        async with RunningGateway(config) as gateway:
            url = await gateway.api_url()
            async with aiohttp.ClientSession() as http:
                async with http.post(url + "/api/v1/inbound/hall_platform/case", json=[case_item("CORR-2026-0001")],
                                     headers={**PUSH_AUTH, "X-Correlation-Id": cid}) as r:
                    assert r.status == 202, await r.text()
                    assert r.headers["X-Correlation-Id"] == cid
            # a file drop: one correlation id for the whole file, made by the gateway
            write_xml_file(tmp_path / "drop" / "county-0001.xml", generate_items(3, seed=5, start=900))
            await wait_until(lambda: hall.unique == 4, timeout=30, what="4 records at the hall")
            await wait_until(lambda: any(r["event"] == "deliveries settled" and r.get("delivered")
                                         for r in gateway.records()), timeout=10, what="the settled deliveries' line")
            assert await gateway.stop() == 0

    # The sink got the id with the record (REST: X-Correlation-Id).
    assert cid in hall.correlation_ids
    pushed = [r for r in gateway.records() if _mentions(r, cid)]
    # The log: the request's access line, the ingest that committed it and the delivery that settled it.
    access = [r for r in pushed if r["logger"] == "gateway.api.access"]
    assert len(access) == 1 and access[0]["status"] == 202 and access[0]["event"] == "http request"
    ingest = [r for r in pushed if r["logger"] == "gateway.ingest"]
    assert len(ingest) == 1 and ingest[0]["event"] == "ingest committed" and ingest[0]["accepted"] == 1
    delivery = [r for r in pushed if r["logger"] == "gateway.delivery"]
    assert delivery and delivery[0]["event"] == "deliveries settled" and delivery[0]["delivered"] >= 1
    for line in (access[0], ingest[0], delivery[0]):  # timestamps with a zone, levels, loggers, events
        assert line["timestamp"][-6] in "+-" and line["level"] == "info" and line["event"]

    # The store: the record and its audit entries (received, delivered) carry the id.
    db = tmp_path / "gateway.db"
    conn = sqlite3.connect(db)
    try:
        stored = dict(conn.execute("SELECT case_no, correlation_id FROM records").fetchall())
    finally:
        conn.close()
    assert stored["CORR-2026-0001"] == cid
    entries = {e["action"]: e for e in _audit(db, "CORR-2026-0001")}
    assert entries["received"]["detail"]["correlation_id"] == cid
    assert entries["delivered"]["detail"]["correlation_id"] == cid

    # The file: its records share one id, in the file's own entries, the ingest line and the hall's headers.
    file_ids = {v for k, v in stored.items() if k != "CORR-2026-0001"}
    assert len(file_ids) == 1 and None not in file_ids
    (file_cid,) = file_ids
    assert file_cid != cid and file_cid in hall.correlation_ids
    assert any(r["logger"] == "gateway.ingest" and _mentions(r, file_cid) for r in gateway.records())
    conn = sqlite3.connect(db)
    try:
        file_entries = [json.loads(b) for (b,) in conn.execute("SELECT body FROM audit ORDER BY seq")]
    finally:
        conn.close()
    done = [e for e in file_entries if e["action"] in ("file_claimed", "file_done")]
    assert [e["detail"]["correlation_id"] for e in done] == [file_cid, file_cid]

    # No personal data in the log: the pushed ID and mobile numbers never appear in full.
    log = "".join(gateway.lines)
    assert ID_NO not in log and PHONE not in log
    assert any(r["event"] == "gateway correlation-test running: 2 source(s), 1 sink(s)" for r in gateway.records())


# --------------------------------------------------------------------------- the ids themselves


def test_a_sane_given_id_is_kept_and_anything_else_replaced_by_a_new_one() -> None:
    assert correlation.from_header("county-batch:42.a_b") == "county-batch:42.a_b"
    for bad in (None, "", "has spaces", "x" * 129, "中文", "a\nb"):
        made = correlation.from_header(bad)
        assert made != bad and len(made) == 32 and int(made, 16) >= 0


def test_a_given_id_that_holds_an_id_or_mobile_number_is_kept_masked() -> None:
    assert correlation.from_header(f"req-{PHONE}") == "req-138****5678"
    assert ID_NO not in correlation.from_header(f"id-{ID_NO}")


def test_ids_are_random_or_the_same_for_the_same_seed_and_never_masked() -> None:
    from gateway.security.masking import mask_text

    made = {correlation.new() for _ in range(2000)}
    assert len(made) == 2000 and all(mask_text(m) == m for m in made)
    assert correlation.new("file-a") == correlation.new("file-a") != correlation.new("file-b")


def test_scopes_nest_and_restore() -> None:
    assert correlation.current() is None
    with correlation.scope("outer"):
        with correlation.scope() as inner:
            assert correlation.current() == inner != "outer"
        assert correlation.current() == "outer"
    assert correlation.current() is None


@pytest.mark.parametrize("given", ["abc", None])
async def test_records_ingested_without_an_id_get_the_bound_one_or_one_per_batch(store, given) -> None:
    from gateway.adapters import RawRecord
    from gateway.mapping import load_mapping
    from gateway.pipeline.ingest import Ingestor
    from gateway.pipeline.router import Router

    mapping = load_mapping(MAPPINGS_DIR / "hall_platform.in.yaml")
    ingestor = Ingestor(store, Router([]), {"hall": mapping})
    raws = [RawRecord("hall", case_item(f"CID-{i}"), f"item {i}") for i in range(3)]
    with correlation.scope(given) if given else _nothing():
        await ingestor.ingest("hall", raws)
    rows = await store.list_records(limit=10)
    found = {r["correlation_id"] for r in rows}
    assert len(rows) == 3 and len(found) == 1 and None not in found
    assert given is None or found == {given}


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


async def test_a_delivery_handed_over_at_birth_sends_its_records_correlation_id(tmp_path: Path) -> None:
    from gateway.app import Gateway
    from gateway.config import load_config

    async with HallPlatform() as hall:
        gw = Gateway(load_config(_site(tmp_path, hall.records_url)))
        await gw.start()
        try:
            assert gw.handoff is not None
            await wait_until(lambda: gw.handoff.claims(), what="the worker taking deliveries at birth")
            async with aiohttp.ClientSession() as http:
                async with http.post(gw.api.url + "/api/v1/inbound/hall_platform/case",
                                     json=[case_item("CORR-2026-0100")],
                                     headers={**PUSH_AUTH, "X-Correlation-Id": "handed-over-1"}) as r:
                    assert r.status == 202
            await wait_until(lambda: hall.unique == 1, what="the record at the hall")
            assert gw.handoff.handed == 1  # it went the short way
        finally:
            await gw.stop()
    assert list(hall.correlation_ids) == ["handed-over-1"]
