"""/healthz (alive) and /readyz (ready) against a running gateway: starting, stopping, a store that takes no write."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
from e2e_site import wait_until
from test_api_support import gw_fixture, http_fixture, write_gateway_dir  # noqa: F401

from gateway.app import Gateway
from gateway.config import load_config
from gateway.observability import health


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as r:
        return r.status, await r.json()


async def test_readyz_is_503_while_the_parts_start_and_200_once_every_one_started(tmp_path: Path, http,
                                                                                 monkeypatch) -> None:
    release = asyncio.Event()
    original = Gateway._start_parts

    async def slow_parts(self: Gateway, comp: Any) -> None:
        await release.wait()  # the API already listens; the sinks and sources are not started yet
        await original(self, comp)

    monkeypatch.setattr(Gateway, "_start_parts", slow_parts)
    gw = Gateway(load_config(write_gateway_dir(tmp_path)))
    starting = asyncio.create_task(gw.start())
    try:
        await wait_until(lambda: gw.api is not None, what="the API listening")
        status, body = await get(http, gw.api.url + "/readyz")
        assert status == 503 and body["ready"] is False and body["state"] == "starting"
        assert body["reasons"] == ["starting: the sources and sinks have not all started yet"]
        assert body["store"]["writable"] is True  # the store is fine; the gateway is not ready yet
        status, alive = await get(http, gw.api.url + "/healthz")
        assert status == 200 and alive["status"] == "alive" and alive["state"] == "starting"
        release.set()
        await starting
        status, body = await get(http, gw.api.url + "/readyz")
        assert status == 200 and body["ready"] is True and body["reasons"] == []
        assert set(body["sources"]) == {"hall_platform", "hall_json_only", "county_files"}
        assert body["sinks"] == {"archive": {"state": "running"}}
    finally:
        release.set()
        await asyncio.gather(starting, return_exceptions=True)
        await gw.stop()


async def test_readyz_is_503_while_stopping_and_healthz_still_answers(gw, http) -> None:
    gw.stopping.set()
    status, body = await get(http, gw.api.url + "/readyz")
    assert status == 503 and body["reasons"][0] == "stopping: finishing what is in flight"
    status, alive = await get(http, gw.api.url + "/healthz")
    assert status == 200 and alive["state"] == "stopping"


async def test_readyz_answers_503_within_its_bound_when_the_store_takes_no_write(gw, http) -> None:
    # Another process holds the write lock: the gateway's writer waits for it, the probe does not.
    blocker = sqlite3.connect(gw.store.path, timeout=1)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        await asyncio.sleep(health.PROBE_REUSE)  # past the last probe's reuse
        started = time.monotonic()
        status, body = await get(http, gw.api.url + "/readyz")
        took = time.monotonic() - started
        assert status == 503 and body["store"]["writable"] is False
        assert f"the store did not commit a write within {health.WRITE_PROBE_TIMEOUT:g}s" in body["reasons"]
        assert took < health.WRITE_PROBE_TIMEOUT * 2 + 1
        status, alive = await get(http, gw.api.url + "/healthz")
        assert status == 200  # alive all the same: restarting would not free the lock
    finally:
        blocker.rollback()
        blocker.close()
    await asyncio.sleep(health.PROBE_REUSE)  # the refusal is not reused past its second
    status, body = await get(http, gw.api.url + "/readyz")
    assert status == 200, body


async def test_readyz_is_503_when_the_store_is_gone(gw, http) -> None:
    await gw.store.close()
    status, body = await get(http, gw.api.url + "/readyz")
    assert status == 503 and body["store"]["writable"] is False
    assert "the store cannot be written" in body["reasons"][0]


async def test_readyz_names_a_part_that_ended_while_the_gateway_runs(gw, http) -> None:
    (worker,) = [t for t in gw._tasks if t.get_name() == "deliver:archive"]
    worker.cancel()
    await asyncio.gather(worker, return_exceptions=True)
    status, body = await get(http, gw.api.url + "/readyz")
    assert status == 503 and body["reasons"] == ["deliver:archive ended"]


async def test_a_crashing_source_restarts_and_shows_without_making_the_gateway_unready(gw, http) -> None:
    source = gw.sources["county_files"]

    async def crash(ctx: Any) -> None:
        raise RuntimeError("the drop folder's disk went away")

    source.run = crash  # type: ignore[method-assign]
    (task,) = [t for t in gw._tasks if t.get_name() == "source:county_files"]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    gw._tasks.remove(task)
    gw._tasks.append(asyncio.create_task(gw._supervise_source("county_files", source, _Ctx()), name="source:x"))
    await wait_until(lambda: "county_files" in gw.source_failures, what="the crash noted")
    status, body = await get(http, gw.api.url + "/readyz")
    assert status == 200
    assert body["sources"]["county_files"] == {"state": "restarting",
                                               "last_crash": "the drop folder's disk went away"}
    async with http.get(gw.api.url + "/metrics") as r:
        assert 'gateway_source_restarts_total{system="county_files"} 1.0' in await r.text()


class _Ctx:
    """The bits of a SourceContext a crashing source never gets to use."""
