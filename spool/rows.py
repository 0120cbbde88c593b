"""Database rows to records; shared by every backend."""

from __future__ import annotations

import json
from typing import Any

from spool.base import (
    Campaign,
    Claimed,
    Conversation,
    Event,
    InboundRecord,
    Journey,
    Message,
    OutboxEvent,
    State,
    Tenant,
)

# sqlite3.Row, asyncpg.Record: anything indexable by column name.
Row = Any

CAMPAIGN_FIELDS = ("enabled", "channels", "priority", "in_doubt", "dncr_check",
                   "time_between_ms", "schedule", "out_of_time_message", "auto_replies",
                   "smart")


def loads(value: str | None) -> Any:
    return None if value is None else json.loads(value)


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))


def tenant(row: Row) -> Tenant:
    return Tenant(id=row["id"], name=row["name"], webhook_url=row["webhook_url"],
                  disabled=row["disabled_at"] is not None, removed=row["removed_at"] is not None)


def campaign(row: Row) -> Campaign:
    return Campaign(
        id=row["id"], tenant=row["tenant"], name=row["name"], enabled=bool(row["enabled"]),
        channels=tuple(json.loads(row["channels"] or "[]")), priority=row["priority"],
        in_doubt=row["in_doubt"], dncr_check=bool(row["dncr_check"]),
        time_between_ms=row["time_between_ms"], schedule=loads(row["schedule"]),
        out_of_time_message=row["out_of_time_message"], auto_replies=loads(row["auto_replies"]),
        smart=loads(row["smart"]),
        created_at=row["created_at"])


def campaign_column(name: str, value: Any) -> Any:
    """A campaign attribute as stored."""
    if name == "channels":
        return json.dumps(list(value))
    if name in ("schedule", "auto_replies", "smart"):
        return dumps(value)
    if name in ("enabled", "dncr_check"):
        return int(bool(value))
    return value


def message(row: Row) -> Message:
    return Message(
        id=row["id"], tenant=row["tenant"], campaign=row["campaign"],
        destination=row["destination"], message=row["message"], priority=row["priority"],
        state=State(row["state"]), channel=row["channel"], attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"], provider_ref=row["provider_ref"],
        error=row["error"], agent=row["agent"], data=loads(row["data"]), kind=row["kind"],
        cost=row["cost"], segments=row["segments"], created_at=row["created_at"],
        sent_at=row["sent_at"], delivered_at=row["delivered_at"],
        idempotency_key=row["idempotency_key"], journey_id=row["journey_id"])


def claimed(row: Row) -> Claimed:
    return Claimed(id=row["id"], tenant=row["tenant"], campaign=row["campaign"],
                   destination=row["destination"], message=row["message"], kind=row["kind"],
                   attempts=row["attempts"], data=loads(row["data"]))


def event(row: Row) -> Event:
    return Event(at=row["at"], state=State(row["state"]), note=row["note"],
                 channel=row["channel"])


def inbound(row: Row) -> InboundRecord:
    return InboundRecord(
        id=row["id"], channel=row["channel"], sender=row["sender"], recipient=row["recipient"],
        text=row["text"], received_at=row["received_at"], provider_ref=row["provider_ref"],
        tenant=row["tenant"], campaign=row["campaign"], reply_to=row["reply_to"],
        data=loads(row["data"]), conversation=row["conversation"], action=row["action"])


def journey(row: Row, links: tuple[tuple[str, str], ...] = ()) -> Journey:
    return Journey(
        id=row["id"], tenant=row["tenant"], campaign=row["campaign"],
        destination=row["destination"], state=row["state"], policy=json.loads(row["policy"]),
        wait_s=row["wait_s"], step=row["step"], next_at=row["next_at"], note=row["note"],
        created_at=row["created_at"], updated_at=row["updated_at"],
        clicked_at=row["clicked_at"], links=links)


def conversation(row: Row) -> Conversation:
    return Conversation(
        id=row["id"], tenant=row["tenant"], campaign=row["campaign"], customer=row["customer"],
        channel=row["channel"], agent=row["agent"], started_at=row["started_at"],
        last_at=row["last_at"], inbound=row["inbound"])


def outbox_event(row: Row) -> OutboxEvent:
    return OutboxEvent(id=row["id"], event_id=row["event_id"], tenant=row["tenant"],
                       type=row["type"], payload=row["payload"], created_at=row["created_at"],
                       attempts=row["attempts"])
