"""Tenants, campaigns, blacklist and import bookkeeping on SQLite."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Any

from spool import rows
from spool.base import (
    Campaign,
    Conflict,
    ImportProgress,
    NotFound,
    State,
    Tenant,
    marketing_scope,
    sender_scope,
)
from spool.sqlite.db import SqliteDb


class AdminMixin:
    db: SqliteDb

    # tenants -------------------------------------------------------------
    async def create_tenant(self, name: str, key_hash: str,
                            webhook_url: str | None = None) -> Tenant:
        now = time.time()
        async with self.db.transaction() as db:
            try:
                cur = await db.execute(
                    "INSERT INTO tenants (name, webhook_url, created_at) VALUES (?, ?, ?)",
                    (name, webhook_url, now))
            except sqlite3.IntegrityError:
                raise Conflict(f"tenant {name!r} already exists") from None
            tenant_id = cur.lastrowid
            await db.execute("INSERT INTO api_keys (key_hash, tenant, created_at) VALUES (?,?,?)",
                             (key_hash, tenant_id, now))
            await db.execute("INSERT INTO campaigns (tenant, name, created_at) VALUES (?, ?, ?)",
                             (tenant_id, "default", now))
        return Tenant(id=tenant_id or 0, name=name, webhook_url=webhook_url)

    async def add_api_key(self, tenant: int, key_hash: str, label: str | None = None) -> None:
        async with self.db.transaction() as db:
            await db.execute(
                "INSERT INTO api_keys (key_hash, tenant, label, created_at) VALUES (?,?,?,?)",
                (key_hash, tenant, label, time.time()))

    async def tenant_by_key_hash(self, key_hash: str) -> Tenant | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT t.* FROM api_keys k JOIN tenants t ON t.id = k.tenant WHERE k.key_hash = ? "
            "AND t.disabled_at IS NULL",
            (key_hash,))
        return next((rows.tenant(r) for r in found), None)

    async def tenant_by_name(self, name: str) -> Tenant | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM tenants WHERE name = ?", (name,))
        return next((rows.tenant(r) for r in found), None)

    async def list_tenants(self) -> list[Tenant]:
        found = await self.db.reader.execute_fetchall("SELECT * FROM tenants ORDER BY id")
        return [rows.tenant(r) for r in found]

    # campaigns -----------------------------------------------------------
    async def create_campaign(self, campaign: Campaign) -> Campaign:
        values = {f: rows.campaign_column(f, getattr(campaign, f)) for f in rows.CAMPAIGN_FIELDS}
        cols = ", ".join(values)
        marks = ", ".join("?" * len(values))
        async with self.db.transaction() as db:
            try:
                cur = await db.execute(
                    f"INSERT INTO campaigns (tenant, name, created_at, {cols}) "
                    f"VALUES (?, ?, ?, {marks})",
                    (campaign.tenant, campaign.name, time.time(), *values.values()))
            except sqlite3.IntegrityError as err:
                if "UNIQUE" not in str(err):
                    raise
                raise Conflict(f"campaign {campaign.name!r} already exists") from None
            new_id = cur.lastrowid
        created = await self.campaign_by_id(new_id or 0)
        assert created is not None
        return created

    async def campaign_by_name(self, tenant: int, name: str) -> Campaign | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM campaigns WHERE tenant = ? AND name = ?", (tenant, name))
        return next((rows.campaign(r) for r in found), None)

    async def campaign_by_id(self, campaign_id: int) -> Campaign | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM campaigns WHERE id = ?", (campaign_id,))
        return next((rows.campaign(r) for r in found), None)

    async def list_campaigns(self, tenant: int | None = None) -> list[Campaign]:
        if tenant is None:
            found = await self.db.reader.execute_fetchall("SELECT * FROM campaigns ORDER BY id")
        else:
            found = await self.db.reader.execute_fetchall(
                "SELECT * FROM campaigns WHERE tenant = ? ORDER BY id", (tenant,))
        return [rows.campaign(r) for r in found]

    async def update_campaign(self, campaign_id: int, **changes: Any) -> Campaign:
        unknown = set(changes) - set(rows.CAMPAIGN_FIELDS)
        if unknown:
            raise ValueError(f"not a campaign attribute: {', '.join(sorted(unknown))}")
        if changes:
            sets = ", ".join(f"{k} = ?" for k in changes)
            values = [rows.campaign_column(k, v) for k, v in changes.items()]
            async with self.db.transaction() as db:
                await db.execute(f"UPDATE campaigns SET {sets} WHERE id = ?",
                                 (*values, campaign_id))
        found = await self.campaign_by_id(campaign_id)
        if found is None:
            raise NotFound(f"campaign {campaign_id} not found")
        return found

    async def cancel_unprocessed(self, campaign_id: int, note: str) -> int:
        now = time.time()
        async with self.db.transaction() as db:
            cur = await db.execute(
                "UPDATE sms_spool SET state = ?, note = ?, updated_at = ? "
                "WHERE campaign = ? AND state IN (?, ?)",
                (State.CANCELLED, note, now, campaign_id, State.NONE, State.TO_PROCESS))
            return cur.rowcount

    # blacklist -----------------------------------------------------------
    async def blacklist_add(self, entries: Sequence[tuple[str, int | None]],
                            note: str | None = None) -> int:
        now = time.time()
        async with self.db.transaction() as db:
            cur = await db.executemany(
                "INSERT OR IGNORE INTO blacklist (destination, campaign, note, created_at) "
                "VALUES (?, ?, ?, ?)", [(d, c or 0, note, now) for d, c in entries])
            return cur.rowcount

    async def blacklist_remove(self, entries: Sequence[tuple[str, int | None]]) -> int:
        async with self.db.transaction() as db:
            cur = await db.executemany(
                "DELETE FROM blacklist WHERE destination = ? AND campaign = ? AND scope = ''",
                [(d, c or 0) for d, c in entries])
            return cur.rowcount

    async def blacklist_list(self, campaign: int | None = None, *, limit: int = 1000,
                             after: str = "", scope: str = "") -> list[tuple[str, int | None]]:
        found = await self.db.reader.execute_fetchall(
            "SELECT destination, campaign FROM blacklist WHERE campaign = ? AND scope = ? "
            "AND destination > ? ORDER BY destination LIMIT ?",
            (campaign or 0, scope, after, limit))
        return [(r[0], r[1] or None) for r in found]

    async def blacklisted(self, pairs: Sequence[tuple[str, int]]) -> set[tuple[str, int]]:
        hits: dict[str, set[int]] = {}
        for dest, camp, scope in await self._entries({d for d, _ in pairs}):
            if not scope:
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
        key = (destination, scope)
        async with self.db.transaction() as db:
            known = await db.execute_fetchall(
                "SELECT 1 FROM blacklist WHERE destination = ? AND campaign = 0 AND scope = ?",
                key)
            await db.execute(
                "INSERT INTO blacklist (destination, campaign, scope, note, created_at) "
                "VALUES (?, 0, ?, ?, ?) ON CONFLICT (destination, campaign, scope) DO UPDATE "
                "SET created_at = max(created_at, excluded.created_at)", (*key, note, at))
        return not known

    async def resume_marketing(self, destination: str, channel: str, at: float) -> bool:
        return await self._resume(destination, marketing_scope(channel), at)

    async def resume_sender(self, destination: str, channel: str, at: float) -> bool:
        return await self._resume(destination, sender_scope(channel), at)

    async def _resume(self, destination: str, scope: str, at: float) -> bool:
        async with self.db.transaction() as db:
            cur = await db.execute(
                "DELETE FROM blacklist WHERE destination = ? AND campaign = 0 AND scope = ? "
                "AND created_at <= ?", (destination, scope, at))
            return cur.rowcount > 0

    async def marketing_stopped(self, pairs: Sequence[tuple[str, str]]
                                ) -> set[tuple[str, str]]:
        return await self._stopped(pairs, marketing_scope)

    async def _stopped(self, pairs: Sequence[tuple[str, str]],
                       scope_of: Callable[[str], str]) -> set[tuple[str, str]]:
        """The (destination, channel) pairs stopped in the scope `scope_of(channel)`."""
        stopped = {(d, scope) for d, _, scope in await self._entries({d for d, _ in pairs})}
        return {(d, ch) for d, ch in pairs if (d, scope_of(ch)) in stopped}

    async def _entries(self, numbers: set[str]) -> list[tuple[str, int, str]]:
        """(destination, campaign, scope) of every entry of `numbers`: a few at most each."""
        ordered, out = sorted(numbers), []
        for start in range(0, len(ordered), 500):
            chunk = ordered[start:start + 500]
            found = await self.db.reader.execute_fetchall(
                f"SELECT destination, campaign, scope FROM blacklist "
                f"WHERE destination IN ({','.join('?' * len(chunk))})", chunk)
            out += [(r[0], r[1], r[2]) for r in found]
        return out

    # spool-folder imports ------------------------------------------------
    async def import_progress(self, key: str) -> ImportProgress | None:
        found = await self.db.reader.execute_fetchall("SELECT * FROM imports WHERE key = ?",
                                                      (key,))
        return next((ImportProgress(key=r["key"], line=r["line"], done=bool(r["done"]),
                                    imported=r["imported"], blocked=r["blocked"],
                                    invalid=r["invalid"]) for r in found), None)

    async def finish_import(self, progress: ImportProgress) -> None:
        await self.db.run(lambda conn: save_progress(conn, progress))


def save_progress(conn: sqlite3.Connection, p: ImportProgress) -> None:
    conn.execute(
        "INSERT INTO imports (key, line, done, imported, blocked, invalid, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET line = excluded.line, "
        "done = excluded.done, imported = excluded.imported, blocked = excluded.blocked, "
        "invalid = excluded.invalid, updated_at = excluded.updated_at",
        (p.key, p.line, int(p.done), p.imported, p.blocked, p.invalid, time.time()))
