"""Who the client really is behind a reverse proxy: X-Forwarded-For / -Proto, believed only from trusted proxies.

A proxy in front of the gateway (nginx terminating TLS for the console) connects from its
own address; it says who its client was in ``X-Forwarded-For`` and which scheme the client
used in ``X-Forwarded-Proto``. Anyone can send those headers, so they count only when the
connection comes from an address listed in ``[api] trusted_proxies`` — loopback is not
trusted unless listed. ``X-Forwarded-For`` is read from the right: each entry added by a
trusted proxy is skipped, and the first address a trusted proxy did not add is the client
(entries further left were written by the client itself and are ignored).
``X-Forwarded-Proto`` counts in its last (nearest) entry; configure the proxy to set it,
not to append to what the client sent.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

__all__ = ["ClientAddress", "TrustedProxies", "parse_networks"]


def parse_networks(entries: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or CIDR networks; ValueError names the entry that is neither."""
    out: list[Network] = []
    for entry in entries:
        try:
            network = ipaddress.ip_network(entry.strip(), strict=False)
        except ValueError:
            raise ValueError(f"trusted_proxies: {entry!r} is neither an IP address nor a network "
                             "(e.g. 10.0.0.5 or 10.0.0.0/24)") from None
        if network.prefixlen == 0:
            raise ValueError(f"trusted_proxies: {entry!r} would let every client name its own address and scheme; "
                             "list the proxies' addresses")
        out.append(network)
    return tuple(out)


def _address(text: str | None) -> Address | None:
    if not text:
        return None
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [2001:db8::1]:443
        text = text[1:text.index("]")]
    elif text.count(":") == 1:  # 192.0.2.1:443
        text = text.split(":", 1)[0]
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    # An IPv4 peer on a dual-stack socket shows as ::ffff:a.b.c.d.
    mapped = getattr(address, "ipv4_mapped", None)
    return mapped if mapped is not None else address


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The client as far as the gateway can tell: its address, scheme, and whether a proxy said so."""

    remote: str | None
    scheme: str
    forwarded: bool


class TrustedProxies:
    """The configured proxy addresses, and the rule that reads forwarded headers only from them."""

    def __init__(self, entries: Sequence[str] = ()) -> None:
        self.networks = parse_networks(entries)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: Address | None) -> bool:
        return address is not None and any(address in net for net in self.networks)

    def client(self, peer: str | None, scheme: str, forwarded_for: Sequence[str],
               forwarded_proto: Sequence[str]) -> ClientAddress:
        """The client of a connection from ``peer`` that arrived with these header values."""
        if not self.networks or not self.trusts(_address(peer)):
            return ClientAddress(peer, scheme, False)
        hops = [h.strip() for value in forwarded_for for h in value.split(",") if h.strip()]
        client = peer
        while hops:
            hop = hops.pop()
            address = _address(hop)
            if address is None:
                break  # garbage where an address should be: stop at the last proxy we trust
            client = str(address)
            if not self.trusts(address):
                break
        protos = [p.strip().lower() for value in forwarded_proto for p in value.split(",") if p.strip()]
        proto = protos[-1] if protos and protos[-1] in ("http", "https") else scheme
        return ClientAddress(client, proto, True)
