"""Inbound messages and conversations on SQLite."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from spool import rows
from spool.base import Conversation, InboundFilter, InboundRecord, Message, NotFound
from spool.sqlite.db import SqliteDb


class ConversationsMixin:
    db: SqliteDb

    async def store_inbound(self, record: InboundRecord) -> tuple[int, bool]:
        async with self.db.transaction() as db:
            if record.provider_ref is not None:
                found = await db.execute_fetchall(
                    "SELECT id FROM inbound WHERE channel = ? AND provider_ref = ?",
                    (record.channel, record.provider_ref))
                if found:
                    return next(iter(found))[0], True
            conversation = None
            if record.tenant is not None:
                conversation = await _conversation(db, record)
            cur = await db.execute(
                "INSERT INTO inbound (tenant, campaign, channel, sender, recipient, text, "
                "provider_ref, reply_to, received_at, data, conversation, action) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (record.tenant, record.campaign, record.channel, record.sender,
                 record.recipient, record.text, record.provider_ref, record.reply_to,
                 record.received_at, rows.dumps(record.data), conversation, record.action))
            return cur.lastrowid or 0, False

    async def inbound_by_ref(self, channel: str, provider_ref: str) -> int | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT id FROM inbound WHERE channel = ? AND provider_ref = ?",
            (channel, provider_ref))
        return next((r[0] for r in found), None)

    async def last_sent_on(self, destination: str, channel: str,
                           tenants: Collection[int] = ()) -> Message | None:
        only = f" AND tenant IN ({','.join('?' * len(tenants))})" if tenants else ""
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM sms_spool INDEXED BY ix_spool_reply WHERE destination = ? "
            f"AND channel = ? AND sent_at IS NOT NULL{only} ORDER BY id DESC LIMIT 1",
            (destination, channel, *tenants))
        return next((rows.message(r) for r in found), None)

    async def last_inbound_at(self, sender: str, channels: Sequence[str]) -> float | None:
        if not channels:
            return None
        found = await self.db.reader.execute_fetchall(
            f"SELECT max(received_at) FROM inbound WHERE sender = ? "
            f"AND channel IN ({','.join('?' * len(channels))})", (sender, *channels))
        return next(iter(found))[0]

    async def list_inbound(self, where: InboundFilter) -> list[InboundRecord]:
        sql, args = _filtered("SELECT i.* FROM inbound i LEFT JOIN conversations c "
                              "ON c.id = i.conversation WHERE i.tenant = ? AND i.id > ?",
                              [where.tenant, where.after_id], where, "i.received_at",
                              "i.sender", "i.campaign", "c.agent")
        if where.conversation is not None:
            sql += " AND i.conversation = ?"
            args.append(where.conversation)
        found = await self.db.reader.execute_fetchall(sql + " ORDER BY i.id LIMIT ?",
                                                      (*args, where.limit))
        return [rows.inbound(r) for r in found]

    async def list_conversations(self, where: InboundFilter) -> list[Conversation]:
        sql, args = _filtered("SELECT * FROM conversations WHERE tenant = ? AND id > ?",
                              [where.tenant, where.after_id], where, "last_at", "customer",
                              "campaign", "agent")
        found = await self.db.reader.execute_fetchall(sql + " ORDER BY id LIMIT ?",
                                                      (*args, where.limit))
        return [rows.conversation(r) for r in found]

    async def get_conversation(self, tenant: int, conversation_id: int) -> Conversation:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM conversations WHERE id = ? AND tenant = ?", (conversation_id, tenant))
        row = next(iter(found), None)
        if row is None:
            raise NotFound(f"conversation {conversation_id} not found")
        return rows.conversation(row)


async def _conversation(db, record: InboundRecord) -> int:
    found = await db.execute_fetchall(
        "SELECT id FROM conversations WHERE tenant = ? AND customer = ? "
        "AND coalesce(campaign, 0) = coalesce(?, 0)", (record.tenant, record.sender,
                                                       record.campaign))
    row = next(iter(found), None)
    if row is not None:
        await db.execute("UPDATE conversations SET last_at = ?, inbound = inbound + 1, "
                         "channel = ?, agent = coalesce(?, agent) WHERE id = ?",
                         (record.received_at, record.channel, record.agent, row[0]))
        return int(row[0])
    cur = await db.execute(
        "INSERT INTO conversations (tenant, campaign, customer, channel, agent, started_at, "
        "last_at, inbound) VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
        (record.tenant, record.campaign, record.sender, record.channel, record.agent,
         record.received_at, record.received_at))
    return cur.lastrowid or 0


def _filtered(sql: str, args: list[object], where: InboundFilter, time_col: str,
              origin_col: str, campaign_col: str, agent_col: str) -> tuple[str, list[object]]:
    for value, clause in ((where.start, f"{time_col} >= ?"), (where.end, f"{time_col} < ?"),
                          (where.origin, f"{origin_col} = ?"),
                          (where.campaign, f"{campaign_col} = ?"),
                          (where.agent, f"{agent_col} = ?")):
        if value is not None:
            sql += f" AND {clause}"
            args.append(value)
    return sql, args
