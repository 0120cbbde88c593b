"""The spool on SQLite: intake, queries, claims and results."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

from spool import rows
from spool.actions import OperatorActions
from spool.base import (
    Blocked,
    CampaignCounts,
    Claimed,
    Conflict,
    Event,
    Failed,
    ImportProgress,
    Inserted,
    KeyReused,
    ListFilter,
    Message,
    NewMessage,
    NotFound,
    Outcome,
    PacedClaim,
    Recovered,
    Report,
    Retry,
    Sent,
    State,
    StoreError,
)
from spool.sqlite.access import AccessMixin
from spool.sqlite.admin import AdminMixin, save_progress
from spool.sqlite.conversations import ConversationsMixin
from spool.sqlite.db import SqliteDb
from spool.sqlite.journeys import JourneysMixin, insert_rows
from spool.sqlite.outbox import OutboxMixin

_CLEARED = "claimed_by = NULL, claim_until = NULL, started_at = NULL"


# A reference that is also one of the message's parts' (an aggregator that
# answers with one id per part gives the first as the message's) names that
# part only: the message is delivered when every part is.
_WHOLE = ("AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = sms_spool.id "
          "AND p.ref = sms_spool.provider_ref)")


class SqliteStore(OperatorActions, AdminMixin, AccessMixin, ConversationsMixin, OutboxMixin,
                  JourneysMixin):
    def __init__(self, path: str | Path, *, synchronous: str = "full",
                 busy_timeout_ms: int = 5000, **_: object) -> None:
        self.db = SqliteDb(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)

    async def open(self) -> None:
        await self.db.open()

    async def close(self) -> None:
        await self.db.close()

    async def migrate(self) -> int:
        return await self.db.migrate()

    async def schema_version(self) -> int:
        return await self.db.schema_version()

    async def ping(self) -> None:
        await self.db.reader.execute_fetchall("SELECT 1")

    async def check_writes(self) -> None:
        if self.db.writes.probe_due():
            with contextlib.suppress(StoreError):  # noted by the db; raised just below
                await self.db.run(_write_probe)
        self.db.writes.check()

    # intake ------------------------------------------------------------
    async def insert_messages(self, messages: Sequence[NewMessage], *,
                              import_progress: ImportProgress | None = None) -> list[Inserted]:
        now = time.time()

        def insert(conn: sqlite3.Connection) -> list[Inserted]:
            if not any(m.idempotency_key for m in messages):  # a CSV import's batches
                ids = insert_rows(conn, messages, now)
                if import_progress is not None:
                    save_progress(conn, import_progress)
                return [Inserted(i, m.state) for i, m in zip(ids, messages, strict=True)]
            known = _known_keys(conn, messages)
            fresh: list[NewMessage] = []
            slots: list[int | Inserted] = []  # an index into `fresh`, or a duplicate
            for m in messages:
                key = (m.tenant, m.idempotency_key) if m.idempotency_key else None
                if key is not None and key in known:
                    _same_request(m, known[key][2])
                    slots.append(Inserted(known[key][0], known[key][1], duplicate=True))
                    continue
                if key is not None:
                    known[key] = (-len(fresh) - 1, m.state, m.fingerprint)  # resolved below
                slots.append(len(fresh))
                fresh.append(m)
            ids = insert_rows(conn, fresh, now)
            if import_progress is not None:
                save_progress(conn, import_progress)
            return [slot if isinstance(slot, Inserted) else Inserted(ids[slot], fresh[slot].state)
                    for slot in _resolve(slots, ids)]
        return await self.db.run(insert)

    async def pending_count(self) -> int:
        found = await self.db.reader.execute_fetchall(
            "SELECT coalesce(sum(n), 0) FROM spool_counts WHERE state = ?", (State.TO_PROCESS,))
        return int(next(iter(found))[0])

    # queries and operator actions ------------------------------------------
    async def get_message(self, tenant: int | None, message_id: int) -> Message:
        found = await self.db.reader.execute_fetchall(
            "SELECT * FROM sms_spool WHERE id = ?", (message_id,))
        row = next(iter(found), None)
        # Another tenant's message is reported as missing: ids are not secrets,
        # but existence must not leak across tenants.
        if row is None or (tenant is not None and row["tenant"] != tenant):
            raise NotFound(f"message {message_id} not found")
        return rows.message(row)

    async def message_events(self, message_id: int) -> list[Event]:
        found = await self.db.reader.execute_fetchall(
            "SELECT at, state, note, channel FROM message_events WHERE message_id = ? ORDER BY id",
            (message_id,))
        return [rows.event(r) for r in found]

    async def list_messages(self, where: ListFilter) -> list[Message]:
        sql = ["SELECT * FROM sms_spool WHERE tenant = ? AND id > ?"]
        args: list[object] = [where.tenant, where.after_id]
        if where.campaign is not None:
            sql.append("AND campaign = ?")
            args.append(where.campaign)
        if where.state is not None:
            sql.append("AND state = ?")
            args.append(int(where.state))
        if where.since is not None:
            sql.append("AND created_at >= ?")
            args.append(where.since)
        sql.append("ORDER BY id LIMIT ?")
        args.append(where.limit)
        found = await self.db.reader.execute_fetchall(" ".join(sql), args)
        return [rows.message(r) for r in found]

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
        async with self.db.transaction() as db:
            cur = await db.execute(
                f"UPDATE sms_spool SET state = ?, note = ?, updated_at = ?, next_attempt_at = 0 "
                f"WHERE id = ? AND state IN ({','.join('?' * len(allowed))})",
                (to, note, time.time(), message_id, *allowed))
            changed = cur.rowcount
        if not changed:
            fresh = await self.get_message(tenant, message_id)
            raise Conflict(f"message {message_id} is {fresh.state.name}; cannot {action} it",
                           state=fresh.state)
        return await self.get_message(current.tenant, message_id)

    async def counts(self) -> list[CampaignCounts]:
        found = await self.db.reader.execute_fetchall(
            "SELECT campaign, state, n FROM spool_counts WHERE n != 0")
        costs: dict[int, float] = {r[0]: r[1] for r in await self.db.reader.execute_fetchall(
            "SELECT campaign, cost FROM campaign_costs")}
        per: dict[int, dict[int, int]] = {}
        for campaign, state, n in found:
            per.setdefault(campaign, {})[state] = n
        return [CampaignCounts(c, s, costs.get(c, 0.0)) for c, s in sorted(per.items())]

    async def sent_per_channel_since(self, since: float) -> dict[str, int]:
        found = await self.db.reader.execute_fetchall(
            "SELECT channel, count(*) FROM sms_spool WHERE sent_at >= ? AND channel IS NOT NULL "
            "GROUP BY channel", (since,))
        return {r[0]: r[1] for r in found}

    # dispatcher ----------------------------------------------------------
    async def claim(self, node: str, limit: int, now: float, lease_until: float,
                    campaigns: Sequence[int], *, token: int | None = None) -> list[Claimed]:
        if not campaigns or limit <= 0:
            return []
        sql, args = _claim_sql(node, limit, now, lease_until, campaigns, token)

        def claim(conn: sqlite3.Connection) -> list[sqlite3.Row]:
            return conn.execute(sql, args).fetchall()
        found = await self.db.run(claim)
        ordered = sorted(found, key=lambda r: (-r["priority"], r["id"]))
        return [rows.claimed(r) for r in ordered]

    async def claim_paced(self, node: str, now: float, lease_until: float, campaign: int,
                          *, token: int | None = None) -> PacedClaim:
        sql, args = _claim_sql(node, 1, now, lease_until, [campaign], token)

        def claim(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], float | None]:
            slot = conn.execute("SELECT last_slot_at, time_between_ms FROM campaigns "
                                "WHERE id = ? AND enabled = 1", (campaign,)).fetchone()
            if slot is None:
                return [], None
            gap_s = slot["time_between_ms"] / 1000
            if slot["last_slot_at"] + gap_s > now:
                return [], slot["last_slot_at"] + gap_s
            found = conn.execute(sql, args).fetchall()
            if not found:  # nothing waiting: the slot stays free
                return [], slot["last_slot_at"] + gap_s
            conn.execute("UPDATE campaigns SET last_slot_at = ? WHERE id = ?", (now, campaign))
            return found, now + gap_s
        found, next_slot_at = await self.db.run(claim)
        return PacedClaim([rows.claimed(r) for r in found], next_slot_at)

    async def release_claims(self, tokens: Sequence[int], now: float) -> int:
        if not tokens:
            return 0
        async with self.db.transaction() as db:
            cur = await db.execute(
                f"UPDATE sms_spool SET state = 1, note = 'claim lost in transit: never sent', "
                f"updated_at = ?, {_CLEARED} WHERE state = 2 AND started_at IS NULL AND "
                f"claim_token IN ({','.join('?' * len(tokens))})", (now, *tokens))
            return cur.rowcount

    async def mark_started(self, started: Sequence[tuple[int, str]], now: float) -> None:
        await self.record((), now, started=started)

    async def record(self, outcomes: Sequence[Outcome], now: float, *,
                     started: Sequence[tuple[int, str]] = ()) -> None:
        batches = _record_batches(outcomes, now, started)
        if not batches:
            return

        def write(conn: sqlite3.Connection) -> None:
            for sql, params in batches:
                conn.executemany(sql, params)
        await self.db.run(write)

    async def record_reports(self, reports: Sequence[Report]) -> list[Report]:
        """Apply delivery reports; return those that matched no sent row (yet)."""
        if not reports:
            return []
        async with self.db.transaction() as db:
            known = await self._sent_refs(db, reports)
            whole = [r for r in reports if (r.provider_ref, r.channel) in known]
            # WhatsApp bills delivered messages only: a failed one costs nothing.
            await db.executemany(
                "UPDATE sms_spool SET state = ?, delivered_at = ?, error = ?, error_code = ?, "
                "note = ?, updated_at = ?, cost = CASE WHEN ?1 = 6 AND kind = 'whatsapp' "
                "THEN 0 ELSE cost END WHERE provider_ref = ? AND channel = ? "
                f"AND state IN (4, 9) {_WHOLE}",
                [(_report_state(r), r.at if r.delivered else None, r.error, r.error_code,
                  _report_note(r), r.at, r.provider_ref, r.channel) for r in whole])
            unmatched = []
            for r in reports:
                if (r.provider_ref, r.channel) not in known and not await _part_report(db, r):
                    unmatched.append(r)
        return unmatched

    async def _sent_refs(self, db, reports: Sequence[Report]) -> set[tuple[str, str]]:
        refs = sorted({r.provider_ref for r in reports})
        known: set[tuple[str, str]] = set()
        for start in range(0, len(refs), 500):
            chunk = refs[start:start + 500]
            found = await db.execute_fetchall(
                f"SELECT provider_ref, channel FROM sms_spool WHERE provider_ref IN "
                f"({','.join('?' * len(chunk))}) AND state IN (4, 9) {_WHOLE}", chunk)
            known.update((r[0], r[1]) for r in found)
        return known

    async def renew_leases(self, node: str, lease_until: float) -> int:
        async with self.db.transaction() as db:
            cur = await db.execute(
                "UPDATE sms_spool SET claim_until = ? WHERE state = 2 AND claimed_by = ?",
                (lease_until, node))
            return cur.rowcount

    async def recover(self, now: float, *, node: str | None = None) -> Recovered:
        where = "state = 2 AND claimed_by = ?" if node else "state = 2 AND claim_until < ?"
        arg: object = node if node else now
        async with self.db.transaction() as db:
            requeued = await db.execute(
                f"UPDATE sms_spool SET state = 1, note = 'lease expired before sending', "
                f"updated_at = ?, {_CLEARED} WHERE {where} AND started_at IS NULL", (now, arg))
            doubtful = await db.execute_fetchall(
                f"UPDATE sms_spool SET state = 9, updated_at = ?, "
                f"note = 'lease expired after the send started: it may have gone out', "
                f"{_CLEARED} WHERE {where} RETURNING id", (now, arg))
            ids = [r[0] for r in doubtful]
            resent = 0
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                cur = await db.execute(
                    f"UPDATE sms_spool SET state = 1, updated_at = ?, "
                    f"note = 'in doubt: resent by campaign policy' WHERE state = 9 AND id IN "
                    f"({','.join('?' * len(chunk))}) AND campaign IN "
                    f"(SELECT id FROM campaigns WHERE in_doubt = 'resend')", (now, *chunk))
                resent += cur.rowcount
        return Recovered(requeued=requeued.rowcount, in_doubt=len(ids), resent=resent)





# A message-sized row written and removed in one transaction: its commit
# needs room on disk as an accepted message would, and leaves no trace.
_PROBE_KEY = "smsgw:write-probe:" + "x" * 1600


def _write_probe(conn: sqlite3.Connection) -> None:
    conn.execute("INSERT OR REPLACE INTO imports (key, updated_at) VALUES (?, ?)",
                 (_PROBE_KEY, time.time()))
    conn.execute("DELETE FROM imports WHERE key = ?", (_PROBE_KEY,))


def _report_state(r: Report) -> State:
    return State.DELIVERED if r.delivered else State.FAILED


def _report_note(r: Report) -> str:
    return "delivery report: delivered" if r.delivered else f"delivery report: {r.error}"


async def _part_report(db, r: Report) -> bool:
    """Apply a report to one part; settle the message once every part reported."""
    where = "channel = ? AND ref = ?" + (" AND destination = ?" if r.destination else "")
    args = (r.channel, r.provider_ref, *((r.destination,) if r.destination else ()))
    found = await db.execute_fetchall(
        f"SELECT message_id, part FROM message_parts WHERE {where} "
        f"ORDER BY sent_at DESC LIMIT 1", args)
    hit = next(iter(found), None)
    if hit is None:
        return False
    message_id, part = hit
    await db.execute(
        "UPDATE message_parts SET delivered = ?, reported_at = ? WHERE message_id = ? "
        "AND part = ?", (int(r.delivered), r.at, message_id, part))
    tally = await db.execute_fetchall(
        "SELECT count(*), sum(delivered = 1), sum(delivered = 0) FROM message_parts "
        "WHERE message_id = ?", (message_id,))
    total, delivered, failed = next(iter(tally))
    if failed or delivered == total:
        note = _report_note(r) if failed else f"delivery report: all {total} parts delivered"
        await db.execute(
            "UPDATE sms_spool SET state = ?, delivered_at = ?, error = ?, error_code = ?, "
            "note = ?, updated_at = ? WHERE id = ? AND state IN (4, 9)",
            (State.FAILED if failed else State.DELIVERED, None if failed else r.at,
             r.error if failed else None, r.error_code if failed else None, note, r.at,
             message_id))
    return True


def _resolve(slots: list[int | Inserted], ids: list[int]) -> list[int | Inserted]:
    """A key repeated inside one batch points at the row its first use created."""
    out: list[int | Inserted] = []
    for slot in slots:
        if isinstance(slot, Inserted) and slot.id < 0:
            index = -slot.id - 1
            out.append(Inserted(ids[index], slot.state, duplicate=True))
        else:
            out.append(slot)
    return out


def _claim_sql(node: str, limit: int, now: float, lease_until: float,
               campaigns: Sequence[int], token: int | None) -> tuple[str, list[object]]:
    # One index probe per open campaign, each bounded by `limit`. Whether the
    # campaign is still enabled is asked here too, in the claim's own
    # transaction: a stop that commits first wins over the caller's view.
    probe = ("SELECT * FROM (SELECT id, priority FROM sms_spool WHERE state = 1 "
             "AND campaign = ? AND next_attempt_at <= ? AND EXISTS (SELECT 1 FROM campaigns "
             "WHERE id = ? AND enabled = 1) ORDER BY priority DESC, id LIMIT ?)")
    union = " UNION ALL ".join([probe] * len(campaigns))
    args: list[object] = [node, lease_until, token, now]
    for campaign in campaigns:
        args += [campaign, now, campaign, limit]
    sql = (f"UPDATE sms_spool SET state = 2, claimed_by = ?, claim_until = ?, "
           f"claim_token = ?, started_at = NULL, updated_at = ?, note = 'claimed' WHERE id IN "
           f"(SELECT id FROM ({union}) ORDER BY priority DESC, id LIMIT ?) "
           f"RETURNING id, tenant, campaign, destination, message, kind, attempts, data, priority")
    return sql, [*args, limit]


_STARTED = "UPDATE sms_spool SET started_at = ?, channel = ? WHERE id = ? AND state = 2"
# A row recovered as in doubt (9) that turns out sent is settled here.
_SENT = (f"UPDATE sms_spool SET state = ?, channel = ?, provider_ref = ?, cost = cost + ?, "
         f"attempts = attempts + 1, sent_at = ?, updated_at = ?, delivered_at = ?, error = NULL, "
         f"note = 'sent', {_CLEARED} WHERE id = ? AND state IN (2, 9)")
_PARTS = ("INSERT OR REPLACE INTO message_parts (message_id, part, channel, ref, destination, "
          "sent_at) VALUES (?, ?, ?, ?, ?, ?)")
_RETRY = (f"UPDATE sms_spool SET state = 1, channel = ?, error = ?, note = ?, "
          f"attempts = attempts + ?, next_attempt_at = ?, updated_at = ?, {_CLEARED} "
          f"WHERE id = ? AND state = 2")
_FAILED = (f"UPDATE sms_spool SET state = 6, channel = ?, error = ?, note = ?, "
           f"attempts = attempts + 1, updated_at = ?, {_CLEARED} WHERE id = ? AND state IN (2, 9)")
_BLOCKED = (f"UPDATE sms_spool SET state = 3, note = ?, error = ?, updated_at = ?, {_CLEARED} "
            f"WHERE id = ? AND state = 2")


def _record_batches(outcomes: Sequence[Outcome], now: float,
                    started: Sequence[tuple[int, str]]) -> list[tuple[str, list[tuple]]]:
    """The statements of one journal commit, with their parameter rows."""
    sent = [o for o in outcomes if isinstance(o, Sent)]
    batches: list[tuple[str, list[tuple]]] = [
        (_STARTED, [(now, channel, mid) for mid, channel in started]),
        (_SENT, [(State.DELIVERED if o.delivered else State.SENT, o.channel, o.provider_ref,
                  o.cost, o.at, now, o.at if o.delivered else None, o.id) for o in sent]),
        (_PARTS, [(o.id, n, o.channel, ref, o.destination, o.at)
                  for o in sent for n, ref in enumerate(o.part_refs, start=1)]),
        (_RETRY, [(o.channel, o.error if o.counts_as_attempt else None, f"retry: {o.error}",
                   int(o.counts_as_attempt), o.next_attempt_at, now, o.id)
                  for o in outcomes if isinstance(o, Retry)]),
        (_FAILED, [(o.channel, o.error, o.error, now, o.id)
                   for o in outcomes if isinstance(o, Failed)]),
        (_BLOCKED, [(o.reason, o.reason, now, o.id) for o in outcomes if isinstance(o, Blocked)]),
    ]
    return [(sql, params) for sql, params in batches if params]


def _same_request(m: NewMessage, stored: str | None) -> None:
    """A key's first request is its only one: another under it is refused
    (rows stored before fingerprints were kept have none and match any)."""
    if stored and m.fingerprint and stored != m.fingerprint:
        raise KeyReused(m.tenant, m.idempotency_key or "")


def _known_keys(conn: sqlite3.Connection, messages: Sequence[NewMessage]
                ) -> dict[tuple[int, str], tuple[int, State, str | None]]:
    keyed = [(m.tenant, m.idempotency_key) for m in messages if m.idempotency_key]
    known: dict[tuple[int, str], tuple[int, State, str | None]] = {}
    for tenant in {t for t, _ in keyed}:
        keys = [k for t, k in keyed if t == tenant]
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            found = conn.execute(
                f"SELECT idempotency_key, id, state, request_fingerprint FROM sms_spool "
                f"WHERE tenant = ? AND idempotency_key IN ({','.join('?' * len(chunk))})",
                (tenant, *chunk))
            for key, mid, state, fingerprint in found:
                known[(tenant, key)] = (mid, State(state), fingerprint)
    return known
