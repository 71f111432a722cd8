"""PostgreSQL beside SQLite: delivery with 1, 2 and 3 gateway processes to a 20 ms sink, and ingest throughput.

    .venv/bin/python benchmarks/bench_postgresql.py [--records 6000] [--ingest-records 50000] [--latency 20ms]

Delivery: a store is filled with N case records (not timed), then P `gateway run`
processes (real subprocesses, sources idle) drain the outbox to ``counting_sink.py`` in
its own process, answering each POST after ``--latency``; the rate is unique records
over the sink's first-arrival → last-new-record window. SQLite runs one process (its
DeliveryLock lets one process deliver); PostgreSQL 1, 2 and 3. Each process logs on exit
what its writer spent waiting for the audit chain head, the price of one chain across
processes; the sum over the processes is printed.

Ingest: ``gateway ingest`` of an N-record provincial XML file into each backend, one
process; then on PostgreSQL three ``gateway ingest`` processes at once, each with its own
file of N/3 records, on one chain.

PostgreSQL here is Debian's server started by ``tests/pg_server.py`` in a temporary
directory with its durable defaults (fsync on, synchronous_commit on), on a Unix socket.
Bounded in count and time (``--timeout`` per run).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = """\
[gateway]
store = "{store}"
[api]
enabled = false
[supervision]
enabled = false
[audit]
seal = false
[delivery]
concurrency = {concurrency}
poll_interval = "0.2s"
[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
instance = "{instance}"
[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
[[routes]]
name = "all"
to = ["hall_platform"]
"""


class Sink:
    """benchmarks/counting_sink.py in its own process."""

    def __init__(self, latency: str) -> None:
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / "counting_sink.py"), "--latency",
                                      latency], stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        self.url = json.loads(self.proc.stdout.readline())["url"]

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url.rstrip("/") + "/stats", timeout=10) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def site_for(store: str, url: str, concurrency: int) -> Path:
    site = Path(tempfile.mkdtemp(prefix="bench-pg-"))
    shutil.copytree(ROOT / "mappings", site / "mappings")
    (site / "drop").mkdir()
    for n in (1, 2, 3):
        (site / f"gateway-{n}.toml").write_text(
            CONFIG.format(store=store, url=url, concurrency=concurrency, instance=f"bench-{n}"), encoding="utf-8")
    return site


def xml_file(path: Path, n: int, seed: int, start: int = 0) -> Path:
    from gateway.demo.generate import generate_items, write_xml_file

    write_xml_file(path, generate_items(n, seed=seed, start=start))
    return path


def gateway(*args: str, cwd: Path, log: Path | None = None) -> subprocess.Popen:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - the child writes to it for its life
    return subprocess.Popen([sys.executable, "-m", "gateway", "-v", "--log-format", "json", *args], cwd=cwd,
                            stdout=out, stderr=out)


def lock_wait(logs: list[Path]) -> tuple[int, float, float]:
    """(transactions, seconds in them, seconds waiting for the chain head) summed over the processes' exit lines."""
    tx = busy = wait = 0.0
    for log in logs:
        for line in log.read_text(errors="replace").splitlines():
            if '"chain_lock_wait_seconds"' in line:
                entry = json.loads(line)
                tx += entry["transactions"]
                busy += entry["busy_seconds"]
                wait += entry["chain_lock_wait_seconds"]
    return int(tx), busy, wait


def delivery(store: str, processes: int, n: int, latency: str, concurrency: int, timeout: float) -> str:
    sink = Sink(latency)
    site = site_for(store, sink.url, concurrency)
    try:
        data = xml_file(site / "fill.xml", n, seed=3)
        subprocess.run([sys.executable, "-m", "gateway", "ingest", "-c", "gateway-1.toml", str(data)], cwd=site,
                       check=True, capture_output=True)
        logs = [site / f"gateway-{i}.log" for i in range(1, processes + 1)]
        procs = [gateway("run", "-c", f"gateway-{i}.toml", cwd=site, log=logs[i - 1])
                 for i in range(1, processes + 1)]
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                s = sink.stats()
                if s["unique"] >= n:
                    break
                if any(p.poll() is not None for p in procs):
                    raise RuntimeError(f"a gateway process exited: see {site}")
                time.sleep(0.2)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(30)
        s = sink.stats()
        window = (s["last_new_at"] or 0) - (s["first_at"] or 0)
        tx, busy, wait = lock_wait(logs)
        rate = s["unique"] / window if window > 0 else 0.0
        extra = (f"; writers: {tx:,} transactions, {busy:.1f} s in them, {wait:.1f} s waiting for the chain head "
                 f"({100 * wait / busy if busy else 0:.0f} %)") if not store.startswith("sqlite") else ""
        return (f"{'SQLite' if store.startswith('sqlite') else 'PostgreSQL'} {processes} process(es): "
                f"{s['unique']:,}/{n:,} delivered in {window:.1f} s = {rate:,.0f}/s, {s['repeats']} repeats{extra}")
    finally:
        sink.stop()
        shutil.rmtree(site, ignore_errors=True)


def ingest(store: str, n: int, processes: int) -> str:
    site = site_for(store, "http://127.0.0.1:9/none", 8)
    try:
        per = n // processes
        files = [xml_file(site / f"in-{i}.xml", per, seed=i, start=i * per) for i in range(processes)]
        logs = [site / f"ingest-{i}.log" for i in range(processes)]
        t = time.perf_counter()
        procs = [gateway("ingest", "-c", f"gateway-{i + 1}.toml", str(files[i]), cwd=site, log=logs[i])
                 for i in range(processes)]
        codes = [p.wait() for p in procs]
        seconds = time.perf_counter() - t
        if any(codes):
            raise RuntimeError(f"gateway ingest exited with {codes}: see {site}")
        tx, busy, wait = lock_wait(logs)
        extra = (f"; writers: {tx:,} transactions, {wait:.1f} s of {busy:.1f} s waiting for the chain head"
                 if not store.startswith("sqlite") else "")
        return (f"{'SQLite' if store.startswith('sqlite') else 'PostgreSQL'} {processes} process(es): "
                f"{per * processes:,} records in {seconds:.1f} s = {per * processes / seconds:,.0f}/s "
                f"(process start and mapping load included){extra}")
    finally:
        shutil.rmtree(site, ignore_errors=True)


def main() -> None:
    from tests.pg_server import PostgresServer

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=6000, help="deliveries per delivery run")
    ap.add_argument("--ingest-records", type=int, default=30_000)
    ap.add_argument("--latency", default="20ms")
    ap.add_argument("--concurrency", type=int, default=8, help="[delivery] concurrency of each process")
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    with PostgresServer(durable=True, port=5433) as pg:
        version = subprocess.run([str(pg.bin / "postgres"), "--version"], capture_output=True, text=True).stdout
        print(f"machine: {os.cpu_count()} cores ({cpu_model()}), load {os.getloadavg()[0]:.1f}, Python "
              f"{platform.python_version()}, SQLite {sqlite3.sqlite_version}, {version.strip()} (fsync on)")
        counter = iter(range(1000))

        def fresh() -> str:
            return pg.create_database(f"bench{next(counter)}")

        print(f"delivery: {args.records:,} records, sink latency {args.latency}, concurrency {args.concurrency} "
              "per process, one record per POST")
        tmp = Path(tempfile.mkdtemp(prefix="bench-pg-sqlite-"))
        try:
            print("  " + delivery(f"sqlite:///{tmp}/d.db", 1, args.records, args.latency, args.concurrency,
                                  args.timeout))
            for processes in (1, 2, 3):
                print("  " + delivery(fresh(), processes, args.records, args.latency, args.concurrency,
                                      args.timeout))
            print(f"ingest: {args.ingest_records:,} provincial XML records")
            print("  " + ingest(f"sqlite:///{tmp}/i.db", args.ingest_records, 1))
            print("  " + ingest(fresh(), args.ingest_records, 1))
            print("  " + ingest(fresh(), args.ingest_records, 3))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
