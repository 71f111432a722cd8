"""The store's single writer on file-ingest batches: CPU per record, with audit entries made ahead or whole.

    .venv/bin/python benchmarks/bench_writer.py --records 20000 --rounds 6

The writer thread is the serial stage of file ingest: helpers prepare records side by side,
one thread commits them in file order. This isolates that stage. It prepares the records of
a generated provincial file once (compiled mapping, routing, bodies), then commits them in
batches of 1,000 into a fresh SQLite store per round, alternating two ways:

- ``made ahead``: each record's ``received`` entry made where it was prepared
  (``AcceptItem.audit_made``, what the helpers send): the writer adds seq, time and hash;
- ``made whole``: the same items without it: the writer builds each entry's fields and
  their canonical JSON itself (what it did before, and still does for other entries).

Both store the same bytes (tests/test_audit.py holds them to it). Reported: this process's
CPU per record over the commits (the writer and the event loop that feeds it), per round,
and the median; plus what making an entry ahead costs where the record is prepared.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _machine import cpu_model  # noqa: E402

from gateway.audit.chain import made_fields, received_detail  # noqa: E402
from gateway.demo.generate import generate_items, write_xml_file  # noqa: E402
from gateway.formats import read_items  # noqa: E402
from gateway.mapping import load_mapping  # noqa: E402
from gateway.pipeline.prepare import Preparer  # noqa: E402
from gateway.pipeline.router import Router, Rule  # noqa: E402
from gateway.records import RawRecord  # noqa: E402
from gateway.store import AcceptItem  # noqa: E402
from gateway.store.sqlite import SqliteStore  # noqa: E402


def prepared(records: int, tmp: Path) -> list[tuple]:
    path = tmp / "county.xml"
    write_xml_file(path, generate_items(records, seed=3))
    raws = [RawRecord("county_drop", i.payload, f"{path.name} {i.ref}", i.raw, correlation_id="c" * 32)
            for i in read_items(path, {"format": "xml", "record": "APPROVEDATAINFO"})]
    mapping = load_mapping(ROOT / "mappings" / "provincial_approvedatainfo.in.yaml")
    router = Router([Rule(name="to-hall", to=("hall_platform",), sources=frozenset({"county_drop"}))])
    accepted, quarantined = Preparer(router, {"county_drop": mapping}).prepare("county_drop", raws)
    if quarantined or len(accepted) != records:
        raise SystemExit(f"expected {records} accepted records, got {len(accepted)} and {len(quarantined)} quarantined")
    return accepted


def cost_of_making_ahead(accepted: list[tuple]) -> float:
    start = time.process_time()
    for a in accepted:
        made_fields(system=a[0], kind=a[1], record=a[2], case=a[4], detail=received_detail(
            ref=a[9], version=a[3], receipt=a[10], payload_hash=a[7], business_time=a[5], mapping=a[13],
            routed_to=a[11], correlation_id=a[16]))
    return (time.process_time() - start) / len(accepted) * 1e6


async def one_round(accepted: list[tuple], ahead: bool, batch: int, tmp: Path) -> float:
    where = Path(tempfile.mkdtemp(dir=tmp))
    store = SqliteStore(where / "g.db")
    await store.open()
    try:
        items = [AcceptItem(*a) for a in accepted]
        if not ahead:
            for it in items:
                it.audit_made = None
        cpu = 0.0
        for i in range(0, len(items), batch):
            start = time.process_time()
            await store.commit_ingest(items[i:i + batch], [])
            cpu += time.process_time() - start
        return cpu / len(items) * 1e6
    finally:
        await store.close()
        shutil.rmtree(where, ignore_errors=True)


async def run(records: int, rounds: int, batch: int) -> None:
    import os
    import platform

    print(f"machine: {os.cpu_count()} cores ({cpu_model()}), Python {platform.python_version()}, "
          f"{platform.system()} {platform.release()}, load at start {os.getloadavg()[0]:.2f}")
    tmp = Path(tempfile.mkdtemp(prefix="bench-writer-"))
    try:
        accepted = prepared(records, tmp)
        print(f"{records:,} prepared records, committed {batch:,} a transaction, {rounds} rounds each way, alternating")
        print(f"making a received entry ahead, where the record is prepared: {cost_of_making_ahead(accepted):.2f} µs")
        results: dict[bool, list[float]] = {True: [], False: []}
        for r in range(rounds):
            for ahead in ((True, False) if r % 2 else (False, True)):
                results[ahead].append(await one_round(accepted, ahead, batch, tmp))
        for ahead, label in ((True, "made ahead"), (False, "made whole")):
            values = results[ahead]
            print(f"{label}: CPU µs/record {' '.join(f'{v:.1f}' for v in values)}; median "
                  f"{statistics.median(values):.1f}")
        diffs = [w - a for a, w in zip(results[True], results[False], strict=True)]
        print(f"made whole minus made ahead, per round: {' '.join(f'{d:+.1f}' for d in diffs)} µs; median "
              f"{statistics.median(diffs):+.1f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    asyncio.run(run(args.records, args.rounds, args.batch))


if __name__ == "__main__":
    main()
