"""Campaigns and the blacklist over HTTP, scoped to the caller's tenant."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from gateway.api import parse, render
from gateway.api.http import SERVICES, json_body, tenant
from gateway.intake import IntakeError
from gateway.journeys import parse_policy
from gateway.phone import InvalidNumber, normalize
from gateway.schedule import parse_schedule
from gateway.services import Services
from spool.base import MARKETING_SCOPE_PREFIX, SENDER_SCOPE_PREFIX, Campaign, NotFound

routes = web.RouteTableDef()
OPERATOR_TENANT = 1


async def _campaign(request: web.Request) -> Campaign:
    services = request.app[SERVICES]
    owner = await tenant(request)
    found = await services.store.campaign_by_name(owner.id, request.match_info["name"])
    if found is None:
        raise NotFound(f"campaign {request.match_info['name']!r} not found")
    return found


def campaign_changes(body: dict[str, Any], services: Services) -> dict[str, Any]:
    """Validate the settable attributes of a campaign; each error names its field."""
    out: dict[str, Any] = {}
    for name, check in _CHECKS.items():
        if name in body:
            out[name] = check(body, services)
    return out


def _channels(body: dict[str, Any], services: Services) -> tuple[str, ...]:
    names = body["channels"]
    known = services.router.nameable()
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise IntakeError("channels must be a list of channel names", field="channels")
    unknown = [n for n in names if n not in known]
    if unknown:
        raise IntakeError(f"unknown channel(s) {', '.join(unknown)} "
                          f"(configured: {', '.join(sorted(known))})", field="channels")
    return tuple(names)


def _in_doubt(body: dict[str, Any], _: Services) -> str:
    if body["in_doubt"] not in ("resend", "hold"):
        raise IntakeError("in_doubt must be 'resend' or 'hold'", field="in_doubt")
    return str(body["in_doubt"])


def _schedule(body: dict[str, Any], _: Services) -> Any:
    if body["schedule"] is not None:
        try:
            parse_schedule(body["schedule"])
        except (ValueError, TypeError, AttributeError) as err:
            raise IntakeError(str(err), field="schedule") from None
    return body["schedule"]


def _bool(body: dict[str, Any], name: str) -> bool:
    if not isinstance(body[name], bool):
        raise IntakeError(f"{name} must be true or false", field=name)
    return body[name]


_CHECKS: dict[str, Callable[[dict[str, Any], Services], Any]] = {
    "enabled": lambda b, _: _bool(b, "enabled"),
    "dncr_check": lambda b, _: _bool(b, "dncr_check"),
    "channels": _channels,
    "priority": lambda b, _: _required_int(b, "priority", -1000, 1000),
    "time_between_ms": lambda b, _: _required_int(b, "time_between_ms", 0, 86_400_000),
    "in_doubt": _in_doubt,
    "schedule": _schedule,
    "out_of_time_message": lambda b, _: parse.text(b, "out_of_time_message", max_len=1000),
    "auto_replies": lambda b, _: _auto_replies(b),
    "smart": lambda b, _: _smart(b),
}


def _smart(body: dict[str, Any]) -> dict[str, Any] | None:
    if body["smart"] is None:
        return None
    try:
        parse_policy(body["smart"])
    except ValueError as err:
        field, _, message = str(err).partition(": ")
        raise IntakeError(message, field=field) from None
    return dict(body["smart"])


def _required_int(body: dict[str, Any], name: str, lo: int, hi: int) -> int:
    value = parse.integer(body, name, lo=lo, hi=hi)
    if value is None:  # null or "": a campaign always has one
        raise IntakeError(f"{name} must be an integer from {lo} to {hi}", field=name)
    return value


def _auto_replies(body: dict[str, Any]) -> dict[str, str] | None:
    value = body["auto_replies"]
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and k.strip() and isinstance(v, str) and v
            for k, v in value.items()):
        raise IntakeError("auto_replies must map keywords to reply texts", field="auto_replies")
    return value


@routes.get("/api/v1/campaigns")
async def list_campaigns(request: web.Request) -> web.Response:
    owner = await tenant(request)
    found = await request.app[SERVICES].store.list_campaigns(owner.id)
    return web.json_response({"campaigns": [render.campaign(c) for c in found]})


@routes.post("/api/v1/campaigns")
async def create_campaign(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise IntakeError("expected a JSON object", field="body")
    name = parse.text(body, "name", required=True, max_len=200) or ""
    changes = campaign_changes({k: v for k, v in body.items() if k != "name"}, services)
    created = await services.store.create_campaign(Campaign(id=0, tenant=owner.id, name=name,
                                                            **changes))
    await services.campaigns.reload()
    return web.json_response(render.campaign(created), status=201)


@routes.get("/api/v1/campaigns/{name}")
async def get_campaign(request: web.Request) -> web.Response:
    return web.json_response(render.campaign(await _campaign(request)))


@routes.patch("/api/v1/campaigns/{name}")
async def update_campaign(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    campaign = await _campaign(request)
    body = await json_body(request)
    if not isinstance(body, dict):
        raise IntakeError("expected a JSON object", field="body")
    updated = await services.store.update_campaign(campaign.id,
                                                   **campaign_changes(body, services))
    await services.campaigns.reload()
    return web.json_response(render.campaign(updated))


@routes.post("/api/v1/campaigns/{name}/{action:start|stop}")
async def start_stop(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    campaign = await _campaign(request)
    enabled = request.match_info["action"] == "start"
    updated = await services.store.update_campaign(campaign.id, enabled=enabled)
    await services.campaigns.reload()  # takes effect before the next claim
    return web.json_response(render.campaign(updated))


@routes.delete("/api/v1/campaigns/{name}/messages")
async def delete_unprocessed(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    campaign = await _campaign(request)
    count = await services.store.cancel_unprocessed(campaign.id, "unprocessed deleted")
    return web.json_response({"cancelled": count})


async def _blacklist_scope(request: web.Request, name: str | None) -> int | None:
    """A campaign of the caller's, or the global list (operator tenant only)."""
    services = request.app[SERVICES]
    owner = await tenant(request)
    if not name:
        if owner.id != OPERATOR_TENANT:
            raise IntakeError("campaign is required: the global list is the operator's",
                              field="campaign")
        return None
    campaign = await services.store.campaign_by_name(owner.id, name)
    if campaign is None:
        raise IntakeError(f"unknown campaign {name!r}", field="campaign", status=422)
    return campaign.id


def _numbers(body: Any, region: str) -> list[str]:
    if not isinstance(body, dict) or not isinstance(body.get("destinations"), list):
        raise IntakeError("destinations must be a list of phone numbers", field="destinations")
    out = []
    for i, raw in enumerate(body["destinations"]):
        try:
            out.append(normalize(str(raw), region))
        except InvalidNumber as err:
            raise IntakeError(str(err), field=f"destinations[{i}]") from None
    return out


@routes.get("/api/v1/blacklist")
async def list_blacklist(request: web.Request) -> web.Response:
    # `scope=whatsapp_marketing:<channel>`: the customers who stopped marketing
    # messages on that WhatsApp channel; `scope=sender_stop:<channel>`: the
    # numbers the provider says unsubscribed from that sender (global
    # entries: the operator's).
    entries = request.query.get("scope", "")
    if len(request.query.get("campaign", "")) > 200:  # checked even when a scope ignores it
        raise IntakeError("campaign: at most 200 characters", field="campaign")
    if entries and not entries.startswith((MARKETING_SCOPE_PREFIX, SENDER_SCOPE_PREFIX)):
        raise IntakeError(f"scope must be {MARKETING_SCOPE_PREFIX}<channel>, "
                          f"{SENDER_SCOPE_PREFIX}<channel> or empty", field="scope")
    campaign = await _blacklist_scope(request,
                                      None if entries else request.query.get("campaign"))
    limit = parse.integer(dict(request.query), "limit", lo=1, hi=10_000) or 1000
    found = await request.app[SERVICES].store.blacklist_list(
        campaign, limit=limit, after=request.query.get("after", ""), scope=entries)
    numbers = [d for d, _ in found]
    return web.json_response({"destinations": numbers,
                              "next_after": numbers[-1] if len(numbers) == limit else None})


@routes.post("/api/v1/blacklist")
@routes.delete("/api/v1/blacklist")
async def change_blacklist(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await json_body(request)
    name = body.get("campaign") if isinstance(body, dict) else None
    if name is not None and not isinstance(name, str):
        raise IntakeError("campaign must be a campaign name", field="campaign")
    scope = await _blacklist_scope(request, name)
    numbers = _numbers(body, services.settings.phone.default_region)
    entries = [(n, scope) for n in numbers]
    if request.method == "POST":
        return web.json_response({"added": await services.store.blacklist_add(entries)})
    return web.json_response({"removed": await services.store.blacklist_remove(entries)})
