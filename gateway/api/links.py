"""`/r/{code}` redirects, journeys, and the cost report."""

from __future__ import annotations

import time

import structlog
from aiohttp import web

from gateway.api import parse, render
from gateway.api.http import SERVICES, client_address, tenant
from gateway.intake import IntakeError
from gateway.links import redirectable

log = structlog.get_logger("smsgw.links")
routes = web.RouteTableDef()

NOT_FOUND_PAGE = ("<!doctype html><meta charset=utf-8><title>Link not found</title>"
                  "<meta name=viewport content='width=device-width'>"
                  "<p style='font:16px sans-serif;margin:2em'>This link is not valid "
                  "or has expired.</p>")
@routes.get("/r/{code}")
async def redirect(request: web.Request) -> web.StreamResponse:
    services = request.app[SERVICES]
    ip = client_address(request)
    now = time.time()
    if not services.miss_limiter.allow(ip, now):
        return web.Response(status=429, text="too many unknown links",
                            headers={"Retry-After": "60"})
    target = await services.links.get(request.match_info["code"])
    if target is None or (target.expires_at is not None and target.expires_at < now):
        services.miss_limiter.miss(ip)
        return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")
    if not redirectable(target.url):
        # Not a click: the answer could not have been sent (a control
        # character can't go in Location), and it is no visitor's guess.
        log.warning("link.unredirectable", code=target.code, journey=target.journey)
        return web.Response(status=404, text=NOT_FOUND_PAGE, content_type="text/html")
    services.clicks.visit(target, request.method, ip, request.headers.get("User-Agent"))
    return web.Response(status=302, headers={
        "Location": target.url, "Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
        "X-Robots-Tag": "noindex"})


@routes.get("/api/v1/journeys/{id:\\d{1,18}}")
async def get_journey(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    journey = await services.store.get_journey(owner.id, int(request.match_info["id"]))
    messages = await services.store.journey_messages(journey.id)
    campaign = services.campaigns.by_id(journey.campaign)
    body = render.journey(journey, campaign.name if campaign else None,
                          services.settings.server.public_base_url)
    body["steps"] = [{"step": n, "kind": m.kind, "message_id": m.id, "state": int(m.state),
                      "state_name": m.state.name, "channel": m.channel, "cost": m.cost,
                      "text": m.message, "sent_at": render.iso(m.sent_at),
                      "error": m.error} for n, m in enumerate(messages, start=1)]
    human, bot = await services.store.journey_clicks(journey.id)
    body["clicks"] = {"human": human, "bot": bot}
    body["cost"] = round(sum(m.cost for m in messages), 6)
    body["currency"] = services.settings.billing.currency
    return web.json_response(body)


@routes.post("/api/v1/journeys/{id:\\d{1,18}}/cancel")
async def cancel_journey(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    journey = await services.store.cancel_journey(owner.id, int(request.match_info["id"]),
                                                  "cancelled by the API")
    campaign = services.campaigns.by_id(journey.campaign)
    return web.json_response(render.journey(journey, campaign.name if campaign else None,
                                            services.settings.server.public_base_url))


@routes.get("/api/v1/reports/cost")
async def cost_report(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    q = request.query
    campaign_id = None
    if q.get("campaign"):
        found = await services.campaigns.by_name(owner.id, q["campaign"])
        if found is None:
            raise IntakeError(f"unknown campaign {q['campaign']!r}", field="campaign",
                              status=422)
        campaign_id = found.id
    lines = await services.store.cost_report(
        owner.id, campaign_id, parse.timestamp(q.get("since"), "since"),
        parse.timestamp(q.get("until"), "until"))
    out = [{"campaign": getattr(services.campaigns.by_id(line.campaign), "name", None),
            "kind": line.kind, "messages": line.messages, "cost": line.cost} for line in lines]
    return web.json_response({"currency": services.settings.billing.currency, "lines": out,
                              "total": round(sum(line.cost for line in lines), 6)})
