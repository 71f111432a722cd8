"""Crash safety: the gateway process is killed with SIGKILL mid-ingest and mid-delivery, then restarted.

After the restart every record reaches the sink; with the receiver deduping by
idempotency key, no record is delivered twice. The raw number of repeated
deliveries (at-least-once sends that the receiver absorbed) is printed, not hidden.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest
from e2e_site import Site, wait_until

from gateway.demo.counterparts import HallPlatform

pytestmark = pytest.mark.slow


async def _start_gateway(site: Site, log: Path) -> asyncio.subprocess.Process:
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
