"""The gateway's HTTP API on aiohttp: inbound pushes, SOAP, queries, health, metrics and the OpenAPI document.

Routes (described in ``openapi.json``, served at ``/api/v1/openapi.json``)::

    POST /api/v1/inbound/{system}/{kind}   JSON object / array, or XML; answered after commit
                                           (the counterpart authenticates first: _push_auth)
    POST /soap/{system}                    SOAP 1.1 submitRecords;  GET /soap/{system}?wsdl
    GET  /api/v1/records | deliveries | quarantine | audit | alerts;  GET /api/v1/quarantine/{id}
    POST /api/v1/quarantine/reprocess | discard    engineers and operators of the item's system
    POST /api/v1/deliveries/replay
    GET  /api/v1/destinations;  POST /api/v1/destinations/{name}/pause | resume | settings
    GET  /api/v1/licences/{licence_no} | links | parallel[/{case_no}] | counterparts | reconciliations
    POST /api/v1/counterparts/{name}/reconcile
    GET  /login, POST /login | /logout, POST /api/v1/auth/login | logout, GET /api/v1/auth/whoami
    GET  /healthz (alive)  /readyz (ready)  /metrics  /api/v1/openapi.json
    GET  /api/v1/cases[/{case_no}] | supervision/alerts | statistics[.csv] | counterparts/health …,
         GET /console/ (the console: gateway/console)

Every request gets a correlation id (``X-Correlation-Id``, taken from the request
when it is sane, else made up), returned on the response, stored with the records it
brings, bound to every log line written while handling it, and written in the one
structured access line per request (gateway.observability, docs/operations.md).  Who is asking and what they may do:
``gateway.security.identity`` (set by ``_auth``); personal data: ``gateway.security.masking``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from importlib.resources import files
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.api import _actions, _auth, _destinations, _exchange, _quarantine, _query, _soap
from gateway.api._inbound import (
    ApiError,
    BatchResult,
    check_kind,
    ingest_items,
    json_items,
    push_systems,
    push_target,
    xml_items,
)
from gateway.api._metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from gateway.api._metrics import ApiMetrics
from gateway.api._push_auth import COUNTERPART, GUARD, PushAuth, build_guard, refusal_log
from gateway.api._web import (
    CORRELATION_HEADER,
    CORRELATION_ID,
    GATEWAY,
    INBOUND,
    METRICS,
    json_response,
    read_body,
    refuse_while_stopping,
)
from gateway.app import STORE_FAILURES
from gateway.observability import correlation, health
from gateway.observability.metrics import scrape
from gateway.security.identity import AccessDenied, identity_of

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api")
access_log = logging.getLogger("gateway.api.access")

JSON_TYPES = ("application/json",)
XML_TYPES = ("application/xml", "text/xml")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROBE: web.AppKey[health.WriteProbe] = web.AppKey("readiness_probe")
STARTED_AT: web.AppKey[float] = web.AppKey("started_at")


# --------------------------------------------------------------------------- middleware


def _route_of(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.http_exception is None else None
    return resource.canonical if resource is not None else "unmatched"


def _error_body(request: web.Request, status: int, message: str, **detail: Any) -> web.Response:
    body = {"error": {"status": status, "message": message, **detail},
            "correlation_id": request.get(CORRELATION_ID)}
    return json_response(body, status=status)


@web.middleware
async def _observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Correlation id in and out, JSON errors, one structured log line and the request metrics."""
    cid = correlation.from_header(request.headers.get(CORRELATION_HEADER))
    request[CORRELATION_ID] = cid
    # aiohttp runs each request in a task of its own: what is bound here stays with this request.
    correlation.bind(cid)
    started = time.perf_counter()
    try:
        response = await handler(request)
    except ApiError as exc:
        response = _error_body(request, exc.status, exc.message, **exc.detail)
        response.headers.update(exc.headers)
    except AccessDenied as exc:  # raised before the auth middleware could answer it
        response = _auth.denied(request, exc)
    except web.HTTPException as exc:
        if exc.status >= 400:
            response = _error_body(request, exc.status, exc.text or exc.reason)
        else:
            raise
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("correlation_id=%s: %s %s failed", cid, request.method, request.path)
        response = _error_body(request, 500, f"internal error ({type(exc).__name__}); quote correlation id {cid} "
                                             "when reporting it")
    response.headers[CORRELATION_HEADER] = cid
    elapsed = time.perf_counter() - started
    route = _route_of(request)
    metrics = request.app[METRICS]
    metrics.requests.labels(route, request.method, str(response.status)).inc()
    metrics.latency.labels(route).observe(elapsed)
    entry: dict[str, Any] = {
        "correlation_id": cid, "method": request.method, "path": request.path,
        "route": route, "status": response.status, "ms": round(elapsed * 1000, 1), "remote": request.remote,
    }
    ident = identity_of(request)
    if ident.authenticated:
        entry["user"], entry["role"], entry["via"] = ident.user, ident.role, ident.via
    counterpart = request.get(COUNTERPART)
    if counterpart is not None:
        entry["counterpart"] = {"system": counterpart.system, "method": counterpart.method,
                                "credential": counterpart.credential}
    batch: BatchResult | None = request.get(INBOUND)
    if batch is not None:
        entry.update(system=batch.system, kind=batch.kind, **batch.counts())
    access_log.info("http request", extra=entry)
    return response


# --------------------------------------------------------------------------- inbound


async def inbound(request: web.Request) -> web.Response:
    """POST /api/v1/inbound/{system}[/{kind}]: JSON or XML items, one transaction, receipts after commit.

    Without {kind}, every record an item maps to is accepted (mappings whose items carry several kinds).
    """
    gw = request.app[GATEWAY]
    metrics = request.app[METRICS]
    system, kind = request.match_info["system"], request.match_info.get("kind")
    target = push_target(gw, system)
    form = "unknown"
    batch: BatchResult | None = None
    status = 500
    try:
        auth = await PushAuth.begin(request, target)
        if kind is not None:
            check_kind(target, kind)
            await auth.kind(target, kind)
        ctype = request.content_type
        if ctype in JSON_TYPES or ctype.endswith("+json"):
            form = "json"
        elif ctype in XML_TYPES or ctype.endswith("+xml"):
            form = "xml"
        else:
            accepted = [t for f, ts in (("json", JSON_TYPES), ("xml", XML_TYPES)) if f in target.accept for t in ts]
            raise ApiError(415, f"Content-Type {ctype!r} is not accepted here; send {' or '.join(accepted)}",
                           accepted=accepted)
        if form not in target.accept:
            raise ApiError(415, f"system {system!r} does not accept {form.upper()} pushes "
                                f"(push config accept = {list(target.accept)})")
        refuse_while_stopping(gw)
        body = await read_body(request)
        await auth.body(body)
        await auth.done()
        if form == "json":
            items = await json_items(body, request.charset, target.record_key, target.mapping.input)
        else:
            items = await xml_items(body, request.charset, target.record_element, target.limits)
        await auth.items(target, items)
        try:
            batch = await ingest_items(gw, target, kind, items, f"POST {request.path}",
                                       correlation_id=request[CORRELATION_ID])
        except STORE_FAILURES as exc:
            # Bad items never get here (each is quarantined alone); this is the store itself, and ingest is
            # one transaction: nothing of the request was committed.
            log.exception("correlation_id=%s: push from %s could not be stored", request[CORRELATION_ID], system)
            raise ApiError(503, f"the store is unavailable ({type(exc).__name__}); nothing of this request was "
                                "committed: send it again") from None
        request[INBOUND] = batch
        status = batch.http_status
        return json_response({**batch.as_dict(), "correlation_id": request[CORRELATION_ID]}, status=status)
    except ApiError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        metrics.observe_push(system, form, status, batch)


# --------------------------------------------------------------------------- health, metrics, OpenAPI


async def healthz(request: web.Request) -> web.Response:
    """GET /healthz: alive — 200 whenever the process answers; it touches nothing (see /readyz)."""
    gw = request.app[GATEWAY]
    body = {**health.alive(gw, request.app[STARTED_AT]), "push_systems": push_systems(gw)}
    workers = getattr(gw, "push_workers", None)
    if workers is not None:
        body["push_workers"] = workers.status()
    return json_response(body)


async def readyz(request: web.Request) -> web.Response:
    """GET /readyz: 200 when the store takes a write and every part started; 503 with the reasons otherwise."""
    gw = request.app[GATEWAY]
    ready = await health.readiness(gw, request.app[PROBE])
    return json_response(ready.body, status=200 if ready.ready else 503)


async def metrics(request: web.Request) -> web.Response:
    """GET /metrics: Prometheus text format (gateway.observability.metrics)."""
    gw = request.app[GATEWAY]
    refusal_log(gw)  # the push API's refusal counters exist from the first scrape on
    body = await scrape(gw, request.app[METRICS].registry)
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 description shipped beside this module."""
    return json.loads(files("gateway.api").joinpath("openapi.json").read_text(encoding="utf-8"))


async def openapi(request: web.Request) -> web.Response:
    """GET /api/v1/openapi.json, with this server's address filled in."""
    doc = openapi_document()
    doc["servers"] = [{"url": f"{request.scheme}://{request.host}", "description": "this gateway"}]
    return json_response(doc)


# --------------------------------------------------------------------------- application and server


def _new_app(gw: Gateway, *, only: Any = None) -> web.Application:
    middlewares = [_auth.forwarded_middleware, _observe, *([only] if only is not None else []), _auth.auth_middleware]
    app = web.Application(client_max_size=gw.config.api.max_body_bytes, middlewares=middlewares)
    app[GATEWAY] = gw
    app[METRICS] = ApiMetrics()
    app[STARTED_AT] = time.monotonic()
    app[GUARD] = build_guard(gw)
    return app


def _add_push_routes(app: web.Application) -> None:
    app.router.add_post("/api/v1/inbound/{system}/{kind}", inbound)
    app.router.add_post("/api/v1/inbound/{system}", inbound)
    app.router.add_post("/soap/{system}", _soap.soap_post)
    app.router.add_get("/soap/{system}", _soap.soap_get)


def build_push_app(gw: Gateway, *, api_port: int, slot: int) -> web.Application:
    """A push worker's application (gateway.api.push_workers): the push endpoints with the same middlewares,
    checks and handlers as on the API port, its own /healthz, and a 404 that points elsewhere for the rest."""
    @web.middleware
    async def pushes_only(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (_auth.is_push_path(request.path) or request.path == "/healthz"):
            raise ApiError(404, f"this port serves the push endpoints only (/api/v1/inbound/…, /soap/…: [api] "
                                f"push_port); the rest of the API is on [api] port {api_port}")
        return await handler(request)

    app = _new_app(gw, only=pushes_only)
    app[_auth.AUTH] = _auth.AuthState(gw)  # trusted proxies, as on the API port
    _add_push_routes(app)

    async def worker_health(request: web.Request) -> web.Response:
        link = getattr(gw, "push_worker", None)
        connected = link is not None and not link.lost
        return json_response({"status": "alive" if connected else "unavailable", "push_worker": slot,
                              "gateway_process": "connected" if connected else "gone",
                              "push_systems": push_systems(gw)}, status=200 if connected else 503)

    app.router.add_get("/healthz", worker_health)
    return app


def build_app(gw: Gateway) -> web.Application:
    """The aiohttp application for ``gw`` (not yet listening)."""
    app = _new_app(gw)
    app[PROBE] = health.WriteProbe()
    app[_query.MASKERS] = {}
    _auth.add_routes(app, gw)
    _add_push_routes(app)
    app.router.add_get("/api/v1/records", _query.records)
    app.router.add_get("/api/v1/deliveries", _query.deliveries)
    app.router.add_get("/api/v1/quarantine", _query.quarantine)
    _quarantine.add_routes(app)
    app.router.add_get("/api/v1/audit", _query.audit)
    app.router.add_get("/api/v1/alerts", _query.alerts)
    app.router.add_post("/api/v1/deliveries/replay", _actions.replay)
    _destinations.add_routes(app)
    _exchange.add_routes(app)  # licences, links, 并联审批, counterparts, reconciliation (gateway.exchange)
    app.router.add_get("/api/v1/openapi.json", openapi)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    from gateway.console import api as console_api
    from gateway.console import pages as console_pages

    console_api.add_routes(app)  # the console's query API (gateway/console/api.py)
    console_pages.add_routes(app)  # the console itself: /console/
    return app


class ApiServer:
    """A listening API; ``url`` carries the port actually bound (config port 0 picks a free one)."""

    def __init__(self, runner: web.AppRunner, url: str) -> None:
        self.runner = runner
        self.url = url

    @property
    def app(self) -> web.Application:
        return self.runner.app

    async def stop(self) -> None:
        """Stop listening; requests in progress finish (their commits are answered) first."""
        await self.runner.cleanup()


async def listen(app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None, *, who: str,
                 keys: str, reuse_port: bool | None = None) -> web.AppRunner:
    """``app`` listening on host:port, or OSError saying who cannot listen where, and which settings say so."""
    # aiohttp's own access log is replaced by the structured line of the middleware.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=10.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context, reuse_port=reuse_port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(exc.errno, f"{who} cannot listen on {host}:{port} ({keys}): {exc.strerror or exc}") from exc
    return runner


async def start_api(gw: Gateway, *, ssl_context: ssl.SSLContext | None = None) -> ApiServer:
    """Listen on ``[api].host``/``port``, over TLS when ``ssl_context`` is given."""
    cfg = gw.config.api
    runner = await listen(build_app(gw), cfg.host, cfg.port, ssl_context, who="the API", keys="[api] host/port")
    host, port = runner.addresses[0][:2]
    shown = f"[{host}]" if ":" in host else host
    url = f"{'https' if ssl_context else 'http'}://{shown}:{port}"
    health.log_api_on(gw, url, push_systems(gw), tls=ssl_context is not None)
    return ApiServer(runner, url)
