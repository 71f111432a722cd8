"""The bare-Python peer of the end-to-end benchmark: read a dropped file, map each record, POST it; nothing durable.

    .venv/bin/python benchmarks/peers/bare_post.py --drop DIR --url URL [--batch 50] [--in-flight 8]

What a competent engineer writes in an afternoon for the same job the gateway does
between its drop folder and the hall platform, without a store: wait for the first
``*.xml`` in the drop folder (the sender renames it there when complete), read it with
lxml ``iterparse`` (hostile-input settings, element clearing), map each
``APPROVEDATAINFO`` with the hand-written provincial case mapping of
``bench_mapping.py`` (validation included: identifiers, dates, code tables, lengths), render
the hall platform's JSON by hand as ``mappings/hall_platform.out.yaml`` does, and POST one
record or a JSON array of ``--batch`` records per request with ``--in-flight`` requests
at once, each with the gateway's idempotency keys. A record that fails validation is
counted and skipped; a failed POST is counted, not retried. Prints one JSON line when
ready and one with its counts when done.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
from lxml import etree

BENCH = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(BENCH))

from bench_mapping import map_by_hand  # noqa: E402 - the hand-written mapping, verified equal to the compiled one

from gateway.mapping._runtime import CHINA  # noqa: E402
from gateway.pipeline.ingest import idempotency_key  # noqa: E402

# mappings/codetables/hall_platform.yaml read in reverse: the first hall code listed for a national one
APPLICANT_TYPE = {"1": "PERSON", "2": "ENTERPRISE", "3": "OTHER"}
ID_TYPE = {"111": "10", "414": "11", "516": "12", "511": "13", "553": "14", "821": "20", "811": "21", "990": "99"}
CHANNEL = {"1": "WINDOW", "2": "PC", "3": "APP", "4": "MAIL", "9": "OTHER"}


def shipped_mapping_id() -> str:
    """``name@version`` of the shipped provincial mapping: what the gateway puts in meta.mapping."""
    from gateway.mapping import load_mapping

    mapping = load_mapping(BENCH.parent / "mappings" / "provincial_approvedatainfo.in.yaml")
    return f"{mapping.name}@{mapping.version}"


def china_time(iso: str) -> str:
    """``2026-10-12T11:32:00+08:00`` → ``2026-10-12 11:32:00`` in China time."""
    if iso.endswith("+08:00"):
        return f"{iso[:10]} {iso[11:19]}"
    return datetime.fromisoformat(iso).astimezone(CHINA).strftime("%Y-%m-%d %H:%M:%S")


def to_hall(data: dict[str, Any], system: str, received_at: str, mapping_id: str) -> dict[str, Any]:
    """The hall platform's ``CASE`` body for one mapped case, as hall_platform.out.yaml renders it."""
    body: dict[str, Any] = {"dataType": "CASE"}
    for out, field in (("caseNo", "case_no"), ("itemCode", "item_code"), ("implementCode", "implementation_code"),
                       ("itemName", "item_name"), ("projectName", "project_name")):
        if field in data:
            body[out] = data[field]
    if "applicant_type" in data:
        body["applicantType"] = APPLICANT_TYPE[data["applicant_type"]]
    body["applicantName"] = data["applicant_name"]
    if "applicant_id_type" in data:
        body["applicantIdType"] = ID_TYPE[data["applicant_id_type"]]
    for out, field in (("applicantIdNo", "applicant_id_no"), ("contactName", "contact_name"),
                       ("contactPhone", "contact_phone")):
        if field in data:
            body[out] = data[field]
    body["submitTime"] = china_time(data["submitted_at"])
    if "channel" in data:
        body["channel"] = CHANNEL[data["channel"]]
    for out, field in (("regionCode", "region_code"), ("deptName", "department_name"),
                       ("deptCreditCode", "department_credit_code"), ("caseType", "case_type"), ("remark", "remark")):
        if field in data:
            body[out] = data[field]
    body["version"] = data.get("version", 1)
    body["meta"] = {"sourceSystem": system, "receivedAt": received_at, "mapping": mapping_id}
    return body


def read_records(path: Path) -> Iterator[dict[str, Any]]:
    """One ``{section: {field: text}}`` per APPROVEDATAINFO element, in constant memory."""
    parser = etree.iterparse(str(path), events=("end",), tag="APPROVEDATAINFO", resolve_entities=False,
                             no_network=True, load_dtd=False, huge_tree=False)
    for _, elem in parser:
        yield {sec.tag: {c.tag: c.text for c in sec} for sec in elem}
        elem.clear()
        while elem.getprevious() is not None:
            del elem.getparent()[0]


def wait_for_file(drop: Path, timeout: float) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = sorted(p for p in drop.glob("*.xml") if p.is_file())
        if found:
            return found[0]
        time.sleep(0.05)
    raise SystemExit(f"bare_post: no *.xml appeared in {drop} within {timeout:.0f}s")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    system, destination = args.system, args.destination
    connector = aiohttp.TCPConnector(limit=args.in_flight)
    timeout = aiohttp.ClientTimeout(total=60, connect=5, sock_read=30)
    queue: asyncio.Queue[tuple[bytes, str] | None] = asyncio.Queue(maxsize=args.in_flight * 2)
    counts = {"records": 0, "invalid": 0, "requests": 0, "failed_requests": 0, "failed_records": 0}
    print(json.dumps({"ready": True}), flush=True)
    path = wait_for_file(args.drop, args.wait)
    started = time.monotonic()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def post() -> None:
            while (job := await queue.get()) is not None:
                body, keys = job
                n = keys.count(",") + 1
                try:
                    async with session.post(args.url, data=body, headers={
                            "Content-Type": "application/json; charset=utf-8", "Idempotency-Key": keys}) as resp:
                        await resp.read()
                        ok = 200 <= resp.status < 300
                except (aiohttp.ClientError, TimeoutError):
                    ok = False
                counts["requests"] += 1
                if not ok:
                    counts["failed_requests"] += 1
                    counts["failed_records"] += n

        workers = [asyncio.create_task(post()) for _ in range(args.in_flight)]
        received_at = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        bodies: list[dict[str, Any]] = []
        keys: list[str] = []
        for n, item in enumerate(read_records(path), 1):
            (mapped,) = map_by_hand(item)
            if mapped.errors:
                counts["invalid"] += 1
                continue
            data = mapped.data
            bodies.append(to_hall(data, system, received_at, args.mapping_id))
            keys.append(idempotency_key(system, "case", data["case_no"], data.get("version", 1), destination))
            counts["records"] += 1
            if len(bodies) >= args.batch:
                await queue.put(_request(bodies, keys, args.batch))
                bodies, keys = [], []
            if n % 2000 == 0:  # the receipt time moves per batch of reading, as the gateway's does
                received_at = datetime.now(CHINA).strftime("%Y-%m-%d %H:%M:%S")
        if bodies:
            await queue.put(_request(bodies, keys, args.batch))
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
    return {**counts, "file": path.name, "seconds": time.monotonic() - started}


def _request(bodies: list[dict[str, Any]], keys: list[str], batch: int) -> tuple[bytes, str]:
    dumps = json.dumps
    if batch == 1:
        return dumps(bodies[0], ensure_ascii=False, separators=(",", ":")).encode(), keys[0]
    header = ", ".join(quote(k, safe="") if ("%" in k or "," in k) else k for k in keys)
    return dumps(bodies, ensure_ascii=False, separators=(",", ":")).encode(), header


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drop", type=Path, required=True, help="folder to wait in for the *.xml file")
    ap.add_argument("--url", required=True, help="where to POST (the counting sink, on loopback)")
    ap.add_argument("--batch", type=int, default=1, help="records per POST (1 = one JSON object)")
    ap.add_argument("--in-flight", type=int, default=8, help="requests at once")
    ap.add_argument("--system", default="county_drop")
    ap.add_argument("--destination", default="counting_sink")
    ap.add_argument("--wait", type=float, default=600.0, help="seconds to wait for the file")
    ap.add_argument("--mapping-id", default=None, help="name@version for meta.mapping (default: read from "
                    "mappings/provincial_approvedatainfo.in.yaml, as the gateway does)")
    args = ap.parse_args()
    if args.mapping_id is None:
        args.mapping_id = shipped_mapping_id()
    if args.batch < 1 or args.in_flight < 1:
        ap.error("--batch and --in-flight must be at least 1")
    print(json.dumps(asyncio.run(run(args))), flush=True)


if __name__ == "__main__":
    main()
