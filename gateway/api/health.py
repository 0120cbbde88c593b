"""Liveness and readiness for systemd, load balancers and operators."""

from __future__ import annotations

from aiohttp import web

from gateway.api.http import SERVICES
from gateway.api.stats import operator_allowed
from spool.base import Store, StoreError

routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    # Liveness: the event loop answers. Readiness is /readyz.
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    problems = await _storage_problems(services.store)
    up = [name for name, r in services.router.runners.items() if r.up()]
    if not up:
        problems.append("no channel is up")
    if not services.ready:
        problems.append("starting or stopping")
    status = 503 if problems else 200
    if not operator_allowed(request):
        # What is broken (storage errors, channel names) is for operators:
        # this host, or the metrics token. Load balancers need the status only.
        return web.json_response({"ready": not problems}, status=status)
    return web.json_response({"ready": not problems, "problems": problems, "channels_up": up},
                             status=status)


async def _storage_problems(store: Store) -> list[str]:
    # Ready means able to accept a message, which takes a write: a store
    # that answers reads but cannot write (full disk, locked file, read-only
    # standby) is not ready. Writes are judged by the daemon's own recent
    # ones; the store probes only when those are a few seconds old.
    try:
        await store.ping()
    except StoreError as err:
        return [f"storage: {err}"]
    try:
        await store.check_writes()
    except StoreError as err:
        return [f"storage writes: {err}"]
    return []
