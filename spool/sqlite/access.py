"""Who may call, on SQLite: API keys, disabled and removed tenants, dashboard
sessions. Every change of who may call bumps `auth_generation` in the same
transaction, so another process sees it on its next poll."""

from __future__ import annotations

import time
from collections.abc import Sequence

import aiosqlite

from spool.base import API_KEY_ID_CHARS, ApiKey, Conflict, NotFound, State
from spool.sqlite.db import SqliteDb

# Unfinished: could still be sent, or is being sent, or is in doubt.
_OPEN = (State.NONE, State.TO_PROCESS, State.UNCONFIRMED)
_UNFINISHED = (*_OPEN, State.SENDING)
_LIVE_JOURNEYS = ("ACTIVE", "ESCALATED")


async def _bump(db: aiosqlite.Connection) -> None:
    await db.execute("UPDATE auth_generation SET generation = generation + 1 WHERE id = 1")


class AccessMixin:
    db: SqliteDb

    async def list_api_keys(self, tenant: int) -> list[ApiKey]:
        found = list(await self.db.reader.execute_fetchall(
            "SELECT key_hash, tenant, label, created_at FROM api_keys WHERE tenant = ? "
            "ORDER BY created_at, key_hash", (tenant,)))
        return [ApiKey(r[0][:API_KEY_ID_CHARS], r[1], r[2], r[3]) for r in found]

    async def revoke_api_keys(self, tenant: int, id_prefix: str | None) -> int:
        async with self.db.transaction() as db:
            found = list(await db.execute_fetchall(
                "SELECT key_hash FROM api_keys WHERE tenant = ? AND substr(key_hash, 1, ?) = ?",
                (tenant, len(id_prefix or ""), id_prefix or "")))
            if not found:
                raise NotFound("no such API key for this tenant")
            if id_prefix is not None and len(found) > 1:
                raise Conflict(f"{len(found)} keys start with {id_prefix!r}: give more of the id")
            await db.executemany("DELETE FROM api_keys WHERE key_hash = ?",
                                 [(r[0],) for r in found])
            await _bump(db)
        return len(found)

    async def set_tenant_disabled(self, tenant: int, disabled: bool) -> None:
        async with self.db.transaction() as db:
            cur = await db.execute(
                "UPDATE tenants SET disabled_at = CASE WHEN ? THEN coalesce(disabled_at, ?) END "
                "WHERE id = ? AND removed_at IS NULL", (disabled, time.time(), tenant))
            if cur.rowcount == 0:
                raise NotFound(f"tenant {tenant} not found or removed")
            await _bump(db)

    async def remove_tenant(self, tenant: int, *, force: bool) -> int:
        now = time.time()
        async with self.db.transaction() as db:
            await _check_removable(db, tenant, force)
            marks = ",".join("?" * len(_OPEN))
            cur = await db.execute(
                f"UPDATE sms_spool SET state = ?, note = 'tenant removed', updated_at = ? "
                f"WHERE tenant = ? AND state IN ({marks})",
                (State.CANCELLED, now, tenant, *_OPEN))
            await db.execute(
                "UPDATE journeys SET state = 'CANCELLED', next_at = NULL, updated_at = ?, "
                "note = 'tenant removed' WHERE tenant = ? AND state IN (?, ?)",
                (now, tenant, *_LIVE_JOURNEYS))
            await db.execute("UPDATE campaigns SET enabled = 0 WHERE tenant = ?", (tenant,))
            await db.execute("DELETE FROM api_keys WHERE tenant = ?", (tenant,))
            await db.execute(
                "UPDATE tenants SET webhook_url = NULL, webhook_secret = NULL, "
                "disabled_at = coalesce(disabled_at, ?), removed_at = ? WHERE id = ?",
                (now, now, tenant))
            await _bump(db)
            return cur.rowcount

    async def auth_generation(self) -> int:
        found = list(await self.db.reader.execute_fetchall(
            "SELECT generation FROM auth_generation WHERE id = 1"))
        return int(found[0][0])

    async def start_session(self, id_hash: str, user: str, expires_at: float) -> None:
        now = time.time()
        async with self.db.transaction() as db:
            # Expired sessions go here: logins are rare, so this stays small.
            await db.execute("DELETE FROM dashboard_sessions WHERE expires_at <= ?", (now,))
            await db.execute(
                "INSERT INTO dashboard_sessions (id_hash, user_name, expires_at, created_at) "
                "VALUES (?, ?, ?, ?)", (id_hash, user, expires_at, now))

    async def session_user(self, id_hash: str, now: float) -> str | None:
        found = list(await self.db.reader.execute_fetchall(
            "SELECT user_name FROM dashboard_sessions WHERE id_hash = ? AND expires_at > ?",
            (id_hash, now)))
        return found[0][0] if found else None

    async def end_sessions(self, *, id_hash: str | None = None,
                           keep_users: Sequence[str] | None = None) -> int:
        async with self.db.transaction() as db:
            if id_hash is not None:
                cur = await db.execute("DELETE FROM dashboard_sessions WHERE id_hash = ?",
                                       (id_hash,))
            else:
                keep = list(keep_users or ())
                cur = await db.execute(
                    f"DELETE FROM dashboard_sessions WHERE user_name NOT IN "
                    f"({','.join('?' * len(keep))})" if keep
                    else "DELETE FROM dashboard_sessions", keep)
            return cur.rowcount


async def _check_removable(db: aiosqlite.Connection, tenant: int, force: bool) -> None:
    found = list(await db.execute_fetchall(
        "SELECT removed_at FROM tenants WHERE id = ?", (tenant,)))
    if not found or found[0][0] is not None:
        raise NotFound(f"tenant {tenant} not found or already removed")
    if force:
        return
    marks = ",".join("?" * len(_UNFINISHED))
    [(messages,)] = await db.execute_fetchall(
        f"SELECT count(*) FROM sms_spool WHERE tenant = ? AND state IN ({marks})",
        (tenant, *_UNFINISHED))
    [(journeys,)] = await db.execute_fetchall(
        "SELECT count(*) FROM journeys WHERE tenant = ? AND state IN (?, ?)",
        (tenant, *_LIVE_JOURNEYS))
    if messages or journeys:
        raise Conflict(f"tenant has {messages} unfinished messages and {journeys} live "
                       f"journeys: wait for them, or remove with force to cancel them")
