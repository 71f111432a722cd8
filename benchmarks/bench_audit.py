"""Audit trail benchmark: append rate (commit_ingest, raw audit_event), sealing, and verification over 1M+ entries.

Run: .venv/bin/python benchmarks/bench_audit.py [--entries 1000000] [--markdown]
Everything happens in a temporary folder; the run takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import cryptography
from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from gateway.audit import Sealer, export_case, load_certificates, load_or_create_dev_signer, verify_path
from gateway.store import AcceptItem
from gateway.store.sqlite import SqliteStore

SYSTEMS = ("sd-province", "county-hall", "market-supervision", "natural-resources")


def machine() -> dict[str, str]:
    model = cpu_model()
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return {"nproc": str(cpus), "cpu": model, "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version, "cryptography": cryptography.__version__,
            "platform": platform.platform()}


KINDS = ("case", "acceptance", "process_step", "completion")


def realistic(n: int) -> AcceptItem:
    """Record n of an approval case as the provincial platform sends it (four records per case), mapped."""
    case = f"3706022026{n // 4:08d}"
    kind = KINDS[n % 4]
    system = SYSTEMS[(n // 4) % len(SYSTEMS)]
    payload_hash = hashlib.sha256(f"payload {n}".encode()).hexdigest()
    body = json.dumps({
        "kind": kind, "schema_version": "1",
        "data": {"case_no": case, "item_code": "370602-001-XK-0042", "applicant_type": "2",
                 "applicant_name": f"烟台某某建筑工程有限公司{n % 97}", "credit_code": "91370600MA3C4XXX0X",
                 "submitted_at": "2026-09-29T10:00:00+08:00", "region": "370602", "version": 1},
        "provenance": {"source_system": system, "source_id": case, "source_version": "1",
                       "business_time": "2026-09-29T10:00:00+08:00", "receipt_time": "2026-09-29T10:00:03+08:00",
                       "payload_hash": payload_hash, "original": {"SQRLX": "2"}, "ref": f"batch-{n // 500}.xml#{n}",
                       "mapping": f"sd-province-{kind}@3"},
    }, ensure_ascii=False)
    return AcceptItem(
        system=system, kind=kind, record_key=f"{case}-{kind}", version=1, case_no=case,
        business_time="2026-09-29T10:00:00+08:00", receipt_time="2026-09-29T10:00:03+08:00",
        payload_hash=payload_hash, body=body, ref=f"batch-{n // 500}.xml#{n}", receipt_id=f"rcpt-{n:010d}",
        destinations=("supervision-bureau",), idempotency_keys=(f"{case}-{kind}-1-supervision-bureau",),
        mapping=f"sd-province-{kind}@3",
    )


async def append_ingest(store: SqliteStore, records: int, batch: int, producers: int, start: int = 0) -> float:
    """Entries/s through commit_ingest: ``producers`` concurrent callers, ``batch`` records each call."""
    per = records // producers
    before = (await store.audit_head())[0]

    async def producer(p: int) -> None:
        base = start + p * per
        for i in range(0, per, batch):
            await store.commit_ingest([realistic(base + j) for j in range(i, min(i + batch, per))], [])

    t0 = time.perf_counter()
    await asyncio.gather(*(producer(p) for p in range(producers)))
    return ((await store.audit_head())[0] - before) / (time.perf_counter() - t0)


async def build(store: SqliteStore, entries: int) -> float:
    """Fill ``store`` to at least ``entries`` entries through commit_ingest (1000 records per call, 2 callers)."""
    t0 = time.perf_counter()
    n = 0
    while (await store.audit_head())[0] < entries:
        await asyncio.gather(*(store.commit_ingest([realistic(n + k * 1000 + j) for j in range(1000)], [])
                               for k in range(2)))
        n += 2000
    return (await store.audit_head())[0] / (time.perf_counter() - t0)


async def append_events(store: SqliteStore, seconds: float, callers: int) -> float:
    """Entries/s through audit_event: ``callers`` tasks each appending one entry at a time."""
    count = 0
    stop = time.perf_counter() + seconds

    async def caller(c: int) -> None:
        nonlocal count
        while time.perf_counter() < stop:
            await store.audit_event("user_action", system="console", case=f"C{c}",
                                    detail={"user": f"officer{c}", "action": "viewed case", "ip": "10.1.2.3"})
            count += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return count / (time.perf_counter() - t0)


async def main(entries: int, sm3_entries: int, markdown: bool) -> dict[str, object]:
    facts = machine()
    results: dict[str, object] = {"machine": facts}
    with tempfile.TemporaryDirectory(prefix="bench-audit-") as tmp:
        folder = Path(tmp)
        signer = load_or_create_dev_signer(folder / "certs")
        trusted = load_certificates(folder / "certs")

        small = SqliteStore(folder / "append.db")
        await small.open()
        results["ingest_b1_c16"] = await append_ingest(small, 4_000, 1, 16)
        results["ingest_b100_c4"] = await append_ingest(small, 40_000, 100, 4, start=100_000)
        results["audit_event_c64"] = await append_events(small, 3.0, 64)
        await small.close()

        store = SqliteStore(folder / "big.db")
        await store.open()
        results["build_rate"] = await build(store, entries)
        head = (await store.audit_head())[0]
        results["build_entries"] = head
        t0 = time.perf_counter()
        seals = await Sealer(store, signer, max_entries=10_000).seal_now()
        results["seals"] = len(seals)
        results["seal_rate"] = head / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        summary = await export_case(store, realistic(4 * 123_457).case_no, folder / "bundle.json")
        results["export_seconds"] = time.perf_counter() - t0
        results["export_entries"] = summary.entries
        await store.close()
        results["db_mb"] = (folder / "big.db").stat().st_size / 1e6

        # Three runs each: the machine is shared, so report the median and the best.
        runs = {}
        for label, workers in (("1 worker", 1), ("all CPUs", None)):
            reports = [verify_path(str(folder / "big.db"), trusted=trusted, workers=workers) for _ in range(3)]
            assert all(r.ok for r in reports), reports[0].render()
            reports.sort(key=lambda r: r.rate)
            runs[label] = (reports[1].rate, reports[2].rate, reports[1].workers, reports[1].seconds,
                           reports[1].entries_checked)
        results["verify"] = runs

        if sm3_entries:
            sm3 = SqliteStore(folder / "sm3.db", audit_algorithm="sm3")
            await sm3.open()
            await build(sm3, sm3_entries)
            await Sealer(sm3, signer, max_entries=10_000).seal_now()
            await sm3.close()
            report = verify_path(str(folder / "sm3.db"), trusted=trusted)
            assert report.ok, report.render()
            results["verify_sm3"] = (report.rate, report.workers, report.seconds, report.entries_checked)

    if markdown:
        print(render(results))
    else:
        print(json.dumps(results, indent=1, default=str))
    return results


def render(r: dict) -> str:  # type: ignore[type-arg]
    m = r["machine"]
    lines = [
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, SQLite {m['sqlite']}, "
        f"cryptography {m['cryptography']}, {m['platform']}",
        "",
        "| measure | result |",
        "|---|---|",
        f"| append: commit_ingest, 1 record per call, 16 concurrent callers | {r['ingest_b1_c16']:,.0f} entries/s |",
        f"| append: commit_ingest, 100 records per call, 4 concurrent callers | {r['ingest_b100_c4']:,.0f} entries/s |",
        f"| append: raw audit_event, 64 concurrent callers | {r['audit_event_c64']:,.0f} entries/s |",
        f"| build the verification store (commit_ingest, 1000 records per call, 2 callers) | "
        f"{r['build_rate']:,.0f} entries/s; {r['build_entries']:,} entries, {r['db_mb']:,.0f} MB file |",
        f"| seal it all (chain re-check + Merkle root + Ed25519, 10,000 entries per seal) | "
        f"{r['seal_rate']:,.0f} entries/s; {r['seals']} seals |",
        f"| export one case's evidence bundle from it | {r['export_seconds'] * 1000:,.0f} ms "
        f"({r['export_entries']} entries) |",
    ]
    for label, (median, best, workers, seconds, n) in r["verify"].items():
        lines.append(f"| verify everything ({label}: {workers} worker process(es)), median of 3 / best | "
                     f"{median:,.0f} / {best:,.0f} entries/s ({n:,} entries, median {seconds:.2f} s) |")
    if "verify_sm3" in r:
        rate, workers, seconds, n = r["verify_sm3"]
        lines.append(f"| verify an SM3 chain ({workers} worker process(es)) | {rate:,.0f} entries/s "
                     f"({n:,} entries in {seconds:.2f} s) |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--entries", type=int, default=1_000_000, help="entries in the verification store")
    parser.add_argument("--sm3-entries", type=int, default=300_000, help="entries in the SM3 store (0: skip)")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table for RESULTS-audit.md")
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(main(args.entries, args.sm3_entries, args.markdown)) else 1)
