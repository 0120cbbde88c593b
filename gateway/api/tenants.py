"""Tenants and their API keys over HTTP: the operator's tenant only.

The same moves as `smsgw tenant ...`. A change made here drops this
daemon's key cache at once; other daemons see the store's auth generation
move within about two seconds.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from gateway.api.http import SERVICES, json_body, tenant
from gateway.auth import generate_key, hash_key
from gateway.intake import IntakeError
from spool.base import API_KEY_ID_CHARS, NotFound, Tenant

routes = web.RouteTableDef()
OPERATOR_TENANT = 1
_KEY_ID = re.compile(r"^[0-9a-f]{6,64}$")


def _render(t: Tenant) -> dict[str, Any]:
    return {"id": t.id, "name": t.name, "webhook_url": t.webhook_url,
            "state": "removed" if t.removed else "disabled" if t.disabled else "active"}


async def _operator(request: web.Request) -> None:
    if (await tenant(request)).id != OPERATOR_TENANT:
        raise web.HTTPForbidden(reason="only the operator's tenant manages tenants")


async def _named(request: web.Request) -> Tenant:
    """The tenant in the path, after checking the caller is the operator."""
    await _operator(request)
    name = request.match_info["name"]
    found = await request.app[SERVICES].store.tenant_by_name(name)
    if found is None or found.removed:
        raise NotFound(f"tenant {name!r} not found")
    return found


@routes.get("/api/v1/tenants")
async def list_tenants(request: web.Request) -> web.Response:
    await _operator(request)
    found = await request.app[SERVICES].store.list_tenants()
    return web.json_response({"tenants": [_render(t) for t in found]})


@routes.get("/api/v1/tenants/{name}/keys")
async def list_keys(request: web.Request) -> web.Response:
    owner = await _named(request)
    found = await request.app[SERVICES].store.list_api_keys(owner.id)
    return web.json_response({"keys": [{"id": k.id, "label": k.label,
                                        "created_at": k.created_at} for k in found]})


@routes.post("/api/v1/tenants/{name}/keys")
async def add_key(request: web.Request) -> web.Response:
    owner = await _named(request)
    label = None
    if request.can_read_body:
        body = await json_body(request)
        label = body.get("label") if isinstance(body, dict) else None
        if label is not None and (not isinstance(label, str) or len(label) > 200):
            raise IntakeError("label must be text of at most 200 characters", field="label")
    key = generate_key()
    await request.app[SERVICES].store.add_api_key(owner.id, hash_key(key), label)
    return web.json_response({"key": key, "id": hash_key(key)[:API_KEY_ID_CHARS],
                              "label": label}, status=201, headers={"Cache-Control": "no-store"})


@routes.delete("/api/v1/tenants/{name}/keys/{key_id}")
@routes.delete("/api/v1/tenants/{name}/keys")
async def revoke_keys(request: web.Request) -> web.Response:
    owner = await _named(request)
    key_id = request.match_info.get("key_id")
    if key_id is not None and not _KEY_ID.match(key_id):
        raise IntakeError("a key id is 6 to 64 lowercase hex digits", field="key_id")
    services = request.app[SERVICES]
    revoked = await services.store.revoke_api_keys(owner.id, key_id)
    services.auth.forget()  # refused on its very next request here
    return web.json_response({"revoked": revoked})


@routes.post("/api/v1/tenants/{name}/{action:disable|enable}")
async def toggle(request: web.Request) -> web.Response:
    owner = await _named(request)
    disable = request.match_info["action"] == "disable"
    if disable and owner.id == OPERATOR_TENANT:
        raise IntakeError("the operator's tenant cannot be disabled", field="name")
    services = request.app[SERVICES]
    await services.store.set_tenant_disabled(owner.id, disable)
    services.auth.forget()
    updated = await services.store.tenant_by_name(owner.name)
    assert updated is not None
    return web.json_response(_render(updated))


@routes.delete("/api/v1/tenants/{name}")
async def remove(request: web.Request) -> web.Response:
    owner = await _named(request)
    if owner.id == OPERATOR_TENANT:
        raise IntakeError("the operator's tenant cannot be removed", field="name")
    force = request.query.get("force", "false")
    if force not in ("true", "false"):
        raise IntakeError("force must be true or false", field="force")
    services = request.app[SERVICES]
    cancelled = await services.store.remove_tenant(owner.id, force=force == "true")
    services.auth.forget()
    await services.campaigns.reload()
    return web.json_response({"removed": owner.name, "cancelled": cancelled})
