"""Reader benchmark: CPU time per item of each gateway.formats reader, and what strict JSON costs over json.loads.

The same 25-field case records (the demo generator's SPSHENQIN section) are written as
JSON lines, a JSON array, CSV and provincial XML, and read back through
``gateway.formats.read_items``.  Beside them, in the same run, the standard library
reads the same JSON lines with ``json.loads``, so the ratio shows what the strict
reading rules (duplicate keys, limits, 64-bit integers, surrogates: docs/strict-input.md)
cost on ordinary records.  CPU time (``time.process_time``), best of the rounds: the
machine is shared, and wall-clock figures on it swing by half.

    .venv/bin/python benchmarks/bench_readers.py
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from gateway.demo.generate import case_fields
from gateway.formats import read_items


def cpu_per_item(fn: Callable[[], int], rounds: int) -> float:
    """Best CPU microseconds per item over ``rounds`` runs of ``fn`` (which returns the items it read)."""
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        count = fn()
        best = min(best, (time.process_time() - start) / count * 1e6)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(20261102)
    records = [case_fields(i, rng) for i in range(args.records)]
    tmp = Path(tempfile.mkdtemp(prefix="bench-readers-"))
    lines = tmp / "cases.jsonl"
    lines.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    array = tmp / "cases.json"
    array.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    table = tmp / "cases.csv"
    keys = sorted({k for r in records for k in r})
    with open(table, "w", encoding="gb18030", newline="") as f:
        writer = csv.writer(f, lineterminator="\r\n")
        writer.writerow(keys)
        writer.writerows([r.get(k, "") for k in keys] for r in records)
    xml = tmp / "cases.xml"
    with open(xml, "w", encoding="utf-8") as f:
        f.write('<?xml version="1.0" encoding="UTF-8"?>\n<APPROVEDATAS>\n')
        for r in records:
            f.write("<APPROVEDATAINFO><SPSHENQIN>" + "".join(f"<{k}>{v}</{k}>" for k, v in r.items())
                    + "</SPSHENQIN></APPROVEDATAINFO>\n")
        f.write("</APPROVEDATAS>\n")

    def stdlib_lines() -> int:
        with open(lines, encoding="utf-8") as f:
            return sum(1 for line in f if json.loads(line))

    def reader(path: Path, options: dict) -> Callable[[], int]:
        return lambda: sum(1 for item in read_items(path, options) if item.error is None)

    results = {
        "json.loads per line (stdlib, no checks)": cpu_per_item(stdlib_lines, args.rounds),
        "JSON lines, strict": cpu_per_item(reader(lines, {"format": "jsonl"}), args.rounds),
        "JSON array, strict (streamed)": cpu_per_item(reader(array, {"format": "json"}), args.rounds),
        "CSV, GB18030": cpu_per_item(reader(table, {"format": "csv", "encoding": "gb18030"}), args.rounds),
        "XML, record APPROVEDATAINFO": cpu_per_item(
            reader(xml, {"format": "xml", "record": "APPROVEDATAINFO"}), args.rounds),
    }
    print(f"records: {args.records:,} 25-field case records, best of {args.rounds} rounds, CPU time per item")
    for name, micros in results.items():
        print(f"  {name:42s} {micros:6.1f} µs")
    base = results["json.loads per line (stdlib, no checks)"]
    print(f"strict JSON lines over json.loads: +{results['JSON lines, strict'] - base:.1f} µs per item")
    print(f"machine: {cpu_model()}, {platform.python_implementation()} {platform.python_version()}, "
          f"{platform.platform()}")


if __name__ == "__main__":
    main()
