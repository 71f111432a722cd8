"""Who is asking the API, and what personal data they may see.

Identity is carried by two request headers:

``X-Gateway-User``
    a name for the audit trail (``zhang.san@jianchashi``);
``X-Gateway-Role``
    ``operator`` (the approval bureau running the gateway), ``engineer`` (integration
    engineers who connect counterparts), ``supervisor`` (监察 / 纪检 staff) or ``auditor``.

The headers are trusted only when the connection comes from a loopback address
(a reverse proxy on the same host that has authenticated the user, or a tool run on
the gateway host) or over TLS with a client certificate the server verified.  From
anywhere else they are ignored and the caller is anonymous.  A supervisor or auditor
sees personal identifiers (证件号码, mobile numbers) in full, and every such read is
written to the audit trail as a ``user_action``; everyone else sees them masked,
first 6 and last 4 characters kept.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from gateway.schema import KINDS
from gateway.schema.identifiers import mask

USER_HEADER = "X-Gateway-User"
ROLE_HEADER = "X-Gateway-Role"
ROLES = frozenset({"operator", "engineer", "supervisor", "auditor"})
ENTITLED_ROLES = frozenset({"supervisor", "auditor"})
_USER = re.compile(r"^[\w.@:\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Identity:
    """The caller as far as the API can tell; ``via`` says why the headers were (not) believed."""

    user: str | None
    role: str | None
    via: str  # loopback | client-certificate | untrusted

    @property
    def sees_personal_data(self) -> bool:
        return self.role in ENTITLED_ROLES


def _peer_is_loopback(request: web.Request) -> bool:
    remote = request.remote
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%", 1)[0]).is_loopback
    except ValueError:  # a Unix socket path: only local processes can connect
        return remote.startswith("/")


def _client_certificate_subject(request: web.Request) -> str | None:
    """The common name of a client certificate the TLS layer verified, if there is one."""
    transport = request.transport
    if transport is None or transport.get_extra_info("sslcontext") is None:
        return None
    cert = transport.get_extra_info("peercert")
    if not cert:
        return None
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return "certificate"


def identity_of(request: web.Request) -> Identity:
    """Read the identity headers if the connection is one whose headers are trusted."""
    cert_name = _client_certificate_subject(request)
    if cert_name is not None:
        via = "client-certificate"
    elif _peer_is_loopback(request):
        via = "loopback"
    else:
        return Identity(None, None, "untrusted")
    user = request.headers.get(USER_HEADER, "").strip() or None
    if user is not None and not _USER.match(user):
        user = None
    if user is None and cert_name is not None:
        user = cert_name
    role = request.headers.get(ROLE_HEADER, "").strip().lower() or None
    if role not in ROLES:
        role = None
    return Identity(user, role, via)


# --------------------------------------------------------------------------- masking


def _personal_names() -> frozenset[str]:
    names: set[str] = set()
    for kind in KINDS.values():
        for spec in kind.fields:
            if spec.personal:
                names.add(spec.name)
                if spec.wire:
                    names.add(spec.wire)
    return frozenset(names)


PERSONAL_FIELDS = _personal_names()
"""Common-schema names and wire short codes (SQRZJHM …) of every personal field."""


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return mask(str(value))
    if isinstance(value, list):
        return [_mask_value(v) for v in value]
    if isinstance(value, Mapping):  # an XML element with attributes: {"#text": …, "@type": …}
        return {k: _mask_value(v) for k, v in value.items()}
    return value


def personal_payload_keys(mapping: Any) -> frozenset[str]:
    """The counterpart's own keys (``applicantIdNo`` …) that an inbound mapping reads into personal fields."""
    keys: set[str] = set()
    for output in getattr(getattr(mapping, "plan", None), "outputs", ()):
        for rule in output.rules:
            if rule.spec is None or not rule.spec.personal:
                continue
            sources = [rule.source, *rule.source.items]
            for source in sources:
                steps = [step for step in source.path if isinstance(step, str)]
                if source.type == "path" and steps:
                    keys.add(steps[-1])
    return frozenset(keys)


def mask_tree(value: Any, extra: frozenset[str] = frozenset()) -> Any:
    """A copy of ``value`` with every personal field masked, at any depth.

    Personal fields are found by common-schema name, wire short code, or one of the
    ``extra`` counterpart keys (see :func:`personal_payload_keys`).
    """
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key, item in value.items():
            bare = key[1:] if isinstance(key, str) and key.startswith("@") else key
            if isinstance(bare, str) and (bare in PERSONAL_FIELDS or bare.upper() in PERSONAL_FIELDS
                                          or bare in extra):
                out[key] = _mask_value(item)
            else:
                out[key] = mask_tree(item, extra)
        return out
    if isinstance(value, list):
        return [mask_tree(v, extra) for v in value]
    return value

