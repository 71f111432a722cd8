"""Simulated counterpart REST services for the demo and the tests: the hall platform and a paged feed.

Both are real aiohttp servers on loopback (port 0 = any free port) with switches for the failures
integration has to survive: 503 storms, slow answers, records the counterpart refuses until it
"fixes its side", failures part-way through a feed. This is core-side code: it imports nothing
from ``adapters/``; it checks HMAC signatures from the written contract (adapters/rest/README.md).
"""

from __future__ import annotations

import asyncio
import base64
import bisect
import contextlib
import functools
import hashlib
import hmac
import json
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from urllib.parse import unquote

from aiohttp import web
from multidict import CIMultiDict

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_dumps = functools.partial(json.dumps, ensure_ascii=False)


def _json(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


class _LocalService:
    """A loopback aiohttp server with the auth checks and failure switches both simulations share."""

    name = "counterpart"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        bearer_token: str | None = None,
        hmac_key: bytes | None = None,
        hmac_max_skew: float = 300.0,
    ) -> None:
        self.host = host
        self.port = port
        self.ssl_context = ssl_context
        self.bearer_token = bearer_token
        self.hmac_key = hmac_key
        self.hmac_max_skew = hmac_max_skew
        self.app = web.Application(middlewares=[self._guard], client_max_size=64 * 1024 * 1024)
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._failures: deque[tuple[int, float | None]] = deque()
        self.delay = 0.0
        self.requests_total = 0
        self.auth_failures: list[str] = []  # why each refused request was refused
        self.client_subjects: list[str] = []  # mTLS: the subject of each client certificate seen
        self.last_headers: CIMultiDict[str] = CIMultiDict()
        self.last_path = ""  # raw path and query of the last request
        self.requests: deque[str] = deque(maxlen=100_000)  # raw path and query of each request, in order
        self.request_times: deque[float] = deque(maxlen=100_000)  # time.monotonic() of each request
        self.correlation_ids: deque[str] = deque(maxlen=100_000)  # the X-Correlation-Id of each request
        self._nonces: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._closing.clear()
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> _LocalService:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:38211`` (https when started with an SSL context)."""
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    # ------------------------------------------------------------------ failure switches

    def fail_next(self, count: int = 1, *, status: int = 503, retry_after: float | None = None) -> None:
        """Answer the next ``count`` requests with ``status`` (and a Retry-After header if given)."""
        self._failures.extend([(status, retry_after)] * count)

    def recover(self) -> None:
        """Stop failing: the requests still queued to fail (``fail_next``) are answered normally."""
        self._failures.clear()

    def set_delay(self, seconds: float) -> None:
        """Hold every answer for ``seconds`` (0 to stop); the request is still processed afterwards."""
        self.delay = seconds

    # ------------------------------------------------------------------ checks on every request

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests_total += 1
        self.last_headers = request.headers.copy()
        self.last_path = request.raw_path
        self.requests.append(request.raw_path)
        self.request_times.append(time.monotonic())
        self.correlation_ids.append(request.headers.get("X-Correlation-Id", ""))
        peercert = request.transport.get_extra_info("peercert") if request.transport else None
        if peercert:
            subject = ",".join(f"{k}={v}" for rdn in peercert.get("subject", ()) for k, v in rdn)
            self.client_subjects.append(subject)
        refusal = await self._check_auth(request)
        if refusal is not None:
            self.auth_failures.append(refusal)
            return _json({"status": "error", "error": refusal}, status=401)
        if self._failures:
            status, retry_after = self._failures.popleft()
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else None
            return _json({"status": "error", "error": f"{self.name} is unavailable (simulated)"}, status, headers)
        if self.delay > 0:
            # The body is read first, then the answer is held: a client that gave up waiting may
            # still find its record stored, as with a real slow server.
            await request.read()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), timeout=self.delay)
        return await handler(request)

    async def _check_auth(self, request: web.Request) -> str | None:
        if self.bearer_token is not None:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.bearer_token}".encode()):
                return "missing or wrong bearer token"
        if self.hmac_key is not None:
            return await self._check_signature(request)
        return None

    async def _check_signature(self, request: web.Request) -> str | None:
        timestamp = request.headers.get("X-Timestamp")
        nonce = request.headers.get("X-Nonce")
        signature = request.headers.get("X-Signature")
        if not (timestamp and nonce and signature):
            return "X-Timestamp, X-Nonce and X-Signature headers are required"
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > self.hmac_max_skew:
            return f"X-Timestamp {timestamp!r} is not within {self.hmac_max_skew:g}s of our clock"
        if nonce in self._nonces:
            return f"X-Nonce {nonce!r} was already used (replay)"
        body = await request.read()
        canonical = "\n".join(
            (request.method.upper(), request.raw_path, timestamp, nonce, hashlib.sha256(body).hexdigest())
        ).encode("utf-8")
        expected = hmac.new(self.hmac_key or b"", canonical, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            return "X-Signature does not match the canonical request"
        self._nonces.add(nonce)
        return None


# --------------------------------------------------------------------------- the hall platform


class HallPlatform(_LocalService):
    """The hall's platform (政务服务平台) receiving pushed records: ``POST /api/records``.

    Accepts one JSON object or an array (answered with one result object per item, in order),
    dedupes by the ``Idempotency-Key`` header (for an array: one key per item, comma-separated,
    ``%`` and ``,`` inside a key percent-encoded), and counts raw arrivals apart from unique keys.
    """

    name = "hall platform"

    def __init__(
        self,
        *,
        path: str = "/api/records",
        idempotency_header: str = "Idempotency-Key",
        require_idempotency_key: bool = True,
        repeat_status: int = 200,
        **service: Any,
    ) -> None:
        super().__init__(**service)
        self.path = path
        self.idempotency_header = idempotency_header
        self.require_idempotency_key = require_idempotency_key
        self.repeat_status = repeat_status  # 409 to answer a repeated key with "already received"
        self.records: dict[str, Any] = {}  # idempotency key -> body of its first arrival
        self.ids: dict[str, str] = {}
        self.received_raw = 0
        self.repeats = 0
        self.rejected = 0
        self._reject: tuple[Callable[[Any], bool], int, str] | None = None
        # 对账 (reconciliation): when each record arrived and the digest of what came; what the hall sent.
        self.arrivals: dict[str, tuple[float, str]] = {}
        self.lost: list[str] = []  # keys acknowledged and silently dropped (lose_next)
        self._lose = 0
        self.sent: list[dict[str, Any]] = []  # {kind, key, version, at, item, pushed}
        self._lose_outgoing = 0
        self._gateway: tuple[str, dict[str, str], ssl.SSLContext | None] | None = None
        self.resend_requests: list[list[dict[str, Any]]] = []
        self.app.router.add_post(path, self._receive)
        self.app.router.add_get(path, self._inspect)
        self.app.router.add_post("/api/reconcile/manifest", self._manifest)
        self.app.router.add_post("/api/reconcile/resend", self._resend)

    @property
    def records_url(self) -> str:
        return self.url + self.path

    @property
    def unique(self) -> int:
        return len(self.records)

    def reject_when(
        self, predicate: Callable[[Any], bool], *, status: int = 400, reason: str = "record refused"
    ) -> None:
        """Refuse records whose body matches ``predicate`` (a "bad record" this side cannot take)."""
        self._reject = (predicate, status, reason)

    def accept_all(self) -> None:
        """The counterpart fixed its side: records refused so far are accepted when sent again."""
        self._reject = None

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            data = json.loads(raw)
        except ValueError as exc:
            return _json({"status": "error", "error": f"body is not JSON: {exc}"}, status=400)
        header = request.headers.get(self.idempotency_header, "")
        if isinstance(data, list):
            keys = [unquote(part.strip()) for part in header.split(",")] if header else []
            if self.require_idempotency_key and len(keys) != len(data):
                return _json(
                    {"status": "error", "error": f"{self.idempotency_header} lists {len(keys)} keys "
                     f"for {len(data)} records"},
                    status=400,
                )
            results = [self._take(keys[i] if i < len(keys) else "", item)[1] for i, item in enumerate(data)]
            return _json(results)
        if not isinstance(data, dict):
            return _json({"status": "error", "error": "expected a JSON object or an array of objects"}, 400)
        if self.require_idempotency_key and not header:
            return _json({"status": "error", "error": f"{self.idempotency_header} header is required"}, 400)
        status, result = self._take(header, data)
        return _json(result, status=status)

    def _take(self, key: str, body: Any) -> tuple[int, dict[str, Any]]:
        """Record one arrival: (HTTP status for a single request, result object)."""
        self.received_raw += 1
        if self._reject is not None and self._reject[0](body):
            self.rejected += 1
            return self._reject[1], {"status": "error", "error": self._reject[2]}
        if not key:
            key = f"anonymous-{self.received_raw}"
        if key in self.records:
            self.repeats += 1
            return self.repeat_status, {"status": "ok", "id": self.ids[key], "duplicate": True}
        if self._lose > 0:  # acknowledged, then lost on the hall's side: only reconciliation finds it
            self._lose -= 1
            self.lost.append(key)
            return 200, {"status": "ok", "id": f"HALL-LOST-{len(self.lost):06d}", "duplicate": False}
        self.records[key] = body
        self.ids[key] = f"HALL-{len(self.records):06d}"
        self.arrivals[key] = (time.time(), _digest(body))
        return 200, {"status": "ok", "id": self.ids[key], "duplicate": False}

    # ------------------------------------------------------------------ losing records (for 对账)

    def lose_next(self, count: int = 1) -> None:
        """Acknowledge the next ``count`` new records and silently drop them."""
        self._lose += count

    def lose_outgoing(self, count: int = 1) -> None:
        """The next ``count`` items the hall pushes are logged as sent but never reach the gateway."""
        self._lose_outgoing += count

    # ------------------------------------------------------------------ the hall pushing to the gateway

    def connect_gateway(self, inbound_url: str, *, headers: Mapping[str, str] | None = None,
                        ssl_context: ssl.SSLContext | None = None) -> None:
        """Where the hall pushes its own records: the gateway's ``…/api/v1/inbound/<system>``."""
        self._gateway = (inbound_url.rstrip("/"), dict(headers or {}), ssl_context)

    async def push(self, *items: Mapping[str, Any]) -> dict[str, Any]:
        """Push items (CASE, ACCEPT, FINISH, LICENSE …) to the gateway; log what was sent by the receipts."""
        import aiohttp

        if self._gateway is None:
            raise RuntimeError("connect_gateway() first")
        url, headers, ssl_context = self._gateway
        now = time.time()
        travelling, lost = [], []
        for item in items:
            if self._lose_outgoing > 0:
                self._lose_outgoing -= 1
                lost.append(item)
            else:
                travelling.append(item)
        for item in lost:  # the hall believes it sent these; the gateway never sees them
            for kind, key in _hall_keys(item):
                self.sent.append({"kind": kind, "key": key, "version": int(item.get("version") or 1), "at": now,
                                  "item": dict(item), "pushed": False})
        if not travelling:
            return {"items": []}
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ssl_context or False)) as http:
            async with http.post(url, json=list(travelling), headers=headers) as r:
                answer = await r.json()
                if r.status not in (200, 202, 400):
                    raise RuntimeError(f"the gateway answered {r.status}: {answer}")
        for item, result in zip(travelling, answer.get("items", []), strict=False):
            for record in result.get("records", []):
                self.sent.append({"kind": record["kind"], "key": record["record_key"],
                                  "version": int(item.get("version") or 1), "at": now, "item": dict(item),
                                  "pushed": True})
        return answer

    # ------------------------------------------------------------------ reconciliation (the gateway's contract)

    async def _period(self, request: web.Request) -> tuple[float, float, dict[str, Any]]:
        body = json.loads(await request.read())
        start = datetime.fromisoformat(body["from"]).timestamp()
        end = datetime.fromisoformat(body["to"]).timestamp()
        return start, end, body

    async def _manifest(self, request: web.Request) -> web.Response:
        try:
            start, end, _ = await self._period(request)
        except (KeyError, ValueError) as exc:
            return _json({"status": "error", "error": f"from and to (ISO 8601) are required: {exc}"}, 400)
        received = [{"key": k, "digest": d, "at": _iso(t)} for k, (t, d) in self.arrivals.items() if start <= t < end]
        sent = [{"kind": e["kind"], "key": e["key"], "version": e["version"], "at": _iso(e["at"])} for e in self.sent
                if start <= e["at"] < end]
        return _json({"received": received, "sent": sent, "can_resend": self._gateway is not None})

    async def _resend(self, request: web.Request) -> web.Response:
        try:
            _, _, body = await self._period(request)
        except (KeyError, ValueError) as exc:
            return _json({"status": "error", "error": str(exc)}, 400)
        wanted = {(e.get("kind"), e.get("key"), int(e.get("version") or 1)) for e in body.get("entries", [])}
        self.resend_requests.append(list(body.get("entries", [])))
        items = []
        for entry in self.sent:
            if (entry["kind"], entry["key"], entry["version"]) in wanted and entry["item"] not in items:
                items.append(entry["item"])
        if items:
            # Answer first, push after: the gateway is waiting for this answer.
            asyncio.get_running_loop().create_task(self.push(*items))
        return _json({"requested": len(items)})

    async def _inspect(self, request: web.Request) -> web.Response:
        return _json(
            {
                "received_raw": self.received_raw,
                "unique": self.unique,
                "repeats": self.repeats,
                "rejected": self.rejected,
                "records": [{"key": k, "id": self.ids[k], "body": v} for k, v in self.records.items()],
            }
        )


def _digest(body: Any) -> str:
    from gateway.adapters import manifest_digest

    return manifest_digest(body)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone(timedelta(hours=8))).isoformat(timespec="milliseconds")


_HALL_KINDS = {"CASE": ("case", "caseNo"), "ACCEPT": ("acceptance", "caseNo"), "FINISH": ("completion", "caseNo"),
               "LICENSE": ("approval_result", "decisionNo")}


def _hall_keys(item: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The gateway's (kind, key) of one of the hall's own items, for items that never got a receipt."""
    found = _HALL_KINDS.get(str(item.get("dataType")))
    return [(found[0], str(item.get(found[1])))] if found else []


# --------------------------------------------------------------------------- a paged feed


Pagination = Literal["page", "offset", "next_link", "link_header", "cursor"]


class PagedFeed(_LocalService):
    """A counterpart's feed of records, ordered by ``since_field``, served page by page at ``GET /feed``.

    Query: ``since`` (>= by default, > with ``since_inclusive=False``); then by ``pagination``:
    ``page`` + ``page_size``; ``offset`` + ``limit``; ``next_link`` (a relative ``next`` in the body);
    ``link_header`` (``Link: <…>; rel="next"``); ``cursor`` (opaque ``cursor`` in, ``next_cursor`` out).
    ``since`` is compared with the stored values as they are (numbers, or text), so give every
    record's ``since_field`` one format, as a real counterpart's database column would.
    """

    name = "paged feed"

    def __init__(
        self,
        records: Iterable[Mapping[str, Any]] = (),
        *,
        pagination: Pagination = "page",
        since_field: str = "updated_at",
        since_inclusive: bool = True,
        path: str = "/feed",
        default_page_size: int = 100,
        max_page_size: int = 1000,
        **service: Any,
    ) -> None:
        super().__init__(**service)
        self.pagination = pagination
        self.since_field = since_field
        self.since_inclusive = since_inclusive
        self.path = path
        self.default_page_size = default_page_size
        self.max_page_size = max_page_size
        self.records: list[dict[str, Any]] = []
        self._keys: list[Any] = []
        self._page_failures: dict[int, tuple[int, int]] = {}  # page -> (times left, status)
        self.items_served = 0
        self.append(records)
        self.app.router.add_get(path, self._serve)

    @property
    def feed_url(self) -> str:
        return self.url + self.path

    def append(self, records: Iterable[Mapping[str, Any]]) -> None:
        """Add records at the end; their ``since_field`` must not go backwards (the feed is ordered)."""
        for record in records:
            key = record[self.since_field]
            if self._keys and key < self._keys[-1]:
                raise ValueError(
                    f"paged feed: record {self.since_field}={key!r} is earlier than the last one "
                    f"({self._keys[-1]!r}); the feed must stay ordered"
                )
            self.records.append(dict(record))
            self._keys.append(key)

    def fail_page(self, page: int, *, times: int = 1, status: int = 503) -> None:
        """Answer requests for page ``page`` (1-based) with ``status`` the next ``times`` times."""
        self._page_failures[page] = (times, status)

    async def _serve(self, request: web.Request) -> web.Response:
        query = request.query
        try:
            size = int(query.get("limit") or query.get("page_size") or self.default_page_size)
            page = int(query.get("page", "1"))
            offset = int(query.get("offset", "0"))
        except ValueError as exc:
            return _json({"error": f"bad paging parameter: {exc}"}, status=400)
        size = max(1, min(size, self.max_page_size))
        try:
            start = self._since_index(query.get("since"))
        except ValueError:
            return _json({"error": f"since {query.get('since')!r} is not a number like the feed's"}, status=400)
        if self.pagination == "cursor":
            if "cursor" in query:
                decoded = self._decode_cursor(query["cursor"])
                if decoded is None:
                    return _json({"error": f"cursor {query['cursor']!r} is not one this feed issued"}, status=400)
                start = decoded
            low = start
            page = low // size + 1
        elif self.pagination == "offset":
            low = start + offset
            page = offset // size + 1
        else:
            low = start + (page - 1) * size
        times, status = self._page_failures.get(page, (0, 0))
        if times > 0:
            self._page_failures[page] = (times - 1, status)
            return _json({"error": f"page {page} failed (simulated)"}, status=status)
        items = self.records[low : low + size]
        self.items_served += len(items)
        more = low + len(items) < len(self.records)
        body: dict[str, Any] = {"items": items}
        headers: dict[str, str] = {}
        if self.pagination in ("page", "offset"):
            body.update(page=page, page_size=size, total=len(self.records) - start)
        elif self.pagination in ("next_link", "link_header"):
            link = request.rel_url.update_query(page=page + 1, page_size=size) if more else None
            if self.pagination == "next_link":
                body["next"] = str(link) if link is not None else None
            elif link is not None:
                headers["Link"] = f'<{self.url}{link}>; rel="next"'
        else:
            body.update(next_cursor=self._encode_cursor(low + len(items)), has_more=more)
        return _json(body, headers=headers)

    def _since_index(self, since: str | None) -> int:
        if since is None:
            return 0
        value: Any = since
        if self._keys and isinstance(self._keys[0], int | float):
            value = float(since)
        find = bisect.bisect_left if self.since_inclusive else bisect.bisect_right
        return find(self._keys, value)

    @staticmethod
    def _encode_cursor(position: int) -> str:
        return base64.urlsafe_b64encode(f"pos:{position}".encode()).decode().rstrip("=")

    @staticmethod
    def _decode_cursor(token: str) -> int | None:
        try:
            text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        except ValueError:
            return None
        if not text.startswith("pos:") or not text[4:].isdigit():
            return None
        return int(text[4:])
