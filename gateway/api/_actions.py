"""State-changing endpoints for people: replaying deliveries.

``POST /api/v1/deliveries/replay`` puts deliveries back in the outbox with the same
idempotency keys, as ``gateway deliveries replay`` does on the host. An engineer may
replay any delivery; a bureau operator only deliveries to or from the systems its account
is bound to. The audit entries (``replayed``) name the person as the actor. Like every
state change made with a session cookie, it needs the session's CSRF token
(``X-CSRF-Token``; see ``gateway.api._auth``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.api._inbound import ApiError
from gateway.api._web import GATEWAY, json_response
from gateway.security.identity import AccessDenied, require

REPLAYABLE = ("dead", "delivered", "pending")
MAX_IDS = 10_000


def _body_list(body: dict[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value):
        raise ApiError(400, f"{key} must be a list of {'whole numbers' if kind is int else 'strings'}", field=key)
    return value


async def replay(request: web.Request) -> web.Response:
    """POST /api/v1/deliveries/replay {"ids": [..], "destination": "...", "states": ["dead"], "dry_run": false}"""
    ident = require(request, "deliveries:replay")
    try:
        body = await request.json() if request.can_read_body else {}
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    ids: list[int] | None = _body_list(body, "ids", int, None)
    states: list[str] = _body_list(body, "states", str, ["dead"])
    destination = body.get("destination")
    dry_run = body.get("dry_run", False)
    if destination is not None and not isinstance(destination, str):
        raise ApiError(400, "destination must be a string", field="destination")
    if not isinstance(dry_run, bool):
        raise ApiError(400, "dry_run must be true or false", field="dry_run")
    if not states or any(s not in REPLAYABLE for s in states):
        raise ApiError(400, f"states must be some of {', '.join(REPLAYABLE)}", field="states")
    if ids is not None and not ids:
        raise ApiError(400, "ids is empty: leave it out to replay every delivery in the given states", field="ids")
    if ids is not None and len(ids) > MAX_IDS:
        raise ApiError(413, f"at most {MAX_IDS} ids per request", field="ids")
    store: Any = request.app[GATEWAY].store
    systems = ident.visible_systems("deliveries:replay")
    if ids is not None:
        parties = await store.delivery_parties(ids)
        unknown = sorted(set(ids) - parties.keys())
        if unknown:
            raise ApiError(404, f"no deliveries with id {', '.join(map(str, unknown[:50]))}; nothing was replayed",
                           unknown=unknown[:1000])
        if systems is not None:
            foreign = sorted(i for i, (dest, source, _) in parties.items() if dest not in systems and source not in
                             systems)
            if foreign:
                raise AccessDenied(403, f"{ident.user} (operator of {', '.join(sorted(systems)) or 'no systems'}) "
                                        f"may not replay deliveries {', '.join(map(str, foreign[:50]))}: they "
                                        "neither go to nor come from those systems; nothing was replayed",
                                   "deliveries:replay")
    elif systems is not None:
        ids = await store.delivery_ids_in(systems, states, destination)
        if not ids:
            return json_response({"replayed": [], "count": 0, "dry_run": dry_run})
    done = await store.replay(ids, destination=destination, states=states, dry_run=dry_run,
                              actor=f"user:{ident.user} ({ident.role}, {ident.via})")
    return json_response({"replayed": done, "count": len(done), "dry_run": dry_run})
