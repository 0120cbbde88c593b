"""Claims, results and leases on PostgreSQL, for several daemons at once.

Claims take rows with `FOR UPDATE SKIP LOCKED`: two daemons claiming at
the same moment get different rows and never wait for each other. A paced
campaign's claim first locks the campaign's row, whose `last_slot_at` is
the pace of the whole cluster: daemons claiming it together queue for a
moment (one statement each, no round trip inside the lock) and only the
first finds the slot due. Batches of results are applied in id order,
which keeps two daemons' transactions from locking the same rows in
opposite orders.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from spool import rows
from spool.base import (
    Blocked,
    Claimed,
    Failed,
    Outcome,
    PacedClaim,
    Recovered,
    Report,
    Retry,
    Sent,
    State,
)
from spool.postgres.admin import affected
from spool.postgres.db import PgDb, lock_sql

_CLEARED = "claimed_by = NULL, claim_until = NULL, started_at = NULL"

# One index probe per open campaign (each bounded by the batch), then the
# best `limit` of them: the cost of a claim does not grow with the spool.
_CLAIM = (
    "UPDATE sms_spool s SET state = 2, claimed_by = $1, claim_until = $2, claim_token = $6, "
    "started_at = NULL, updated_at = $3, note = 'claimed' FROM ("
    # A stop committed before this statement wins over the caller's view.
    "  SELECT p.id FROM unnest($4::bigint[]) AS c(campaign) "
    "  JOIN campaigns k ON k.id = c.campaign AND k.enabled = 1 CROSS JOIN LATERAL ("
    "    SELECT id, priority FROM sms_spool WHERE state = 1 AND campaign = c.campaign "
    "    AND next_attempt_at <= $3 ORDER BY priority DESC, id LIMIT $5 "
    "    FOR UPDATE SKIP LOCKED) p"
    "  ORDER BY p.priority DESC, p.id LIMIT $5) picked "
    "WHERE s.id = picked.id "
    "RETURNING s.id, s.tenant, s.campaign, s.destination, s.message, s.kind, s.attempts, "
    "s.data, s.priority")

# A paced campaign: lock its row (waiting for another daemon's claim of the
# same campaign to commit, then seeing its slot), take the best waiting row
# if the slot is due, and move the slot only when a row was taken. The
# answer is one row: the next slot, and the claimed message's columns
# (NULL when none).
_CLAIM_PACED = (
    "WITH slot AS ("
    "  SELECT id, last_slot_at + time_between_ms / 1000.0::float8 AS due FROM campaigns "
    "  WHERE id = $4 AND enabled = 1 FOR UPDATE"
    "), picked AS ("
    "  SELECT s.id FROM slot JOIN sms_spool s ON s.campaign = slot.id "
    "  WHERE slot.due <= $3 AND s.state = 1 AND s.next_attempt_at <= $3 "
    "  ORDER BY s.priority DESC, s.id LIMIT 1 FOR UPDATE OF s SKIP LOCKED"
    "), took AS ("
    "  UPDATE campaigns c SET last_slot_at = $3 FROM picked WHERE c.id = $4 "
    "  RETURNING c.last_slot_at + c.time_between_ms / 1000.0::float8 AS due"
    "), claimed AS ("
    "  UPDATE sms_spool s SET state = 2, claimed_by = $1, claim_until = $2, claim_token = $5, "
    "  started_at = NULL, updated_at = $3, note = 'claimed' FROM picked WHERE s.id = picked.id "
    "  RETURNING s.id, s.tenant, s.campaign, s.destination, s.message, s.kind, s.attempts, "
    "  s.data"
    ") SELECT coalesce((SELECT due FROM took), (SELECT due FROM slot)) AS next_slot_at, "
    "claimed.* FROM (SELECT 1) AS one LEFT JOIN claimed ON true")

_SENT = (
    "UPDATE sms_spool s SET state = v.state, channel = v.channel, provider_ref = v.ref, "
    "cost = s.cost + v.cost, attempts = s.attempts + 1, sent_at = v.at, updated_at = $8, "
    f"delivered_at = v.delivered_at, error = NULL, note = 'sent', {_CLEARED} "
    "FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::float8[], $6::float8[], "
    "$7::float8[]) AS v(id, state, channel, ref, cost, at, delivered_at) "
    "WHERE s.id = v.id AND s.state IN (2, 9)")
_PARTS = (
    "INSERT INTO message_parts (message_id, part, channel, ref, destination, sent_at) "
    "SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], "
    "$6::float8[]) ON CONFLICT (message_id, part) DO UPDATE SET channel = excluded.channel, "
    "ref = excluded.ref, destination = excluded.destination, sent_at = excluded.sent_at, "
    "delivered = NULL, reported_at = NULL")
_RETRY = (
    "UPDATE sms_spool s SET state = 1, channel = v.channel, error = v.error, note = v.note, "
    "attempts = s.attempts + v.counted, next_attempt_at = v.next_at, updated_at = $7, "
    f"{_CLEARED} FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[], $5::int[], "
    "$6::float8[]) AS v(id, channel, error, note, counted, next_at) "
    "WHERE s.id = v.id AND s.state = 2")
_FAILED = (
    "UPDATE sms_spool s SET state = 6, channel = v.channel, error = v.error, note = v.error, "
    f"attempts = s.attempts + 1, updated_at = $4, {_CLEARED} "
    "FROM unnest($1::bigint[], $2::text[], $3::text[]) AS v(id, channel, error) "
    "WHERE s.id = v.id AND s.state IN (2, 9)")
_BLOCKED = (
    "UPDATE sms_spool s SET state = 3, note = v.reason, error = v.reason, updated_at = $3, "
    f"{_CLEARED} FROM unnest($1::bigint[], $2::text[]) AS v(id, reason) "
    "WHERE s.id = v.id AND s.state = 2")
_REPORTED = (
    "UPDATE sms_spool s SET state = v.state, delivered_at = v.delivered_at, error = v.error, "
    "error_code = v.code, note = v.note, updated_at = v.at, "
    # WhatsApp bills delivered messages only: a failed one costs nothing.
    "cost = CASE WHEN v.state = 6 AND s.kind = 'whatsapp' THEN 0 ELSE s.cost END "
    "FROM unnest($1::text[], $2::text[], "
    "$3::int[], $4::float8[], $5::text[], $6::text[], $7::float8[], $8::text[]) "
    "AS v(ref, channel, state, delivered_at, error, note, at, code) "
    "WHERE s.provider_ref = v.ref AND s.channel = v.channel AND s.state IN (4, 9) "
    "AND NOT EXISTS (SELECT 1 FROM message_parts p WHERE p.message_id = s.id "
    "AND p.ref = s.provider_ref)")


class DispatchMixin:
    db: PgDb

    async def claim(self, node: str, limit: int, now: float, lease_until: float,
                    campaigns: Sequence[int], *, token: int | None = None) -> list[Claimed]:
        if not campaigns or limit <= 0:
            return []
        found = await self.db.fetch(_CLAIM, node, lease_until, now, list(campaigns), limit,
                                    token)
        ordered = sorted(found, key=lambda r: (-r["priority"], r["id"]))
        return [rows.claimed(r) for r in ordered]

    async def claim_paced(self, node: str, now: float, lease_until: float, campaign: int,
                          *, token: int | None = None) -> PacedClaim:
        [found] = await self.db.fetch(_CLAIM_PACED, node, lease_until, now, campaign, token)
        claimed = [rows.claimed(found)] if found["id"] is not None else []
        return PacedClaim(claimed, found["next_slot_at"])

    async def release_claims(self, tokens: Sequence[int], now: float) -> int:
        if not tokens:
            return 0
        return len(await self.db.fetch(
            "UPDATE sms_spool SET state = 1, note = 'claim lost in transit: never sent', "
            f"updated_at = $2, {_CLEARED} WHERE state = 2 AND started_at IS NULL "
            "AND claim_token = ANY($1::bigint[]) RETURNING 1", list(tokens), now))

    async def mark_started(self, started: Sequence[tuple[int, str]], now: float) -> None:
        if started:
            await self.db.fetch(_STARTED, now, *_started_arrays(started))

    async def record(self, outcomes: Sequence[Outcome], now: float, *,
                     started: Sequence[tuple[int, str]] = ()) -> None:
        if outcomes or started:
            await self.db.run(_record, sorted(outcomes, key=lambda o: o.id), now, started)

    async def record_reports(self, reports: Sequence[Report]) -> list[Report]:
        """Apply delivery reports; return those that matched no sent row (yet)."""
        if not reports:
            return []
        return await self.db.run(_record_reports, reports)

    async def renew_leases(self, node: str, lease_until: float) -> int:
        return len(await self.db.fetch(
            "UPDATE sms_spool SET claim_until = $1 WHERE state = 2 AND claimed_by = $2 "
            "RETURNING 1", lease_until, node))

    async def recover(self, now: float, *, node: str | None = None) -> Recovered:
        return await self.db.run(_recover, now, node)


_STARTED = ("UPDATE sms_spool s SET started_at = $1, channel = v.channel "
            "FROM unnest($2::bigint[], $3::text[]) AS v(id, channel) "
            "WHERE s.id = v.id AND s.state = 2")


def _started_arrays(started: Sequence[tuple[int, str]]) -> tuple[list[int], list[str]]:
    ordered = sorted(started)  # rows locked in id order: no deadlock between nodes
    return [i for i, _ in ordered], [c for _, c in ordered]


async def _record(conn: asyncpg.Connection, outcomes: list[Outcome], now: float,
                  started: Sequence[tuple[int, str]] = ()) -> None:
    if started:
        await conn.execute(_STARTED, now, *_started_arrays(started))
    sent = [o for o in outcomes if isinstance(o, Sent)]
    retry = [o for o in outcomes if isinstance(o, Retry)]
    failed = [o for o in outcomes if isinstance(o, Failed)]
    blocked = [o for o in outcomes if isinstance(o, Blocked)]
    if sent:
        # A row recovered as in doubt (9) that turns out sent is settled here.
        await conn.execute(
            _SENT, [o.id for o in sent],
            [int(State.DELIVERED if o.delivered else State.SENT) for o in sent],
            [o.channel for o in sent], [o.provider_ref for o in sent], [o.cost for o in sent],
            [o.at for o in sent], [o.at if o.delivered else None for o in sent], now)
    parts = [(o.id, n, o.channel, ref, o.destination, o.at)
             for o in sent for n, ref in enumerate(o.part_refs, start=1)]
    if parts:
        await conn.execute(_PARTS, *(list(col) for col in zip(*parts, strict=True)))
    if retry:
        await conn.execute(
            _RETRY, [o.id for o in retry], [o.channel for o in retry],
            [o.error if o.counts_as_attempt else None for o in retry],
            [f"retry: {o.error}" for o in retry], [int(o.counts_as_attempt) for o in retry],
            [o.next_attempt_at for o in retry], now)
    if failed:
        await conn.execute(_FAILED, [o.id for o in failed], [o.channel for o in failed],
                           [o.error for o in failed], now)
    if blocked:
        await conn.execute(_BLOCKED, [o.id for o in blocked], [o.reason for o in blocked], now)


async def _record_reports(conn: asyncpg.Connection, reports: Sequence[Report]) -> list[Report]:
    found = await conn.fetch(
        # A reference that is also one of the message's parts' (one id per
        # part, the first given as the message's) names that part only.
        "SELECT provider_ref, channel FROM sms_spool s WHERE provider_ref = ANY($1::text[]) "
        "AND state IN (4, 9) AND NOT EXISTS (SELECT 1 FROM message_parts p "
        "WHERE p.message_id = s.id AND p.ref = s.provider_ref)",
        sorted({r.provider_ref for r in reports}))
    known = {(r[0], r[1]) for r in found}
    # The first report for a message decides, as it would one at a time.
    first: dict[tuple[str, str], Report] = {}
    for r in reports:
        if (r.provider_ref, r.channel) in known:
            first.setdefault((r.provider_ref, r.channel), r)
    whole = list(first.values())
    if whole:
        await conn.execute(
            _REPORTED, [r.provider_ref for r in whole], [r.channel for r in whole],
            [int(_report_state(r)) for r in whole],
            [r.at if r.delivered else None for r in whole], [r.error for r in whole],
            [_report_note(r) for r in whole], [r.at for r in whole],
            [r.error_code for r in whole])
    unmatched = []
    for r in reports:
        if (r.provider_ref, r.channel) not in known and not await _part_report(conn, r):
            unmatched.append(r)
    return unmatched


async def _recover(conn: asyncpg.Connection, now: float, node: str | None) -> Recovered:
    # Expired leases are everybody's business: one daemon at a time takes
    # them back; the others find the lock taken and leave it to that one.
    if node is None and not await conn.fetchval(lock_sql("leases")):
        return Recovered()
    where = "state = 2 AND claimed_by = $2" if node else "state = 2 AND claim_until < $2"
    arg: object = node if node else now
    requeued = affected(await conn.execute(
        f"UPDATE sms_spool SET state = 1, note = 'lease expired before sending', "
        f"updated_at = $1, {_CLEARED} WHERE {where} AND started_at IS NULL", now, arg))
    doubtful = await conn.fetch(
        f"UPDATE sms_spool SET state = 9, updated_at = $1, "
        f"note = 'lease expired after the send started: it may have gone out', "
        f"{_CLEARED} WHERE {where} RETURNING id", now, arg)
    ids = [r[0] for r in doubtful]
    resent = 0
    if ids:
        resent = affected(await conn.execute(
            "UPDATE sms_spool SET state = 1, updated_at = $1, "
            "note = 'in doubt: resent by campaign policy' WHERE state = 9 "
            "AND id = ANY($2::bigint[]) AND campaign IN "
            "(SELECT id FROM campaigns WHERE in_doubt = 'resend')", now, ids))
    return Recovered(requeued=requeued, in_doubt=len(ids), resent=resent)


def _report_state(r: Report) -> State:
    return State.DELIVERED if r.delivered else State.FAILED


def _report_note(r: Report) -> str:
    return "delivery report: delivered" if r.delivered else f"delivery report: {r.error}"


async def _part_report(conn: asyncpg.Connection, r: Report) -> bool:
    """Apply a report to one part; settle the message once every part reported."""
    hit = await conn.fetchrow(
        "SELECT message_id, part FROM message_parts WHERE channel = $1 AND ref = $2 "
        "AND ($3::text IS NULL OR destination = $3) ORDER BY sent_at DESC LIMIT 1",
        r.channel, r.provider_ref, r.destination or None)
    if hit is None:
        return False
    message_id, part = hit
    await conn.execute(
        "UPDATE message_parts SET delivered = $1, reported_at = $2 WHERE message_id = $3 "
        "AND part = $4", int(r.delivered), r.at, message_id, part)
    total, delivered, failed = await conn.fetchrow(
        "SELECT count(*), count(*) FILTER (WHERE delivered = 1), "
        "count(*) FILTER (WHERE delivered = 0) FROM message_parts WHERE message_id = $1",
        message_id)
    if failed or delivered == total:
        note = _report_note(r) if failed else f"delivery report: all {total} parts delivered"
        await conn.execute(
            "UPDATE sms_spool SET state = $1, delivered_at = $2, error = $3, error_code = $4, "
            "note = $5, updated_at = $6 WHERE id = $7 AND state IN (4, 9)",
            int(State.FAILED if failed else State.DELIVERED), None if failed else r.at,
            r.error if failed else None, r.error_code if failed else None, note, r.at,
            message_id)
    return True
