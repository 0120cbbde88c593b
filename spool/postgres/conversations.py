"""Inbound messages and conversations on PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Sequence

import asyncpg

from spool import rows
from spool.base import Conversation, InboundFilter, InboundRecord, Message, NotFound
from spool.postgres.db import PgDb, TryAgain

_INSERT = (
    "INSERT INTO inbound (tenant, campaign, channel, sender, recipient, text, provider_ref, "
    "reply_to, received_at, data, conversation, action) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
    "ON CONFLICT (channel, provider_ref) WHERE provider_ref IS NOT NULL DO NOTHING "
    "RETURNING id")


class ConversationsMixin:
    db: PgDb

    async def store_inbound(self, record: InboundRecord) -> tuple[int, bool]:
        return await self.db.run(_store_inbound, record)

    async def inbound_by_ref(self, channel: str, provider_ref: str) -> int | None:
        return await self.db.fetchval(
            "SELECT id FROM inbound WHERE channel = $1 AND provider_ref = $2",
            channel, provider_ref)

    async def last_sent_on(self, destination: str, channel: str,
                           tenants: Collection[int] = ()) -> Message | None:
        only = " AND tenant = ANY($3::bigint[])" if tenants else ""
        row = await self.db.fetchrow(
            "SELECT * FROM sms_spool WHERE destination = $1 AND channel = $2 "
            f"AND sent_at IS NOT NULL{only} ORDER BY id DESC LIMIT 1",
            destination, channel, *([list(tenants)] if tenants else []))
        return None if row is None else rows.message(row)

    async def last_inbound_at(self, sender: str, channels: Sequence[str]) -> float | None:
        if not channels:
            return None
        return await self.db.fetchval(
            "SELECT max(received_at) FROM inbound WHERE sender = $1 "
            "AND channel = ANY($2::text[])", sender, list(channels))

    async def list_inbound(self, where: InboundFilter) -> list[InboundRecord]:
        sql, args = _filtered("SELECT i.* FROM inbound i LEFT JOIN conversations c "
                              "ON c.id = i.conversation WHERE i.tenant = $1 AND i.id > $2",
                              [where.tenant, where.after_id], where, "i.received_at",
                              "i.sender", "i.campaign", "c.agent")
        if where.conversation is not None:
            args.append(where.conversation)
            sql += f" AND i.conversation = ${len(args)}"
        args.append(where.limit)
        found = await self.db.fetch(sql + f" ORDER BY i.id LIMIT ${len(args)}", *args)
        return [rows.inbound(r) for r in found]

    async def list_conversations(self, where: InboundFilter) -> list[Conversation]:
        sql, args = _filtered("SELECT * FROM conversations WHERE tenant = $1 AND id > $2",
                              [where.tenant, where.after_id], where, "last_at", "customer",
                              "campaign", "agent")
        args.append(where.limit)
        found = await self.db.fetch(sql + f" ORDER BY id LIMIT ${len(args)}", *args)
        return [rows.conversation(r) for r in found]

    async def get_conversation(self, tenant: int, conversation_id: int) -> Conversation:
        row = await self.db.fetchrow(
            "SELECT * FROM conversations WHERE id = $1 AND tenant = $2", conversation_id, tenant)
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return rows.conversation(row)


async def _store_inbound(conn: asyncpg.Connection, record: InboundRecord) -> tuple[int, bool]:
    if record.provider_ref is not None:
        found = await conn.fetchval(
            "SELECT id FROM inbound WHERE channel = $1 AND provider_ref = $2",
            record.channel, record.provider_ref)
        if found is not None:
            return int(found), True
    conversation = None
    if record.tenant is not None:
        conversation = await _conversation(conn, record)
    new_id = await conn.fetchval(
        _INSERT, record.tenant, record.campaign, record.channel, record.sender,
        record.recipient, record.text, record.provider_ref, record.reply_to,
        record.received_at, rows.dumps(record.data), conversation, record.action)
    if new_id is None:
        # Another daemon stored the same message between our look and our
        # insert; rolling back undoes the conversation count we just added.
        raise TryAgain("inbound stored twice at once")
    return int(new_id), False


async def _conversation(conn: asyncpg.Connection, record: InboundRecord) -> int:
    # One statement, so two daemons receiving from the same customer at
    # once both end up in the same conversation.
    found = await conn.fetchval(
        "INSERT INTO conversations (tenant, campaign, customer, channel, agent, started_at, "
        "last_at, inbound) VALUES ($1, $2, $3, $4, $5, $6, $6, 1) "
        "ON CONFLICT (tenant, customer, coalesce(campaign, 0)) DO UPDATE SET "
        "last_at = excluded.last_at, inbound = conversations.inbound + 1, "
        "channel = excluded.channel, agent = coalesce(excluded.agent, conversations.agent) "
        "RETURNING id", record.tenant, record.campaign, record.sender, record.channel,
        record.agent, record.received_at)
    return int(found)


def _filtered(sql: str, args: list[object], where: InboundFilter, time_col: str,
              origin_col: str, campaign_col: str, agent_col: str) -> tuple[str, list[object]]:
    for value, clause in ((where.start, f"{time_col} >="), (where.end, f"{time_col} <"),
                          (where.origin, f"{origin_col} ="),
                          (where.campaign, f"{campaign_col} ="),
                          (where.agent, f"{agent_col} =")):
        if value is not None:
            args.append(value)
            sql += f" AND {clause} ${len(args)}"
    return sql, args
