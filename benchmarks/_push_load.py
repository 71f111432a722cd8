"""Load for the gateway's push API (POST /api/v1/inbound/{system}/{kind}), run by compare.py in its own process.

    ack    open loop: one record per request at --rate requests/s for --seconds, each request sent at
           its scheduled time whether or not earlier ones were answered; latency is counted from the
           scheduled time (so a stalled server cannot hide its queue) to the acknowledgement.
           ``--client lean`` (the default) writes each request's bytes, made before the run, on a
           keep-alive connection of its own asyncio protocol and reads the status line and body
           back: 250-265 µs of CPU per request against aiohttp's client's 450-490 (measured at
           500/s), CPU the load otherwise takes from the gateway it measures on a 2-core machine.
           ``--client aiohttp`` is the earlier client, for comparison.
    flood  closed loop: --records records in requests of --per-request, --in-flight at once.

Items are the hall platform's CASE objects (what mappings/hall_platform.in.yaml reads), made from
the demo generator's cases by the bare peer's hand-written mapping, sent with the bearer token
in $BENCH_PUSH_TOKEN when set. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH / "peers"))

from bare_post import to_hall  # noqa: E402
from bench_mapping import map_by_hand  # noqa: E402

from gateway.demo.generate import case_fields  # noqa: E402


def hall_items(n: int, seed: int) -> list[bytes]:
    """``n`` distinct CASE objects as the hall platform pushes them, serialised."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        (mapped,) = map_by_hand({"SPSHENQIN": case_fields(i, rng)})
        body = to_hall(mapped.data, "hall_platform", "", "")
        del body["meta"]
        out.append(json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode())
    return out


def request_headers() -> dict[str, str]:
    """JSON, and the hall's bearer token when compare.py gave one (BENCH_PUSH_TOKEN)."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    token = os.environ.get("BENCH_PUSH_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return headers


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


Send = Callable[[int], Awaitable[int]]  # send item i; its answer's HTTP status


async def open_loop(rate: float, seconds: float, warmup: float, send: Send, client: str,
                    failures: tuple[type[BaseException], ...]) -> dict[str, Any]:
    """Call ``send(i)`` for each request at its scheduled time whether or not earlier ones were answered,
    and the figures: latency from the scheduled time, the warm-up's requests not counted. A request that
    raises one of ``failures`` counts under the exception's name (its first message kept in ``errors``)."""
    n = int(rate * (seconds + warmup))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    errors: dict[str, str] = {}

    async def one(i: int, scheduled: float) -> None:
        try:
            status = str(await send(i))
        except failures as exc:
            status = type(exc).__name__
            errors.setdefault(status, str(exc)[:300])
        statuses[status] = statuses.get(status, 0) + 1
        if i >= rate * warmup and status in ("200", "202"):
            latencies.append(time.monotonic() - scheduled)

    start = time.monotonic() + 0.1
    tasks = []
    behind = 0.0
    for i in range(n):
        scheduled = start + i / rate
        delay = scheduled - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        tasks.append(asyncio.create_task(one(i, scheduled)))
    await asyncio.gather(*tasks)
    last_ack = time.monotonic()
    lat = sorted(latencies)
    return {"mode": "ack", "client": client, "offered_rate": rate, "seconds": seconds, "warmup": warmup,
            "requests": n, "measured": len(lat), "statuses": statuses, "errors": errors, "first_sent_at": start,
            "p50_ms": percentile(lat, 0.50) * 1000, "p90_ms": percentile(lat, 0.90) * 1000,
            "p99_ms": percentile(lat, 0.99) * 1000, "max_ms": lat[-1] * 1000 if lat else float("nan"),
            "sender_behind_ms": behind * 1000,
            "acknowledged_rate": (statuses.get("200", 0) + statuses.get("202", 0)) / (last_ack - start)}


async def ack(url: str, rate: float, seconds: float, warmup: float, items: list[bytes]) -> dict[str, Any]:
    """``open_loop`` with aiohttp's client."""
    headers = request_headers()
    connector = aiohttp.TCPConnector(limit=0)  # open loop: never queue behind a connection pool
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def send(i: int) -> int:
            async with session.post(url, data=items[i], headers=headers) as resp:
                await resp.read()
                return resp.status

        return await open_loop(rate, seconds, warmup, send, "aiohttp", (aiohttp.ClientError, TimeoutError))


class _Conn(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection of the lean client: one request at a time, the answer's
    status read from its status line and its body by Content-Length (or chunked)."""

    def __init__(self, pool: list[_Conn]) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.waiter: asyncio.Future[int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self._answer()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(ConnectionError(f"connection lost: {exc}"))

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.waiter

    def _answer(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 or self.waiter is None:
            return
        head = self.buf[:end].decode("latin-1").split("\r\n")
        status = int(head[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
        body = self.buf[end + 4:]
        if "content-length" in fields:
            need = int(fields["content-length"])
            if len(body) < need:
                return
            rest = body[need:]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            rest = _after_chunks(body)
            if rest is None:
                return
        else:
            return  # the body runs to the connection's end: answered in connection_lost
        self.buf = rest
        waiter, self.waiter = self.waiter, None
        waiter.set_result(status)
        if fields.get("connection", "").lower() == "close":
            self.closed = True
            assert self.transport is not None
            self.transport.close()
        else:
            self.pool.append(self)


def _after_chunks(body: bytes) -> bytes | None:
    """What follows a complete chunked body, or None while it is incomplete."""
    at = 0
    while True:
        eol = body.find(b"\r\n", at)
        if eol < 0:
            return None
        size = int(body[at:eol].split(b";")[0], 16)
        at = eol + 2 + size + 2
        if len(body) < at:
            return None
        if size == 0:
            return body[at:]


async def ack_lean(url: str, rate: float, seconds: float, warmup: float, items: list[bytes]) -> dict[str, Any]:
    """``open_loop`` with the lean client: each request's bytes made before the run."""
    parsed = urlsplit(url)
    host, port = parsed.hostname or "127.0.0.1", parsed.port or 80
    head = "".join(f"{k}: {v}\r\n" for k, v in request_headers().items())
    path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    requests = [(f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{head}Content-Length: {len(body)}\r\n\r\n"
                 ).encode() + body for body in items]
    pool: list[_Conn] = []
    loop = asyncio.get_running_loop()

    async def send(i: int) -> int:
        while pool and pool[-1].closed:
            pool.pop()
        if pool:
            conn = pool.pop()
        else:
            _, conn = await loop.create_connection(lambda: _Conn(pool), host, port)
        return await asyncio.wait_for(conn.send(requests[i]), 120)

    try:
        return await open_loop(rate, seconds, warmup, send, "lean", (OSError, TimeoutError, ValueError))
    finally:
        for conn in pool:
            if conn.transport is not None:
                conn.transport.close()


async def flood(url: str, per_request: int, in_flight: int, items: list[bytes]) -> dict[str, Any]:
    bodies = [b"[" + b",".join(items[i:i + per_request]) + b"]" for i in range(0, len(items), per_request)]
    statuses: dict[str, int] = {}
    errors: dict[str, str] = {}
    headers = request_headers()
    queue = list(reversed(bodies))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=in_flight),
                                     timeout=aiohttp.ClientTimeout(total=300)) as session:
        async def worker() -> None:
            while queue:
                body = queue.pop()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        status = str(resp.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status = type(exc).__name__
                    errors.setdefault(status, str(exc)[:300])
                statuses[status] = statuses.get(status, 0) + 1

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        done = time.monotonic()
    return {"mode": "flood", "records": len(items), "per_request": per_request, "in_flight": in_flight,
            "statuses": statuses, "errors": errors, "first_sent_at": start, "last_ack_at": done,
            "push_rate": len(items) / (done - start)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=("ack", "flood"))
    ap.add_argument("--url", required=True)
    ap.add_argument("--rate", type=float, default=1000.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--warmup", type=float, default=1.0, help="seconds at the same rate not counted (ack)")
    ap.add_argument("--records", type=int, default=20_000)
    ap.add_argument("--per-request", type=int, default=50)
    ap.add_argument("--in-flight", type=int, default=8)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--client", choices=("lean", "aiohttp"), default="lean", help="the HTTP client of ack")
    args = ap.parse_args()
    if args.mode == "ack":
        items = hall_items(int(args.rate * (args.seconds + args.warmup)), args.seed)
        print(json.dumps({"ready": True}), flush=True)
        run_ack = ack_lean if args.client == "lean" else ack
        result = asyncio.run(run_ack(args.url, args.rate, args.seconds, args.warmup, items))
    else:
        items = hall_items(args.records, args.seed)
        print(json.dumps({"ready": True}), flush=True)
        result = asyncio.run(flood(args.url, args.per_request, args.in_flight, items))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
