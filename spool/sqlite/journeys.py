"""Journeys, short links, clicks and cost reports on SQLite."""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Sequence

from spool import rows
from spool.base import (
    Click,
    Conflict,
    CostLine,
    Fallback,
    Journey,
    JourneySpec,
    JourneyStep,
    LinkTarget,
    Message,
    NewMessage,
    NotFound,
    RecentClick,
)
from spool.sqlite.db import SqliteDb

OPEN = ("ACTIVE", "ESCALATED")


class JourneysMixin:
    db: SqliteDb

    async def link_target(self, code: str) -> LinkTarget | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT code, url, journey, expires_at FROM links WHERE code = ?", (code,))
        return next((LinkTarget(r[0], r[1], r[2], r[3]) for r in found), None)

    async def record_clicks(self, clicks: Sequence[Click]) -> list[int]:
        ended: list[int] = []
        async with self.db.transaction() as db:
            await db.executemany(
                "INSERT INTO clicks (code, journey, at, method, ip, user_agent, bot) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(c.code, c.journey, c.at, c.method, c.ip, c.user_agent, int(c.bot))
                 for c in clicks])
            # Only a journey's first human click changes anything: look up the
            # distinct journeys still open once per batch, not once per click.
            first: dict[int, Click] = {}
            for click in clicks:
                if not click.bot:
                    first.setdefault(click.journey, click)
            for journey in await _open_journeys(db, list(first)):
                if await _clicked(db, first[journey]):
                    ended.append(journey)
        return ended

    async def due_journeys(self, now: float, limit: int) -> list[Journey]:
        found = [r for r in await self.db.reader.execute_fetchall(
            "SELECT * FROM journeys WHERE next_at <= ? ORDER BY next_at LIMIT ?", (now, limit))
            if r["state"] in OPEN]
        links: dict[int, list[tuple[str, str]]] = {}
        ids = [r["id"] for r in found]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            for journey, code, url in await self.db.reader.execute_fetchall(
                    f"SELECT journey, code, url FROM links WHERE journey IN "
                    f"({','.join('?' * len(chunk))}) ORDER BY rowid", chunk):
                links.setdefault(journey, []).append((code, url))
        return [rows.journey(r, tuple(links.get(r["id"], ()))) for r in found]

    async def advance_journeys(self, steps: Sequence[JourneyStep], now: float) -> int:
        def advance(conn: sqlite3.Connection) -> int:
            advanced = 0
            for step in steps:
                cur = conn.execute(
                    "UPDATE journeys SET state = ?, step = step + ?, next_at = NULL, "
                    "note = coalesce(?, note), updated_at = ? WHERE id = ? AND step = ? "
                    "AND state IN ('ACTIVE', 'ESCALATED') AND next_at IS NOT NULL",
                    (step.state, int(step.message is not None), step.note, now, step.journey,
                     step.expected_step))
                if cur.rowcount and step.message is not None:
                    insert_rows(conn, [step.message], now)
                advanced += cur.rowcount
            return advanced
        return await self.db.run(advance)

    async def get_journey(self, tenant: int | None, journey_id: int) -> Journey:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM journeys WHERE id = ?", (journey_id,))
        row = next(iter(found), None)
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"journey {journey_id} not found")
        links = await self.db.reader.execute_fetchall(
            "SELECT code, url FROM links WHERE journey = ? ORDER BY rowid", (journey_id,))
        return rows.journey(row, tuple((r[0], r[1]) for r in links))

    async def journey_messages(self, journey_id: int) -> list[Message]:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM sms_spool WHERE journey_id = ? ORDER BY id", (journey_id,))
        return [rows.message(r) for r in found]

    async def clicked_by_campaign(self, tenant: int | None) -> dict[int, int]:
        sql = "SELECT campaign, count(*) FROM journeys WHERE state = 'CLICKED'"
        args: tuple[object, ...] = ()
        if tenant is not None:
            sql, args = sql + " AND tenant = ?", (tenant,)
        found = await self.db.reader.execute_fetchall(sql + " GROUP BY campaign", args)
        return {r[0]: r[1] for r in found}

    async def recent_clicks(self, tenant: int | None, limit: int) -> list[RecentClick]:
        sql = ("SELECT c.at, c.journey, j.campaign, j.destination, l.url, c.user_agent "
               "FROM clicks c JOIN journeys j ON j.id = c.journey JOIN links l ON l.code = c.code "
               "WHERE c.bot = 0")
        args: tuple[object, ...] = ()
        if tenant is not None:
            sql, args = sql + " AND j.tenant = ?", (tenant,)
        found = await self.db.reader.execute_fetchall(sql + " ORDER BY c.id DESC LIMIT ?",
                                                      (*args, limit))
        return [RecentClick(*r) for r in found]

    async def journey_clicks(self, journey_id: int) -> tuple[int, int]:
        found = await self.db.reader.execute_fetchall(
            "SELECT coalesce(sum(bot = 0), 0), coalesce(sum(bot = 1), 0) FROM clicks "
            "WHERE journey = ?", (journey_id,))
        human, bot = next(iter(found))
        return int(human), int(bot)

    async def cancel_journey(self, tenant: int, journey_id: int, note: str) -> Journey:
        await self.get_journey(tenant, journey_id)
        now = time.time()
        async with self.db.transaction() as db:
            cur = await db.execute(
                "UPDATE journeys SET state = 'CANCELLED', next_at = NULL, note = ?, "
                "updated_at = ? WHERE id = ? AND state IN ('ACTIVE', 'ESCALATED')",
                (note, now, journey_id))
            if cur.rowcount:
                await db.execute(
                    "UPDATE sms_spool SET state = 8, note = ?, updated_at = ? "
                    "WHERE journey_id = ? AND state IN (0, 1)", (note, now, journey_id))
        journey = await self.get_journey(tenant, journey_id)
        if not cur.rowcount:
            raise Conflict(f"journey {journey_id} is {journey.state}; cannot cancel it")
        return journey

    async def fallbacks(self, state: str, limit: int) -> list[Fallback]:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM wa_fallbacks WHERE state = ? ORDER BY created_at LIMIT ?",
            (state, limit))
        return [_fallback(r) for r in found]

    async def fallback_for(self, destination: str, channel: str,
                           now: float) -> Fallback | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT f.* FROM wa_fallbacks f JOIN sms_spool u ON u.id = f.utility_id "
            "WHERE f.state = 'ASKED' AND f.destination = ? AND f.until > ? AND u.channel = ? "
            "ORDER BY f.created_at DESC LIMIT 1", (destination, now, channel))
        return next((_fallback(r) for r in found), None)

    async def set_fallback(self, message_id: int, state: str, now: float, *,
                           utility_id: int | None = None, until: float | None = None,
                           session_ids: Sequence[int] = ()) -> bool:
        expected = {"ASKED": "PENDING", "SKIPPED": "PENDING", "ANSWERED": "ASKED",
                    "EXPIRED": "ASKED"}[state]
        async with self.db.transaction() as db:
            cur = await db.execute(
                "UPDATE wa_fallbacks SET state = ?, updated_at = ?, "
                "utility_id = coalesce(?, utility_id), until = coalesce(?, until), "
                "session_ids = coalesce(?, session_ids) WHERE message_id = ? AND state = ?",
                (state, now, utility_id, until,
                 json.dumps(list(session_ids)) if session_ids else None, message_id, expected))
            return bool(cur.rowcount)

    async def fallback_of(self, message_id: int) -> Fallback | None:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM wa_fallbacks WHERE message_id = ?", (message_id,))
        return next((_fallback(r) for r in found), None)

    async def expire_fallbacks(self, now: float) -> int:
        async with self.db.transaction() as db:
            cur = await db.execute("UPDATE wa_fallbacks SET state = 'EXPIRED', updated_at = ? "
                                   "WHERE state = 'ASKED' AND until <= ?", (now, now))
            return cur.rowcount

    async def cost_report(self, tenant: int, campaign: int | None, since: float | None,
                          until: float | None) -> list[CostLine]:
        sql = ("SELECT campaign, kind, count(*), sum(cost) FROM sms_spool "
               "WHERE sent_at >= ? AND sent_at < ? AND tenant = ?")
        args: list[object] = [since or 0, until or 1e12, tenant]
        if campaign is not None:
            sql += " AND campaign = ?"
            args.append(campaign)
        found = await self.db.reader.execute_fetchall(
            sql + " GROUP BY campaign, kind ORDER BY campaign, kind", args)
        return [CostLine(r[0], r[1], r[2], round(r[3] or 0.0, 6)) for r in found]


async def _open_journeys(db, ids: list[int]) -> list[int]:
    found: list[int] = []
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        rows_ = await db.execute_fetchall(
            f"SELECT id FROM journeys WHERE id IN ({','.join('?' * len(chunk))}) "
            f"AND state IN ('ACTIVE', 'ESCALATED')", chunk)
        found += [r[0] for r in rows_]
    return sorted(found)


async def _clicked(db, click: Click) -> bool:
    """First human click: end the journey, cancel its queued steps, tell the tenant."""
    found = await db.execute_fetchall(
        "UPDATE journeys SET state = 'CLICKED', clicked_at = ?, next_at = NULL, "
        "updated_at = ?, note = 'clicked' WHERE id = ? AND state IN ('ACTIVE', 'ESCALATED') "
        "RETURNING tenant, campaign, destination", (click.at, click.at, click.journey))
    row = next(iter(found), None)
    if row is None:
        return False
    tenant, campaign, destination = row
    await db.execute("UPDATE sms_spool SET state = 8, note = 'journey clicked', updated_at = ? "
                     "WHERE journey_id = ? AND state IN (0, 1)", (click.at, click.journey))
    hook = await db.execute_fetchall(
        "SELECT 1 FROM tenants WHERE id = ? AND webhook_url IS NOT NULL", (tenant,))
    if hook:
        await _link_clicked_event(db, click, tenant, campaign, destination)
    return True


async def _link_clicked_event(db, click: Click, tenant: int, campaign: int,
                              destination: str) -> None:
    info = await db.execute_fetchall(
        "SELECT (SELECT name FROM campaigns WHERE id = ?), (SELECT url FROM links WHERE "
        "code = ?), (SELECT max(id) FROM sms_spool WHERE journey_id = ? AND state IN (4, 5))",
        (campaign, click.code, click.journey))
    name, url, message_id = next(iter(info))
    payload = {"message_id": message_id, "journey_id": click.journey,
               "destination": destination, "campaign": name, "url": url, "at": click.at,
               "user_agent": click.user_agent}
    await db.execute(
        "INSERT INTO webhook_outbox (event_id, tenant, type, payload, created_at) "
        "VALUES (?, ?, 'link.clicked', ?, ?)",
        (secrets.token_hex(16), tenant, json.dumps(payload), click.at))


def _fallback(r) -> Fallback:
    return Fallback(message_id=r["message_id"], tenant=r["tenant"], campaign=r["campaign"],
                    destination=r["destination"], state=r["state"], error_code=r["error_code"],
                    until=r["until"], utility_id=r["utility_id"])


_COLUMNS = ("id", "tenant", "campaign", "destination", "message", "priority", "state", "error",
            "note", "agent", "data", "kind", "idempotency_key", "segments", "encoding",
            "journey_id", "created_at", "updated_at", "request_fingerprint")
_ROW = "(" + ",".join("?" * len(_COLUMNS)) + ")"
# Rows per INSERT statement, largest first. sqlite3 releases the GIL around
# each statement step, and the writer's thread then waits for it behind the
# event loop's Python (up to the 5 ms switch interval) on every step: with
# executemany's step per row the writer crawled (under 2,000 rows/s) while a
# file was being parsed. A multi-row VALUES is one wait, and SQLite inserts
# without the GIL. Few fixed sizes: sqlite3 caches each distinct statement,
# and one of 1,000 rows holds about 1.7 MB of SQLite's heap.
_CHUNK_ROWS = (1000, 100, 10, 1)
_INSERTS = {size: f"INSERT INTO sms_spool ({', '.join(_COLUMNS)}) VALUES "
                  + ",".join([_ROW] * size) for size in _CHUNK_ROWS}


def insert_rows(conn: sqlite3.Connection, messages: Sequence[NewMessage],
                now: float) -> list[int]:
    """Insert in one go with ids taken in order; open the journeys they carry.
    Runs on the writer's thread, inside its transaction (ids are ours: the
    transaction holds SQLite's write lock)."""
    first = conn.execute(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'sms_spool'), 0)"
    ).fetchone()[0] + 1
    values: list[object] = []
    for next_id, m in enumerate(messages, start=first):
        journey_id = m.journey_id
        if m.journey is not None:
            journey_id = _open_journey(conn, m, m.journey, now)
        note = m.error or ("accepted" if m.state == 1 else None)
        values += (next_id, m.tenant, m.campaign, m.destination, m.message, m.priority,
                   m.state, m.error, note, m.agent, rows.dumps(m.data), m.kind,
                   m.idempotency_key, m.segments, m.encoding, journey_id, now, now,
                   m.fingerprint)
    _insert_values(conn, values)
    return list(range(first, first + len(messages)))


def _insert_values(conn: sqlite3.Connection, values: list[object]) -> None:
    limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    start = 0
    for size in _CHUNK_ROWS:
        width = size * len(_COLUMNS)
        if width > limit and size > 1:
            continue
        while len(values) - start >= width:
            conn.execute(_INSERTS[size], values[start:start + width])
            start += width


def _open_journey(conn: sqlite3.Connection, m: NewMessage, spec: JourneySpec,
                  now: float) -> int:
    # A message that will never be sent opens no journey worth waiting on.
    state = "ACTIVE" if m.state == 1 else "FAILED"
    cur = conn.execute(
        "INSERT INTO journeys (tenant, campaign, destination, state, policy, wait_s, "
        "created_at, updated_at, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (m.tenant, m.campaign, m.destination, state, json.dumps(spec.policy), spec.wait_s,
         now, now, m.error))
    journey_id = cur.lastrowid
    expires = spec.policy.get("link_ttl_s")
    conn.executemany(
        "INSERT INTO links (code, journey, url, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
        [(code, journey_id, url, now, now + expires if expires else None)
         for code, url in spec.links])
    return int(journey_id or 0)
