"""Liveness and readiness for systemd, load balancers and operators."""

from __future__ import annotations

from aiohttp import web

from gateway.api.http import SERVICES
from spool.base import StoreError

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    # Liveness: the event loop answers. Readiness is /readyz.
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    problems = []
    try:
        await services.store.ping()
    except StoreError as err:
        problems.append(f"storage: {err}")
    up = [name for name, r in services.router.runners.items() if r.up()]
    if not up:
        problems.append("no channel is up")
    if not services.ready:
        problems.append("starting or stopping")
    status = 503 if problems else 200
    return web.json_response({"ready": not problems, "problems": problems, "channels_up": up},
                             status=status)
