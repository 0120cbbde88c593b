"""Journeys, short links, clicks and cost reports on PostgreSQL.

Every daemon runs the journey scheduler; a step is taken only by the
`advance_journeys` whose guard (the step it expected, the journey still
waiting) still holds when it gets the row, so two daemons that picked the
same due journey never both send its next message.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence

import asyncpg

from spool import rows
from spool.base import (
    Click,
    Conflict,
    CostLine,
    Journey,
    JourneyStep,
    LinkTarget,
    Message,
    NewMessage,
    NotFound,
    RecentClick,
    State,
)
from spool.postgres.admin import affected
from spool.postgres.db import PgDb, TryAgain

OPEN = ("ACTIVE", "ESCALATED")
# The order of a journey's URLs in its text (the first is {link}): SQLite
# keeps it in the rowid; here each link's created_at is a microsecond after
# the one before it.
LINK_ORDER = "created_at, code"
LINK_STEP_S = 1e-6

_INSERT = (
    "INSERT INTO sms_spool (id, tenant, campaign, destination, message, priority, state, "
    "error, note, agent, data, kind, idempotency_key, segments, encoding, journey_id, "
    "request_fingerprint, created_at, updated_at) SELECT *, $18, $18 FROM unnest("
    "$1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::int[], $7::int[], "
    "$8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::int[], "
    "$15::text[], $16::bigint[], $17::text[]) "
    "ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING "
    "RETURNING id")


class JourneysMixin:
    db: PgDb

    async def link_target(self, code: str) -> LinkTarget | None:
        r = await self.db.fetchrow(
            "SELECT code, url, journey, expires_at FROM links WHERE code = $1", code)
        return None if r is None else LinkTarget(r[0], r[1], r[2], r[3])

    async def record_clicks(self, clicks: Sequence[Click]) -> list[int]:
        if not clicks:
            return []
        return await self.db.run(_record_clicks, clicks)

    async def due_journeys(self, now: float, limit: int) -> list[Journey]:
        found = [r for r in await self.db.fetch(
            "SELECT * FROM journeys WHERE next_at <= $1 ORDER BY next_at LIMIT $2", now, limit)
            if r["state"] in OPEN]
        links: dict[int, list[tuple[str, str]]] = {}
        for r in await self.db.fetch(
                f"SELECT journey, code, url FROM links WHERE journey = ANY($1::bigint[]) "
                f"ORDER BY journey, {LINK_ORDER}", [r["id"] for r in found]):
            links.setdefault(r[0], []).append((r[1], r[2]))
        return [rows.journey(r, tuple(links.get(r["id"], ()))) for r in found]

    async def advance_journeys(self, steps: Sequence[JourneyStep], now: float) -> int:
        if not steps:
            return 0
        return await self.db.run(_advance, sorted(steps, key=lambda s: s.journey), now)

    async def get_journey(self, tenant: int | None, journey_id: int) -> Journey:
        row = await self.db.fetchrow("SELECT * FROM journeys WHERE id = $1", journey_id)
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"journey {journey_id} not found")
        links = await self.db.fetch(
            f"SELECT code, url FROM links WHERE journey = $1 ORDER BY {LINK_ORDER}", journey_id)
        return rows.journey(row, tuple((r[0], r[1]) for r in links))

    async def journey_messages(self, journey_id: int) -> list[Message]:
        found = await self.db.fetch(
            "SELECT * FROM sms_spool WHERE journey_id = $1 ORDER BY id", journey_id)
        return [rows.message(r) for r in found]

    async def clicked_by_campaign(self, tenant: int | None) -> dict[int, int]:
        sql = "SELECT campaign, count(*) FROM journeys WHERE state = 'CLICKED'"
        args: tuple[object, ...] = ()
        if tenant is not None:
            sql, args = sql + " AND tenant = $1", (tenant,)
        found = await self.db.fetch(sql + " GROUP BY campaign", *args)
        return {r[0]: int(r[1]) for r in found}

    async def recent_clicks(self, tenant: int | None, limit: int) -> list[RecentClick]:
        sql = ("SELECT c.at, c.journey, j.campaign, j.destination, l.url, c.user_agent "
               "FROM clicks c JOIN journeys j ON j.id = c.journey JOIN links l ON l.code = c.code "
               "WHERE c.bot = 0")
        args: tuple[object, ...] = ()
        if tenant is not None:
            sql, args = sql + " AND j.tenant = $2", (tenant,)
        found = await self.db.fetch(sql + " ORDER BY c.id DESC LIMIT $1", limit, *args)
        return [RecentClick(*r) for r in found]

    async def journey_clicks(self, journey_id: int) -> tuple[int, int]:
        found = await self.db.fetchrow(
            "SELECT count(*) FILTER (WHERE bot = 0), count(*) FILTER (WHERE bot = 1) FROM clicks "
            "WHERE journey = $1", journey_id)
        assert found is not None  # an aggregate always answers one row
        return int(found[0]), int(found[1])

    async def cancel_journey(self, tenant: int, journey_id: int, note: str) -> Journey:
        await self.get_journey(tenant, journey_id)
        cancelled = await self.db.run(_cancel, journey_id, note, time.time())
        journey = await self.get_journey(tenant, journey_id)
        if not cancelled:
            raise Conflict(f"journey {journey_id} is {journey.state}; cannot cancel it")
        return journey

    async def cost_report(self, tenant: int, campaign: int | None, since: float | None,
                          until: float | None) -> list[CostLine]:
        found = await self.db.fetch(
            "SELECT campaign, kind, count(*), sum(cost) FROM sms_spool "
            "WHERE sent_at >= $1 AND sent_at < $2 AND tenant = $3 "
            "AND ($4::bigint IS NULL OR campaign = $4) "
            "GROUP BY campaign, kind ORDER BY campaign, kind",
            since or 0, until or 1e12, tenant, campaign)
        return [CostLine(r[0], r[1], r[2], round(r[3] or 0.0, 6)) for r in found]


async def _record_clicks(conn: asyncpg.Connection, clicks: Sequence[Click]) -> list[int]:
    await conn.execute(
        "INSERT INTO clicks (code, journey, at, method, ip, user_agent, bot) "
        "SELECT * FROM unnest($1::text[], $2::bigint[], $3::float8[], $4::text[], $5::text[], "
        "$6::text[], $7::int[])",
        [c.code for c in clicks], [c.journey for c in clicks], [c.at for c in clicks],
        [c.method for c in clicks], [c.ip for c in clicks], [c.user_agent for c in clicks],
        [int(c.bot) for c in clicks])
    # Only a journey's first human click changes anything: look up the
    # distinct journeys still open once per batch, not once per click.
    first: dict[int, Click] = {}
    for click in clicks:
        if not click.bot:
            first.setdefault(click.journey, click)
    still_open = await conn.fetch(
        "SELECT id FROM journeys WHERE id = ANY($1::bigint[]) "
        "AND state IN ('ACTIVE', 'ESCALATED') ORDER BY id", list(first))
    return [r[0] for r in still_open if await _clicked(conn, first[r[0]])]


async def _clicked(conn: asyncpg.Connection, click: Click) -> bool:
    """First human click: end the journey, cancel its queued steps, tell the tenant."""
    row = await conn.fetchrow(
        "UPDATE journeys SET state = 'CLICKED', clicked_at = $1, next_at = NULL, "
        "updated_at = $1, note = 'clicked' WHERE id = $2 AND state IN ('ACTIVE', 'ESCALATED') "
        "RETURNING tenant, campaign, destination", click.at, click.journey)
    if row is None:
        return False
    tenant, campaign, destination = row
    await conn.execute("UPDATE sms_spool SET state = 8, note = 'journey clicked', "
                       "updated_at = $1 WHERE journey_id = $2 AND state IN (0, 1)",
                       click.at, click.journey)
    if await conn.fetchval("SELECT 1 FROM tenants WHERE id = $1 AND webhook_url IS NOT NULL",
                           tenant):
        await _link_clicked_event(conn, click, tenant, campaign, destination)
    return True


async def _link_clicked_event(conn: asyncpg.Connection, click: Click, tenant: int,
                              campaign: int, destination: str) -> None:
    name, url, message_id = await conn.fetchrow(
        "SELECT (SELECT name FROM campaigns WHERE id = $1), (SELECT url FROM links WHERE "
        "code = $2), (SELECT max(id) FROM sms_spool WHERE journey_id = $3 AND state IN (4, 5))",
        campaign, click.code, click.journey)
    payload = {"message_id": message_id, "journey_id": click.journey,
               "destination": destination, "campaign": name, "url": url, "at": click.at,
               "user_agent": click.user_agent}
    await conn.execute(
        "INSERT INTO webhook_outbox (event_id, tenant, type, payload, created_at) "
        "VALUES ($1, $2, 'link.clicked', $3, $4)",
        secrets.token_hex(16), tenant, json.dumps(payload), click.at)


async def _advance(conn: asyncpg.Connection, steps: list[JourneyStep], now: float) -> int:
    advanced = 0
    for step in steps:
        took = affected(await conn.execute(
            "UPDATE journeys SET state = $1, step = step + $2, next_at = NULL, "
            "note = coalesce($3, note), updated_at = $4 WHERE id = $5 AND step = $6 "
            "AND state IN ('ACTIVE', 'ESCALATED') AND next_at IS NOT NULL",
            step.state, int(step.message is not None), step.note, now, step.journey,
            step.expected_step))
        if took and step.message is not None:
            await insert_rows(conn, [step.message], now)
        advanced += took
    return advanced


async def _cancel(conn: asyncpg.Connection, journey_id: int, note: str, now: float) -> int:
    took = affected(await conn.execute(
        "UPDATE journeys SET state = 'CANCELLED', next_at = NULL, note = $1, updated_at = $2 "
        "WHERE id = $3 AND state IN ('ACTIVE', 'ESCALATED')", note, now, journey_id))
    if took:
        await conn.execute("UPDATE sms_spool SET state = 8, note = $1, updated_at = $2 "
                           "WHERE journey_id = $3 AND state IN (0, 1)", note, now, journey_id)
    return took


async def _take_ids(conn: asyncpg.Connection, table: str, n: int) -> list[int]:
    """`n` ids in ascending order, taken before the rows are written."""
    found = await conn.fetch(f"SELECT nextval(pg_get_serial_sequence('{table}', 'id')) "
                             f"FROM generate_series(1, $1)", n)
    return sorted(r[0] for r in found)


async def insert_rows(conn: asyncpg.Connection, messages: Sequence[NewMessage],
                      now: float) -> list[int]:
    """Insert in one go with ids taken in order; open the journeys they carry."""
    if not messages:
        return []
    ids = await _take_ids(conn, "sms_spool", len(messages))
    journeys = await _open_journeys(conn, messages, now)
    notes = [m.error or ("accepted" if m.state == State.TO_PROCESS else None) for m in messages]
    columns = [ids, [m.tenant for m in messages], [m.campaign for m in messages],
               [m.destination for m in messages], [m.message for m in messages],
               [m.priority for m in messages], [int(m.state) for m in messages],
               [m.error for m in messages], notes, [m.agent for m in messages],
               [rows.dumps(m.data) for m in messages], [m.kind for m in messages],
               [m.idempotency_key for m in messages], [m.segments for m in messages],
               [m.encoding for m in messages], journeys, [m.fingerprint for m in messages]]
    stored = await conn.fetch(_INSERT, *columns, now)
    if len(stored) < len(messages):
        # Another daemon committed one of these idempotency keys after we
        # looked; run again and it is seen as the duplicate it is.
        raise TryAgain("idempotency key stored concurrently")
    return ids


async def _open_journeys(conn: asyncpg.Connection, messages: Sequence[NewMessage],
                         now: float) -> list[int | None]:
    opening = [m for m in messages if m.journey is not None]
    if not opening:
        return [m.journey_id for m in messages]
    ids = iter(await _take_ids(conn, "journeys", len(opening)))
    out: list[int | None] = []
    journeys, links = [], []
    for m in messages:
        if m.journey is None:
            out.append(m.journey_id)
            continue
        journey_id = next(ids)
        out.append(journey_id)
        # A message that will never be sent opens no journey worth waiting on.
        journeys.append((journey_id, m.tenant, m.campaign, m.destination,
                         "ACTIVE" if m.state == State.TO_PROCESS else "FAILED",
                         json.dumps(m.journey.policy), m.journey.wait_s, m.error))
        expires = m.journey.policy.get("link_ttl_s")
        links += [(code, journey_id, url, now + k * LINK_STEP_S,
                   now + expires if expires else None)
                  for k, (code, url) in enumerate(m.journey.links)]
    await conn.copy_records_to_table(
        "journeys", records=[(*j, now, now) for j in journeys],
        columns=["id", "tenant", "campaign", "destination", "state", "policy", "wait_s", "note",
                 "created_at", "updated_at"])
    if links:
        await conn.copy_records_to_table(
            "links", records=links,
            columns=["code", "journey", "url", "created_at", "expires_at"])
    return out
