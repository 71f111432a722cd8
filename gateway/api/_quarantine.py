"""The quarantine workbench over HTTP, for the console: one entry, reprocess, discard.

``GET /api/v1/quarantine`` (the list) stays in ``_query``. Reading an entry needs
``quarantine:read``, changing entries ``quarantine:manage`` (engineers, and operators for
the systems their accounts are bound to: ``gateway.security.identity``); every change is
audited with the person's name. Entries are shown masked; an auditor may ask for one
unmasked, with a stated reason, as on every query endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._query import _masker, _shown, unmask_reason
from gateway.api._web import GATEWAY, json_response, read_body
from gateway.security.identity import AccessDenied, Identity, require

MAX_IDS = 1000


async def _json_object(request: web.Request) -> dict[str, Any]:
    body = await read_body(request)
    try:
        value = json.loads(body or b"{}")
    except ValueError as exc:
        raise ApiError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the body must be a JSON object")
    return value


def _ids(value: Any, *, required: bool) -> list[int] | None:
    if value is None:
        if required:
            raise ApiError(400, "ids is required: a list of quarantine entry ids", parameter="ids")
        return None
    if not isinstance(value, list) or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0
                                              for i in value):
        raise ApiError(400, "ids must be a list of positive whole numbers", parameter="ids")
    if len(value) > MAX_IDS:
        raise ApiError(413, f"{len(value)} ids; at most {MAX_IDS} per request", parameter="ids")
    return value


def actor(ident: Identity) -> str:
    """How the audit trail names the person who changed entries."""
    return f"user:{ident.label()}"


async def _check_scope(store: Any, ident: Identity, ids: list[int]) -> None:
    """An operator may change only entries of its own systems: refuse the request whole otherwise."""
    systems = ident.visible_systems("quarantine:manage")
    if systems is None:
        return
    entries = await store.quarantine_entries(ids=ids, limit=len(ids))
    foreign = sorted(e["id"] for e in entries if e["system"] not in systems)
    if foreign:
        raise AccessDenied(403, f"{ident.user} (operator of {', '.join(sorted(systems)) or 'no systems'}) may not "
                                f"change quarantine entries {', '.join(map(str, foreign[:50]))} of other systems; "
                                "nothing was changed", "quarantine:manage")


async def entry(request: web.Request) -> web.Response:
    """GET /api/v1/quarantine/{id}: one entry, masked; its raw bytes only when an auditor unmasks it."""
    ident = require(request, "quarantine:read")
    reason = unmask_reason(request, ident)
    store = request.app[GATEWAY].store
    assert store is not None
    entry_id = int(request.match_info["id"])
    found = await store.quarantine_entry(entry_id)
    if found is None or not ident.can("quarantine:read", found["system"]):
        raise ApiError(404, f"no quarantine entry {entry_id}")  # another system's entry: as if there were none
    raw = found.pop("raw")
    found["raw_bytes"] = len(raw) if raw else 0
    (shown,), masked = await _shown(request, ident, [found], "quarantine entry", reason, by_system=True)
    if not masked and raw:
        shown["raw"] = raw.decode("utf-8", "backslashreplace")
    return json_response({**shown, "masked": masked})


async def reprocess(request: web.Request) -> web.Response:
    """POST /api/v1/quarantine/reprocess {"ids": [..]} | {"system": ".."} | {"all": true}, "dry_run": bool."""
    from gateway.pipeline.reprocess import reprocess as run

    gw = request.app[GATEWAY]
    body = await _json_object(request)
    ids = _ids(body.get("ids"), required=False)
    system = body.get("system")
    if system is not None and not isinstance(system, str):
        raise ApiError(400, "system must be a system name", parameter="system")
    ident = require(request, "quarantine:manage", system)
    if ids:
        await _check_scope(gw.store, ident, ids)
    elif system is None and ident.visible_systems("quarantine:manage") is not None:
        raise AccessDenied(403, f"{ident.user} may reprocess only entries of its own systems: name them with "
                                "ids or system", "quarantine:manage")
    if not (ids or system or body.get("all") is True):
        raise ApiError(400, "name the entries: ids, system, or all: true")
    limit = body.get("limit")
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ApiError(400, "limit must be a positive whole number", parameter="limit")
    assert gw.store is not None and gw.ingestor is not None
    report = await run(gw.store, gw.ingestor, ids=ids, system=system, limit=limit,
                       dry_run=body.get("dry_run") is True, actor=actor(ident))
    return json_response(_masker(request, None)(report.as_dict()))


async def discard(request: web.Request) -> web.Response:
    """POST /api/v1/quarantine/discard {"ids": [..], "reason": "why"}."""
    ident = require(request, "quarantine:manage")
    store = request.app[GATEWAY].store
    assert store is not None
    body = await _json_object(request)
    ids = _ids(body.get("ids"), required=True)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise ApiError(400, "reason is required: say why the entries are discarded", parameter="reason")
    assert ids is not None
    await _check_scope(store, ident, ids)
    results = await store.discard_quarantined(ids, reason.strip()[:2000], actor(ident))
    return json_response({"results": results,
                          "discarded": sum(1 for r in results if r["outcome"] == "discarded")})


def add_routes(app: web.Application) -> None:
    app.router.add_get(r"/api/v1/quarantine/{id:\d+}", entry)
    app.router.add_post("/api/v1/quarantine/reprocess", reprocess)
    app.router.add_post("/api/v1/quarantine/discard", discard)
