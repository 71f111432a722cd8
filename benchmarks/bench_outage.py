"""How long a backlog waits after a counterpart outage ends: the issue's "3-minute outage" at the shipped defaults.

    .venv/bin/python benchmarks/bench_outage.py --records 2000 --outage 180

Fills the outbox with N case records while the hall platform (a real aiohttp server on a
fixed loopback port) is down, starts the gateway with delivery only and the shipped
[delivery] defaults, keeps the hall down for --outage seconds (connections refused), brings
it back and times until every delivery is settled. Reports the drain time after recovery,
dead letters, and attempts per delivery. Runs on whichever `gateway` package is importable,
so the same script measures an older release (PYTHONPATH=<its checkout>). Bounded in count
and time; loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import socket
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"
[api]
enabled = false
[supervision]
enabled = false
[audit]
seal = false
[sources.county_drop]
adapter = "filedrop"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
path = "drop"
[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
[[routes]]
name = "all"
to = ["hall_platform"]
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _scalar(db: Path, sql: str) -> int:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return int(conn.execute(sql).fetchone()[0] or 0)
    finally:
        conn.close()


async def fill(site: Path, n: int) -> None:
    from gateway.app import build
    from gateway.config import load_config
    from gateway.demo.generate import generate_items, write_xml_file
    from gateway.pipeline.fileingest import ingest_file
    from gateway.pipeline.ingest import Ingestor
    from gateway.store import make_store

    config = load_config(site / "gateway.toml")
    comp = build(config)
    data = site / "batch.xml"
    write_xml_file(data, generate_items(n, seed=3))
    store = make_store(config.gateway.store, base=config.base_dir)
    await store.open()
    assert comp.router is not None
    await ingest_file(Ingestor(store, comp.router, comp.inbound), "county_drop", data, ref_prefix="batch.xml",
                      cursor="bench")
    await store.close()


async def outage(site: Path, port: int, n: int, down: float, timeout: float) -> dict[str, float]:
    from gateway.app import Gateway
    from gateway.config import load_config
    from gateway.demo.counterparts import HallPlatform

    db = site / "gateway.db"
    gw = Gateway(load_config(site / "gateway.toml"), run_sources=False)
    await gw.start()
    hall = HallPlatform(port=port)
    try:
        await asyncio.sleep(down)
        await hall.start()
        back = time.perf_counter()
        first: float | None = None
        while time.perf_counter() - back < timeout:
            settled = _scalar(db, "SELECT count(*) FROM outbox WHERE state IN ('delivered', 'dead')")
            if first is None and hall.unique:
                first = time.perf_counter() - back
            if settled >= n:
                break
            await asyncio.sleep(0.1)
        drained = time.perf_counter() - back
    finally:
        await gw.stop()
        await hall.stop()
    return {"drained": drained, "first": first if first is not None else float("nan"),
            "dead": _scalar(db, "SELECT count(*) FROM outbox WHERE state = 'dead'"),
            "delivered": _scalar(db, "SELECT count(*) FROM outbox WHERE state = 'delivered'"),
            "max_attempts": _scalar(db, "SELECT max(attempts) FROM outbox"),
            "attempts": _scalar(db, "SELECT sum(attempts) FROM outbox"), "unique": hall.unique}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=2000)
    ap.add_argument("--outage", type=float, default=180.0, help="seconds the hall platform is down")
    ap.add_argument("--timeout", type=float, default=600.0, help="give up this long after recovery")
    args = ap.parse_args()
    import gateway

    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}; "
          f"gateway from {Path(gateway.__file__).parent}")
    port = _free_port()
    site = Path(tempfile.mkdtemp(prefix="bench-outage-"))
    try:
        shutil.copytree(ROOT / "mappings", site / "mappings")
        (site / "drop").mkdir()
        (site / "gateway.toml").write_text(CONFIG.format(url=f"http://127.0.0.1:{port}/api/records"),
                                           encoding="utf-8")
        asyncio.run(fill(site, args.records))
        r = asyncio.run(outage(site, port, args.records, args.outage, args.timeout))
    finally:
        shutil.rmtree(site, ignore_errors=True)
    print(f"outage {args.outage:g} s (connections refused), {args.records:,} deliveries waiting: first record at "
          f"the hall {r['first']:.1f} s after it came back, all settled {r['drained']:.1f} s after; "
          f"delivered {r['delivered']:,}, dead letters {r['dead']:,}; attempts {r['attempts']:,} in all, "
          f"at most {r['max_attempts']} for one delivery")


if __name__ == "__main__":
    main()
