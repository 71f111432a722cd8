"""Who is asking, in which role, and what that role may do: the one identity contract of the gateway.

Every HTTP request outside the counterpart push endpoints passes one aiohttp middleware
(``gateway.api._auth``) that authenticates it and stores the result as
``request[IDENTITY]``; handlers and console pages read it with :func:`identity_of` and
check it with :meth:`Identity.can` or :func:`require`::

    from gateway.security.identity import identity_of, require

    async def replay_page(request):
        ident = require(request, "deliveries:replay", system="hall_platform")  # 401 / 403 if not
        ...
        if identity_of(request).can("personal:unmask"): ...

Where an identity comes from (``via``):

``session``
    a console login (user name and password) with a server-side session cookie;
``token``
    an API token for scripts (``Authorization: Bearer gwt_…``), acting as its user;
``cli``
    a ``gateway`` command on the gateway host (the OS user; see ``gateway.security.cli``);
``anonymous``
    nothing authenticated. Request headers never make an identity: ``X-Gateway-Role`` and
    ``X-Gateway-User`` are ignored, from loopback too.

Roles and their permissions (:data:`ROLE_PERMISSIONS`):

============  ===========================================================================
engineer      integration engineer: reads everything (masked), replays any delivery,
              manages quarantine, pauses and tunes destinations, configures
operator      bureau operator (审批局): reads, replays, pauses and tunes only its own systems —
              the systems the account is bound to (``Identity.systems``); masked
supervisor    监察 / 纪检: reads the audit trail, supervision alerts and records; masked
auditor       reads everything and may unmask personal data, each time with a stated reason
              that is written to the audit trail (see ``gateway.api._query``)
============  ===========================================================================

A permission that concerns systems (``records:read``, ``deliveries:replay`` …) is limited
to ``Identity.systems`` for an operator; for the other roles ``systems`` is None (all).
``can(permission)`` without a system answers whether the role has the permission for at
least one system; pass ``system=`` to ask about one. List endpoints narrow their query to
:meth:`Identity.visible_systems`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

__all__ = [
    "ANONYMOUS",
    "IDENTITY",
    "PERMISSIONS",
    "ROLES",
    "ROLE_PERMISSIONS",
    "SYSTEM_SCOPED",
    "AccessDenied",
    "Identity",
    "identity_of",
    "require",
]

ROLES: tuple[str, ...] = ("engineer", "operator", "supervisor", "auditor")

PERMISSIONS: dict[str, str] = {
    "records:read": "read received records and cases",
    "deliveries:read": "read the outbox: deliveries, their state and last error",
    "quarantine:read": "read quarantined items and their reasons",
    "audit:read": "read audit entries",
    "alerts:read": "read electronic-supervision alerts (电子监察预警)",
    "deliveries:replay": "send deliveries again (dead letters or chosen ones)",
    "destinations:manage": "pause and resume a destination, change its concurrency and rate limit",
    "quarantine:manage": "reprocess or discard quarantined items",
    "alerts:acknowledge": "acknowledge supervision alerts in the console, with a note (audited)",
    "configure": "see and change the gateway's configuration",
    "personal:unmask": "see personal data unmasked, with a stated reason, audited",
}
"""Every permission the gateway checks, with what it allows."""

SYSTEM_SCOPED = frozenset({"records:read", "deliveries:read", "quarantine:read", "deliveries:replay",
                           "quarantine:manage", "destinations:manage"})
"""Permissions an operator holds only for the systems its account is bound to."""

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "engineer": frozenset({"records:read", "deliveries:read", "quarantine:read", "audit:read", "alerts:read",
                           "deliveries:replay", "quarantine:manage", "destinations:manage", "configure",
                           "alerts:acknowledge"}),
    "operator": frozenset({"records:read", "deliveries:read", "quarantine:read", "deliveries:replay",
                           "quarantine:manage", "destinations:manage"}),
    "supervisor": frozenset({"audit:read", "alerts:read", "records:read", "alerts:acknowledge"}),
    "auditor": frozenset({"records:read", "deliveries:read", "quarantine:read", "audit:read", "alerts:read",
                          "personal:unmask", "alerts:acknowledge"}),
}


def _request_key(name: str) -> Any:
    # Typed request keys arrived in aiohttp 3.12; older versions take plain strings.
    maker = getattr(web, "RequestKey", None)
    return maker(name, object) if maker is not None else name


IDENTITY = _request_key("identity")
"""Where the middleware puts the request's :class:`Identity`."""


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller (or :data:`ANONYMOUS`).

    ``user`` is the account name (what the audit trail records), ``role`` one of
    :data:`ROLES`, ``systems`` the systems an operator is bound to (None: not bound,
    all systems). ``via`` says how it was authenticated; ``credential`` names the
    session (a short, non-secret prefix of its hash) or the token id, for logs.
    """

    user: str | None
    role: str | None
    systems: frozenset[str] | None = None
    via: str = "anonymous"  # session | token | cli | anonymous
    credential: str | None = None
    display_name: str | None = None

    @property
    def authenticated(self) -> bool:
        return self.user is not None and self.role in ROLE_PERMISSIONS

    @property
    def permissions(self) -> frozenset[str]:
        return ROLE_PERMISSIONS.get(self.role or "", frozenset()) if self.authenticated else frozenset()

    def can(self, permission: str, system: str | None = None) -> bool:
        """Whether this caller holds ``permission`` (for ``system``, when given)."""
        if permission not in PERMISSIONS:
            raise KeyError(f"unknown permission {permission!r}; known: {', '.join(PERMISSIONS)}")
        if permission not in self.permissions:
            return False
        if permission in SYSTEM_SCOPED and self.systems is not None and system is not None:
            return system in self.systems
        return permission not in SYSTEM_SCOPED or self.systems is None or bool(self.systems)

    def visible_systems(self, permission: str) -> frozenset[str] | None:
        """The systems ``permission`` covers: None for all, an empty set for none."""
        if not self.can(permission):
            return frozenset()
        return self.systems if permission in SYSTEM_SCOPED else None

    def label(self) -> str:
        """How logs and audit entries name the caller: ``zhang.san (operator, session)``."""
        if not self.authenticated:
            return "anonymous"
        return f"{self.user} ({self.role}, {self.via})"

    def as_dict(self) -> dict[str, Any]:
        """The identity as the whoami endpoint shows it."""
        return {"authenticated": self.authenticated, "user": self.user, "display_name": self.display_name,
                "role": self.role, "systems": sorted(self.systems) if self.systems is not None else None,
                "via": self.via, "permissions": sorted(self.permissions)}


ANONYMOUS = Identity(None, None)


class AccessDenied(Exception):
    """Refused: 401 when nobody is authenticated, 403 when the caller lacks the permission."""

    def __init__(self, status: int, message: str, permission: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.permission = permission


def identity_of(request: web.Request) -> Identity:
    """The request's identity as the middleware established it (anonymous when it did not run)."""
    ident = request.get(IDENTITY)
    return ident if isinstance(ident, Identity) else ANONYMOUS


def require(request: web.Request | Identity, permission: str, system: str | None = None) -> Identity:
    """The caller's identity if it holds ``permission`` (for ``system``); raise :class:`AccessDenied` if not."""
    ident = request if isinstance(request, Identity) else identity_of(request)
    if not ident.authenticated:
        raise AccessDenied(401, "authentication required: log in at /login, or send an API token "
                                "(Authorization: Bearer …)", permission)
    if not ident.can(permission, system):
        where = f" for system {system!r}" if system is not None else ""
        bound = f" (bound to {', '.join(sorted(ident.systems)) or 'no systems'})" if ident.systems is not None else ""
        raise AccessDenied(403, f"{ident.user}, role {ident.role}{bound}, may not {PERMISSIONS[permission]}{where}",
                           permission)
    return ident


def parse_systems(values: Iterable[str]) -> frozenset[str]:
    """System names from a comma-separated option or a list, stripped and without empties."""
    out: set[str] = set()
    for value in values:
        out.update(part.strip() for part in value.split(",") if part.strip())
    return frozenset(out)
