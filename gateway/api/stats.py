"""Monitoring over HTTP: `GET /api/v1/stats` (JSON) and `GET /metrics` (Prometheus).

`/api/v1/stats` with an X-Api-Key (or a dashboard session) shows the
caller's tenant. Without a key it is the operator's view of every tenant,
under the same rule as `/metrics`: the caller is on this host (loopback,
not through a proxy) or presents `server.metrics_token` as a bearer token.
That is how `smsgw status` reads a running daemon.
"""

from __future__ import annotations

import ipaddress

from aiohttp import web

from drivers.webio import same_secret
from gateway import stats_view
from gateway.api.http import ACTING_TENANT, SERVICES, client_address, forwarded, tenant
from gateway.metrics import CONTENT_TYPE
from gateway.services import Services

routes = web.RouteTableDef()


def operator_allowed(request: web.Request) -> bool:
    token = request.app[SERVICES].settings.server.metrics_token
    given = request.headers.get("Authorization", "")
    if token and same_secret(given, f"Bearer {token}"):
        return True
    # A reverse proxy on this host makes every caller look local: forwarding
    # headers from a proxy not in server.trusted_proxies mean the token is
    # required; from a trusted one, the client it names must be local.
    if forwarded(request):
        return False
    return _loopback(client_address(request))


def _loopback(address: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((address or "").split("%")[0])
    except ValueError:
        return False
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


async def scope_of(request: web.Request) -> stats_view.Scope:
    services = request.app[SERVICES]
    names = {t.id: t.name for t in await services.store.list_tenants()}
    if request.headers.get("X-Api-Key") or request.get(ACTING_TENANT) is not None:
        return stats_view.Scope((await tenant(request)).id, names)
    if operator_allowed(request):
        return stats_view.Scope(None, names)
    raise web.HTTPUnauthorized(reason="missing or wrong X-Api-Key")


@routes.get("/api/v1/stats")
async def stats(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    scope = await scope_of(request)
    # The daemon's clock (the one the breakers and schedules run on).
    now = services.monitor.now() if services.monitor else None
    body = await stats_view.build(services.store, services.router, services.monitor, scope,
                                  now=now)
    body["node"] = services.settings.dispatcher.node_name
    return web.json_response(body, headers={"Cache-Control": "no-store"})


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    if not operator_allowed(request):
        raise web.HTTPUnauthorized(reason="metrics: loopback only, or Authorization: Bearer "
                                          "<server.metrics_token>")
    services = request.app[SERVICES]
    if services.monitor is None:
        raise web.HTTPServiceUnavailable(reason="metrics are not collected in this process")
    await refresh(services)
    body = services.monitor.metrics.render()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def refresh(services: Services) -> None:
    assert services.monitor is not None
    tenants = {t.id: t.name for t in await services.store.list_tenants()}
    names = {c.id: (tenants.get(c.tenant, str(c.tenant)), c.name)
             for c in await services.store.list_campaigns()}
    services.monitor.metrics.spool(await services.store.counts(), names,
                                   await services.store.outbox_backlog())
    services.monitor.metrics.channels(services.router.runners.values(),
                                      services.monitor.now())
