"""Crash safety: the gateway process is killed with SIGKILL mid-ingest, mid-delivery and while one-record
pushes arrive, then restarted.

After the restart every record reaches the sink; with the receiver deduping by
idempotency key, no record is delivered twice. The raw number of repeated
deliveries (at-least-once sends that the receiver absorbed) is printed, not hidden.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import sys
from pathlib import Path

import aiohttp
import pytest
from e2e_site import Site, wait_until
from test_api_support import PUSH_AUTH, PUSH_TOKEN, case_item

from gateway.demo.counterparts import HallPlatform
from gateway.demo.scenario import MAPPINGS_DIR

pytestmark = pytest.mark.slow


async def _start_gateway(site: Site | _PushSite, log: Path) -> asyncio.subprocess.Process:
    out = open(log, "ab")  # noqa: SIM115 - the child writes to it for its whole life
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "-v", "run", "-c", str(site.config_path),
        stdout=out, stderr=out, env=env, cwd=site.root)


def _alive(proc: asyncio.subprocess.Process, log: Path) -> None:
    if proc.returncode is not None:
        tail = log.read_text(errors="replace")[-3000:]
        raise AssertionError(f"the gateway exited with {proc.returncode}:\n{tail}")


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


def _distinct_cases(hall: HallPlatform) -> set[str]:
    return {body["caseNo"] for body in hall.records.values()}


async def test_sigkill_in_the_middle_of_ingesting_a_large_file_loses_and_duplicates_nothing(tmp_path, capsys):
    n = 20_000
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, batch_size=500, concurrency=16)
        site.drop_cases(n)  # one large file
        log = tmp_path / "gateway.log"
        proc = await _start_gateway(site, log)
        try:
            committed = await wait_until(
                lambda: _alive(proc, log) or (c := site.scalar("SELECT count(*) FROM records") or 0) > 2_000
                and c < n and c,
                timeout=60, interval=0.01, what="ingest under way")
            await _kill(proc)
            assert list((tmp_path / "drop/county").glob("processing/*/*.xml")), "file should still be in processing/"
            proc = await _start_gateway(site, log)
            await wait_until(lambda: _alive(proc, log) or
                             site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == n,
                             timeout=240, interval=0.2, what=f"all {n} delivered after restart")
        finally:
            await _stop(proc)
        assert site.scalar("SELECT count(*) FROM records") == n
        assert site.scalar("SELECT count(*) FROM outbox") == n
        assert hall.unique == n
        assert len(_distinct_cases(hall)) == n
        assert list((tmp_path / "drop/county/done").iterdir())
        with capsys.disabled():
            print(f"\n[crash mid-ingest] killed after {committed:,} of {n:,} records committed; "
                  f"raw repeated deliveries absorbed by the receiver: {hall.repeats}")


async def test_sigkill_in_the_middle_of_delivery_loses_nothing_and_receiver_sees_each_key_once(tmp_path, capsys):
    n = 3_000
    async with HallPlatform() as hall:
        hall.set_delay(0.005)
        site = Site(tmp_path, hall.records_url, concurrency=16)
        site.drop_cases(n, per_file=500)
        log = tmp_path / "gateway.log"
        proc = await _start_gateway(site, log)
        kills = 0
        try:
            for fraction in (0.2, 0.6):
                await wait_until(lambda f=fraction, p=proc: _alive(p, log) or hall.unique >= n * f, timeout=120,
                                 interval=0.01,
                                 what=f"{fraction:.0%} delivered")
                await _kill(proc)
                kills += 1
                proc = await _start_gateway(site, log)
            await wait_until(lambda: _alive(proc, log) or
                             site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == n,
                             timeout=240, interval=0.2, what=f"all {n} delivered after restarts")
        finally:
            await _stop(proc)
        assert hall.unique == n
        assert len(_distinct_cases(hall)) == n
        assert site.scalar("SELECT count(*) FROM outbox WHERE state != 'delivered'") == 0
        with capsys.disabled():
            print(f"\n[crash mid-delivery] {kills} SIGKILLs; {hall.received_raw:,} requests for {n:,} records; "
                  f"raw repeated deliveries absorbed by the receiver: {hall.repeats}")


PUSH_SITE = """\
[gateway]
name = "push-crash"
store = "sqlite:///gateway.db"
adapters = ["push", "rest"]

[api]
port = {port}

[delivery]
poll_interval = "100ms"
backoff_initial = "50ms"

[supervision]
enabled = false

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = {{ tokens = [{{ sha256 = "{token_sha256}" }}] }}

[sinks.hall]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{hall_url}"

[[routes]]
name = "hall-to-hall"
sources = ["hall_platform"]
to = ["hall"]
"""


class _PushSite:
    """A gateway that takes one-record pushes from the hall platform and delivers them back to it."""

    def __init__(self, root: Path, hall_url: str) -> None:
        with socket.socket() as probe:  # a port of its own, the same after each restart
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        shutil.copytree(MAPPINGS_DIR, root / "mappings")
        self.root = root
        self.config_path = root / "gateway.toml"
        self.config_path.write_text(PUSH_SITE.format(
            port=self.port, hall_url=hall_url, token_sha256=hashlib.sha256(PUSH_TOKEN.encode()).hexdigest()),
            encoding="utf-8")
        self.url = f"http://127.0.0.1:{self.port}/api/v1/inbound/hall_platform/case"

    def scalar(self, sql: str) -> int:
        return self.rows(sql)[0][0]

    def rows(self, sql: str) -> list[tuple]:
        conn = sqlite3.connect(self.root / "gateway.db")
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0


async def _push_until_stopped(site: _PushSite, numbers: list[str], acknowledged: set[str], stop: asyncio.Event,
                              clients: int = 24) -> None:
    """``clients`` callers each pushing one record per request, from ``numbers``, until ``stop`` is set; a
    record is acknowledged when its push got 202 (accepted) or 200 (already stored: a repeat)."""
    queue = list(reversed(numbers))

    async def caller(http: aiohttp.ClientSession) -> None:
        while queue and not stop.is_set():
            case_no = queue.pop()
            try:
                async with http.post(site.url, json=[case_item(case_no)], headers=PUSH_AUTH) as r:
                    if r.status in (200, 202):
                        acknowledged.add(case_no)
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.01)  # the gateway is gone: this record was never acknowledged

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http:
        await asyncio.gather(*(caller(http) for _ in range(clients)))


async def test_sigkill_while_one_record_pushes_arrive_loses_no_acknowledged_record(tmp_path, capsys):
    """Dozens of callers push one record each at once, so the writer commits their batches merged; the
    gateway is killed in the middle. Every record it acknowledged is stored and, after the restart,
    delivered once; the callers then push again what was never acknowledged, and each lands once."""
    numbers = [f"PUSHCRASH{i:05d}" for i in range(3_000)]
    acknowledged: set[str] = set()
    async with HallPlatform() as hall:
        site = _PushSite(tmp_path, hall.records_url)
        log = tmp_path / "gateway.log"
        proc = await _start_gateway(site, log)
        try:
            stop = asyncio.Event()
            await wait_until(lambda: _alive(proc, log) or site.listening(), timeout=60,
                             what="the API listening")
            pushing = asyncio.create_task(_push_until_stopped(site, numbers, acknowledged, stop))
            await wait_until(lambda: _alive(proc, log) or len(acknowledged) >= 600, timeout=120, interval=0.005,
                             what="pushes under way")
            await _kill(proc)
            killed_at = len(acknowledged)
            stop.set()
            await pushing
            stored = {case_no for (case_no,) in site.rows("SELECT case_no FROM records")}
            assert acknowledged <= stored, f"acknowledged but lost: {sorted(acknowledged - stored)[:10]}"

            proc = await _start_gateway(site, log)
            await wait_until(lambda: _alive(proc, log) or site.listening(), timeout=60,
                             what="the API listening again")
            again: set[str] = set()
            await _push_until_stopped(site, [n for n in numbers if n not in acknowledged], again, asyncio.Event())
            assert again | acknowledged == set(numbers)
            await wait_until(lambda: _alive(proc, log) or
                             site.scalar("SELECT count(*) FROM outbox WHERE state='delivered'") == len(numbers),
                             timeout=240, interval=0.2, what=f"all {len(numbers)} delivered")
        finally:
            await _stop(proc)
        assert site.scalar("SELECT count(*) FROM records") == len(numbers)
        assert hall.unique == len(numbers)
        assert _distinct_cases(hall) == set(numbers)
        with capsys.disabled():
            print(f"\n[crash mid-push] killed with {killed_at:,} of {len(numbers):,} one-record pushes acknowledged "
                  f"({len(stored):,} stored); raw repeated deliveries absorbed by the receiver: {hall.repeats}")
