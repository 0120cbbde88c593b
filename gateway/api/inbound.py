"""Inbound messages and conversations (the legacy 'recordings'), and agent replies."""

from __future__ import annotations

from aiohttp import web

from gateway.api import parse, render
from gateway.api.http import SERVICES, json_body, tenant
from gateway.intake import IntakeError
from gateway.services import Services
from spool.base import InboundFilter, NewMessage, Tenant

routes = web.RouteTableDef()
REPLY_PRIORITY = 100


async def _filter(request: web.Request, owner: Tenant) -> InboundFilter:
    services = request.app[SERVICES]
    q = dict(request.query)
    campaign_id = None
    if q.get("campaign"):
        campaign = await services.campaigns.by_name(owner.id, q["campaign"])
        if campaign is None:
            raise IntakeError(f"unknown campaign {q['campaign']!r}", field="campaign", status=422)
        campaign_id = campaign.id
    origin = q.get("origin")
    if origin:
        origin = _e164(services, origin)
    return InboundFilter(
        tenant=owner.id, start=parse.timestamp(q.get("start"), "start"),
        end=parse.timestamp(q.get("end"), "end"), origin=origin, campaign=campaign_id,
        agent=q.get("agent") or None, after_id=parse.integer(q, "after", lo=0, hi=2**62) or 0,
        limit=parse.integer(q, "limit", lo=1, hi=1000) or 100)


def _e164(services: Services, raw: str) -> str:
    from gateway.phone import InvalidNumber, normalize

    try:
        return normalize(raw, services.settings.phone.default_region)
    except InvalidNumber:
        return raw


@routes.get("/api/v1/inbound")
async def list_inbound(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    where = await _filter(request, await tenant(request))
    found = await services.store.list_inbound(where)
    return web.json_response({"inbound": [render.inbound(i) for i in found],
                              "next_after": found[-1].id if len(found) == where.limit else None})


@routes.get("/api/v1/conversations")
async def list_conversations(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    where = await _filter(request, await tenant(request))
    found = await services.store.list_conversations(where)
    return web.json_response({
        "conversations": [render.conversation(c, _name(services, c.campaign)) for c in found],
        "next_after": found[-1].id if len(found) == where.limit else None})


@routes.get("/api/v1/conversations/{id:\\d{1,18}}")
async def get_conversation(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    conv = await services.store.get_conversation(owner.id, int(request.match_info["id"]))
    inbound = await services.store.list_inbound(
        InboundFilter(tenant=owner.id, conversation=conv.id, limit=1000))
    body = render.conversation(conv, _name(services, conv.campaign))
    body["inbound"] = [render.inbound(i) for i in inbound]
    return web.json_response(body)


@routes.post("/api/v1/conversations/{id:\\d{1,18}}/reply")
async def reply(request: web.Request) -> web.Response:
    """An agent answers: queued at once, on the channel the customer wrote to."""
    services = request.app[SERVICES]
    owner = await tenant(request)
    conv = await services.store.get_conversation(owner.id, int(request.match_info["id"]))
    body = await json_body(request)
    if not isinstance(body, dict):
        raise IntakeError("expected a JSON object", field="body")
    text = parse.text(body, "message", required=True, max_len=10_000) or ""
    agent = parse.text(body, "agent", max_len=200)
    campaign = conv.campaign or await _default_campaign(services, owner.id)
    runner = services.router.runners.get(conv.channel)
    kind = runner.kind if runner else "sms"
    data: dict[str, object] = {"_smsgw": {"channel": conv.channel, "conversation": conv.id}}
    if kind == "whatsapp":
        data["whatsapp"] = {"type": "text"}
    [row] = await services.store.insert_messages([NewMessage(
        tenant=owner.id, campaign=campaign, destination=conv.customer, message=text,
        priority=REPLY_PRIORITY, agent=agent, data=data, kind=kind)])
    services.intake.accepted(1)
    return web.json_response({"id": row.id, "state": int(row.state),
                              "state_name": row.state.name}, status=202)


async def _default_campaign(services: Services, tenant_id: int) -> int:
    found = await services.campaigns.by_name(tenant_id, services.settings.intake.default_campaign)
    if found is None:
        raise IntakeError("the conversation has no campaign and the tenant no default one",
                          field="campaign", status=422)
    return found.id


def _name(services: Services, campaign: int | None) -> str | None:
    found = services.campaigns.by_id(campaign) if campaign else None
    return found.name if found else None
