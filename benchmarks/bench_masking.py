"""Masking benchmark: what masking personal data costs a list page, alone and through the running API.

Records are the demo generator's provincial cases (25 fields, valid identifiers, natural
persons and enterprises), pushed through the API and mapped like production data. Two
measures:

- ``mask_tree`` over stored record rows as the query API lists them, per row, beside a
  JSON round trip of the same rows (what answering costs anyway);
- ``GET /api/v1/records?limit=N`` end to end on loopback, an engineer's masked answer
  beside an auditor's unmasked one (which writes its audit entry instead of masking).

    .venv/bin/python benchmarks/bench_masking.py            # print the figures
    .venv/bin/python benchmarks/bench_masking.py --write    # and record them in RESULTS-masking.md

Medians over several rounds: the machine is shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
from _machine import cpu_model  # noqa: E402 - benchmarks/ is on sys.path when run as a script

from gateway.app import Gateway
from gateway.config import load_config
from gateway.demo.generate import approvedatainfo_xml, case_fields
from gateway.security import credentials
from gateway.security.masking import masker_for

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS-masking.md"
MAPPINGS = HERE.parent / "mappings"

CONFIG = """\
[gateway]
store = "sqlite:///gateway.db"
adapters = ["push"]

[api]
port = 0

[supervision]
enabled = false

[audit]
seal = false

[sources.provincial]
adapter = "push"
mapping = "mappings/provincial_approvedatainfo.in.yaml"
max_items = 1000
auth = { anonymous = true }       # loopback only; the counterpart's credential is not what is measured
"""


async def _token(gw: Gateway, name: str, role: str) -> dict[str, str]:
    await gw.store.add_user(name, role, None, None, None, "bench")  # type: ignore[union-attr]
    token_id, token = credentials.new_token()
    parsed = credentials.parse_token(token)
    assert parsed is not None
    await gw.store.create_token(token_id, credentials.token_secret_hash(token_id, parsed.secret), name,  # type: ignore[union-attr]
                                "bench", time.time() + 3600, "bench")
    return {"Authorization": f"Bearer {token}"}


async def _fill(gw: Gateway, http: aiohttp.ClientSession, n: int) -> None:
    rng = random.Random(11)
    for start in range(0, n, 1000):
        items = b"".join(approvedatainfo_xml(case_fields(i, rng)) for i in range(start, min(n, start + 1000)))
        async with http.post(gw.api.url + "/api/v1/inbound/provincial/case", data=b"<APPROVEDATAINFOS>" + items +
                             b"</APPROVEDATAINFOS>", headers={"Content-Type": "application/xml"}) as r:
            assert r.status == 202, await r.text()


def _median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


async def run(records: int, rounds: int) -> dict[str, Any]:
    root = Path(tempfile.mkdtemp(prefix="bench-masking-"))
    try:
        shutil.copytree(MAPPINGS, root / "mappings")
        (root / "gateway.toml").write_text(CONFIG, encoding="utf-8")
        gw = Gateway(load_config(root / "gateway.toml"))
        await gw.start()
        try:
            async with aiohttp.ClientSession() as http:
                await _fill(gw, http, records)
                engineer = await _token(gw, "bench.engineer", "engineer")
                auditor = await _token(gw, "bench.auditor", "auditor")
                rows = await gw.store.list_records(limit=1000)  # type: ignore[union-attr]
                masker = masker_for(None)
                # CPU time of this process: what the work costs, whatever else the machine is doing
                mask_s, json_s = [], []
                for _ in range(rounds):
                    t = time.process_time()
                    masked = [masker(r) for r in rows]
                    mask_s.append(time.process_time() - t)
                    t = time.process_time()
                    json.loads(json.dumps(rows, ensure_ascii=False))
                    json_s.append(time.process_time() - t)
                persons = sum(1 for r in rows if r["record"]["data"].get("applicant_type") == "1")
                assert all(r["record"]["data"]["applicant_id_no"].count("*") for r in masked)
                api: dict[str, dict[str, float]] = {}
                for limit in (100, 1000):
                    timings: dict[str, list[float]] = {"masked": [], "unmasked": []}
                    for _ in range(rounds):
                        for label, headers, extra in (("masked", engineer, ""),
                                                      ("unmasked", auditor, "&unmask=true&reason=benchmark")):
                            t = time.perf_counter()
                            async with http.get(f"{gw.api.url}/api/v1/records?limit={limit}{extra}",
                                                headers=headers) as r:
                                page = await r.json()
                            timings[label].append(time.perf_counter() - t)
                            assert page["count"] == limit and page["masked"] is (label == "masked")
                    api[str(limit)] = {k: _median_ms(v) for k, v in timings.items()}
        finally:
            await gw.stop()
        with sqlite3.connect(root / "gateway.db") as conn:
            stored = conn.execute("SELECT count(*) FROM records").fetchone()[0]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return {
        "records": stored, "rounds": rounds, "rows": len(rows), "natural_persons": persons,
        "mask_us_per_row": _median_ms(mask_s) * 1000 / len(rows),
        "json_roundtrip_us_per_row": _median_ms(json_s) * 1000 / len(rows),
        "api_ms": api,
    }


def machine() -> str:
    return (f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}")


def render(result: dict[str, Any]) -> str:
    api = result["api_ms"]
    lines = [
        f"- machine: {machine()}",
        f"- data: {result['records']:,} provincial case records stored; a page of {result['rows']} rows, "
        f"{result['natural_persons']} of them natural persons; median of {result['rounds']} rounds",
        f"- load average during the run: {result['load'][0]:.1f} → {result['load'][1]:.1f} (2 cores shared with "
        "other work: absolute figures vary, the masked / unmasked comparison within one run holds)",
        f"- `mask_tree` per stored record row: **{result['mask_us_per_row']:.1f} µs CPU** "
        f"(a JSON round trip of the same row: {result['json_roundtrip_us_per_row']:.1f} µs CPU)",
    ]
    for limit, t in api.items():
        lines.append(f"- `GET /api/v1/records?limit={limit}` on loopback, wall clock: engineer (masked) "
                     f"**{t['masked']:.1f} ms**, auditor unmasked (with its audit entry) {t['unmasked']:.1f} ms")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--write", action="store_true", help=f"record the figures in {RESULTS.name}")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    result = asyncio.run(run(args.records, args.rounds))
    result["load"] = (load_before, os.getloadavg()[0])
    text = render(result)
    print(text)
    if args.write:
        today = time.strftime("%Y-%m-%d")
        RESULTS.write_text(
            "# Masking personal data: cost on list pages\n\n"
            f"Measured {today} with `.venv/bin/python benchmarks/bench_masking.py --records {args.records} "
            f"--rounds {args.rounds}`.\n\n" + text + "\n\n"
            "Masking walks each row once to find the names of natural persons and once to mask: fields by the\n"
            "schema's rules (ID, phone, address, names), every other string scanned for ID numbers (checked\n"
            "by GB 11643 check character and birth date) and mobile numbers, structural keys skipped.\n",
            encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
