"""Intake: every door (legacy form, JSON API, spool folder, CLI) ends here.

A submission is checked for what makes it unusable as a request (missing
fields, unknown campaign: the caller gets an error and nothing is stored)
and classified for what makes it unsendable (bad number, too long,
blacklisted: stored as INVALID or BLOCKED with the reason, never dropped).
Accepted rows are committed in groups, so a burst of requests costs one
transaction per batch rather than one per message.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.sms.segments import count_segments
from gateway.batching import GroupCommit
from gateway.campaigns import CampaignBook
from gateway.journeys import Planner, merged, parse_policy
from gateway.links import new_code, rewrite
from gateway.phone import InvalidNumber, normalize
from gateway.settings import Settings
from spool.base import Campaign, Inserted, JourneySpec, NewMessage, State, Store

log = structlog.get_logger("smsgw.intake")


class IntakeError(Exception):
    """The request itself is unusable; `field` names the culprit."""

    def __init__(self, message: str, *, field: str, status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


class Overloaded(Exception):
    def __init__(self, retry_after_s: int) -> None:
        super().__init__("the spool is full; retry later")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True, slots=True)
class Submission:
    destination: str
    message: str
    campaign: str | None = None
    priority: int | None = None
    agent: str | None = None
    data: dict[str, Any] | None = None
    idempotency_key: str | None = None
    smart: dict[str, Any] | None = None  # overrides the campaign's journey policy
    kind: str = "sms"  # or "whatsapp", with the payload in data["whatsapp"]


@dataclass(frozen=True, slots=True)
class Accepted:
    ids: list[Inserted]
    depth_ahead: int


@dataclass(slots=True)
class Classified:
    rows: list[NewMessage] = field(default_factory=list)
    invalid: int = 0


class Intake:
    def __init__(self, store: Store, settings: Settings, campaigns: CampaignBook, *,
                 on_accept: Callable[[], None] = lambda: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._settings = settings
        self._campaigns = campaigns
        self._on_accept = on_accept
        self._clock = clock
        self._region = settings.phone.default_region
        self._max_segments = settings.intake.max_segments
        self._planner = Planner(settings.server.public_base_url, settings.intake.max_segments)
        self._commit: GroupCommit[NewMessage, Inserted] = GroupCommit(
            "intake", self._flush, max_items=2000)
        self.pending = 0  # rows waiting in state 1, refreshed by `refresh_depth`

    async def run(self) -> None:
        await self._commit.run()

    def close(self) -> None:
        self._commit.close()

    async def refresh_depth(self) -> None:
        self.pending = await self._store.pending_count()

    async def submit(self, tenant: int, items: Sequence[Submission],
                     batch_field: str | None = None) -> Accepted:
        """Validate, classify and durably store `items` as one request."""
        if self.pending >= self._settings.intake.max_pending:
            raise Overloaded(retry_after_s=5)
        rows = [await self.classify(tenant, item, f"{batch_field}[{i}]" if batch_field else "")
                for i, item in enumerate(items)]
        depth = self.pending
        inserted = await asyncio.gather(*self._commit.submit_many(rows))
        return Accepted(list(inserted), depth)

    async def classify(self, tenant: int, item: Submission, where: str = "") -> NewMessage:
        prefix = f"{where}." if where else ""
        campaign = await self._campaign(tenant, item.campaign, f"{prefix}campaign")
        if not item.destination or not item.destination.strip():
            raise IntakeError("destination is required", field=f"{prefix}destination")
        if not item.message and item.kind == "sms":
            raise IntakeError("message is required", field=f"{prefix}message")
        return self.classify_row(tenant, campaign, item)

    def classify_row(self, tenant: int, campaign: Campaign, item: Submission) -> NewMessage:
        """Turn a well-formed submission into a spool row (state 1 or 7)."""
        return self.classify_fields(
            tenant, campaign, item.destination, item.message, item.priority, kind=item.kind,
            smart=item.smart, agent=item.agent, data=item.data,
            idempotency_key=item.idempotency_key)

    def classify_fields(self, tenant: int, campaign: Campaign, destination: str, message: str,
                        priority: int | None, *, kind: str = "sms",
                        smart: dict[str, Any] | None = None, agent: str | None = None,
                        data: dict[str, Any] | None = None,
                        idempotency_key: str | None = None) -> NewMessage:
        """`classify_row` without building a Submission: a bulk import's rows
        (an SMS with nothing but the CSV's columns) come here one by one."""
        text, journey = self._journey(campaign, message, smart) if kind == "sms" else (
            message, None)
        encoding, segments = count_segments(text) if kind == "sms" else ("whatsapp", 1)
        state, error, destination = State.TO_PROCESS, None, destination.strip()
        try:
            destination = normalize(destination, self._region)
        except InvalidNumber as err:
            state, error = State.INVALID, f"destination: {err}"
        if state == State.TO_PROCESS and segments > self._max_segments:
            state = State.INVALID
            error = f"message: {segments} segments, more than the maximum {self._max_segments}"
        return NewMessage(
            tenant=tenant, campaign=campaign.id, destination=destination, message=text,
            state=state, priority=campaign.priority if priority is None else priority,
            error=error, agent=agent, data=data, idempotency_key=idempotency_key,
            segments=segments, encoding=encoding, journey=journey, kind=kind)

    def _journey(self, campaign: Campaign, message: str, smart: dict[str, Any] | None
                 ) -> tuple[str, JourneySpec | None]:
        """The text as it will be sent (links shortened) and the journey to open."""
        raw = merged(campaign.smart, smart)
        if raw is None:
            return message, None
        policy = parse_policy(raw)  # validated on the way in; stored ones are valid
        if not policy.needs_journey:
            return message, None
        links: list[tuple[str, str]] = []
        text = message
        if policy.track_links:
            def shorten(url: str) -> str:
                code = new_code()
                links.append((code, url))
                return self._planner.short_url(code)
            text, _ = rewrite(message, shorten)
        stored = {**raw, "link_ttl_s": policy.link_ttl_s} if policy.link_ttl_s else raw
        return text, JourneySpec(policy=stored, wait_s=policy.wait_s, links=tuple(links))

    async def _campaign(self, tenant: int, name: str | None, field_name: str) -> Campaign:
        name = name or self._settings.intake.default_campaign
        campaign = await self._campaigns.by_name(tenant, name)
        if campaign is None:
            raise IntakeError(f"unknown campaign {name!r}", field=field_name, status=422)
        return campaign

    async def block_listed(self, rows: list[NewMessage]) -> list[NewMessage]:
        """Mark rows whose destination is on the blacklist as BLOCKED."""
        candidates = [(r.destination, r.campaign) for r in rows
                      if r.state == State.TO_PROCESS and self._campaigns.dncr(r.campaign)]
        hits = await self._store.blacklisted(candidates) if candidates else set()
        if not hits:
            return rows
        return [_blocked(r) if (r.destination, r.campaign) in hits else r for r in rows]

    def accepted(self, count: int) -> None:
        """`count` rows just became sendable (any door): wake the dispatcher."""
        self.pending += count
        if count:
            self._on_accept()

    async def _flush(self, rows: list[NewMessage]) -> list[Inserted]:
        rows = await self.block_listed(rows)
        inserted = await self._store.insert_messages(rows)
        self.accepted(sum(1 for i in inserted if i.state == State.TO_PROCESS and not i.duplicate))
        return inserted


def _blocked(row: NewMessage) -> NewMessage:
    return dataclasses.replace(row, state=State.BLOCKED, error="destination is on the blacklist")
