"""Three `gateway run` processes on one PostgreSQL database, one killed with SIGKILL in the middle of a 50,000-record run.

The three share a drop folder (each claims files under its own ``processing/<instance>``), the
store and the hall platform on loopback. Each case arrives in four versions, in one file, so
the per-case order is something the processes could break: a case's next version must not
be sent before the previous one was settled, whichever process holds which. When one process
is killed, the deliveries it held in flight are taken over by the others once their leases
run out (before it comes back); restarted, it resumes the files it had claimed. At the end
every record reached the hall, none twice after the hall's dedupe, each case's versions
arrived in order, and `gateway audit verify` passes on the one chain all three wrote.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from collections import defaultdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from e2e_site import Site, wait_until

from gateway.audit import load_or_create_dev_signer
from gateway.demo.counterparts import HallPlatform
from gateway.demo.generate import approvedatainfo_xml, case_fields, write_xml_file

pytestmark = pytest.mark.slow

FILES, CASES_PER_FILE, VERSIONS = 10, 1250, 4
N = FILES * CASES_PER_FILE * VERSIONS  # 50,000 records
LEASE = 10.0  # seconds: how long a killed process's deliveries stay in flight before others take them


def drop_versioned_cases(site: Site) -> None:
    """FILES files; each holds its cases' versions 1..VERSIONS, version by version (a case's versions in
    different batches of the same file, so they commit in version order)."""
    recent = datetime.now() - timedelta(hours=1)
    for f in range(FILES):
        cases = range(f * CASES_PER_FILE, (f + 1) * CASES_PER_FILE)
        items = [approvedatainfo_xml(case_fields(i, random.Random(i), version=v, submitted_from=recent,
                                                 spread_minutes=50))
                 for v in range(1, VERSIONS + 1) for i in cases]
        write_xml_file(site.root / "drop" / "county" / f"county-{f:04d}.xml", items)


class Gateways:
    """The three `gateway run` processes, each with its own configuration (its own processing/ instance)."""

    def __init__(self, site: Site, count: int) -> None:
        self.site = site
        text = site.config_path.read_text(encoding="utf-8")
        self.configs = []
        for n in range(1, count + 1):
            path = site.root / f"gateway-{n}.toml"
            path.write_text(text.replace('instance = "gw-1"', f'instance = "gw-{n}"'), encoding="utf-8")
            self.configs.append(path)
        self.procs: list[asyncio.subprocess.Process | None] = [None] * count

    def log(self, i: int) -> Path:
        return self.site.root / f"gateway-{i + 1}.log"

    async def start(self, i: int) -> None:
        out = open(self.log(i), "ab")  # noqa: SIM115 - the child writes to it for its whole life
        self.procs[i] = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "-v", "run", "-c", str(self.configs[i]),
            stdout=out, stderr=out, env={**os.environ, "PYTHONUNBUFFERED": "1"}, cwd=self.site.root)

    def alive(self) -> None:
        for i, proc in enumerate(self.procs):
            if proc is not None and proc.returncode is not None:
                tail = self.log(i).read_text(errors="replace")[-3000:]
                raise AssertionError(f"gateway {i + 1} exited with {proc.returncode}:\n{tail}")

    async def kill(self, i: int) -> None:
        proc = self.procs[i]
        assert proc is not None
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        self.procs[i] = None

    async def stop_all(self) -> None:
        for proc in self.procs:
            if proc is not None and proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for i, proc in enumerate(self.procs):
            if proc is None:
                continue
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            self.procs[i] = None


async def audit_verify(config: Path, cwd: Path) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "gateway", "audit", "verify", "-c", str(config),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
                                                cwd=cwd)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def test_three_processes_on_one_postgresql_deliver_50k_records_once_each_in_case_order_through_a_sigkill(
        tmp_path: Path, pg_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    async with HallPlatform() as hall:
        site = Site(tmp_path, hall.records_url, store=pg_url, instance="gw-1", batch_size=500, concurrency=8,
                    sink_batch=20, lease_seconds=f"{LEASE:g}s", read_timeout=5.0, total_timeout=10.0)
        load_or_create_dev_signer(site.root / "certs")  # one seal key for all three, made before they start
        drop_versioned_cases(site)
        gateways = Gateways(site, 3)
        delivered = "SELECT count(*) FROM outbox WHERE state = 'delivered'"
        try:
            for i in range(3):
                await gateways.start(i)
            await wait_until(lambda: gateways.alive() or (site.scalar(delivered) or 0) >= N // 5,
                             timeout=240, interval=0.2, what="a fifth of the records delivered")
            await gateways.kill(1)
            killed_at = time.monotonic()
            held = [r[0] for r in site.query("SELECT id FROM outbox WHERE state = 'inflight'")]
            processing = list((site.root / "drop/county/processing/gw-2").glob("*"))
            # The others take over what the killed process held once its leases have run out.
            await wait_until(lambda: gateways.alive() or not site.query(
                "SELECT id FROM outbox WHERE state <> 'delivered' AND id = ANY(?)", held),
                timeout=60, interval=0.2, what="the killed process's deliveries taken over by the others")
            taken_over = time.monotonic() - killed_at
            await gateways.start(1)  # as a supervisor would: it resumes the files it had claimed
            await wait_until(lambda: gateways.alive() or site.scalar(delivered) == N,
                             timeout=420, interval=0.5, what=f"all {N} records delivered")
            elapsed = time.monotonic() - started
        finally:
            await gateways.stop_all()
        code, report = await audit_verify(gateways.configs[0], site.root)

    # Each file was claimed by one process only and finished: once in done/, nothing left in any processing/.
    done = sorted(p.name[-len("county-0000.xml"):] for p in (site.root / "drop/county/done").iterdir())
    assert done == [f"county-{f:04d}.xml" for f in range(FILES)]
    assert not [p for p in (site.root / "drop/county/processing").rglob("*") if p.is_file()]
    assert site.scalar("SELECT count(*) FROM records") == N
    assert site.scalar("SELECT count(*) FROM outbox") == N
    assert hall.unique == N  # every record, once after the hall's dedupe by idempotency key
    versions: dict[str, list[int]] = defaultdict(list)
    for body in hall.records.values():  # in order of first arrival
        versions[body["caseNo"]].append(int(body["version"]))
    assert len(versions) == N // VERSIONS
    out_of_order = {case: v for case, v in versions.items() if v != list(range(1, VERSIONS + 1))}
    assert out_of_order == {}, f"{len(out_of_order)} cases arrived out of version order, e.g. " \
                               f"{next(iter(out_of_order.items()))}"
    assert code == 0, report
    assert "RESULT: OK" in report, report
    with capsys.disabled():
        print(f"\n[3 processes, PostgreSQL] {N:,} records in {elapsed:.1f} s ({N / elapsed:,.0f}/s) through a SIGKILL; "
              f"{len(held)} deliveries in flight at the kill taken over after {taken_over:.1f} s "
              f"(lease {LEASE:g} s); the killed process held {len(processing)} claimed file(s); "
              f"{hall.repeats} repeated sends absorbed by the hall's dedupe")
