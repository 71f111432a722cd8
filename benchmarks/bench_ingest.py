"""File-drop ingest of a large provincial XML file into the durable SQLite store, beside a bare baseline.

    .venv/bin/python benchmarks/bench_ingest.py --records 1000000

Both runs read the same file in a fresh process each, so peak RSS (VmHWM) is
each one's own:

- baseline: lxml iterparse → dict → JSON → executemany in batches into SQLite
  with synchronous=FULL (no mapping, no validation, no idempotency, no audit);
- gateway:  gateway.pipeline.fileingest.ingest_file, what `gateway ingest` and the
  file-drop source run: two helper processes each read a record-aligned part of the
  file (gateway.formats) and prepare it (compiled provincial mapping with fused
  validation, business key, routing, idempotency keys, bodies rendered) while the main
  process commits the batches in file order with SqliteStore.commit_ingest (dedupe,
  records, outbox, audit hash chain, cursor), 1,000 records a transaction;
- gateway-1proc: the same with reading and preparing in this process (what a small
  file gets), to show what the helper processes buy.

Peak RSS of the helpers is each helper's own VmHWM, sampled from /proc while it runs
(getrusage's children figure counts the parent's pages a child had between fork and
exec, and only the largest child); the total adds the peaks, an upper bound.

The data file is generated once under benchmarks/data/ (not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "benchmarks" / "data"


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class ChildPeaks:
    """Each child process's own peak RSS (VmHWM), sampled from /proc every ``every`` seconds."""

    def __init__(self, every: float = 0.05) -> None:
        import threading

        self.every = every
        self.peaks: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ChildPeaks:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        me = os.getpid()
        while not self._stop.wait(self.every):
            try:
                children = Path(f"/proc/{me}/task/{me}/children").read_text().split()
            except OSError:
                continue
            for pid in map(int, children):
                try:
                    status = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                for line in status.splitlines():
                    if line.startswith("VmHWM:"):
                        self.peaks[pid] = max(self.peaks.get(pid, 0.0), int(line.split()[1]) / 1024)

    @property
    def mb(self) -> list[float]:
        return [round(v, 1) for v in self.peaks.values()]


def ensure_file(n: int) -> Path:
    from gateway.demo.generate import generate_items, write_xml_file

    path = DATA / f"approvedatainfo-{n}.xml"
    if not path.exists():
        DATA.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        write_xml_file(path, generate_items(n, seed=11, submitted_from=None))
        print(f"generated {path.name}: {path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - t:.0f}s",
              flush=True)
    return path


def run_baseline(path: Path, db: Path, batch: int) -> dict:
    import sqlite3

    from lxml import etree

    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE records (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    t = time.perf_counter()
    cpu = time.process_time()
    n = 0
    rows: list[tuple[str]] = []
    parser = etree.iterparse(str(path), events=("end",), tag="APPROVEDATAINFO", resolve_entities=False,
                             no_network=True, load_dtd=False)
    for _, elem in parser:
        item = {sec.tag: {c.tag: c.text for c in sec} for sec in elem}
        rows.append((json.dumps(item, ensure_ascii=False),))
        elem.clear()
        while elem.getprevious() is not None:
            del elem.getparent()[0]
        if len(rows) >= batch:
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO records(body) VALUES (?)", rows)
            conn.execute("COMMIT")
            n += len(rows)
            rows.clear()
    if rows:
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO records(body) VALUES (?)", rows)
        conn.execute("COMMIT")
        n += len(rows)
    elapsed = time.perf_counter() - t
    cpu = time.process_time() - cpu
    conn.close()
    return {"records": n, "seconds": elapsed, "rate": n / elapsed, "peak_rss_mb": peak_rss_mb(),
            "cpu_us": {"main": cpu / n * 1e6}}


def run_gateway(path: Path, db: Path, batch: int, parallel: bool = True, tune: bool = True) -> dict:
    import asyncio
    import resource

    from gateway.app import tune_collector
    from gateway.mapping import load_mapping
    from gateway.pipeline.fileingest import ingest_file
    from gateway.pipeline.ingest import Ingestor
    from gateway.pipeline.router import Router, Rule
    from gateway.store.sqlite import SqliteStore

    mapping = load_mapping(ROOT / "mappings" / "provincial_approvedatainfo.in.yaml")
    router = Router([Rule(name="to-hall", to=("hall_platform",), sources=frozenset({"county_drop"}))])

    async def go() -> dict:
        store = SqliteStore(db)
        await store.open()
        ingestor = Ingestor(store, router, {"county_drop": mapping})
        if tune:
            tune_collector()  # as `gateway ingest` does before it reads
        t = time.perf_counter()
        cpu = time.process_time()
        with ChildPeaks() as children:
            result = await ingest_file(ingestor, "county_drop", path, ref_prefix=path.name,
                                       cursor=f"filedrop:county_drop:{path.name}", batch=batch, parallel=parallel)
        elapsed = time.perf_counter() - t
        cpu = time.process_time() - cpu
        # The helpers have exited and been waited for: their CPU is in the children's usage.
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        peak = peak_rss_mb()  # before the closing count, which is not part of ingest
        helpers = children.mb
        helper = sum(helpers)
        audit = (await store.audit_head())[0]
        await store.close()
        n = result.consumed
        cpu_us = {"main": cpu / n * 1e6}
        if parallel:
            cpu_us["helpers"] = (kids.ru_utime + kids.ru_stime) / n * 1e6
        return {"records": n, "seconds": elapsed, "rate": n / elapsed, "peak_rss_mb": peak,
                "helper_peak_rss_mb": helper, "helpers_mb": helpers, "outcomes": result.outcomes,
                "audit_entries": audit, "cpu_us": cpu_us}

    return asyncio.run(go())


def child(mode: str, path: str, db: str, batch: int) -> None:
    if mode == "baseline":
        print(json.dumps(run_baseline(Path(path), Path(db), batch)))
    else:
        print(json.dumps(run_gateway(Path(path), Path(db), batch, parallel=mode == "gateway")))


def machine() -> str:
    cpu = cpu_model()
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}, {platform.system()} {platform.release()}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=1000)
    ap.add_argument("--child", nargs=3, metavar=("MODE", "FILE", "DB"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child, args.batch)
        return
    path = ensure_file(args.records)
    print(f"machine: {machine()}")
    print(f"file: {path.name}, {path.stat().st_size / 1e6:,.0f} MB, {args.records:,} records")
    results = {}
    for mode in ("baseline", "gateway", "gateway-1proc"):
        tmp = Path(tempfile.mkdtemp(prefix=f"bench-{mode}-"))
        try:
            out = subprocess.run([sys.executable, __file__, "--batch", str(args.batch), "--child", mode, str(path),
                                  str(tmp / "g.db")], capture_output=True, text=True, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            db_mb = sum(f.stat().st_size for f in tmp.iterdir()) / 1e6
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        r = results[mode]
        helper = (f" + helper processes {' + '.join(f'{m:.1f}' for m in r['helpers_mb'])} MB"
                  if r.get("helpers_mb") else "")
        cpu = ", ".join(f"{k} {v:.1f}" for k, v in r.get("cpu_us", {}).items())
        print(f"{mode:9s} {r['records']:>10,} records in {r['seconds']:7.1f}s = {r['rate']:>9,.0f} records/s, "
              f"CPU µs/record {cpu}, peak RSS {r['peak_rss_mb']:6.1f} MB{helper}, database {db_mb:,.0f} MB"
              + (f", outcomes {r['outcomes']}, audit entries {r['audit_entries']:,}" if mode != "baseline" else ""))
    ratio = results["gateway"]["rate"] / results["baseline"]["rate"]
    g = results["gateway"]
    print(f"ratio gateway/baseline: {ratio:.2f} (target ≥ 0.6); gateway peak RSS {g['peak_rss_mb']:.0f} MB, "
          f"with its helper processes {g['peak_rss_mb'] + g['helper_peak_rss_mb']:.0f} MB (target ≤ 200 MB)")


if __name__ == "__main__":
    main()
