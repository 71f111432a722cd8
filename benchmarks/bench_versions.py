"""The dedupe part of ingest: fresh records, a batch sent again (duplicates), and the same keys and versions with
another payload (conflicts), through the Ingestor with the hall platform's mapping, 500 a batch.

    .venv/bin/python benchmarks/bench_versions.py --records 20000
    PYTHONPATH=/path/to/other/tree .venv/bin/python benchmarks/bench_versions.py   # the same on another tree
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import tempfile
import time
from pathlib import Path


async def main(n: int) -> dict[str, int]:
    import gateway
    from gateway.adapters import RawRecord
    from gateway.demo.generate import credit_code
    from gateway.mapping import load_mapping
    from gateway.pipeline.ingest import Ingestor
    from gateway.pipeline.router import Router
    from gateway.store.sqlite import SqliteStore

    root = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    store = SqliteStore(root / "g.db")
    await store.open()
    mapping = load_mapping(Path(gateway.__file__).parents[1] / "mappings" / "hall_platform.in.yaml")
    ingestor = Ingestor(store, Router([]), {"hall": mapping})
    rng = random.Random(1)
    items = [{"dataType": "CASE", "caseNo": f"SB{i:08d}", "itemCode": "XK00011", "applicantType": "ENTERPRISE",
              "applicantName": "烟台鲁东食品有限公司", "applicantIdType": "20", "applicantIdNo": credit_code(rng),
              "submitTime": "2026-09-28 09:00:00", "regionCode": "370602"} for i in range(n)]

    async def run(batch: list[dict[str, str]]) -> int:
        started = time.perf_counter()
        for i in range(0, n, 500):
            raws = [RawRecord("hall", it, f"item {i + j}", json.dumps(it, ensure_ascii=False).encode())
                    for j, it in enumerate(batch[i:i + 500])]
            await ingestor.ingest("hall", raws)
        return round(n / (time.perf_counter() - started))

    out = {"fresh": await run(items), "duplicates": await run(items),
           "same_version_other_payload": await run([{**it, "remark": "changed"} for it in items])}
    await store.close()
    shutil.rmtree(root, ignore_errors=True)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=20_000)
    print(json.dumps(asyncio.run(main(ap.parse_args().records))))
