"""Read-only query endpoints: records, deliveries, quarantine, audit entries, supervision alerts.

Each endpoint needs a permission of the caller's role (``gateway.security.identity``); a
bureau operator sees only the systems its account is bound to. Personal data is masked
for everyone (``gateway.security.masking``). An auditor may ask for it unmasked with
``unmask=true`` and a ``reason=`` (at least 5 characters): the answer is given only after
an ``unmasked`` audit entry naming the user, the reason and what was read is committed;
without a reason the request is refused. Lists page forward with ``after_id``
(``after_seq`` for the audit trail) and say where the next page starts.
"""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._metrics import DELIVERY_STATES
from gateway.api._web import CORRELATION_ID, GATEWAY, choice_param, int_param, json_response
from gateway.schema import KINDS
from gateway.security.identity import AccessDenied, Identity, require
from gateway.security.masking import mask_text, masker_for, payload_rules

MAX_LIMIT = 1000
_MASK_INLINE = 200  # rows masked on the event loop; longer pages go to a thread
MIN_REASON = 5
MAX_REASON = 500
_TRUE = frozenset({"1", "true", "yes"})
Masker = Callable[[Any], Any]
MASKERS: web.AppKey[dict[str | None, Masker]] = web.AppKey("maskers", dict)
"""Masking functions by system, built on first use (build_app puts the empty dict in place)."""


def unmask_reason(request: web.Request, ident: Identity) -> str | None:
    """The stated reason when the caller asks for personal data unmasked (None when it does not ask).

    Refused with 403 for a role that may not unmask, and 400 without a usable reason.
    """
    if request.query.get("unmask", "").strip().lower() not in _TRUE:
        return None
    if not ident.can("personal:unmask"):
        raise AccessDenied(403, f"{ident.user}, role {ident.role}, may not see personal data unmasked; "
                                "only an auditor may, with a stated reason", "personal:unmask")
    reason = " ".join(request.query.get("reason", "").split())
    if any(unicodedata.category(c)[0] == "C" for c in reason):
        raise ApiError(400, "the reason contains control characters", parameter="reason")
    if len(reason) < MIN_REASON:
        raise ApiError(400, f"unmasking personal data needs a stated reason: reason=… (at least {MIN_REASON} "
                            "characters; it is written to the audit trail with your name)", parameter="reason")
    if len(reason) > MAX_REASON:
        raise ApiError(400, f"the reason is longer than {MAX_REASON} characters", parameter="reason")
    return reason


def _masker(request: web.Request, system: str | None) -> Masker:
    """Masking for rows of ``system``: the schema's rules plus the counterpart keys its mapping reads."""
    cache = request.app[MASKERS]
    masker = cache.get(system)
    if masker is None:
        comp = request.app[GATEWAY].components
        mapping = comp.inbound.get(system) if comp is not None and system is not None else None
        masker = masker_for(payload_rules(mapping) if mapping is not None else None)
        cache[system] = masker
    return masker


async def _shown(request: web.Request, ident: Identity, rows: list[dict[str, Any]], what: str,
                 reason: str | None, *, by_system: bool = False) -> tuple[list[dict[str, Any]], bool]:
    """Rows as this caller may see them; an unmasked answer is audited before it is given."""
    if reason is None:
        maskers = [_masker(request, r.get("system") if by_system else None) for r in rows]
        if len(rows) <= _MASK_INLINE:
            return [m(r) for m, r in zip(maskers, rows, strict=True)], True
        # A long page (~40 us a row) is masked off the event loop, so pushes are not held up meanwhile.
        return await asyncio.to_thread(lambda: [m(r) for m, r in zip(maskers, rows, strict=True)]), True
    if rows:
        store = request.app[GATEWAY].store
        assert store is not None
        cases = sorted({str(r["case_no"]) for r in rows if r.get("case_no")})
        query = {k: mask_text(v) for k, v in request.query.items() if k not in ("reason", "unmask")}
        await store.audit_event("unmasked", system=None, case=cases[0] if len(cases) == 1 else None, detail={
            "user": ident.user, "role": ident.role, "via": ident.via, "reason": mask_text(reason), "what": what,
            "query": query, "rows": len(rows), "cases": cases[:50], "correlation_id": request.get(CORRELATION_ID),
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


def _store(request: web.Request) -> Any:
    store = request.app[GATEWAY].store
    assert store is not None
    return store


async def records(request: web.Request) -> web.Response:
    """GET /api/v1/records?case_no=&kind=&limit=&after_id=&unmask=&reason="""
    ident = require(request, "records:read")
    reason = unmask_reason(request, ident)
    store = _store(request)
    kind = choice_param(request, "kind", tuple(KINDS))
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    after_id = int_param(request, "after_id", 0, 0, 2**62)
    case_no = request.query.get("case_no") or None
    systems = ident.visible_systems("records:read")
    if systems is None:
        rows = await store.list_records(case_no=case_no, kind=kind, limit=limit, after_id=after_id)
    else:
        rows = await store.list_records_in(systems, case_no=case_no, kind=kind, limit=limit, after_id=after_id)
    shown, masked = await _shown(request, ident, _opened(request, rows), "records", reason)
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def alerts(request: web.Request) -> web.Response:
    """GET /api/v1/alerts?case_no=&limit=&after_id= — records of kind supervision_alert (电子监察预警)."""
    ident = require(request, "alerts:read")
    reason = unmask_reason(request, ident)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    rows = await _store(request).list_records(case_no=request.query.get("case_no") or None, kind="supervision_alert",
                                              limit=limit, after_id=int_param(request, "after_id", 0, 0, 2**62))
    rows = _opened(request, rows)
    shown, masked = await _shown(request, ident, rows, "alerts", reason)
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def deliveries(request: web.Request) -> web.Response:
    """GET /api/v1/deliveries?state=&destination=&case_no=&limit=&after_id="""
    ident = require(request, "deliveries:read")
    reason = unmask_reason(request, ident)
    store = _store(request)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    args: dict[str, Any] = {
        "state": choice_param(request, "state", DELIVERY_STATES),
        "destination": request.query.get("destination") or None, "case_no": request.query.get("case_no") or None,
        "limit": limit, "after_id": int_param(request, "after_id", 0, 0, 2**62)}
    systems = ident.visible_systems("deliveries:read")
    rows = await (store.list_deliveries(**args) if systems is None else store.list_deliveries_in(systems, **args))
    # Delivery rows carry keys and errors, never record bodies; errors may quote values, so mask anyway.
    shown, masked = await _shown(request, ident, rows, "deliveries", reason)
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def quarantine(request: web.Request) -> web.Response:
    """GET /api/v1/quarantine?system=&state=&limit=&after_id= — every state unless ``state`` is given."""
    system = request.query.get("system") or None
    ident = require(request, "quarantine:read", system)
    reason = unmask_reason(request, ident)
    store = _store(request)
    limit = int_param(request, "limit", 100, 1, MAX_LIMIT)
    systems = ident.visible_systems("quarantine:read")
    rows = await store.quarantine_entries(
        system=system, systems=systems if system is None else None, limit=limit,
        state=choice_param(request, "state", ("open", "resolved", "discarded")),
        after_id=int_param(request, "after_id", 0, 0, 2**62))
    shown, masked = await _shown(request, ident, rows, "quarantine", reason, by_system=True)
    return json_response(_page(shown, masked, "after_id", "id", limit))


async def audit(request: web.Request) -> web.Response:
    """GET /api/v1/audit?case_no=&after_seq=&limit= — decoded audit entries with their chain hashes.

    An entry is shown exactly as chained, so a reader can recompute its hash — unless masking
    changed it (only entries written before masking at the source can carry personal data):
    such an entry says ``"masked": true``.
    """
    ident = require(request, "audit:read")
    reason = unmask_reason(request, ident)
    limit = int_param(request, "limit", 200, 1, MAX_LIMIT)
    rows = await _store(request).audit_entries(after_seq=int_param(request, "after_seq", 0, 0, 2**62), limit=limit,
                                               case_no=request.query.get("case_no") or None)
    entries = []
    for row in rows:
        entry = row.decoded()
        entries.append({"seq": row.seq, "hash": row.hash, "case_no": entry.get("case"), "entry": entry})
    shown, masked = await _shown(request, ident, entries, "audit", reason)
    if masked:
        for before, after in zip(entries, shown, strict=True):
            after["masked"] = after["entry"] != before["entry"]
    return json_response(_page(shown, masked, "after_seq", "seq", limit))
