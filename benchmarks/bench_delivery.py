"""How fast a delivery backlog drains: records in the outbox → a hall platform on loopback.

    .venv/bin/python benchmarks/bench_delivery.py --records 20000

Fills a store with N case records through `ingest_file` (not timed), then starts the
gateway with delivery only and times until every delivery is settled. The simulated
hall platform (`gateway.demo.counterparts.HallPlatform`, deduping by idempotency key)
runs in its own process, as a counterpart would. Bounded in count and time.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"
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
[sinks.hall_platform]
adapter = "rest"
mapping = "mappings/hall_platform.out.yaml"
url = "{url}"
batch_size = {batch}
[[routes]]
name = "all"
to = ["hall_platform"]
"""


def _hall(port_queue: multiprocessing.Queue, stop: multiprocessing.Event) -> None:  # type: ignore[type-arg]
    from gateway.demo.counterparts import HallPlatform

    async def serve() -> None:
        hall = HallPlatform()
        await hall.start()
        port_queue.put((hall.records_url, os.getpid()))
        while not stop.is_set():
            await asyncio.sleep(0.1)
        port_queue.put((hall.unique, hall.received_raw))
        await hall.stop()

    asyncio.run(serve())


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


async def drain(site: Path, n: int, timeout: float) -> float:
    from gateway.app import Gateway
    from gateway.config import load_config

    gw = Gateway(load_config(site / "gateway.toml"), run_sources=False)
    await gw.start()
    assert gw.store is not None
    t = time.perf_counter()
    try:
        while time.perf_counter() - t < timeout:
            c = await gw.store.counts()
            if c.delivered >= n:
                break
            await asyncio.sleep(0.1)
        return time.perf_counter() - t
    finally:
        await gw.stop()


def run(n: int, concurrency: int, batch: int, timeout: float) -> None:
    ctx = multiprocessing.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    hall = ctx.Process(target=_hall, args=(queue, stop), daemon=True)
    hall.start()
    url, _ = queue.get(timeout=30)
    site = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    try:
        shutil.copytree(ROOT / "mappings", site / "mappings")
        (site / "drop").mkdir()
        (site / "gateway.toml").write_text(CONFIG.format(url=url, concurrency=concurrency, batch=batch),
                                           encoding="utf-8")
        asyncio.run(fill(site, n))
        seconds = asyncio.run(drain(site, n, timeout))
    finally:
        stop.set()
        unique, raw = queue.get(timeout=30)
        hall.join(10)
        shutil.rmtree(site, ignore_errors=True)
    print(f"concurrency {concurrency:3d}, batch {batch:3d}: {n:,} deliveries in {seconds:6.2f}s = "
          f"{n / seconds:8,.0f} deliveries/s; hall got {unique:,} unique in {raw:,} arrivals")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--timeout", type=float, default=300.0)
    args = ap.parse_args()
    cpu = cpu_model()
    print(f"machine: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}")
    for concurrency, batch in ((8, 1), (32, 1), (8, 50)):
        run(args.records, concurrency, batch, args.timeout)


if __name__ == "__main__":
    main()
