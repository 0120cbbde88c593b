"""Who is the client: the TCP peer, or the address a trusted proxy forwards.

Sans-I/O: the peer address and the request headers in, a `Client` out.

A reverse proxy on this host makes every caller look like 127.0.0.1. So a
request that carries a forwarding header is believed only when its peer is
one of `server.trusted_proxies`, and then only the one header the proxy is
configured to set (`server.forwarded_header`): a client can add the others
itself and the proxy would pass them on untouched. The client is the
rightmost address in that header's chain that is not itself a trusted
proxy; everything to its left was written by the client and proves nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

PROXY_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
_HEADER_NAMES = {"x-forwarded-for": "X-Forwarded-For", "forwarded": "Forwarded",
                 "x-real-ip": "X-Real-IP"}
_Net = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Client:
    address: str  # what per-address limits count and logs show
    vouched: bool  # the peer itself, or named by a trusted proxy: fit for trust decisions


def parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An address as a header or a socket writes it: `1.2.3.4`, `1.2.3.4:80`,
    `[::1]:80`, `fe80::1%eth0`, `::ffff:1.2.3.4` (as its IPv4 address)."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].split("]", 1)[0]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if ip.version == 6 and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def in_networks(address: str | None, networks: Sequence[_Net]) -> bool:
    ip = parse_ip(address) if address else None
    return ip is not None and any(ip in net for net in networks)


def networks(cidrs: Sequence[str]) -> list[_Net]:
    return [ipaddress.ip_network(c, strict=False) for c in cidrs]


def chain(header: str, value: str) -> list[str]:
    """The addresses a forwarding header lists, leftmost (the claimed origin) first."""
    if header == "forwarded":  # RFC 7239: for=1.2.3.4;proto=https, for="[::1]:80"
        found = []
        for element in value.split(","):
            for pair in element.split(";"):
                key, _, val = pair.strip().partition("=")
                if key.strip().lower() == "for":
                    found.append(val.strip().strip('"'))
        return found
    return [part.strip() for part in value.split(",") if part.strip()]


class TrustedProxies:
    def __init__(self, cidrs: Sequence[str] = (), header: str = "x-forwarded-for") -> None:
        self._nets = networks(cidrs)
        self._header = header

    def client(self, peer: str | None, headers: Mapping[str, str]) -> Client:
        peer = peer or ""
        if not any(h in headers for h in PROXY_HEADERS):
            return Client(_canonical(peer), True)
        if not in_networks(peer, self._nets):
            return Client(_canonical(peer), False)  # a proxy we do not know
        addresses = chain(self._header, headers.get(_HEADER_NAMES[self._header], ""))
        if not addresses:
            return Client(_canonical(peer), False)  # our proxy did not say who
        for address in reversed(addresses):
            if not in_networks(address, self._nets):
                return Client(_canonical(address), parse_ip(address) is not None)
        return Client(_canonical(addresses[0]), True)  # the proxy's own host asked


def _canonical(address: str) -> str:
    ip = parse_ip(address)
    return str(ip) if ip is not None else address[:100]
