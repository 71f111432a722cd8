"""A counting sink for the end-to-end benchmarks: a loopback aiohttp server that takes POSTed records and counts them.

    .venv/bin/python benchmarks/counting_sink.py [--port 0] [--latency 20ms] [--keep-bodies]

Accepts one JSON object or a JSON array of objects per POST on any path. Each record's
idempotency key comes from the ``Idempotency-Key`` header; for an array the header lists
one key per item, in order, separated by commas, with ``%`` and ``,`` inside a key
percent-encoded (the REST adapter's contract, adapters/rest/README.md). Records are
counted raw and deduplicated by key, so a contestant that sends a record twice shows as
``repeats``, not as throughput. Answers ``{"status": "ok"}`` for an object and one such
result per item for an array, after the optional added latency.

On start it prints one JSON line ``{"url": ..., "pid": ...}``; ``GET /stats`` reports the
counts and ``time.monotonic()`` of the first arrival and of the last new record (the
monotonic clock is system-wide on Linux, so a harness in another process can compare it
with its own); ``GET /bodies`` returns every first body by key when started with
``--keep-bodies``. SIGINT or SIGTERM prints the final stats and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import signal
import sys
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

_OK = b'{"status":"ok"}'


class CountingSink:
    """Counts records, raw and unique by idempotency key; holds each answer for ``latency`` seconds."""

    def __init__(self, *, latency: float = 0.0, keep_bodies: bool = False,
                 idempotency_header: str = "Idempotency-Key") -> None:
        self.latency = latency
        self.keep_bodies = keep_bodies
        self.idempotency_header = idempotency_header
        self.keys: set[str] = set()
        self.bodies: dict[str, Any] = {}
        self.requests = 0
        self.records_raw = 0
        self.repeats = 0
        self.rejected_requests = 0  # not JSON, no key, keys not matching the items: answered 400
        self.last_rejection = ""
        self.first_at: float | None = None
        self.last_new_at: float | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=256 * 1024 * 1024)
        app.router.add_get("/stats", self._stats)
        app.router.add_get("/bodies", self._bodies)
        app.router.add_post("/{tail:.*}", self._receive)
        return app

    def stats(self) -> dict[str, Any]:
        unique = len(self.keys)
        span = (self.last_new_at - self.first_at) if self.first_at is not None and self.last_new_at else 0.0
        return {
            "requests": self.requests, "records_raw": self.records_raw, "unique": unique, "repeats": self.repeats,
            "rejected_requests": self.rejected_requests, "last_rejection": self.last_rejection,
            "first_at": self.first_at, "last_new_at": self.last_new_at,
            "rate": unique / span if span > 0 else None, "latency": self.latency,
        }

    def _refuse(self, why: str) -> web.Response:
        self.rejected_requests += 1
        self.last_rejection = why
        return web.json_response({"status": "error", "error": why}, status=400)

    async def _receive(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.requests += 1
        if self.first_at is None:
            self.first_at = now
        raw = await request.read()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return self._refuse(f"body is not JSON: {exc}")
        header = request.headers.get(self.idempotency_header, "")
        if not header:
            return self._refuse(f"{self.idempotency_header} header is required")
        if isinstance(data, list):
            keys = [unquote(part.strip()) for part in header.split(",")]
            if len(keys) != len(data) or not all(isinstance(item, dict) for item in data):
                return self._refuse(f"{self.idempotency_header} lists {len(keys)} keys for {len(data)} items "
                                    "(or an item is not an object)")
            for key, item in zip(keys, data, strict=True):
                self._take(key, item, now)
            answer = b"[" + b",".join([_OK] * len(data)) + b"]"
        elif isinstance(data, dict):
            self._take(header, data, now)
            answer = _OK
        else:
            return self._refuse("expected a JSON object or an array of objects")
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        return web.Response(body=answer, content_type="application/json")

    def _take(self, key: str, body: Any, now: float) -> None:
        self.records_raw += 1
        if key in self.keys:
            self.repeats += 1
            return
        self.keys.add(key)
        self.last_new_at = now
        if self.keep_bodies:
            self.bodies[key] = body

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _bodies(self, request: web.Request) -> web.Response:
        if not self.keep_bodies:
            return web.json_response({"error": "start the sink with --keep-bodies"}, status=404)
        return web.json_response(self.bodies, dumps=lambda v: json.dumps(v, ensure_ascii=False))


def parse_seconds(text: str) -> float:
    """``20ms``, ``0.02s``, ``0.02`` → seconds."""
    text = text.strip().lower()
    try:
        if text.endswith("ms"):
            value = float(text[:-2]) / 1000
        else:
            value = float(text.removesuffix("s"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 20ms or 0.5s") from None
    if value < 0:
        raise argparse.ArgumentTypeError("latency cannot be negative")
    return value


def loopback_host(text: str) -> str:
    try:
        if not ipaddress.ip_address(text).is_loopback:
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: the counting sink binds only to a loopback address") from None
    return text


async def serve(host: str, port: int, sink: CountingSink) -> None:
    runner = web.AppRunner(sink.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(json.dumps({"url": f"http://{host}:{bound}", "pid": os.getpid()}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print(json.dumps(sink.stats()), flush=True)
    await runner.cleanup()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", type=loopback_host, default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    ap.add_argument("--latency", type=parse_seconds, default=0.0, help="hold every answer this long (e.g. 20ms)")
    ap.add_argument("--keep-bodies", action="store_true", help="keep each first body for GET /bodies")
    ap.add_argument("--idempotency-header", default="Idempotency-Key")
    args = ap.parse_args(argv)
    sink = CountingSink(latency=args.latency, keep_bodies=args.keep_bodies,
                        idempotency_header=args.idempotency_header)
    asyncio.run(serve(args.host, args.port, sink))


if __name__ == "__main__":
    sys.exit(main())
