"""The WhatsApp utility fallback's bookkeeping on PostgreSQL.

Every daemon runs the fallback's loop; each change is guarded by the state
it expects, so two daemons acting on one fallback take turns: the second
finds it moved on and is told so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import asyncpg

from spool.base import Fallback
from spool.postgres.db import PgDb


class FallbacksMixin:
    db: PgDb

    async def fallbacks(self, state: str, limit: int) -> list[Fallback]:
        found = await self.db.fetch(
            "SELECT * FROM wa_fallbacks WHERE state = $1 ORDER BY created_at LIMIT $2",
            state, limit)
        return [_fallback(r) for r in found]

    async def fallback_for(self, destination: str, channel: str,
                           now: float) -> Fallback | None:
        r = await self.db.fetchrow(
            "SELECT f.* FROM wa_fallbacks f JOIN sms_spool u ON u.id = f.utility_id "
            "WHERE f.state = 'ASKED' AND f.destination = $1 AND f.until > $2 "
            "AND u.channel = $3 ORDER BY f.created_at DESC LIMIT 1", destination, now, channel)
        return None if r is None else _fallback(r)

    async def set_fallback(self, message_id: int, state: str, now: float, *,
                           utility_id: int | None = None, until: float | None = None,
                           session_ids: Sequence[int] = ()) -> bool:
        expected = {"ASKED": "PENDING", "SKIPPED": "PENDING", "ANSWERED": "ASKED",
                    "EXPIRED": "ASKED"}[state]
        changed = await self.db.fetch(
            "UPDATE wa_fallbacks SET state = $1, updated_at = $2, "
            "utility_id = coalesce($3, utility_id), until = coalesce($4, until), "
            "session_ids = coalesce($5, session_ids) WHERE message_id = $6 AND state = $7 "
            "RETURNING 1", state, now, utility_id, until,
            json.dumps(list(session_ids)) if session_ids else None, message_id, expected)
        return bool(changed)

    async def fallback_of(self, message_id: int) -> Fallback | None:
        r = await self.db.fetchrow("SELECT * FROM wa_fallbacks WHERE message_id = $1",
                                   message_id)
        return None if r is None else _fallback(r)

    async def expire_fallbacks(self, now: float) -> int:
        return len(await self.db.fetch(
            "UPDATE wa_fallbacks SET state = 'EXPIRED', updated_at = $1 "
            "WHERE state = 'ASKED' AND until <= $1 RETURNING 1", now))


def _fallback(r: asyncpg.Record) -> Fallback:
    return Fallback(message_id=r["message_id"], tenant=r["tenant"], campaign=r["campaign"],
                    destination=r["destination"], state=r["state"], error_code=r["error_code"],
                    until=r["until"], utility_id=r["utility_id"])
