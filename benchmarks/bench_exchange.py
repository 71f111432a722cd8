"""The two-way exchange's own costs: the follower that links records and ties results to cases, and 对账.

    .venv/bin/python benchmarks/bench_exchange.py --cases 20000

- ingest: the hall's cases, completions and licences (4 records a case) and the market
  regulator's supervision results naming only the licence (one per 4 cases, half of them
  revocations), committed through the Ingestor in batches of 500, as a push would;
- follow: the exchange follower folding all of them (links, licences, case resolution,
  licence effects, notices), timed apart;
- resend: the same cases pushed again (every record a duplicate), then once more with every
  payload changed (every record a version conflict), to show what the conflict check costs;
- reconcile: every record delivered to one sink, and a reconciliation of that day against a
  manifest that lacks 1 %: each delivery is rendered again and digested.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import random
import shutil
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

CHINA = timezone(timedelta(hours=8))

CONFIG = """
[gateway]
name = "bench-exchange"
store = "sqlite:///gateway.db"
adapters = ["push", "filedrop"]

[api]
enabled = false

[supervision]
enabled = false
destinations = ["hall_platform"]

[audit]
seal = false

[sources.hall_platform]
adapter = "push"
mapping = "mappings/hall_platform.in.yaml"
auth = { anonymous = true }

[sources.market_ministry]
adapter = "push"
mapping = "mappings/market_ministry.in.yaml"
auth = { anonymous = true }

[sinks.hall_platform]
adapter = "filedrop"
mapping = "mappings/hall_platform.out.yaml"
path = "out/hall"
fsync = false

[[routes]]
name = "results-to-the-hall"
kinds = ["supervision_result", "approval_result"]
to = ["hall_platform"]
"""


async def main(cases: int) -> dict[str, Any]:
    from exchange_support import case, completion, licence, supervision_result

    from gateway.adapters import CounterpartManifest, ManifestEntry, RawRecord
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.demo.generate import credit_code
    from gateway.exchange.reconcile import Reconciliation, day_period

    root = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    shutil.copytree(ROOT / "mappings", root / "mappings")
    (root / "out" / "hall").mkdir(parents=True)
    (root / "gateway.toml").write_text(CONFIG, encoding="utf-8")
    gw = Gateway(load_config(root / "gateway.toml"), run_delivery=False)
    await gw.start()
    assert gw.ingestor is not None and gw.exchange is not None and gw.store is not None
    stopping = gw.stopping
    stopping.set()  # the benchmark drives the follower itself
    rng = random.Random(7)
    hall_items: list[dict[str, Any]] = []
    ministry_items: list[dict[str, Any]] = []
    for n in range(cases):
        code = credit_code(rng)
        no, lic = f"SB-B{n:07d}", f"JY-B{n:07d}"
        hall_items += [case(no, holder=code), {"dataType": "ACCEPT", "caseNo": no, "deptName": "审批局",
                                               "status": "ACCEPTED", "acceptTime": "2026-11-02 10:00:00"},
                       completion(no, lic), licence(no, lic, code, decision=f"D-{n:07d}")]
        if n % 4 == 0:
            effect = "吊销" if n % 8 == 0 else None
            ministry_items.append(supervision_result(f"CF-{n:07d}", code, licence_no=lic,
                                                     kind="吊销" if effect else "检查", effect=effect))

    async def ingest(system: str, items: list[dict[str, Any]]) -> float:
        started = time.perf_counter()
        for i in range(0, len(items), 500):
            chunk = items[i:i + 500]
            raws = [RawRecord(system, it, f"bench {system} {i + j}", json.dumps(it, ensure_ascii=False).encode())
                    for j, it in enumerate(chunk)]
            await gw.ingestor.ingest(system, raws)  # type: ignore[union-attr]
        return time.perf_counter() - started

    out: dict[str, Any] = {"cases": cases, "records": len(hall_items) + len(ministry_items)}
    t_hall = await ingest("hall_platform", hall_items)
    t_ministry = await ingest("market_ministry", ministry_items)
    out["ingest_records_per_s"] = round(out["records"] / (t_hall + t_ministry))
    started = time.perf_counter()
    steps = await gw.exchange.drain()
    follow = time.perf_counter() - started
    out["follow_s"] = round(follow, 2)
    out["follow_records_per_s"] = round(out["records"] / follow)
    out["follow_steps"] = steps
    revoked = await gw.store.licence_detail("JY-B0000000")
    out["check_first_licence_state"] = revoked["licence"]["state"] if revoked else None
    t_dup = await ingest("hall_platform", hall_items)
    out["resend_duplicates_per_s"] = round(len(hall_items) / t_dup)
    changed = [{**it, "remark": "改"} if it["dataType"] == "CASE" else {**it, "handler": "改"} if it["dataType"] == "ACCEPT"
               else {**it, "resultDesc": "改"} if it["dataType"] == "FINISH" else {**it, "content": "改"}
               for it in hall_items]
    t_conflict = await ingest("hall_platform", changed)
    out["resend_conflicts_per_s"] = round(len(changed) / t_conflict)
    # reconcile: mark every delivery done (as a worker would), then compare with a manifest lacking 1 %
    import sqlite3

    db = sqlite3.connect(root / "gateway.db")
    now = time.time()
    db.execute("UPDATE outbox SET state='delivered', settled_at=? WHERE state='pending'", (now,))
    db.commit()
    keys = [r[0] for r in db.execute("SELECT idem_key FROM outbox WHERE destination='hall_platform'")]
    db.close()
    lost = set(keys[::100])

    class Peer:
        async def reconcile_manifest(self, period: Any) -> CounterpartManifest:
            return CounterpartManifest(received=[ManifestEntry(key=k) for k in keys if k not in lost], sent=[],
                                       can_resend=False)

        async def request_resend(self, period: Any, entries: Any) -> int:
            return 0

    cp = gw.exchange.counterparts["hall_platform"]
    run = Reconciliation(gw.store, cp, {"hall_platform": Peer()}, gw.components.outbound)  # type: ignore[union-attr]
    start, end = day_period(datetime.now(CHINA).date())
    started = time.perf_counter()
    result = await run.run(start, end, triggered_by="bench")
    out["reconcile_deliveries"] = result["summary"]["sent"]["ours"]
    out["reconcile_s"] = round(time.perf_counter() - started, 2)
    out["reconcile_found_missing"] = result["summary"]["sent"]["missing"]
    out["reconcile_expected_missing"] = len(lost)
    await gw.stop()
    shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=20_000)
    args = ap.parse_args()
    figures = asyncio.run(main(args.cases))
    figures["machine"] = f"{cpu_model()}, {platform.python_implementation()} {platform.python_version()}"
    print(json.dumps(figures, ensure_ascii=False, indent=1))
