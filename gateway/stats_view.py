"""The monitoring picture: per campaign and per channel, with the reasons a
campaign is not sending. `GET /api/v1/stats`, the dashboard and
`smsgw status` all show this one structure.

Counts partition the spool: processed (SENT + DELIVERED + FAILED), not
processed (NONE + TO_PROCESS + SENDING + UNCONFIRMED), other (INVALID),
blocked (BLACKLIST hits) and cancelled add up to every message.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gateway.api.render import iso
from gateway.monitor import Monitor
from gateway.router import ChannelRunner, Router
from gateway.schedule import Schedule, is_open, parse_schedule
from spool.base import Campaign, CampaignCounts, NotFound, State, Store

NOT_PROCESSED = (State.NONE, State.TO_PROCESS, State.SENDING, State.UNCONFIRMED)
PROCESSED = (State.SENT, State.DELIVERED, State.FAILED)
_NEXT_OPEN_HORIZON_MIN = 8 * 24 * 60


@dataclass(frozen=True, slots=True)
class Scope:
    tenant: int | None  # None: every tenant (the operator's view)
    tenant_names: dict[int, str]


async def build(store: Store, router: Router, monitor: Monitor | None, scope: Scope, *,
                now: float | None = None, live: bool = True) -> dict[str, Any]:
    now = time.time() if now is None else now
    campaigns = await store.list_campaigns(scope.tenant)
    counts = {c.campaign: c for c in await store.counts()}
    clicked = await store.clicked_by_campaign(scope.tenant)
    channels = [channel_view(r, monitor, now, live) for r in router.runners.values()]
    ids = [c.id for c in campaigns]
    return {
        "generated_at": iso(now), "live": live,
        "campaigns": [campaign_view(c, counts.get(c.id), router, monitor, scope, now, live,
                                    clicked.get(c.id, 0)) for c in campaigns],
        "channels": channels,
        "chart": _chart(monitor, ids, now),
        "recent_failures": await _failures(store, monitor, scope, campaigns),
        "recent_clicks": await _clicks(store, scope, campaigns),
    }


def campaign_view(c: Campaign, counts: CampaignCounts | None, router: Router,
                  monitor: Monitor | None, scope: Scope, now: float, live: bool,
                  clicked: int = 0) -> dict[str, Any]:
    by_state = counts.by_state if counts else {}

    def n(*states: State) -> int:
        return sum(by_state.get(int(s), 0) for s in states)

    schedule = _schedule(c)
    on_schedule = is_open(schedule, now)
    view: dict[str, Any] = {
        "name": c.name, "tenant": scope.tenant_names.get(c.tenant, str(c.tenant)),
        "active": c.enabled, "on_schedule": on_schedule,
        "next_window_at": None if on_schedule else iso(next_open(schedule, now)),
        "channels": list(c.channels), "priority": c.priority, "dncr_check": c.dncr_check,
        "time_between_ms": c.time_between_ms, "schedule": c.schedule,
        "out_of_time_message": c.out_of_time_message, "in_doubt": c.in_doubt,
        "processed": n(*PROCESSED), "not_processed": n(*NOT_PROCESSED),
        "other": n(State.INVALID), "blocked": n(State.BLOCKED), "waiting": n(State.TO_PROCESS),
        "sending": n(State.SENDING), "sent": n(State.SENT), "delivered": n(State.DELIVERED),
        "failed": n(State.FAILED), "cancelled": n(State.CANCELLED),
        "unconfirmed": n(State.UNCONFIRMED),
        "clicked": clicked,  # journeys ended by a human click on a tracked link
        "cost": round(counts.cost, 4) if counts else 0.0,
        "send_rate_per_min": monitor.campaign_rate(c.id, now) if monitor else None,
        "states": {State(k).name: v for k, v in sorted(by_state.items()) if v},
    }
    pool = _pool(c, router)
    view["status"], view["diagnosis"] = diagnose(view, pool, now, live)
    return view


def diagnose(v: dict[str, Any], pool: Sequence[ChannelRunner], now: float, live: bool
             ) -> tuple[str, list[dict[str, str]]]:
    """A one-word status and the reasons behind it, each with what fixes it."""
    found: list[dict[str, str]] = []

    def say(code: str, text: str, fix: str = "") -> None:
        found.append({"code": code, "text": text, "fix": fix})

    if not v["active"]:
        say("stopped", "Stopped: nothing is sent until it is started.", "start")
    if not v["on_schedule"]:
        opens = f" It opens again at {v['next_window_at']}." if v["next_window_at"] else \
            " No window opens in the next 8 days."
        say("off_schedule", "Outside its schedule: messages wait in TO_PROCESS." + opens,
            "schedule")
    channel_problem = _channel_problem(v, pool, now) if live else None
    if channel_problem:
        say(*channel_problem)
    if v["blocked"]:
        say("blacklisted", f"{v['blocked']} message(s) were not sent: their numbers are on "
            "the do-not-contact list.", "blacklist")
    if v["unconfirmed"]:
        say("in_doubt", f"{v['unconfirmed']} message(s) may or may not have gone out before a "
            "crash; they wait for a release.", "release")
    if v["other"]:
        say("invalid", f"{v['other']} message(s) are invalid (bad number or too long).")
    return _status(v, found), found


def _status(v: dict[str, Any], found: list[dict[str, str]]) -> str:
    codes = {f["code"] for f in found}
    for code, status in (("stopped", "stopped"), ("off_schedule", "off schedule"),
                         ("no_channel", "no channel"), ("channels_down", "channel down"),
                         ("channels_resting", "channel resting")):
        if code in codes:
            return status
    return "sending" if v["waiting"] or v["sending"] else "idle"


def _channel_problem(v: dict[str, Any], pool: Sequence[ChannelRunner], now: float
                     ) -> tuple[str, str, str] | None:
    if not pool:
        return ("no_channel", "No SMS channel is configured.", "channels")
    up = [r for r in pool if r.up()]
    if not up:
        why = "; ".join(f"{r.name}: {_why_down(r)}" for r in pool)
        return ("channels_down", f"Every channel of its pool is down ({why}).", "channels")
    if all(not r.eligible(now) and r.load == 0 for r in up):
        why = "; ".join(f"{r.name}: {_why_resting(r, now)}" for r in up)
        return ("channels_resting", f"Every channel of its pool is resting ({why}).",
                "channels")
    return None


def _why_down(r: ChannelRunner) -> str:
    if not r._cfg.enabled:
        return "disabled in the configuration"
    return r.channel.health().last_error or r.last_error or "not answering"


def _why_resting(r: ChannelRunner, now: float) -> str:
    if now < r.blocked_until:
        return f"paused {r.blocked_until - now:.0f} s more after: {r.last_error}"
    return f"reached its daily limit of {r._cfg.daily_limit}"


def _pool(c: Campaign, router: Router) -> list[ChannelRunner]:
    return router.pool(c.channels, "sms", c.tenant)  # exactly the channels the router would use


def channel_view(r: ChannelRunner, monitor: Monitor | None, now: float, live: bool
                 ) -> dict[str, Any]:
    health = r.channel.health() if live else None
    per_min, sent_5m, errors_5m = monitor.channel_rates(r.name, now) if monitor else (0, 0, 0)
    attempts = sent_5m + errors_5m
    daily_limit = r._cfg.daily_limit
    return {
        "name": r.name, "kind": r.kind, "status": _channel_status(r, now) if live else "unknown",
        "up": r.up() if live else None,
        "signal_dbm": health.signal_dbm if health else None,
        "sent_per_min": per_min if monitor else None,
        "error_rate": round(errors_5m / attempts, 3) if attempts else 0.0,
        "errors_5m": errors_5m,
        "last_error": r.last_error or (health.last_error if health else None),
        "in_flight": r.load, "sent_today": r.sent_today, "daily_limit": daily_limit or None,
        "blocked_until": iso(r.blocked_until) if r.blocked_until > now else None,
        "breaker": r.breaker.state(now),
        # What refuses the channel itself ("authentication failed"): the
        # queue waits for the operator, not for the provider.
        "fault": r.fault,
        "cost": r.cost,
    }


def _channel_status(r: ChannelRunner, now: float) -> str:
    if not r._cfg.enabled:
        return "disabled"
    if not r.up():
        return "down"
    if now < r.blocked_until:
        return "resting"
    if r.breaker.state(now) == "half_open":
        return "probing"  # the rest is over: one message tries the channel
    if r._cfg.daily_limit and r.sent_today >= r._cfg.daily_limit:
        return "daily limit"
    return "up"


def _schedule(c: Campaign) -> Schedule | None:
    if not c.schedule:
        return None
    try:
        return parse_schedule(c.schedule)
    except ValueError:
        return parse_schedule({"timezone": "UTC", "windows": []})  # as CampaignBook does


def next_open(schedule: Schedule | None, now: float) -> float | None:
    """The first minute the schedule is open, within the next 8 days."""
    if schedule is None:
        return now
    start = (int(now) // 60 + 1) * 60  # windows are whole minutes
    for minute in range(_NEXT_OPEN_HORIZON_MIN):
        at = start + minute * 60
        if is_open(schedule, at):
            return at
    return None


def _chart(monitor: Monitor | None, ids: list[int], now: float) -> dict[str, Any]:
    series = monitor.chart(ids, now) if monitor else {"processed": [0] * 60, "failed": [0] * 60}
    return {"step_s": 60, "end": iso(now), **series}


async def _clicks(store: Store, scope: Scope, campaigns: list[Campaign]
                  ) -> list[dict[str, Any]]:
    names = {c.id: c.name for c in campaigns}
    return [{"at": iso(c.at), "journey": c.journey, "campaign": names.get(c.campaign),
             "destination": c.destination, "url": c.url, "user_agent": c.user_agent}
            for c in await store.recent_clicks(scope.tenant, 15)]


async def _failures(store: Store, monitor: Monitor | None, scope: Scope,
                    campaigns: list[Campaign]) -> list[dict[str, Any]]:
    if monitor is None:
        return []
    names = {c.id: c.name for c in campaigns}
    out: list[dict[str, Any]] = []
    # A copy: the recorder may add notes while we wait on the store.
    for note in list(reversed(monitor.failures))[:60]:
        if len(out) >= 15:
            break
        try:
            m = await store.get_message(scope.tenant, note.id)
        except NotFound:  # another tenant's
            continue
        out.append({"id": m.id, "at": iso(note.at), "campaign": names.get(m.campaign),
                    "destination": m.destination, "channel": note.channel, "error": note.error,
                    "final": note.final, "state": m.state.name})
    return out
