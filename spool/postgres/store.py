"""The spool on PostgreSQL: intake, queries and counters.

Several daemons may share one database. Claims lock with `SKIP LOCKED`
(spool/postgres/dispatch.py); batches travel as arrays (`unnest`), so each
statement text is constant and prepared once per connection.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence

import asyncpg

from spool import rows
from spool.actions import OperatorActions
from spool.base import (
    CampaignCounts,
    Conflict,
    Event,
    ImportProgress,
    Inserted,
    KeyReused,
    ListFilter,
    Message,
    NewMessage,
    NotFound,
    State,
    StoreError,
)
from spool.postgres.access import AccessMixin
from spool.postgres.admin import AdminMixin, save_progress
from spool.postgres.conversations import ConversationsMixin
from spool.postgres.db import PgDb, lock_sql
from spool.postgres.dispatch import DispatchMixin
from spool.postgres.fallbacks import FallbacksMixin
from spool.postgres.journeys import JourneysMixin, insert_rows
from spool.postgres.outbox import OutboxMixin

# Counters are the folded totals plus the deltas appended since the last fold.
_COUNTS = ("SELECT campaign, state, sum(n) AS n FROM (SELECT campaign, state, n FROM spool_counts "
           "UNION ALL SELECT campaign, state, n FROM spool_deltas) c GROUP BY campaign, state "
           "HAVING sum(n) <> 0")
_COSTS = ("SELECT campaign, sum(cost) AS cost FROM (SELECT campaign, cost FROM campaign_costs "
          "UNION ALL SELECT campaign, cost FROM spool_deltas WHERE cost <> 0) c GROUP BY campaign")
_PENDING = ("SELECT coalesce(sum(n), 0) FROM (SELECT n FROM spool_counts WHERE state = 1 "
            "UNION ALL SELECT n FROM spool_deltas WHERE state = 1) c")
_FOLD = (
    "WITH gone AS (DELETE FROM spool_deltas RETURNING campaign, state, n, cost), "
    "counted AS (INSERT INTO spool_counts (campaign, state, n) "
    "  SELECT campaign, state, sum(n) FROM gone GROUP BY campaign, state HAVING sum(n) <> 0 "
    "  ORDER BY campaign, state "
    "  ON CONFLICT (campaign, state) DO UPDATE SET n = spool_counts.n + excluded.n) "
    "INSERT INTO campaign_costs (campaign, cost) "
    "  SELECT campaign, sum(cost) FROM gone GROUP BY campaign HAVING sum(cost) <> 0 "
    "  ORDER BY campaign "
    "  ON CONFLICT (campaign) DO UPDATE SET cost = campaign_costs.cost + excluded.cost")


class PostgresStore(OperatorActions, AdminMixin, AccessMixin, ConversationsMixin, OutboxMixin,
                    JourneysMixin, FallbacksMixin, DispatchMixin):
    def __init__(self, url: str, *, pool_size: int = 10, synchronous: str = "full",
                 **_: object) -> None:
        self.db = PgDb(url, pool_size=pool_size, synchronous=synchronous)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> int:
        return await self.db.migrate()

    async def schema_version(self) -> int:
        return await self.db.schema_version()

    async def ping(self) -> None:
        await self.db.fetchval("SELECT 1")

    async def check_writes(self) -> None:
        if self.db.writes.probe_due():
            with contextlib.suppress(StoreError):  # noted by the db; raised just below
                await self.db.run(_write_probe, time.time())
        self.db.writes.check()

    # intake ------------------------------------------------------------
    async def insert_messages(self, messages: Sequence[NewMessage], *,
                              import_progress: ImportProgress | None = None) -> list[Inserted]:
        return await self.db.run(_insert, messages, import_progress, time.time())

    async def pending_count(self) -> int:
        await self._fold()
        return int(await self.db.fetchval(_PENDING))

    async def _fold(self) -> None:
        """Move the counters' deltas into their totals; one daemon at a time,
        the others read totals plus deltas meanwhile."""
        await self.db.run(_fold)

    # queries and operator actions ------------------------------------------
    async def get_message(self, tenant: int | None, message_id: int) -> Message:
        row = await self.db.fetchrow("SELECT * FROM sms_spool WHERE id = $1", message_id)
        # Another tenant's message is reported as missing: ids are not secrets,
        # but existence must not leak across tenants.
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"message {message_id} not found")
        return rows.message(row)

    async def message_events(self, message_id: int) -> list[Event]:
        found = await self.db.fetch(
            "SELECT at, state, note, channel FROM message_events WHERE message_id = $1 "
            "ORDER BY id", message_id)
        return [rows.event(r) for r in found]

    async def list_messages(self, where: ListFilter) -> list[Message]:
        sql = ["SELECT * FROM sms_spool WHERE tenant = $1 AND id > $2"]
        args: list[object] = [where.tenant, where.after_id]
        for value, clause in ((where.campaign, "campaign ="),
                              (None if where.state is None else int(where.state), "state ="),
                              (where.since, "created_at >=")):
            if value is not None:
                args.append(value)
                sql.append(f"AND {clause} ${len(args)}")
        args.append(where.limit)
        sql.append(f"ORDER BY id LIMIT ${len(args)}")
        return [rows.message(r) for r in await self.db.fetch(" ".join(sql), *args)]

    async def iter_messages(self, where: ListFilter) -> AsyncIterator[Message]:
        after = where.after_id
        while True:
            page = await self.list_messages(
                ListFilter(where.tenant, where.campaign, where.state, where.since, after, 1000))
            for m in page:
                yield m
            if len(page) < 1000:
                return
            after = page[-1].id

    async def _move(self, tenant: int | None, message_id: int, allowed: tuple[State, ...],
                    to: State, note: str, action: str) -> Message:
        current = await self.get_message(tenant, message_id)
        changed = await self.db.fetch(
            "UPDATE sms_spool SET state = $1, note = $2, updated_at = $3, next_attempt_at = 0 "
            "WHERE id = $4 AND state = ANY($5::int[]) RETURNING id",
            to, note, time.time(), message_id, [int(s) for s in allowed])
        if not changed:
            fresh = await self.get_message(tenant, message_id)
            raise Conflict(f"message {message_id} is {fresh.state.name}; cannot {action} it",
                           state=fresh.state)
        return await self.get_message(current.tenant, message_id)

    async def counts(self) -> list[CampaignCounts]:
        await self._fold()
        found = await self.db.fetch(_COUNTS)
        costs = {r["campaign"]: r["cost"] for r in await self.db.fetch(_COSTS)}
        per: dict[int, dict[int, int]] = {}
        for r in found:
            per.setdefault(r["campaign"], {})[r["state"]] = int(r["n"])
        return [CampaignCounts(c, s, costs.get(c, 0.0)) for c, s in sorted(per.items())]

    async def sent_per_channel_since(self, since: float) -> dict[str, int]:
        found = await self.db.fetch(
            "SELECT channel, count(*) FROM sms_spool WHERE sent_at >= $1 "
            "AND channel IS NOT NULL GROUP BY channel", since)
        return {r[0]: r[1] for r in found}


# A message-sized row written and removed in one transaction: its commit
# needs room as an accepted message would, and leaves no trace.
_PROBE_KEY = "smsgw:write-probe:" + "x" * 1600


async def _write_probe(conn: asyncpg.Connection, now: float) -> None:
    await conn.execute("INSERT INTO imports (key, updated_at) VALUES ($1, $2) "
                       "ON CONFLICT (key) DO NOTHING", _PROBE_KEY, now)
    await conn.execute("DELETE FROM imports WHERE key = $1", _PROBE_KEY)


async def _insert(conn: asyncpg.Connection, messages: Sequence[NewMessage],
                  progress: ImportProgress | None, now: float) -> list[Inserted]:
    if progress is not None and messages:
        await _own_lines(conn, progress)
    known = await _known_keys(conn, messages)
    fresh = _fresh(messages, known)
    _same_requests(messages, known)
    ids = await insert_rows(conn, [messages[i] for i in fresh], now)
    given = dict(zip(fresh, ids, strict=True))  # position -> id of the row it became
    for i, mid in given.items():
        m = messages[i]
        if m.idempotency_key:
            known[(m.tenant, m.idempotency_key)] = (mid, m.state, m.fingerprint)
    result = []
    for i, m in enumerate(messages):
        if i in given:
            result.append(Inserted(given[i], m.state))
        else:
            mid, state, _ = known[(m.tenant, m.idempotency_key or "")]
            result.append(Inserted(mid, state, duplicate=True))
    if progress is not None:
        await save_progress(conn, progress)
    return result


def _same_requests(messages: Sequence[NewMessage],
                   known: dict[tuple[int, str], tuple[int, State, str | None]]) -> None:
    """A key's first request is its only one: another under it is refused
    (rows stored before fingerprints were kept have none and match any)."""
    first: dict[tuple[int, str], str | None] = {k: v[2] for k, v in known.items()}
    for m in messages:
        if not m.idempotency_key:
            continue
        key = (m.tenant, m.idempotency_key)
        stored = first.setdefault(key, m.fingerprint)
        if stored and m.fingerprint and stored != m.fingerprint:
            raise KeyReused(m.tenant, m.idempotency_key)


def _fresh(messages: Sequence[NewMessage],
           known: dict[tuple[int, str], tuple[int, State, str | None]]) -> list[int]:
    """Positions to insert: new keys, each key once (the first wins)."""
    seen: set[tuple[int, str]] = set()
    fresh = []
    for i, m in enumerate(messages):
        if m.idempotency_key:
            key = (m.tenant, m.idempotency_key)
            if key in known or key in seen:
                continue
            seen.add(key)
        fresh.append(i)
    return fresh


async def _known_keys(conn: asyncpg.Connection, messages: Sequence[NewMessage]
                      ) -> dict[tuple[int, str], tuple[int, State, str | None]]:
    keyed = [(m.tenant, m.idempotency_key) for m in messages if m.idempotency_key]
    if not keyed:
        return {}
    found = await conn.fetch(
        "SELECT s.tenant, s.idempotency_key, s.id, s.state, s.request_fingerprint "
        "FROM sms_spool s JOIN unnest($1::bigint[], $2::text[]) AS k(tenant, key) "
        "ON s.tenant = k.tenant AND s.idempotency_key = k.key",
        [t for t, _ in keyed], [k for _, k in keyed])
    return {(r[0], r[1]): (r[2], State(r[3]), r[4]) for r in found}


async def _own_lines(conn: asyncpg.Connection, progress: ImportProgress) -> None:
    """Two daemons watching one folder must not both import a file: rows
    up to a line already committed by the other are refused."""
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('smsgw:import:' "
                       "|| current_schema() || ':' || $1, 0))", progress.key)
    row = await conn.fetchrow("SELECT line, done FROM imports WHERE key = $1", progress.key)
    if row is not None and (row["done"] or row["line"] >= progress.line):
        raise Conflict(f"import {progress.key!r} is at line {row['line']} already "
                       f"(another daemon is importing it)")


async def _fold(conn: asyncpg.Connection) -> None:
    if await conn.fetchval(lock_sql("fold")):
        await conn.execute(_FOLD)
