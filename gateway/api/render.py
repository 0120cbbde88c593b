"""JSON shapes of the API's records."""

from __future__ import annotations

import datetime as dt
from typing import Any

from spool.base import Campaign, Conversation, Event, InboundRecord, Journey, Message


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    try:
        at = dt.datetime.fromtimestamp(ts, dt.UTC)
    except (OverflowError, ValueError, OSError):
        # Past year 9999 (a due time of "now + 1e308 s" stored before
        # durations were bounded): no date to show.
        return None
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def message(m: Message, campaign_name: str | None) -> dict[str, Any]:
    return {
        "id": m.id, "campaign": campaign_name, "destination": m.destination,
        "message": m.message, "priority": m.priority, "state": int(m.state),
        "state_name": m.state.name, "channel": m.channel, "attempts": m.attempts,
        "provider_ref": m.provider_ref, "error": m.error, "agent": m.agent, "data": m.data,
        "kind": m.kind, "segments": m.segments, "cost": m.cost,
        "idempotency_key": m.idempotency_key, "created_at": iso(m.created_at),
        "sent_at": iso(m.sent_at), "delivered_at": iso(m.delivered_at),
        "next_attempt_at": iso(m.next_attempt_at) if m.next_attempt_at else None,
    }


def event(e: Event) -> dict[str, Any]:
    return {"at": iso(e.at), "state": int(e.state), "state_name": e.state.name,
            "note": e.note, "channel": e.channel}


def campaign(c: Campaign) -> dict[str, Any]:
    return {
        "name": c.name, "enabled": c.enabled, "channels": list(c.channels),
        "priority": c.priority, "in_doubt": c.in_doubt, "dncr_check": c.dncr_check,
        "time_between_ms": c.time_between_ms, "schedule": c.schedule,
        "out_of_time_message": c.out_of_time_message, "auto_replies": c.auto_replies,
        "smart": c.smart,
        "created_at": iso(c.created_at),
    }


def inbound(i: InboundRecord) -> dict[str, Any]:
    return {"id": i.id, "channel": i.channel, "sender": i.sender, "recipient": i.recipient,
            "text": i.text, "received_at": iso(i.received_at), "reply_to": i.reply_to,
            "conversation": i.conversation, "action": i.action, "data": i.data}


def conversation(c: Conversation, campaign_name: str | None) -> dict[str, Any]:
    return {"id": c.id, "campaign": campaign_name, "customer": c.customer,
            "channel": c.channel, "agent": c.agent, "started_at": iso(c.started_at),
            "last_at": iso(c.last_at), "inbound": c.inbound}


def journey(j: Journey, campaign_name: str | None, base_url: str) -> dict[str, Any]:
    return {"id": j.id, "campaign": campaign_name, "destination": j.destination,
            "state": j.state, "policy": j.policy, "step": j.step, "note": j.note,
            "next_at": iso(j.next_at), "created_at": iso(j.created_at),
            "clicked_at": iso(j.clicked_at),
            "links": [{"code": c, "short_url": f"{base_url.rstrip('/')}/r/{c}", "url": u}
                      for c, u in j.links]}
