"""Who is pushing: the HTTP side of counterpart authentication for /api/v1/inbound and /soap.

The checks themselves are :mod:`gateway.security.counterparts` (pure); this module reads
what a request presents (TLS client certificate, ``Authorization: Bearer``, HMAC headers),
turns a refusal into the answer (401 with ``WWW-Authenticate``, or 403), and records it
(:mod:`gateway.security.refusals`: metric always, audit entry aggregated per window).
User authentication (people, roles, sessions) does not apply to these endpoints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway.api._inbound import _OFFLOAD_ITEMS, ApiError, Item, PushTarget
from gateway.api._web import GATEWAY, _request_key
from gateway.security.counterparts import (
    Counterpart,
    CounterpartGuard,
    Presented,
    PushCheck,
    Refusal,
    collect_claims,
    collected_claims,
)
from gateway.security.refusals import RefusalEvent, RefusalLog
from gateway.security.tls import peer_certificate

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("gateway.api.auth")

GUARD: web.AppKey[CounterpartGuard] = web.AppKey("counterpart_guard")
COUNTERPART = _request_key("counterpart")  # the authenticated Counterpart, for the log line


def build_guard(gw: Gateway) -> CounterpartGuard:
    """The guard over every enabled push system; unreadable certificates or keys fail the start."""
    from gateway.api._inbound import push_systems, push_target
    from gateway.config import ConfigError

    guard = CounterpartGuard({name: push_target(gw, name).auth for name in push_systems(gw)})
    problems = guard.read_secrets()
    if problems:
        raise ConfigError(gw.config.path or "<config>", problems)
    return guard


def refusal_log(gw: Gateway) -> RefusalLog:
    existing = getattr(gw, "refusals", None)
    if existing is None:
        assert gw.store is not None
        existing = gw.refusals = RefusalLog(gw.store.audit_event)
    return existing


def _presented(request: web.Request) -> Presented:
    authorization = request.headers.get("Authorization", "")
    scheme, _, value = authorization.partition(" ")
    bearer = value.strip() if scheme.lower() == "bearer" and value.strip() else None
    return Presented(request.method, request.raw_path, peer_certificate(request.transport), bearer,
                     request.headers)


async def _refused(request: web.Request, refusal: Refusal) -> ApiError:
    gw = request.app[GATEWAY]
    await refusal_log(gw).record(RefusalEvent(
        refusal.system, refusal.reason, refusal.status, refusal.message, remote=request.remote,
        path=request.path, credential=refusal.credential, credential_system=refusal.credential_system))
    log.warning("push to %s refused (%s %s): %s", refusal.system, refusal.status, refusal.reason, refusal.message)
    headers = {"WWW-Authenticate": ", ".join(refusal.challenges)} if refusal.challenges else {}
    error = ApiError(refusal.status, refusal.message, system=refusal.system, reason=refusal.reason)
    error.headers = headers
    error.refusal = refusal
    return error


class PushAuth:
    """One request's authentication, stage by stage; every stage raises ApiError (401/403) on refusal."""

    def __init__(self, request: web.Request, check: PushCheck) -> None:
        self.request = request
        self.check = check

    @classmethod
    async def begin(cls, request: web.Request, target: PushTarget, *, soap: bool = False) -> PushAuth:
        """Certificate and token before a byte of the body is read."""
        if getattr(request.app[GATEWAY], "push_worker", None) is not None:
            collect_claims()  # a push worker: its single-use values are settled with the gateway in done()
        try:
            check = request.app[GUARD].start(target.system, _presented(request), soap=soap)
        except Refusal as refusal:
            raise await _refused(request, refusal) from None
        return cls(request, check)

    async def body(self, body: bytes) -> None:
        """The HMAC signature, which covers the body."""
        try:
            self.check.after_body(body)
        except Refusal as refusal:
            raise await _refused(self.request, refusal) from None

    async def envelope(self, root: Any) -> None:
        """WS-Security of a SOAP envelope, where the system requires it."""
        try:
            self.check.envelope(root)
        except Refusal as refusal:
            raise await _refused(self.request, refusal) from None

    async def done(self) -> Counterpart:
        try:
            who = self.check.result()
            worker = getattr(self.request.app[GATEWAY], "push_worker", None)
            if worker is not None:
                claims = collected_claims()
                if claims:
                    self.check.settle_replays(claims, await worker.replays(claims))
        except Refusal as refusal:
            raise await _refused(self.request, refusal) from None
        self.request[COUNTERPART] = who
        refusal_log(self.request.app[GATEWAY]).accepted(who.system, who.method, who.credential)
        return who

    async def kind(self, target: PushTarget, kind: str) -> None:
        """403 when the endpoint's kind is one the system may not send."""
        if target.permitted_kinds is not None and kind not in target.permitted_kinds:
            raise await _refused(self.request, Refusal(403, "kind_not_permitted", target.system, (
                f"system {target.system!r} may not send {kind!r} records; it may send "
                f"{', '.join(target.permitted_kinds) or 'none'} (sources.{target.system}.kinds)")))

    async def items(self, target: PushTarget, items: Sequence[Item]) -> None:
        """403 for the whole request when any item maps to a kind the system may not send."""
        permitted = target.permitted_kinds
        if permitted is None or set(target.kinds) <= set(permitted):
            return  # its mapping cannot produce a kind it may not send: nothing to look at
        if len(items) > _OFFLOAD_ITEMS:
            offending = await asyncio.to_thread(_forbidden_kinds, target, permitted, items)
        else:
            offending = _forbidden_kinds(target, permitted, items)
        if offending:
            shown = "; ".join(f"{kind}: item(s) {', '.join(map(str, idx[:10]))}" for kind, idx in offending.items())
            raise await _refused(self.request, Refusal(403, "kind_not_permitted", target.system, (
                f"system {target.system!r} may not send {', '.join(sorted(offending))} records ({shown}); "
                f"it may send {', '.join(permitted) or 'none'} (sources.{target.system}.kinds); "
                "nothing of this request was stored")))


def _forbidden_kinds(target: PushTarget, permitted: Sequence[str], items: Sequence[Item]) -> dict[str, list[int]]:
    """Kind → indexes of the items that map to it, for every kind outside ``permitted``."""
    offending: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item.payload is None:
            continue
        try:
            mapped = target.mapping.map(item.payload)
        except Exception:  # the ingestor maps it again and quarantines the failure
            continue
        for m in mapped:
            if m.kind not in permitted:
                offending.setdefault(m.kind, []).append(i)
    return offending


def handshake_reporter(gw: Gateway) -> Any:
    """The TLS layer's callback: certificate refusals in the handshake become refusal events."""

    def report(detail: str, category: str) -> None:
        if category != "certificate":
            return
        refusal_log(gw).record_nowait(RefusalEvent(
            None, "tls_handshake", None,
            f"TLS handshake refused: {detail} (a client certificate missing, or not issued by [api].client_ca)"))

    return report
