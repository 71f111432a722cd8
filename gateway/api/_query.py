"""Read-only query endpoints: records, deliveries, quarantine, audit entries, supervision alerts.

Personal identifiers are masked unless the caller's role entitles it (see
``_identity``); an unmasked read is itself written to the audit trail.  Lists page
forward with ``after_id`` (``after_seq`` for the audit trail) and say where the next
page starts.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api._identity import Identity, identity_of, mask_tree, personal_payload_keys
from gateway.api._metrics import DELIVERY_STATES
from gateway.api._web import CORRELATION_ID, GATEWAY, choice_param, int_param, json_response
from gateway.schema import KINDS

MAX_LIMIT = 1000


def _counterpart_keys(request: web.Request, systems: set[str]) -> frozenset[str]:
    """Counterpart payload keys that the systems' mappings read into personal fields."""
    comp = request.app[GATEWAY].components
    keys: set[str] = set()
    for system in systems:
        mapping = comp.inbound.get(system) if comp is not None else None
        if mapping is not None:
            keys |= personal_payload_keys(mapping)
    return frozenset(keys)


async def _shown(request: web.Request, rows: list[dict[str, Any]], what: str) -> tuple[list[dict[str, Any]], bool]:
    """Rows as this caller may see them; an entitled read of personal data is audited."""
    ident: Identity = identity_of(request)
    if not ident.sees_personal_data:
        extra = _counterpart_keys(request, {str(r["system"]) for r in rows if r.get("system")})
        return [mask_tree(r, extra) for r in rows], True
    if rows:
        store = request.app[GATEWAY].store
        assert store is not None
        cases = sorted({str(r["case_no"]) for r in rows if r.get("case_no")})
        await store.audit_event("user_action", system=None, case=cases[0] if len(cases) == 1 else None, detail={
            "action": "read_personal_data", "what": what, "user": ident.user, "role": ident.role, "via": ident.via,
            "query": dict(request.query), "rows": len(rows), "cases": cases[:50],
            "correlation_id": request.get(CORRELATION_ID),
        })
    return rows, False


def _opened(request: web.Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record rows with personal fields that are encrypted at rest opened (masking comes after)."""
    comp = request.app[GATEWAY].components
    cipher = comp.cipher if comp is not None else None
    if cipher is None:
        return rows
    return [{**r, "record": cipher.open_for_reader(r["record"])} for r in rows]


def _page(items: list[dict[str, Any]], masked: bool, cursor: str, key: str, limit: int) -> dict[str, Any]:
    last = items[-1][key] if items else None
    return {"items": items, "count": len(items), "masked": masked,
            "next": {cursor: last} if last is not None and len(items) == limit else None}


async def records(request: web.Request) -> web.Response:
    """GET /api/v1/records?case_no=&kind=&limit=&after_id="""
    store = request.app[GATEWAY].store
    assert store is not None
    kind = choice_param(request, "kind", tuple(KINDS))
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = _opened(request, await store.list_records(case_no=request.query.get("case_no") or None, kind=kind,
                                                     limit=limit, after_id=int_param(request, "after_id", 0, 0, 2**62)))
    shown, masked = await _shown(request, rows, "records")
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def alerts(request: web.Request) -> web.Response:
    """GET /api/v1/alerts?case_no=&limit=&after_id= — records of kind supervision_alert (电子监察预警)."""
    store = request.app[GATEWAY].store
    assert store is not None
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = _opened(request, await store.list_records(case_no=request.query.get("case_no") or None,
                                                     kind="supervision_alert", limit=limit,
                                                     after_id=int_param(request, "after_id", 0, 0, 2**62)))
    shown, masked = await _shown(request, rows, "alerts")
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries?state=&destination=&case_no=&limit=&after_id="""
    store = request.app[GATEWAY].store
    assert store is not None
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = await store.list_deliveries(
        state=choice_param(request, "state", DELIVERY_STATES), destination=request.query.get("destination") or None,
        case_no=request.query.get("case_no") or None, limit=limit,
        after_id=int_param(request, "after_id", 0, 0, 2**62))
    # Delivery rows carry keys and errors, never record bodies; errors may quote values, so mask anyway.
    shown, masked = await _shown(request, rows, "deliveries")
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def quarantine(request: web.Request) -> web.Response:
    """GET /api/v1/quarantine?system=&state=&limit=&after_id= — every state unless ``state`` is given."""
    store = request.app[GATEWAY].store
    assert store is not None
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = await store.quarantine_entries(system=request.query.get("system") or None, limit=limit,
                                          state=choice_param(request, "state", ("open", "resolved", "discarded")),
                                          after_id=int_param(request, "after_id", 0, 0, 2**62))
    shown, masked = await _shown(request, rows, "quarantine")
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def audit(request: web.Request) -> web.Response:
    """GET /api/v1/audit?case_no=&after_seq=&limit= — decoded audit entries with their chain hashes."""
    store = request.app[GATEWAY].store
    assert store is not None
    limit = int_param(request, "limit", 200, 1, MAX_LIMIT)
    rows = await store.audit_entries(after_seq=int_param(request, "after_seq", 0, 0, 2**62), limit=limit,
                                     case_no=request.query.get("case_no") or None)
    # The entry is shown exactly as chained (unless masked), so a reader can recompute its hash.
    entries = []
    for row in rows:
        entry = row.decoded()
        entries.append({"seq": row.seq, "hash": row.hash, "case_no": entry.get("case"), "entry": entry})
    shown, masked = await _shown(request, entries, "audit")
    return json_response(_page(shown, masked, "after_seq", "seq", limit))
