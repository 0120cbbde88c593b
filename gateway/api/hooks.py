"""`/hooks/{name}/...`: callbacks from providers and gateways, handed to the
channel that registered that hook name. That channel checks the caller and,
when its provider sends several channels' callbacks to one URL (a Dinstar's
ports, the numbers of one Meta app), hands each on to the channel it
concerns."""

from __future__ import annotations

from aiohttp import web

from gateway.api.http import SERVICES

routes = web.RouteTableDef()


@routes.route("*", "/hooks/{name}{sub:(/.*)?}")
async def hook(request: web.Request) -> web.StreamResponse:
    receiver = request.app[SERVICES].hooks.get(request.match_info["name"])
    if receiver is None:
        raise web.HTTPNotFound(reason="no channel receives callbacks at this path")
    return await receiver.handle_hook(request, request.match_info["sub"])
