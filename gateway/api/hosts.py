"""The `Host` a request names, and the `Server` header it gets back.

DNS rebinding: a page on evil.example re-points its own name at 127.0.0.1,
and the victim's browser then talks to the daemon's loopback-trusting doors
(the key-less legacy form, `/metrics`, key-less stats, the dashboard) while
still saying `Host: evil.example`. So every request must name an allowed
host (`server.allowed_hosts`). An IP literal always passes: rebinding needs
a name, and a browser that typed an address is on that address's origin.
Short links (`/r/{code}`) are exempt: they are public, trust no address,
and must keep working for links sent under an older public name.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from gateway.api.http import Handler
from gateway.settings import ServerSettings

log = structlog.get_logger("smsgw.http")

SERVER = "smsgw"
_EXEMPT = ("/r/",)


def default_hosts(server: ServerSettings) -> frozenset[str]:
    names = {"localhost", "localhost.localdomain", "ip6-localhost", socket.gethostname(),
             urlsplit(server.public_base_url).hostname or "", server.host}
    return frozenset(n.lower().rstrip(".") for n in names if n)


class AllowedHosts:
    def __init__(self, patterns: frozenset[str]) -> None:
        self._any = "*" in patterns
        self._exact = {p for p in patterns if not p.startswith("*.")}
        self._suffixes = tuple(p[1:] for p in patterns if p.startswith("*."))

    def __contains__(self, host_header: str) -> bool:
        name = _name(host_header)
        if self._any or name is None or _is_ip(name):
            return True
        return name in self._exact or name.endswith(self._suffixes)




def allowed(server: ServerSettings) -> Middleware:
    given = frozenset(h.lower().rstrip(".") for h in server.allowed_hosts)
    hosts = AllowedHosts(given or default_hosts(server))

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        host = request.headers.get("Host")
        if host is None or host in hosts or request.path.startswith(_EXEMPT):
            return await handler(request)
        log.info("http.host_refused", host=host[:100], path=request.path)
        return web.json_response({"error": f"host {host[:100]!r} is not served here "
                                           "(server.allowed_hosts)", "field": "Host"},
                                 status=421)

    return check_host


async def server_header(request: web.Request, response: web.StreamResponse) -> None:
    # No product versions for scanners to match against advisories.
    response.headers["Server"] = SERVER


def _name(host_header: str) -> str | None:
    host = host_header.strip().lower()
    if not host:
        return None
    if host.startswith("["):  # [::1]:8080
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0].rstrip(".") if host.count(":") == 1 else host.rstrip(".")


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True

