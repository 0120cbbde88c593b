"""Reports: every message as CSV (streamed), and a daily summary per campaign.

`GET /api/v1/reports/messages.csv?campaign=&state=&from=&to=` walks the
spool a keyset page at a time and writes as it goes: memory stays flat
however many rows match (bench/report.py measures it on a million).
`GET /api/v1/reports/daily[.csv]?campaign=&from=&to=&tz=` counts per local
day (of creation) and campaign, with cost.
"""

from __future__ import annotations

import datetime as dt
import io
import time
from collections.abc import AsyncIterator
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from gateway import schedule
from gateway.api import parse
from gateway.api.http import SERVICES, tenant
from gateway.api.render import iso
from gateway.intake import IntakeError
from gateway.stats_view import NOT_PROCESSED, PROCESSED
from spool.base import ListFilter, Message, State
from spool.csvsafe import SafeWriter

routes = web.RouteTableDef()

COLUMNS = ["id", "campaign", "destination", "state", "state_name", "channel", "attempts",
           "segments", "cost", "error", "agent", "provider_ref", "created_at", "sent_at",
           "delivered_at", "message"]
_FLUSH_CHARS = 64 * 1024
MAX_DAYS = 92


async def _filter(request: web.Request) -> tuple[ListFilter, float | None, dict[int, str]]:
    services = request.app[SERVICES]
    owner = await tenant(request)
    q = request.query
    names = {c.id: c.name for c in await services.store.list_campaigns(owner.id)}
    campaign = None
    if q.get("campaign"):
        campaign = next((i for i, n in names.items() if n == q["campaign"]), None)
        if campaign is None:
            raise IntakeError(f"unknown campaign {q['campaign']!r}", field="campaign", status=422)
    since = parse.timestamp(q.get("from"), "from")
    until = parse.timestamp(q.get("to"), "to")
    where = ListFilter(tenant=owner.id, campaign=campaign, state=parse.state(q.get("state")),
                       since=since, limit=1000)
    return where, until, names


async def _matching(request: web.Request, where: ListFilter, until: float | None
                    ) -> AsyncIterator[Message]:
    async for m in request.app[SERVICES].store.iter_messages(where):
        # The spool has no end-date filter yet; rows past `to` are skipped here.
        if until is None or m.created_at < until:
            yield m


@routes.get("/api/v1/reports/messages.csv")
async def messages_csv(request: web.Request) -> web.StreamResponse:
    where, until, names = await _filter(request)
    response = web.StreamResponse(headers={
        "Content-Type": "text/csv; charset=utf-8", "Cache-Control": "no-store",
        "Content-Disposition": 'attachment; filename="messages.csv"'})
    response.enable_chunked_encoding()
    await response.prepare(request)
    buf = io.StringIO()
    out = SafeWriter(buf, delimiter=";", lineterminator="\r\n")  # no cell is a formula
    out.writerow(COLUMNS)
    async for m in _matching(request, where, until):
        out.writerow(_row(m, names))
        if buf.tell() >= _FLUSH_CHARS:
            await response.write(buf.getvalue().encode("utf-8"))
            buf.seek(0)
            buf.truncate()
    await response.write(buf.getvalue().encode("utf-8"))
    await response.write_eof()
    return response


def _row(m: Message, names: dict[int, str]) -> list[Any]:
    return [m.id, names.get(m.campaign, m.campaign), m.destination, int(m.state), m.state.name,
            m.channel or "", m.attempts, m.segments, round(m.cost, 6), m.error or "",
            m.agent or "", m.provider_ref or "", iso(m.created_at), iso(m.sent_at) or "",
            iso(m.delivered_at) or "", m.message]


DAILY_KEYS = ["total", "processed", "not_processed", "other", "blocked", "sent", "delivered",
              "failed", "cancelled"]


def _zone(name: str) -> ZoneInfo:
    try:
        return schedule.zone(name)
    except ValueError as err:
        raise IntakeError(str(err), field="tz") from None


async def _daily(request: web.Request) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    where, until, names = await _filter(request)
    zone = _zone(request.query.get("tz", "UTC"))
    now = time.time()
    if where.since is None:
        today = dt.datetime.fromtimestamp(now, zone).replace(hour=0, minute=0, second=0,
                                                             microsecond=0)
        where = ListFilter(where.tenant, where.campaign, where.state,
                           (today - dt.timedelta(days=6)).timestamp(), 0, where.limit)
    assert where.since is not None
    if ((until or now) - where.since) > MAX_DAYS * 86400:
        raise IntakeError(f"at most {MAX_DAYS} days per report", field="from")
    days: dict[tuple[str, str], dict[str, Any]] = {}
    async for m in _matching(request, where, until):
        day = dt.datetime.fromtimestamp(m.created_at, zone).date().isoformat()
        name = names.get(m.campaign, str(m.campaign))
        entry = days.setdefault((day, name), {"date": day, "campaign": name,
                                              **dict.fromkeys(DAILY_KEYS, 0), "cost": 0.0})
        for key in _buckets(m.state):
            entry[key] += 1
        entry["cost"] += m.cost
    rows = [days[k] | {"cost": round(days[k]["cost"], 4)} for k in sorted(days)]
    return rows, {"from": iso(where.since), "to": iso(until or now), "tz": zone.key}


def _buckets(state: State) -> tuple[str, ...]:
    group = ("processed" if state in PROCESSED else "not_processed" if state in NOT_PROCESSED
             else "other" if state == State.INVALID else "blocked" if state == State.BLOCKED
             else "cancelled")
    own = {State.SENT: "sent", State.DELIVERED: "delivered", State.FAILED: "failed"}.get(state)
    return ("total", group, own) if own else ("total", group)


@routes.get("/api/v1/reports/daily")
async def daily(request: web.Request) -> web.Response:
    rows, span = await _daily(request)
    return web.json_response({**span, "days": rows})


@routes.get("/api/v1/reports/daily.csv")
async def daily_csv(request: web.Request) -> web.Response:
    rows, _ = await _daily(request)
    buf = io.StringIO()
    out = SafeWriter(buf, delimiter=";", lineterminator="\r\n")  # campaign names are anyone's
    out.writerow(["date", "campaign", *DAILY_KEYS, "cost"])
    out.writerows([r["date"], r["campaign"], *[r[k] for k in DAILY_KEYS], r["cost"]]
                  for r in rows)
    return web.Response(text=buf.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": 'attachment; filename="daily.csv"'})
