"""Benchmark of the REST adapter: pull throughput from a PagedFeed and sink throughput into a HallPlatform.

The simulated counterpart runs in its own process (spawned, own event loop), so client and server
each get a core of a 2-core machine, as they would on two machines. Counts are bounded; run:

    .venv/bin/python benchmarks/bench_rest_pull.py                # defaults below
    .venv/bin/python benchmarks/bench_rest_pull.py --records 10000 --deliveries 5000 --runs 1

Results for this repository are recorded in benchmarks/RESULTS-rest.md.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from gateway.adapters import Delivery, IngestOutcome, RawRecord  # noqa: E402
from gateway.demo.counterparts import HallPlatform, PagedFeed  # noqa: E402
from gateway_adapters.rest import RestPullSource, RestSink, RestSinkConfig, RestSourceConfig  # noqa: E402

CHINA = timezone(timedelta(hours=8))


def feed_records(count: int) -> list[dict[str, Any]]:
    """Case-like items of about 300 bytes, ordered by updated_at (one per second)."""
    start = datetime(2026, 9, 29, 8, 0, tzinfo=CHINA)
    return [
        {
            "SBLSH": f"370600-2026-{n:07d}",
            "SXBM": "1137060000",
            "SQRLX": "2",
            "SQRMC": "烟台市某某餐饮有限公司",
            "SQRZJHM": "91370600MA3C0000X1",
            "SBSJ": (start + timedelta(seconds=n)).strftime("%Y%m%d%H%M%S"),
            "XZQHDM": "370600",
            "VERSION": 1,
            "updated_at": (start + timedelta(seconds=n)).isoformat(),
        }
        for n in range(count)
    ]


# --------------------------------------------------------------------------- the counterpart process


def _serve(kind: str, records: int, ports: Any, stop: Any) -> None:
    async def main() -> None:
        service: PagedFeed | HallPlatform
        if kind == "feed":
            service = PagedFeed(feed_records(records), pagination="page", max_page_size=5000)
        else:
            service = HallPlatform()
        await service.start()
        ports.send(service.port)
        while not stop.is_set():
            await asyncio.sleep(0.05)
        ports.send(getattr(service, "unique", None))
        await service.stop()

    asyncio.run(main())


class Counterpart:
    """A simulated counterpart in a spawned process, for the duration of a ``with`` block."""

    def __init__(self, kind: str, records: int = 0) -> None:
        context = mp.get_context("spawn")
        self._parent, child = context.Pipe()
        self._stop = context.Event()
        self._process = context.Process(target=_serve, args=(kind, records, child, self._stop), daemon=True)
        self.unique: int | None = None

    def __enter__(self) -> str:
        self._process.start()
        if not self._parent.poll(120):
            raise RuntimeError("the simulated counterpart did not start within 120 s")
        return f"http://127.0.0.1:{self._parent.recv()}"

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._parent.poll(30):
            self.unique = self._parent.recv()
        self._process.join(30)


# --------------------------------------------------------------------------- pull


class CountingContext:
    """A SourceContext whose ingest only counts: measures the adapter and the wire, not a store."""

    def __init__(self, expected: int) -> None:
        self.system = "bench-feed"
        self.data_dir = Path(".")
        self.log = logging.getLogger("bench")
        self.stopping = asyncio.Event()
        self.expected = expected
        self.records = 0
        self.cursor: tuple[str, str] | None = None

    async def ingest(
        self, records: Sequence[RawRecord], *, cursor: tuple[str, str] | None = None
    ) -> list[IngestOutcome]:
        self.records += len(records)
        self.cursor = cursor
        if self.records >= self.expected:
            self.stopping.set()
        return [IngestOutcome(ref=r.ref, status="accepted") for r in records]

    async def get_cursor(self, name: str) -> str | None:
        return None

    def input_options(self) -> Mapping[str, Any]:
        return {}


async def pull_once(url: str, records: int, page_size: int) -> float:
    config = RestSourceConfig(
        url=url + "/feed", interval=60,
        pagination={"mode": "page", "page_size": page_size},
    )
    source = RestPullSource("bench-feed", config)
    ctx = CountingContext(records)
    began = time.perf_counter()
    await source.run(ctx)
    elapsed = time.perf_counter() - began
    assert ctx.records == records, f"pulled {ctx.records} of {records}"
    return elapsed


# --------------------------------------------------------------------------- sink


async def sink_once(url: str, deliveries: int, concurrency: int, batch_size: int) -> float:
    config = RestSinkConfig(url=url + "/api/records", remote_id_path="id", batch_size=batch_size,
                            max_connections=concurrency)
    sink = RestSink("bench-hall", config)
    await sink.start()
    body = {"XK_XDR_MC": "烟台市某某餐饮有限公司", "XK_XKZS": "食品经营许可证", "XK_JDRQ": "2026-09-29"}
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(0, deliveries, batch_size):
        queue.put_nowait(n)
    failures = 0

    async def worker() -> None:
        nonlocal failures
        while True:
            try:
                first = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            batch = [
                Delivery(n, "bench-hall", f"bench:{os.getpid()}:{time.time_ns()}:{n}", "approval_result",
                         f"XK-{n}", f"C-{n}", body, 1)
                for n in range(first, min(first + batch_size, deliveries))
            ]
            results = await sink.deliver(batch)
            failures += sum(r.error is not None for r in results)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - began
    await sink.close()
    assert failures == 0, f"{failures} deliveries failed"
    return elapsed


# --------------------------------------------------------------------------- report


def machine_facts() -> list[str]:
    cpu = cpu_model()
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores",
        f"- OS: {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()}, aiohttp {aiohttp.__version__}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=50_000, help="records in the feed (default 50000)")
    parser.add_argument("--page-size", type=int, default=500, help="records per page (default 500)")
    parser.add_argument("--deliveries", type=int, default=20_000, help="deliveries per sink run (default 20000)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent sink calls (default 16)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement; the median is reported")
    args = parser.parse_args()

    print("## Machine\n")
    print("\n".join(machine_facts()))
    print("\n## Pull: RestPullSource from a PagedFeed (page pagination, since cursor)\n")
    pulls = []
    for _ in range(args.runs):
        with Counterpart("feed", args.records) as url:
            pulls.append(asyncio.run(pull_once(url, args.records, args.page_size)))
    rate = args.records / statistics.median(pulls)
    print(f"- {args.records} records in pages of {args.page_size}: "
          f"median {statistics.median(pulls):.2f} s over {args.runs} runs → **{rate:,.0f} records/s**")
    print(f"  (runs: {', '.join(f'{t:.2f} s' for t in pulls)})")

    print(f"\n## Sink: RestSink into a HallPlatform, {args.concurrency} concurrent deliveries\n")
    for batch_size in (1, 50):
        times = []
        for _ in range(args.runs):
            counterpart = Counterpart("hall")
            with counterpart as url:
                times.append(asyncio.run(sink_once(url, args.deliveries, args.concurrency, batch_size)))
            assert counterpart.unique == args.deliveries, f"hall stored {counterpart.unique}"
        rate = args.deliveries / statistics.median(times)
        print(f"- batch_size {batch_size}: {args.deliveries} deliveries, median {statistics.median(times):.2f} s "
              f"over {args.runs} runs → **{rate:,.0f} deliveries/s** "
              f"(runs: {', '.join(f'{t:.2f} s' for t in times)})")


if __name__ == "__main__":
    main()
