"""Tenant webhooks on PostgreSQL: targets and the outbox (filled by triggers).

Every daemon runs a webhook sender; `SKIP LOCKED` plus the claim's lease
hand each event to exactly one of them at a time.
"""

from __future__ import annotations

import time

from spool import rows
from spool.base import OutboxEvent
from spool.postgres.db import PgDb


class OutboxMixin:
    db: PgDb

    async def set_webhook(self, tenant: int, url: str | None, secret: str | None) -> None:
        await self.db.fetch("UPDATE tenants SET webhook_url = $1, webhook_secret = $2 "
                            "WHERE id = $3", url, secret, tenant)

    async def webhook_target(self, tenant: int) -> tuple[str, str] | None:
        row = await self.db.fetchrow(
            "SELECT webhook_url, webhook_secret FROM tenants WHERE id = $1", tenant)
        if row is None or not row[0]:
            return None
        return row[0], row[1] or ""

    async def claim_webhooks(self, now: float, limit: int, lease_s: float) -> list[OutboxEvent]:
        found = await self.db.fetch(
            "UPDATE webhook_outbox o SET claimed_until = $1 FROM (SELECT id FROM webhook_outbox "
            "WHERE delivered_at IS NULL AND dead_at IS NULL AND next_attempt_at <= $2 "
            "AND coalesce(claimed_until, 0) < $2 ORDER BY next_attempt_at, id LIMIT $3 "
            "FOR UPDATE SKIP LOCKED) picked WHERE o.id = picked.id RETURNING o.*",
            now + lease_s, now, limit)
        return sorted((rows.outbox_event(r) for r in found), key=lambda e: e.id)

    async def webhook_delivered(self, event: int, now: float) -> None:
        await self.db.fetch(
            "UPDATE webhook_outbox SET delivered_at = $1, attempts = attempts + 1, "
            "claimed_until = NULL, last_error = NULL WHERE id = $2", now, event)

    async def webhook_failed(self, event: int, error: str,
                             next_attempt_at: float | None) -> None:
        if next_attempt_at is None:
            await self.db.fetch(
                "UPDATE webhook_outbox SET dead_at = $1, attempts = attempts + 1, "
                "claimed_until = NULL, last_error = $2 WHERE id = $3", time.time(), error, event)
        else:
            await self.db.fetch(
                "UPDATE webhook_outbox SET next_attempt_at = $1, attempts = attempts + 1, "
                "claimed_until = NULL, last_error = $2 WHERE id = $3",
                next_attempt_at, error, event)

    async def outbox_backlog(self) -> int:
        return int(await self.db.fetchval(
            "SELECT count(*) FROM webhook_outbox WHERE delivered_at IS NULL AND dead_at IS NULL"))
