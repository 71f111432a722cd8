"""Who may change what through the API: one call per action, so it can be pointed at another identity source.

``permit(request, action)`` is the only check the handlers make; today it reads the
header roles of ``_identity``. When authenticated identities replace them, only this
module changes.
"""

from __future__ import annotations

from aiohttp import web

from gateway.api._identity import Identity, identity_of
from gateway.api._inbound import ApiError

ACTIONS: dict[str, frozenset[str]] = {
    # Reprocessing and discarding quarantined items: the integration engineers who fix mappings and the
    # approval bureau's operators who run the gateway; not supervisors or auditors, who only read.
    "quarantine.manage": frozenset({"engineer", "operator"}),
}


def permit(request: web.Request, action: str) -> Identity:
    """The caller's identity if it may do ``action``; else a 403 that says who may."""
    ident = identity_of(request)
    allowed = ACTIONS[action]
    if ident.role not in allowed:
        who = f"role {ident.role!r}" if ident.role else "a caller without a trusted role"
        raise ApiError(403, f"{who} may not {action.replace('.', ' ')}; allowed roles: {', '.join(sorted(allowed))}",
                       action=action, allowed_roles=sorted(allowed))
    return ident


def actor(ident: Identity) -> str:
    """How the audit trail names the caller."""
    return f"api:{ident.user or 'unnamed'} ({ident.role}, via {ident.via})"
