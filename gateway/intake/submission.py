"""Intake: every door (legacy form, JSON API, spool folder, CLI) ends here.

A submission is checked for what makes it unusable as a request (missing
fields, unknown campaign: the caller gets an error and nothing is stored)
and classified for what makes it unsendable (bad number, too long,
blacklisted: stored as INVALID or BLOCKED with the reason, never dropped).
Accepted rows are committed in groups, so a burst of requests costs one
transaction per batch rather than one per message; a request whose rows the
database refuses is refused alone (see `GroupCommit`), its neighbours in the
group go in.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from drivers.sms.segments import count_segments
from gateway.batching import GroupCommit
from gateway.campaigns import CampaignBook
from gateway.intake import limits as checks
from gateway.journeys import Planner, merged, parse_policy
from gateway.links import new_code, rewrite
from gateway.phone import InvalidNumber, normalize
from gateway.settings import Settings
from spool.base import (
    Campaign,
    Inserted,
    JourneySpec,
    KeyReused,
    NewMessage,
    RowRejected,
    State,
    Store,
    StoreError,
)

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
        # One item per request: a request is stored whole or not at all.
        self._commit: GroupCommit[list[NewMessage], list[Inserted]] = GroupCommit(
            "intake", self._flush, max_items=2000, weight=len, isolate=_row_fault)
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
        _refuse(batch_field or "message", checks.too_many_in_request(rows))
        depth = self.pending
        try:
            inserted = await self._commit.submit(rows)
        except KeyReused as err:
            raise IntakeError(str(err), field=_key_field(rows, err.key, batch_field),
                              status=409) from None
        except (RowRejected, ValueError) as err:
            # Past the door's checks only by a gap in them: refuse this
            # request alone, and say nothing of what the database said.
            log.warning("intake.row_refused", tenant=tenant, error=type(err).__name__)
            raise IntakeError("the store refused this request", field=batch_field or "body",
                              status=422) from None
        return Accepted(inserted, depth)

    async def classify(self, tenant: int, item: Submission, where: str = "") -> NewMessage:
        prefix = f"{where}." if where else ""
        found = checks.unstorable(prefix, {
            "destination": item.destination, "message": item.message, "campaign": item.campaign,
            "agent": item.agent, "idempotency_key": item.idempotency_key, "data": item.data,
            "smart": item.smart})
        if found is not None:
            _refuse(*found)
        campaign = await self._campaign(tenant, item.campaign, f"{prefix}campaign")
        if not item.destination or not item.destination.strip():
            raise IntakeError("destination is required", field=f"{prefix}destination")
        if not item.message and item.kind == "sms":
            raise IntakeError("message is required", field=f"{prefix}message")
        if item.kind == "sms" and checks.tracks_links(merged(campaign.smart, item.smart)):
            _refuse(f"{prefix}message", checks.too_many_links(item.message))
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
        state, error, number = State.TO_PROCESS, None, destination.strip()
        try:
            number = normalize(number, self._region)
        except InvalidNumber as err:
            state, error = State.INVALID, f"destination: {err}"
        text, journey = message, None
        if kind == "sms" and state == State.TO_PROCESS:
            # Links and journeys only for what will be sent: an INVALID row
            # must cost no link rows (a bad number list is not a link farm).
            text, journey, error = self._journey(campaign, message, smart)
            state = State.INVALID if error else state
        encoding, segments = count_segments(text) if kind == "sms" else ("whatsapp", 1)
        if state == State.TO_PROCESS and segments > self._max_segments:
            state, text, journey = State.INVALID, message, None
            error = f"message: {segments} segments, more than the maximum {self._max_segments}"
        return NewMessage(
            tenant=tenant, campaign=campaign.id, destination=number, message=text,
            state=state, priority=campaign.priority if priority is None else priority,
            error=error, agent=agent, data=data, idempotency_key=idempotency_key,
            segments=segments, encoding=encoding, journey=journey, kind=kind,
            fingerprint=checks.fingerprint(
                campaign.id, number, message, priority, kind=kind, agent=agent, data=data,
                smart=smart) if idempotency_key else None)

    def _journey(self, campaign: Campaign, message: str, smart: dict[str, Any] | None
                 ) -> tuple[str, JourneySpec | None, str | None]:
        """The text as it will be sent (links shortened), the journey to open,
        and why the row is INVALID (None when it is not)."""
        raw = merged(campaign.smart, smart)
        if raw is None:
            return message, None, None
        policy = parse_policy(raw)  # validated on the way in; stored ones are valid
        if not policy.needs_journey:
            return message, None, None
        links: list[tuple[str, str]] = []
        text = message
        if policy.track_links:
            if (why := checks.too_many_links(message)) is not None:
                return message, None, f"message: {why}"  # a CSV row; the API said 400
            def shorten(url: str) -> str:
                code = new_code()
                links.append((code, url))
                return self._planner.short_url(code)
            text, _ = rewrite(message, shorten)
        stored = {**raw, "link_ttl_s": policy.link_ttl_s} if policy.link_ttl_s else raw
        return text, JourneySpec(policy=stored, wait_s=policy.wait_s, links=tuple(links)), None

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
        return [self._blocked(r) if (r.destination, r.campaign) in hits else r for r in rows]

    def _blocked(self, row: NewMessage) -> NewMessage:
        """BLOCKED, with the text as written and no journey or links: it is never sent."""
        text = row.message
        for code, url in row.journey.links if row.journey else ():
            text = text.replace(self._planner.short_url(code), url)
        return dataclasses.replace(row, state=State.BLOCKED, message=text, journey=None,
                                   error="destination is on the blacklist")

    def accepted(self, count: int) -> None:
        """`count` rows just became sendable (any door): wake the dispatcher."""
        self.pending += count
        if count:
            self._on_accept()

    async def _flush(self, batch: list[list[NewMessage]]) -> list[list[Inserted]]:
        rows = await self.block_listed([r for request in batch for r in request])
        inserted = await self._store.insert_messages(rows)
        self.accepted(sum(1 for i in inserted if i.state == State.TO_PROCESS and not i.duplicate))
        out, start = [], 0
        for request in batch:
            out.append(inserted[start:start + len(request)])
            start += len(request)
        return out


def _refuse(field: str, why: str | None) -> None:
    if why is not None:
        raise IntakeError(why, field=field)


def _row_fault(err: Exception) -> bool:
    """Whether a failed group may hold a culprit: anything but the store
    being away (that fails every request alike, with 503)."""
    return isinstance(err, RowRejected) or not isinstance(err, StoreError)


def _key_field(rows: list[NewMessage], key: str, batch_field: str | None) -> str:
    if batch_field is None:
        return "idempotency_key"
    at = next((i for i, r in enumerate(rows) if r.idempotency_key == key), 0)
    return f"{batch_field}[{at}].idempotency_key"
