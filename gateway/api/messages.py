"""The message doors: the legacy form endpoint and /api/v1/messages."""

from __future__ import annotations

from aiohttp import web

from drivers.webio import read_form
from gateway.api import parse, render
from gateway.api.http import SERVICES, charge, client_address, forwarded, json_body, tenant
from gateway.intake import IntakeError, Submission
from spool.base import ListFilter, Message

routes = web.RouteTableDef()

DEFAULT_TENANT = 1  # the operator's own tenant, created by the first migration


@routes.post("/Integra/resources/SMS/SendSMS")
async def legacy_send(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    if request.headers.get("X-Api-Key") or forwarded(request) \
            or client_address(request) not in services.open_networks:
        tenant_id = (await tenant(request)).id
    else:
        tenant_id = DEFAULT_TENANT
        charge(request, tenant_id)
    form = await read_form(request)  # BadBody (charset=bogus, not UTF-8): a 400
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    item = parse.submission(fields)
    accepted = await services.intake.submit(tenant_id, [item])
    first = accepted.ids[0]
    return web.json_response({"id": first.id, "state": int(first.state),
                              "state_name": first.state.name})


@routes.post("/api/v1/messages")
async def create_messages(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    body = await json_body(request)
    items, single = _submissions(body, services.settings.intake.max_batch)
    if len(items) > 1:
        charge(request, owner.id, len(items) - 1)  # a batch counts per message
    accepted = await services.intake.submit(owner.id, items,
                                            batch_field=None if single else "messages")
    out = [{"id": i.id, "state": int(i.state), "state_name": i.state.name,
            "duplicate": i.duplicate} for i in accepted.ids]
    payload: dict[str, object] = {"messages": out, "queue_depth_ahead": accepted.depth_ahead}
    if single:
        payload.update(out[0])
    return web.json_response(payload, status=202)


_BATCH_FIELDS = frozenset({"messages"})


def _submissions(body: object, max_batch: int) -> tuple[list[Submission], bool]:
    if isinstance(body, dict) and "messages" in body:
        parse.known_fields(body, _BATCH_FIELDS)
        batch = body["messages"]
        if not isinstance(batch, list) or not batch:
            raise IntakeError("messages must be a non-empty list", field="messages")
        if len(batch) > max_batch:
            raise IntakeError(f"at most {max_batch} messages per request", field="messages")
        return [_submission(b, f"messages[{i}].") for i, b in enumerate(batch)], False
    return [_submission(body)], True


def _submission(body: object, where: str = "") -> Submission:
    parse.known_fields(body, parse.SUBMISSION_FIELDS, where)
    return parse.submission(body, where)


async def _render(request: web.Request, m: Message) -> dict[str, object]:
    campaign = request.app[SERVICES].campaigns.by_id(m.campaign)
    return render.message(m, campaign.name if campaign else None)


@routes.get("/api/v1/messages/{id:\\d{1,18}}")
async def get_message(request: web.Request) -> web.Response:
    store = request.app[SERVICES].store
    owner = await tenant(request)
    m = await store.get_message(owner.id, int(request.match_info["id"]))
    body = await _render(request, m)
    body["history"] = [render.event(e) for e in await store.message_events(m.id)]
    if m.kind == "whatsapp":
        fallback = await store.fallback_of(m.id)
        body["fallback"] = None if fallback is None else {
            "state": fallback.state, "error_code": fallback.error_code,
            "utility_message": fallback.utility_id, "until": render.iso(fallback.until)}
    return web.json_response(body)


@routes.get("/api/v1/messages")
async def list_messages(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    q = request.query
    campaign_id = None
    if q.get("campaign"):
        campaign = await services.campaigns.by_name(owner.id, q["campaign"])
        if campaign is None:
            raise IntakeError(f"unknown campaign {q['campaign']!r}", field="campaign", status=422)
        campaign_id = campaign.id
    limit = parse.integer(dict(q), "limit", lo=1, hi=1000) or 100
    after = parse.integer(dict(q), "after", lo=0, hi=2**62) or 0
    where = ListFilter(tenant=owner.id, campaign=campaign_id, state=parse.state(q.get("state")),
                       since=parse.timestamp(q.get("since"), "since"), after_id=after,
                       limit=limit)
    found = await services.store.list_messages(where)
    page = [await _render(request, m) for m in found]
    nxt = found[-1].id if len(found) == limit else None
    return web.json_response({"messages": page, "next_after": nxt})


@routes.delete("/api/v1/messages/{id:\\d{1,18}}")
async def cancel_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    m = await services.store.cancel_message(owner.id, int(request.match_info["id"]))
    return web.json_response(await _render(request, m))


@routes.post("/api/v1/messages/{id:\\d{1,18}}/release")
async def release_message(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    owner = await tenant(request)
    m = await services.store.release_message(owner.id, int(request.match_info["id"]))
    return web.json_response(await _render(request, m))

