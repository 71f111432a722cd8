"""Pull throughput of the SOAP adapter from the local spyne test service (records/s).

The service runs in its own process (so client and server do not share one interpreter
lock); the adapter pulls a bounded data set page by page into an in-memory context, exactly
as it would into the ingestor, and the script prints a Markdown block for RESULTS-soap.md.

    .venv/bin/python benchmarks/bench_soap_pull.py --records 20000 --page-size 500 --runs 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script
from soap_server.context import MemoryContext  # noqa: E402

from gateway_adapters.soap import SoapSource, SoapSourceConfig  # noqa: E402


def machine_facts() -> list[str]:
    cpu = cpu_model()
    libs = ", ".join(f"{name} {version(name)}" for name in ("zeep", "httpx", "lxml", "xmlsec", "spyne"))
    return [
        f"- CPU: {cpu}, {os.cpu_count()} logical cores (shared with other work on this machine)",
        f"- OS: {platform.system()} {platform.release()}, Python {platform.python_version()}",
        f"- Libraries: {libs}",
    ]


def start_service(records: int, wsdl: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "soap_server", "--records", str(records), "--wsdl", str(wsdl)],
        cwd=ROOT / "tests",
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.startswith("READY "):
        process.kill()
        raise SystemExit(f"the test service did not start (said {line!r})")
    return process, line.split(" ", 1)[1]


async def one_run(wsdl: Path, url: str, page_size: int) -> tuple[float, float, int, int]:
    config = SoapSourceConfig.model_validate(
        {
            "wsdl": str(wsdl),
            "endpoint": url,
            "timeouts": {"read": 60, "total": 120},
            "pull": {
                "operation": "QueryRecords",
                "request": {"since": "{cursor}", "page": "{page}", "pageSize": "{page_size}"},
                "items_path": "records.Record",
                "paging": {"mode": "page", "page_size": page_size, "has_more_path": "hasMore"},
                "watermark_field": "modifiedTime",
            },
        }
    )
    source = SoapSource("bench", config)
    await source.start()  # the WSDL load is start-up cost, not throughput
    ctx = MemoryContext("bench")
    try:
        wall, cpu = time.perf_counter(), time.process_time()
        report = await source.pull_once(ctx)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    finally:
        await source.close()
    return wall, cpu, report.records, report.pages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--page-size", type=int, default=500)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        wsdl = Path(tmp) / "records.wsdl"
        process, url = start_service(args.records, wsdl)
        try:
            results = [asyncio.run(one_run(wsdl, url, args.page_size)) for _ in range(args.runs)]
        finally:
            process.terminate()
            process.wait(timeout=10)

    rates = [records / wall for wall, _, records, _ in results]
    print(f"## SOAP pull: {args.records} records, pages of {args.page_size}, {args.runs} runs\n")
    print("| run | pages | records | wall s | client CPU s | records/s |")
    print("|---|---|---|---|---|---|")
    for index, (wall, cpu, records, pages) in enumerate(results, start=1):
        print(f"| {index} | {pages} | {records} | {wall:.2f} | {cpu:.2f} | {records / wall:,.0f} |")
    print(f"\nMedian: **{statistics.median(rates):,.0f} records/s**\n")
    print("\n".join(machine_facts()))


if __name__ == "__main__":
    main()
