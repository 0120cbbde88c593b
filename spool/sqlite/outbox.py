"""Tenant webhooks on SQLite: targets and the outbox (filled by triggers)."""

from __future__ import annotations

from spool import rows
from spool.base import OutboxEvent
from spool.sqlite.db import SqliteDb


class OutboxMixin:
    db: SqliteDb

    async def set_webhook(self, tenant: int, url: str | None, secret: str | None) -> None:
        async with self.db.transaction() as db:
            await db.execute("UPDATE tenants SET webhook_url = ?, webhook_secret = ? WHERE id = ?",
                             (url, secret, tenant))

    async def webhook_target(self, tenant: int) -> tuple[str, str] | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT webhook_url, webhook_secret FROM tenants WHERE id = ?", (tenant,))
        row = next(iter(found), None)
        if row is None or not row[0]:
            return None
        return row[0], row[1] or ""

    async def claim_webhooks(self, now: float, limit: int, lease_s: float) -> list[OutboxEvent]:
        async with self.db.transaction() as db:
            found = await db.execute_fetchall(
                "UPDATE webhook_outbox SET claimed_until = ? WHERE id IN (SELECT id FROM "
                "webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL "
                "AND next_attempt_at <= ? AND coalesce(claimed_until, 0) < ? "
                "ORDER BY next_attempt_at, id LIMIT ?) RETURNING *",
                (now + lease_s, now, now, limit))
        return sorted((rows.outbox_event(r) for r in found), key=lambda e: e.id)

    async def webhook_delivered(self, event: int, now: float) -> None:
        async with self.db.transaction() as db:
            await db.execute("UPDATE webhook_outbox SET delivered_at = ?, attempts = attempts + 1,"
                             " claimed_until = NULL, last_error = NULL WHERE id = ?", (now, event))

    async def webhook_failed(self, event: int, error: str,
                             next_attempt_at: float | None) -> None:
        async with self.db.transaction() as db:
            if next_attempt_at is None:
                await db.execute(
                    "UPDATE webhook_outbox SET dead_at = (julianday('now') - 2440587.5) * 86400.0, "
                    "attempts = attempts + 1,"
                    " claimed_until = NULL, last_error = ? WHERE id = ?", (error, event))
            else:
                await db.execute(
                    "UPDATE webhook_outbox SET next_attempt_at = ?, attempts = attempts + 1, "
                    "claimed_until = NULL, last_error = ? WHERE id = ?",
                    (next_attempt_at, error, event))

    async def outbox_backlog(self) -> int:
        found = await self.db.reader.execute_fetchall(
            "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL")
        return int(next(iter(found))[0])
