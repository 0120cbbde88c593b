"""The HTTP application: error handling, authentication, route table."""

from __future__ import annotations

import math
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from drivers import webio
from gateway.edge.proxies import Client, TrustedProxies
from gateway.intake import IntakeError, Overloaded
from gateway.services import Services
from spool.base import Conflict, NotFound, StoreError, Tenant

log = structlog.get_logger("smsgw.http")

SERVICES = web.AppKey("services", Services)
# Set by the dashboard's session middleware: the tenant a logged-in admin acts as.
ACTING_TENANT: Any = (web.RequestKey("acting_tenant", Tenant)  # aiohttp >= 3.14
                     if hasattr(web, "RequestKey") else "smsgw.acting_tenant")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PROXIES = web.AppKey("trusted_proxies", TrustedProxies)
_CLIENT: Any = (web.RequestKey("client", Client)
                if hasattr(web, "RequestKey") else "smsgw.client")


def problem(status: int, error: str, field: str | None = None,
            headers: dict[str, str] | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": error}
    if field is not None:
        body["field"] = field
    body.update(extra)
    return web.json_response(body, status=status, headers=headers)


def _client(request: web.Request) -> Client:
    found = request.get(_CLIENT)
    if not isinstance(found, Client):
        proxies = request.app.get(PROXIES) or TrustedProxies()
        found = request[_CLIENT] = proxies.client(request.remote, request.headers)
    return found


def client_address(request: web.Request) -> str:
    """The caller for per-address limits and logs: the peer, or the address a
    trusted proxy (`server.trusted_proxies`) forwards."""
    return _client(request).address


def forwarded(request: web.Request) -> bool:
    """True when the request names a client through a proxy we do not trust:
    its caller is unknown, so nothing that trusts an address may apply."""
    return not _client(request).vouched


@web.middleware
async def last_resort(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Outermost: whatever escapes is a JSON 500 with an id to find the
    # traceback by, never aiohttp's text page.
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConnectionResetError:
        log.info("http.client_gone", method=request.method, path=request.path)
        return problem(400, "connection lost")
    except Exception:
        incident = secrets.token_hex(8)
        log.exception("http.internal_error", id=incident, method=request.method,
                      path=request.path)
        return problem(500, "internal error", id=incident)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except IntakeError as err:
        return problem(err.status, str(err), err.field)
    except webio.BadBody as err:
        log.info("http.bad_body", path=request.path, field=err.field, error=str(err))
        return problem(400, str(err), err.field)
    except RateLimited as err:
        return problem(429, str(err), headers={"Retry-After": str(max(1, math.ceil(
            err.retry_after_s)))})
    except Overloaded as err:
        return problem(503, str(err), headers={"Retry-After": str(err.retry_after_s)})
    except NotFound as err:
        return problem(404, str(err))
    except Conflict as err:
        return problem(409, str(err), state=err.state.name if err.state is not None else None)
    except StoreError as err:
        log.warning("http.store_unavailable", path=request.path, error=str(err))
        return problem(503, "storage unavailable; retry later", headers={"Retry-After": "5"})
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SERVICES].settings.server.max_body_bytes
        return problem(413, f"request body larger than {limit} bytes", "body")
    except web.HTTPException as err:
        if err.status < 400 or err.content_type == "application/json":
            raise
        return problem(err.status, err.reason, headers={
            k: v for k, v in err.headers.items() if k in ("Allow", "Retry-After")})


async def json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise IntakeError("request body is empty", field="body")
    return webio.loads(raw)  # BadBody: a 400, by `errors`


async def tenant(request: web.Request) -> Tenant:
    services = request.app[SERVICES]
    acting = request.get(ACTING_TENANT)
    if isinstance(acting, Tenant) and not request.headers.get("X-Api-Key"):
        return acting
    found = await services.auth.tenant(request.headers.get("X-Api-Key"))
    if found is None:
        raise web.HTTPUnauthorized(reason="missing or wrong X-Api-Key")
    charge(request, found.id)
    return found


class RateLimited(Exception):
    def __init__(self, retry_after_s: float) -> None:
        super().__init__("rate limit exceeded for this tenant")
        self.retry_after_s = retry_after_s


def charge(request: web.Request, tenant_id: int, cost: float = 1.0) -> None:
    """Count a call (or `cost` messages) against the tenant's rate limit."""
    wait = request.app[SERVICES].limiter.check(tenant_id, cost)
    if wait > 0:
        raise RateLimited(wait)


def build_app(services: Services, *, extra_routes: list[web.RouteDef] | None = None
              ) -> web.Application:
    from gateway.api import (
        admin,
        connections,
        dashboard,
        finite,
        health,
        hooks,
        hosts,
        inbound,
        links,
        messages,
        openapi,
        reports,
        stats,
        tenants,
        uploads,
    )

    server = services.settings.server
    app = web.Application(middlewares=[connections.deadlines, last_resort,
                                       hosts.allowed(server), errors, dashboard.session],
                          client_max_size=server.max_body_bytes)
    app[SERVICES] = services
    app[PROXIES] = TrustedProxies(server.trusted_proxies, server.forwarded_header)
    app.on_response_prepare.append(hosts.server_header)
    app.on_response_prepare.append(finite.guard)
    app.add_routes(messages.routes)
    app.add_routes(admin.routes)
    app.add_routes(health.routes)
    app.add_routes(openapi.routes)
    app.add_routes(hooks.routes)
    app.add_routes(inbound.routes)
    app.add_routes(stats.routes)
    app.add_routes(reports.routes)
    app.add_routes(uploads.routes)
    app.add_routes(tenants.routes)
    dashboard.setup(app)
    app.add_routes(links.routes)
    if extra_routes:
        app.add_routes(extra_routes)
    return app
