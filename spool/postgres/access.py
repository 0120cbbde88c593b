"""Who may call, on PostgreSQL: the same moves as spool/sqlite/access.py."""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

from spool.base import API_KEY_ID_CHARS, ApiKey, Conflict, NotFound, State
from spool.postgres.admin import affected
from spool.postgres.db import PgDb

_OPEN = [int(s) for s in (State.NONE, State.TO_PROCESS, State.UNCONFIRMED)]
_UNFINISHED = [*_OPEN, int(State.SENDING)]
_LIVE_JOURNEYS = ["ACTIVE", "ESCALATED"]
_BUMP = "UPDATE auth_generation SET generation = generation + 1 WHERE id = 1"


class AccessMixin:
    db: PgDb

    async def list_api_keys(self, tenant: int) -> list[ApiKey]:
        found = await self.db.fetch(
            "SELECT key_hash, tenant, label, created_at FROM api_keys WHERE tenant = $1 "
            "ORDER BY created_at, key_hash", tenant)
        return [ApiKey(r[0][:API_KEY_ID_CHARS], r[1], r[2], r[3]) for r in found]

    async def revoke_api_keys(self, tenant: int, id_prefix: str | None) -> int:
        return await self.db.run(_revoke, tenant, id_prefix)

    async def set_tenant_disabled(self, tenant: int, disabled: bool) -> None:
        await self.db.run(_set_disabled, tenant, disabled, time.time())

    async def remove_tenant(self, tenant: int, *, force: bool) -> int:
        return await self.db.run(_remove, tenant, force, time.time())

    async def auth_generation(self) -> int:
        return int(await self.db.fetchval("SELECT generation FROM auth_generation WHERE id = 1"))

    async def start_session(self, id_hash: str, user: str, expires_at: float) -> None:
        await self.db.run(_start_session, id_hash, user, expires_at, time.time())

    async def session_user(self, id_hash: str, now: float) -> str | None:
        found: str | None = await self.db.fetchval(
            "SELECT user_name FROM dashboard_sessions WHERE id_hash = $1 AND expires_at > $2",
            id_hash, now)
        return found

    async def end_sessions(self, *, id_hash: str | None = None,
                           keep_users: Sequence[str] | None = None) -> int:
        return await self.db.run(_end_sessions, id_hash, list(keep_users or ()))


async def _revoke(conn: asyncpg.Connection, tenant: int, id_prefix: str | None) -> int:
    found = await conn.fetch(
        "SELECT key_hash FROM api_keys WHERE tenant = $1 AND left(key_hash, $2) = $3",
        tenant, len(id_prefix or ""), id_prefix or "")
    if not found:
        raise NotFound("no such API key for this tenant")
    if id_prefix is not None and len(found) > 1:
        raise Conflict(f"{len(found)} keys start with {id_prefix!r}: give more of the id")
    await conn.execute("DELETE FROM api_keys WHERE key_hash = ANY($1::text[])",
                       [r[0] for r in found])
    await conn.execute(_BUMP)
    return len(found)


async def _set_disabled(conn: asyncpg.Connection, tenant: int, disabled: bool,
                        now: float) -> None:
    status = await conn.execute(
        "UPDATE tenants SET disabled_at = CASE WHEN $1 THEN coalesce(disabled_at, $2) END "
        "WHERE id = $3 AND removed_at IS NULL", disabled, now, tenant)
    if affected(status) == 0:
        raise NotFound(f"tenant {tenant} not found or removed")
    await conn.execute(_BUMP)


async def _remove(conn: asyncpg.Connection, tenant: int, force: bool, now: float) -> int:
    await _check_removable(conn, tenant, force)
    status = await conn.execute(
        "UPDATE sms_spool SET state = $1, note = 'tenant removed', updated_at = $2 "
        "WHERE tenant = $3 AND state = ANY($4::int[])", int(State.CANCELLED), now, tenant, _OPEN)
    await conn.execute(
        "UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = $1, "
        "note = 'tenant removed' WHERE tenant = $2 AND state = ANY($3::text[])",
        now, tenant, _LIVE_JOURNEYS)
    await conn.execute("UPDATE campaigns SET enabled = 0 WHERE tenant = $1", tenant)
    await conn.execute("DELETE FROM api_keys WHERE tenant = $1", tenant)
    await conn.execute(
        "UPDATE tenants SET webhook_url = NULL, webhook_secret = NULL, "
        "disabled_at = coalesce(disabled_at, $1), removed_at = $1 WHERE id = $2", now, tenant)
    await conn.execute(_BUMP)
    return affected(status)


async def _check_removable(conn: asyncpg.Connection, tenant: int, force: bool) -> None:
    row = await conn.fetchrow("SELECT removed_at FROM tenants WHERE id = $1 FOR UPDATE", tenant)
    if row is None or row[0] is not None:
        raise NotFound(f"tenant {tenant} not found or already removed")
    if force:
        return
    messages = await conn.fetchval(
        "SELECT count(*) FROM sms_spool WHERE tenant = $1 AND state = ANY($2::int[])",
        tenant, _UNFINISHED)
    journeys = await conn.fetchval(
        "SELECT count(*) FROM journeys WHERE tenant = $1 AND state = ANY($2::text[])",
        tenant, _LIVE_JOURNEYS)
    if messages or journeys:
        raise Conflict(f"tenant has {messages} unfinished messages and {journeys} live "
                       f"journeys: wait for them, or remove with force to cancel them")


async def _start_session(conn: asyncpg.Connection, id_hash: str, user: str,
                         expires_at: float, now: float) -> None:
    await conn.execute("DELETE FROM dashboard_sessions WHERE expires_at <= $1", now)
    await conn.execute(
        "INSERT INTO dashboard_sessions (id_hash, user_name, expires_at, created_at) "
        "VALUES ($1, $2, $3, $4)", id_hash, user, expires_at, now)


async def _end_sessions(conn: asyncpg.Connection, id_hash: str | None,
                        keep: list[str]) -> int:
    if id_hash is not None:
        status = await conn.execute("DELETE FROM dashboard_sessions WHERE id_hash = $1", id_hash)
    else:
        status = await conn.execute(
            "DELETE FROM dashboard_sessions WHERE NOT (user_name = ANY($1::text[]))", keep)
    return affected(status)
