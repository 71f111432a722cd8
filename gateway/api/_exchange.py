"""The two-way exchange over HTTP: licences and their state, links, 并联审批, counterpart health, reconciliation.

Every endpoint checks a permission of ``gateway.security.identity``: reading needs ``records:read``
(licences, links, 并联审批) or ``deliveries:read`` (counterparts, reconciliations), and an operator
sees only what concerns the systems its account is bound to; starting a reconciliation needs
``deliveries:replay`` for the counterpart's systems, because it may send deliveries again.
Free text (opinions, notes) is masked like everything else people read.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._query import MAX_LIMIT, _shown, unmask_reason
from gateway.api._web import GATEWAY, choice_param, int_param, json_response
from gateway.security.identity import AccessDenied, Identity, require

CHINA = timezone(timedelta(hours=8), "Asia/Shanghai")
_TRUE = frozenset({"1", "true", "yes"})


def _store(request: web.Request) -> Any:
    store = request.app[GATEWAY].store
    assert store is not None
    return store


def _visible(ident: Identity, permission: str, systems: set[str | None]) -> bool:
    allowed = ident.visible_systems(permission)
    return allowed is None or bool({s for s in systems if s} & allowed)


async def licence(request: web.Request) -> web.Response:
    """GET /api/v1/licences/{licence_no}: the licence's state (valid, suspended, revoked), its case, the
    supervision decisions behind the state and every record linked to it."""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    number = request.match_info["licence_no"]
    detail = await _store(request).licence_detail(number)
    if detail is None:
        raise ApiError(404, f"no licence {number!r} is known: no approval result, completion or supervision "
                            "result has named it")
    systems = {link["system"] for link in detail["links"]} | {(detail["licence"] or {}).get("approved_by")}
    if not _visible(ident, "records:read", systems):
        raise AccessDenied(403, f"{ident.user} may not read licence {number}: none of its records come from the "
                                "systems the account is bound to", "records:read")
    (shown,), masked = await _shown(request, ident, [detail], "licence", reason)
    return json_response({**shown, "masked": masked})


async def links(request: web.Request) -> web.Response:
    """GET /api/v1/links?case_no=&licence_no=&credit_code=&unresolved=&after_id=&limit=: each record's place in the chain."""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = await _store(request).exchange_links(
        case_no=request.query.get("case_no") or None, licence_no=request.query.get("licence_no") or None,
        credit_code=request.query.get("credit_code") or None,
        unresolved=request.query.get("unresolved", "").lower() in _TRUE,
        after_id=int_param(request, "after_id", 0, 0, 2**62), limit=limit)
    allowed = ident.visible_systems("records:read")
    last = rows[-1]["record_id"] if rows else None
    if allowed is not None:
        rows = [r for r in rows if r["system"] in allowed]
    shown, masked = await _shown(request, ident, rows, "links", reason)
    return json_response({"items": shown, "count": len(shown), "masked": masked,
                          "next": {"after_id": last} if last is not None and len(rows) == limit else None})


def _parallel_systems(row: dict[str, Any]) -> set[str | None]:
    return {row.get("lead")} | {d["system"] for d in row["departments"]} | {d["sink"] for d in row["departments"]}


async def parallel_list(request: web.Request) -> web.Response:
    """GET /api/v1/parallel?state=open|completed&after=&limit=: cases of 并联审批, who answered, who is late."""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = await _store(request).parallel_page(state=choice_param(request, "state", ("open", "completed")),
                                               after=request.query.get("after") or "", limit=limit)
    last = rows[-1]["case_no"] if rows else None
    rows = [_with_lateness(r) for r in rows if _visible(ident, "records:read", _parallel_systems(r))]
    shown, masked = await _shown(request, ident, rows, "parallel", reason)
    return json_response({"items": shown, "count": len(shown), "masked": masked,
                          "next": {"after": last} if last is not None and len(rows) == limit else None})


async def parallel_case(request: web.Request) -> web.Response:
    """GET /api/v1/parallel/{case_no}"""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    case_no = request.match_info["case_no"]
    found = (await _store(request).exchange_parallel_cases([case_no])).get(case_no)
    if found is None or not _visible(ident, "records:read", _parallel_systems(found)):
        raise ApiError(404, f"case {case_no!r} is not under 并联审批 (or not visible to you)")
    (shown,), masked = await _shown(request, ident, [_with_lateness(found)], "parallel", reason)
    return json_response({**shown, "masked": masked})


def _with_lateness(row: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(CHINA)
    for d in row["departments"]:
        due = datetime.fromisoformat(d["due_at"])
        d["late"] = (datetime.fromisoformat(d["answered_at"]) > due) if d.get("answered_at") else now > due
    return row


async def counterparts(request: web.Request) -> web.Response:
    """GET /api/v1/counterparts: per counterpart, last contact each way, watchdogs, backlog, last reconciliation."""
    from gateway.exchange.service import counterpart_health

    ident = require(request, "deliveries:read")
    gw = request.app[GATEWAY]
    allowed = ident.visible_systems("deliveries:read")
    items = await counterpart_health(gw.store, gw.config, systems=allowed)
    return json_response({"items": items, "count": len(items)})


async def reconciliations(request: web.Request) -> web.Response:
    """GET /api/v1/reconciliations?counterpart=&limit=&before_id=: results, newest first."""
    from gateway.exchange.config import counterparts as all_counterparts

    ident = require(request, "deliveries:read")
    gw = request.app[GATEWAY]
    name = request.query.get("counterpart") or None
    limit = int_param(request, "limit", 50, 1, MAX_LIMIT)
    before = request.query.get("before_id")
    rows = await _store(request).reconciliations(counterpart=name, limit=limit,
                                                 before_id=int_param(request, "before_id", 0, 0, 2**62) if before
                                                 else None)
    cps = all_counterparts(gw.config)
    allowed = ident.visible_systems("deliveries:read")
    if allowed is not None:
        rows = [r for r in rows if r["counterpart"] in cps and set(cps[r["counterpart"]].systems) & allowed]
    return json_response({"items": rows, "count": len(rows),
                          "next": {"before_id": rows[-1]["id"]} if rows and len(rows) == limit else None})


async def reconcile(request: web.Request) -> web.Response:
    """POST /api/v1/counterparts/{name}/reconcile {"date": "2026-11-29"} or {"from": …, "to": …}, "dry_run"."""
    from gateway.exchange.reconcile import ReconcileError, day_period

    gw = request.app[GATEWAY]
    name = request.match_info["name"]
    service = gw.exchange
    if service is None:
        raise ApiError(503, "the exchange is not running in this gateway ([exchange] enabled = false)")
    cp = service.counterparts.get(name)
    if cp is None:
        raise ApiError(404, f"no counterpart {name!r} (counterparts: {', '.join(service.counterparts)})")
    ident = require(request, "deliveries:replay")
    if not all(ident.can("deliveries:replay", s) for s in cp.systems):
        raise AccessDenied(403, f"{ident.user} may not reconcile with {name}: it may send deliveries to "
                                f"{', '.join(cp.sinks)} again", "deliveries:replay")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    dry_run = body.get("dry_run", False)
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dry_run must be true or false", field="dry_run")
    try:
        if "date" in body:
            start, end = day_period(date.fromisoformat(str(body["date"])))
        elif "from" in body and "to" in body:
            start, end = (_moment(body["from"]), _moment(body["to"]))
        else:
            start, end = day_period(datetime.now(CHINA).date() - timedelta(days=1))
        result = await service.reconcile(name, start, end, triggered_by=f"api:{ident.user}", dry_run=dry_run)
    except (ValueError, ReconcileError) as exc:
        raise ApiError(400, f"cannot reconcile as asked: {exc}") from None
    return json_response(result)


def _moment(value: Any) -> datetime:
    moment = datetime.fromisoformat(str(value))
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=CHINA)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/licences/{licence_no}", licence)
    app.router.add_get("/api/v1/links", links)
    app.router.add_get("/api/v1/parallel", parallel_list)
    app.router.add_get("/api/v1/parallel/{case_no}", parallel_case)
    app.router.add_get("/api/v1/counterparts", counterparts)
    app.router.add_post("/api/v1/counterparts/{name}/reconcile", reconcile)
    app.router.add_get("/api/v1/reconciliations", reconciliations)
