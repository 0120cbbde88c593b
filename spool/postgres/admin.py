"""Tenants, campaigns, blacklist and import bookkeeping on PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import asyncpg

from spool import rows
from spool.base import (
    Campaign,
    Conflict,
    ImportProgress,
    NotFound,
    State,
    StoreError,
    Tenant,
    marketing_scope,
    sender_scope,
)
from spool.postgres.db import PgDb


class AdminMixin:
    db: PgDb

    # tenants -------------------------------------------------------------
    async def create_tenant(self, name: str, key_hash: str,
                            webhook_url: str | None = None) -> Tenant:
        tenant_id = await self.db.run(_create_tenant, name, key_hash, webhook_url, time.time())
        return Tenant(id=tenant_id, name=name, webhook_url=webhook_url)

    async def add_api_key(self, tenant: int, key_hash: str, label: str | None = None) -> None:
        await self.db.fetch(
            "INSERT INTO api_keys (key_hash, tenant, label, created_at) VALUES ($1, $2, $3, $4)",
            key_hash, tenant, label, time.time())

    async def tenant_by_key_hash(self, key_hash: str) -> Tenant | None:
        row = await self.db.fetchrow(
            "SELECT t.* FROM api_keys k JOIN tenants t ON t.id = k.tenant WHERE k.key_hash = $1 "
            "AND t.disabled_at IS NULL",
            key_hash)
        return None if row is None else rows.tenant(row)

    async def tenant_by_name(self, name: str) -> Tenant | None:
        row = await self.db.fetchrow("SELECT * FROM tenants WHERE name = $1", name)
        return None if row is None else rows.tenant(row)

    async def list_tenants(self) -> list[Tenant]:
        return [rows.tenant(r) for r in await self.db.fetch("SELECT * FROM tenants ORDER BY id")]

    # campaigns -----------------------------------------------------------
    async def create_campaign(self, campaign: Campaign) -> Campaign:
        values = {f: rows.campaign_column(f, getattr(campaign, f)) for f in rows.CAMPAIGN_FIELDS}
        cols = ", ".join(values)
        marks = ", ".join(f"${i}" for i in range(4, 4 + len(values)))
        try:
            new_id = await self.db.fetchval(
                f"INSERT INTO campaigns (tenant, name, created_at, {cols}) "
                f"VALUES ($1, $2, $3, {marks}) RETURNING id",
                campaign.tenant, campaign.name, time.time(), *values.values())
        except StoreError as err:
            if isinstance(err.__cause__, asyncpg.UniqueViolationError):
                raise Conflict(f"campaign {campaign.name!r} already exists") from None
            raise
        created = await self.campaign_by_id(new_id)
        assert created is not None
        return created

    async def campaign_by_name(self, tenant: int, name: str) -> Campaign | None:
        row = await self.db.fetchrow(
            "SELECT * FROM campaigns WHERE tenant = $1 AND name = $2", tenant, name)
        return None if row is None else rows.campaign(row)

    async def campaign_by_id(self, campaign_id: int) -> Campaign | None:
        row = await self.db.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
        return None if row is None else rows.campaign(row)

    async def list_campaigns(self, tenant: int | None = None) -> list[Campaign]:
        if tenant is None:
            found = await self.db.fetch("SELECT * FROM campaigns ORDER BY id")
        else:
            found = await self.db.fetch(
                "SELECT * FROM campaigns WHERE tenant = $1 ORDER BY id", tenant)
        return [rows.campaign(r) for r in found]

    async def update_campaign(self, campaign_id: int, **changes: Any) -> Campaign:
        unknown = set(changes) - set(rows.CAMPAIGN_FIELDS)
        if unknown:
            raise ValueError(f"not a campaign attribute: {', '.join(sorted(unknown))}")
        if changes:
            sets = ", ".join(f"{k} = ${i}" for i, k in enumerate(changes, start=2))
            values = [rows.campaign_column(k, v) for k, v in changes.items()]
            await self.db.fetch(f"UPDATE campaigns SET {sets} WHERE id = $1",
                                campaign_id, *values)
        found = await self.campaign_by_id(campaign_id)
        if found is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return found

    async def cancel_unprocessed(self, campaign_id: int, note: str) -> int:
        return await self.db.run(_cancel_unprocessed, campaign_id, note, time.time())

    # blacklist -----------------------------------------------------------
    async def blacklist_add(self, entries: Sequence[tuple[str, int | None]],
                            note: str | None = None) -> int:
        if not entries:
            return 0
        found = await self.db.fetch(
            "INSERT INTO blacklist (destination, campaign, note, created_at) "
            "SELECT d, c, $3, $4 FROM unnest($1::text[], $2::bigint[]) AS v(d, c) "
            "ON CONFLICT DO NOTHING RETURNING 1",
            [d for d, _ in entries], [c or 0 for _, c in entries], note, time.time())
        return len(found)

    async def blacklist_remove(self, entries: Sequence[tuple[str, int | None]]) -> int:
        if not entries:
            return 0
        found = await self.db.fetch(
            "DELETE FROM blacklist b USING unnest($1::text[], $2::bigint[]) AS v(d, c) "
            "WHERE b.destination = v.d AND b.campaign = v.c AND b.scope = '' RETURNING 1",
            [d for d, _ in entries], [c or 0 for _, c in entries])
        return len(found)

    async def blacklist_list(self, campaign: int | None = None, *, limit: int = 1000,
                             after: str = "", scope: str = "") -> list[tuple[str, int | None]]:
        found = await self.db.fetch(
            "SELECT destination, campaign FROM blacklist WHERE campaign = $1 AND scope = $2 "
            "AND destination > $3 ORDER BY destination LIMIT $4",
            campaign or 0, scope, after, limit)
        return [(r[0], r[1] or None) for r in found]

    async def blacklisted(self, pairs: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        if not pairs:
            return set()
        found = await self.db.fetch(
            "SELECT destination, campaign FROM blacklist "
            "WHERE destination = ANY($1::text[]) AND scope = ''",
            sorted({d for d, _ in pairs}))
        hits: dict[str, set[int]] = {}
        for dest, camp in found:
            hits.setdefault(dest, set()).add(camp)
        return {(d, c) for d, c in pairs if d in hits and (0 in hits[d] or c in hits[d])}

    async def stop_marketing(self, destination: str, channel: str, at: float,
                             note: str) -> bool:
        return await self._stop(destination, marketing_scope(channel), at, note)

    async def stop_sender(self, destination: str, channel: str, at: float,
                          note: str) -> bool:
        return await self._stop(destination, sender_scope(channel), at, note)

    async def senders_stopped(self, pairs: Sequence[tuple[str, str]]
                              ) -> set[tuple[str, str]]:
        return await self._stopped(pairs, sender_scope)

    async def _stop(self, destination: str, scope: str, at: float, note: str) -> bool:
        # xmax is 0 on a row this statement inserted, not on one it updated.
        return bool(await self.db.fetchval(
            "INSERT INTO blacklist (destination, campaign, scope, note, created_at) "
            "VALUES ($1, 0, $2, $3, $4) ON CONFLICT (destination, campaign, scope) DO UPDATE "
            "SET created_at = greatest(blacklist.created_at, excluded.created_at) "
            "RETURNING xmax = 0", destination, scope, note, at))

    async def resume_marketing(self, destination: str, channel: str, at: float) -> bool:
        return await self._resume(destination, marketing_scope(channel), at)

    async def resume_sender(self, destination: str, channel: str, at: float) -> bool:
        return await self._resume(destination, sender_scope(channel), at)

    async def _resume(self, destination: str, scope: str, at: float) -> bool:
        found = await self.db.fetch(
            "DELETE FROM blacklist WHERE destination = $1 AND campaign = 0 AND scope = $2 "
            "AND created_at <= $3 RETURNING 1", destination, scope, at)
        return bool(found)

    async def marketing_stopped(self, pairs: Sequence[tuple[str, str]]
                                ) -> set[tuple[str, str]]:
        return await self._stopped(pairs, marketing_scope)

    async def _stopped(self, pairs: Sequence[tuple[str, str]],
                       scope_of: Callable[[str], str]) -> set[tuple[str, str]]:
        """The (destination, channel) pairs stopped in the scope `scope_of(channel)`."""
        if not pairs:
            return set()
        found = await self.db.fetch(
            "SELECT destination, scope FROM blacklist WHERE destination = ANY($1::text[]) "
            "AND campaign = 0 AND scope = ANY($2::text[])",
            sorted({d for d, _ in pairs}), sorted({scope_of(ch) for _, ch in pairs}))
        stopped = {(r[0], r[1]) for r in found}
        return {(d, ch) for d, ch in pairs if (d, scope_of(ch)) in stopped}

    # spool-folder imports ------------------------------------------------
    async def import_progress(self, key: str) -> ImportProgress | None:
        r = await self.db.fetchrow("SELECT * FROM imports WHERE key = $1", key)
        if r is None:
            return None
        return ImportProgress(key=r["key"], line=r["line"], done=bool(r["done"]),
                              imported=r["imported"], blocked=r["blocked"], invalid=r["invalid"])

    async def finish_import(self, progress: ImportProgress) -> None:
        await self.db.run(save_progress, progress)


async def _create_tenant(conn: asyncpg.Connection, name: str, key_hash: str,
                         webhook_url: str | None, now: float) -> int:
    try:
        async with conn.transaction():  # a savepoint: the conflict is ours to report
            tenant_id = await conn.fetchval(
                "INSERT INTO tenants (name, webhook_url, created_at) VALUES ($1, $2, $3) "
                "RETURNING id", name, webhook_url, now)
    except asyncpg.UniqueViolationError:
        raise Conflict(f"tenant {name!r} already exists") from None
    await conn.execute("INSERT INTO api_keys (key_hash, tenant, created_at) VALUES ($1, $2, $3)",
                       key_hash, tenant_id, now)
    await conn.execute("INSERT INTO campaigns (tenant, name, created_at) VALUES ($1, $2, $3)",
                       tenant_id, "default", now)
    return int(tenant_id)


async def _cancel_unprocessed(conn: asyncpg.Connection, campaign_id: int, note: str,
                              now: float) -> int:
    status = await conn.execute(
        "UPDATE sms_spool SET state = $1, note = $2, updated_at = $3 "
        "WHERE campaign = $4 AND state IN ($5, $6)",
        State.CANCELLED, note, now, campaign_id, State.NONE, State.TO_PROCESS)
    return affected(status)


async def save_progress(conn: asyncpg.Connection, p: ImportProgress) -> None:
    await conn.execute(
        "INSERT INTO imports (key, line, done, imported, blocked, invalid, updated_at) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key) DO UPDATE SET "
        "line = excluded.line, done = excluded.done, imported = excluded.imported, "
        "blocked = excluded.blocked, invalid = excluded.invalid, updated_at = excluded.updated_at",
        p.key, p.line, int(p.done), p.imported, p.blocked, p.invalid, time.time())


def affected(status: str) -> int:
    """Rows changed, from a command tag such as 'UPDATE 3'."""
    return int(status.rsplit(" ", 1)[-1])
