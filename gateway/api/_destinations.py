"""Destinations over HTTP: their state, backlog and health; pause, resume and runtime settings.

``GET /api/v1/destinations`` needs ``deliveries:read`` (an operator sees the systems its
account is bound to). ``POST /api/v1/destinations/{name}/pause|resume|settings`` needs
``destinations:manage`` for that destination — engineers, and operators bound to it
(``gateway.security.identity``). Each change is written to the store with an audit entry
naming the person, and the running worker applies it at once; other gateway processes on the
same store read it within their poll interval. Changes made with a console session need its
CSRF token (``gateway.api._auth``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._quarantine import _json_object, actor
from gateway.api._web import GATEWAY, json_response
from gateway.pipeline.destinations import (
    DestinationError,
    change_settings,
    configured,
    destination_rows,
    pause,
    settings_changes,
)
from gateway.security.identity import require


def _context(request: web.Request) -> tuple[Any, Any, Any]:
    gw = request.app[GATEWAY]
    assert gw.store is not None
    return gw.config, gw.store, gw.workers


async def _row(request: web.Request, name: str) -> dict[str, Any]:
    config, store, workers = _context(request)
    (row,) = await destination_rows(config, store, names=[name], workers=workers)
    return row


def _known(request: web.Request, name: str) -> None:
    try:
        configured(request.app[GATEWAY].config, name)
    except DestinationError as exc:
        raise ApiError(exc.status, str(exc), destination=name) from None


async def list_destinations(request: web.Request) -> web.Response:
    """GET /api/v1/destinations: every destination the caller may see."""
    ident = require(request, "deliveries:read")
    config, store, workers = _context(request)
    visible = ident.visible_systems("deliveries:read")
    names = None if visible is None else sorted(visible)
    rows = await destination_rows(config, store, names=names, workers=workers)
    return json_response({"items": rows, "count": len(rows)})


async def pause_destination(request: web.Request) -> web.Response:
    """POST /api/v1/destinations/{name}/pause {"reason": "…"} (reason optional)."""
    name = request.match_info["name"]
    ident = require(request, "destinations:manage", system=name)
    _known(request, name)
    body = await _json_object(request)
    reason = body.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise ApiError(400, "reason must be a string", field="reason")
    config, store, workers = _context(request)
    try:
        changed = await pause(config, store, name, actor(ident), reason, workers=workers)
    except DestinationError as exc:
        raise ApiError(exc.status, str(exc), field=exc.field) from None
    return json_response({"changed": changed, "destination": await _row(request, name)})


async def resume_destination(request: web.Request) -> web.Response:
    """POST /api/v1/destinations/{name}/resume"""
    name = request.match_info["name"]
    ident = require(request, "destinations:manage", system=name)
    _known(request, name)
    config, store, workers = _context(request)
    changed = await pause(config, store, name, actor(ident), workers=workers, resume=True)
    return json_response({"changed": changed, "destination": await _row(request, name)})


async def destination_settings(request: web.Request) -> web.Response:
    """POST /api/v1/destinations/{name}/settings {"concurrency": 4, "rate": 2.5} — null: back to gateway.toml;
    rate 0: no limit."""
    name = request.match_info["name"]
    ident = require(request, "destinations:manage", system=name)
    _known(request, name)
    body = await _json_object(request)
    unknown = sorted(set(body) - {"concurrency", "rate"})
    if unknown:
        raise ApiError(400, f"unknown settings: {', '.join(unknown)} (known: concurrency, rate)", field=unknown[0])
    config, store, workers = _context(request)
    try:
        changes = settings_changes(body.get("concurrency", ...), body.get("rate", ...))
        changed = await change_settings(config, store, name, changes, actor(ident), workers=workers)
    except DestinationError as exc:
        raise ApiError(exc.status, str(exc), field=exc.field) from None
    return json_response({"changed": changed, "destination": await _row(request, name)})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/destinations", list_destinations)
    app.router.add_post("/api/v1/destinations/{name}/pause", pause_destination)
    app.router.add_post("/api/v1/destinations/{name}/resume", resume_destination)
    app.router.add_post("/api/v1/destinations/{name}/settings", destination_settings)
