"""What a Prometheus scrape of /metrics costs with a million records in the store, and what it cost before.

    .venv/bin/python benchmarks/bench_metrics.py --records 1000000

Builds (once, under benchmarks/data/, not committed) a store with the gateway's real schema
and indexes holding what a store looks like after months of work: N records (1 in 50 a
supervision alert) over four systems, one delivery each to three destinations (all but
5,000 delivered, about 1 in 1,000 a dead letter), 2 N audit entries under signed seals but the
newest, 20,000 quarantine entries (10 % open). The rows are written with SQL, not through the
pipeline: the scrape reads indexes and counts, and those are the same.

Then it measures, in this process:

- ``scrape_figures``: the store's part of a scrape (what /metrics reads at most once per
  ``[metrics] cache``), cold and warm;
- ``counts()``: what /metrics read on every scrape before (``gateway status`` still does);
- ``last_contacts``: read once at start-up;
- a whole ``GET /metrics`` of a running gateway (API only, nothing delivering) on that store,
  uncached (``cache = "0s"``) and cached.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data"
SYSTEMS = ("county_drop", "hall_platform", "market")
DESTINATIONS = ("hall_platform", "market", "supervisors")
PENDING = 5000


def machine() -> str:
    return (f"{os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def build(path: Path, n: int) -> None:
    from gateway.store.sqlite import SqliteStore

    async def schema() -> None:
        store = SqliteStore(path)
        await store.open()
        await store.close()

    asyncio.run(schema())
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    now = time.time()
    body = json.dumps({"kind": "case", "data": {"case_no": "3706000000000001", "applicant_name": "某某有限公司",
                                                "item_code": "3706000001"}, "provenance": {"ref": "file.xml record 1"}},
                      ensure_ascii=False)
    conn.execute("BEGIN")

    def system(i: int) -> str:
        return "supervision" if i % 50 == 0 else SYSTEMS[i % 3]

    def at(i: int) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S+08:00", time.localtime(now - (n - i)))

    conn.executemany(
        "INSERT INTO records(id, system, kind, record_key, version, case_no, business_time, receipt_time,"
        " payload_hash, receipt_id, status, ref, body, correlation_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((i, system(i), "supervision_alert" if i % 50 == 0 else "case", f"K{i:09d}", 1, f"C{i // 3:09d}", at(i),
          at(i), "sha256:" + "0" * 64, f"R{i:024d}", "current", "f.xml", body, f"{i:032x}") for i in range(1, n + 1)))

    def state(i: int) -> str:
        return "pending" if i > n - PENDING else "dead" if i % 997 == 0 else "delivered"

    conn.executemany(
        "INSERT INTO outbox(record_id, destination, case_no, idem_key, state, attempts, created_at, next_attempt_at,"
        " settled_at) VALUES (?,?,?,?,?,?,?,?,?)",
        ((i, DESTINATIONS[i % 3], f"C{i // 3:09d}", f"{i:032x}", state(i), 1, now - (n - i), now,
          None if state(i) == "pending" else now - (n - i)) for i in range(1, n + 1)))
    entry = json.dumps({"seq": 1, "at": "2026-01-01T00:00:00.000+08:00", "action": "received", "system": "county_drop",
                        "kind": "case", "record": "K1", "case": "C1", "detail": {"ref": "f.xml", "version": 1}}).encode()
    conn.executemany("INSERT INTO audit(seq, hash, body) VALUES (?,?,?)",
                     ((i, f"{i:064x}", entry) for i in range(1, 2 * n + 1)))
    seals = 2 * n // 10_000
    conn.executemany(
        "INSERT INTO audit_seals(seal, from_seq, to_seq, statement, statement_hash, signature, key_id,"
        " signature_algorithm) VALUES (?,?,?,?,?,?,?,?)",
        ((s, (s - 1) * 10_000 + 1, s * 10_000, json.dumps({"sealed_at": "2026-11-30T12:00:00.000+08:00"}).encode(),
          f"{s:064x}", b"sig" if s < seals else None, "k" if s < seals else None, "ed25519" if s < seals else None)
         for s in range(1, seals + 1)))
    conn.executemany(
        "INSERT INTO quarantine(system, ref, kind, errors, payload, raw, receipt_time, item_hash, reason_hash, state)"
        " VALUES (?,?,?,?,?,?,?,?,?,?)",
        ((SYSTEMS[i % 3], f"r{i}", "case", "[]", None, None, "2026-11-30", f"h{i}", "r",
          "open" if i % 10 == 0 else "resolved") for i in range(20_000)))
    conn.execute("COMMIT")
    conn.close()


def ensure_store(n: int) -> Path:
    path = DATA / f"metrics-{n}.db"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        tmp = path.with_suffix(".building")
        for leftover in DATA.glob(tmp.name + "*"):
            leftover.unlink()
        build(tmp, n)
        tmp.rename(path)
        print(f"built {path.name}: {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - started:.0f}s",
              flush=True)
    return path


def timed(fn, rounds: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def store_queries(path: Path) -> None:
    from gateway.store.observability import last_contacts, scrape_figures
    from gateway.store.sqlite import SqliteStore

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    figures = timed(lambda: scrape_figures(conn, list(DESTINATIONS)), 10)
    contacts = timed(lambda: last_contacts(conn), 1)
    conn.close()

    async def old() -> list[float]:
        store = SqliteStore(path)
        await store.open()
        try:
            out = []
            for _ in range(3):
                started = time.perf_counter()
                await store.counts()
                out.append((time.perf_counter() - started) * 1000)
            return out
        finally:
            await store.close()

    before = asyncio.run(old())
    print(f"scrape_figures (the store's part of a scrape): first {figures[0]:.1f} ms, then median "
          f"{statistics.median(figures[1:]):.1f} ms over {len(figures) - 1}")
    print(f"counts() (what every scrape read before):     median {statistics.median(before):,.0f} ms over "
          f"{len(before)}")
    print(f"last_contacts (once at start-up):             {contacts[0]:,.0f} ms")


CONFIG = """\
[gateway]
name = "bench-metrics"
store = "sqlite:///{db}"
adapters = ["rest"]

[api]
port = 0

[metrics]
cache = "{cache}"

[supervision]
enabled = false

[audit]
seal = false
witness = ""
{sinks}
"""

SINK = """
[sinks.{name}]
adapter = "rest"
mapping = "{mappings}/hall_platform.out.yaml"
url = "http://127.0.0.1:9/never"
"""


def http_scrapes(path: Path, cache: str, rounds: int) -> list[float]:
    import aiohttp

    from gateway.app import Gateway
    from gateway.config import load_config

    work = Path(tempfile.mkdtemp(prefix="bench-metrics-"))
    try:
        sinks = "".join(SINK.format(name=d, mappings=ROOT / "mappings") for d in DESTINATIONS)
        config = work / "gateway.toml"
        config.write_text(CONFIG.format(db=path, cache=cache, sinks=sinks), encoding="utf-8")

        async def go() -> list[float]:
            gw = Gateway(load_config(config), run_delivery=False)
            await gw.start()
            try:
                out = []
                async with aiohttp.ClientSession() as http:
                    for _ in range(rounds):
                        started = time.perf_counter()
                        async with http.get(gw.api.url + "/metrics") as r:
                            assert r.status == 200
                            text = await r.text()
                        out.append((time.perf_counter() - started) * 1000)
                assert "gateway_store_up 1.0" in text, text[:2000]
                return out
            finally:
                await gw.stop()

        return asyncio.run(go())
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    args = ap.parse_args()
    path = ensure_store(args.records)
    print(f"machine: {machine()}")
    print(f"store: {path.name}, {path.stat().st_size / 1e6:,.0f} MB, {args.records:,} records, "
          f"{args.records:,} deliveries ({PENDING:,} waiting), {2 * args.records:,} audit entries")
    store_queries(path)
    uncached = http_scrapes(path, "0s", 20)
    cached = http_scrapes(path, "5s", 20)
    print(f"GET /metrics, uncached: first {uncached[0]:.1f} ms, then median {statistics.median(uncached[1:]):.1f} ms, "
          f"max {max(uncached[1:]):.1f} ms")
    print(f"GET /metrics, cached 5 s: first {cached[0]:.1f} ms, then median {statistics.median(cached[1:]):.1f} ms")


if __name__ == "__main__":
    main()
