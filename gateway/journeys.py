"""Journeys: SMS reminders with the same short link until the customer
clicks, then a WhatsApp template as the last step.

The policy (`smart`) lives on the campaign and can be overridden per
message. Due times are in the database (`journeys.next_at`, set by triggers
when a step's message is sent or fails), and one query per tick finds the
journeys that are due: no task sleeps per journey, so a million pending
journeys cost the daemon nothing but rows, and a restart loses none.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from drivers.sms.segments import count_segments
from spool.base import Journey, JourneyStep, NewMessage, Store

log = structlog.get_logger("smsgw.journeys")

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}
POLICY_KEYS = {"track_links", "wait", "sms_attempts", "retry_templates", "whatsapp",
               "link_ttl", "whatsapp_fallback"}


@dataclass(frozen=True, slots=True)
class WhatsAppStep:
    template: str
    language: str = "en"
    params: tuple[str, ...] = ()
    # Send the link's code as the suffix of the template's URL button
    # (the template's URL is `{public_base_url}/r/{{1}}`).
    link_button: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    track_links: bool = False
    wait_s: float = 4 * 3600.0
    sms_attempts: int = 1
    retry_templates: tuple[str, ...] = ()
    whatsapp: WhatsAppStep | None = None
    link_ttl_s: float | None = None

    @property
    def needs_journey(self) -> bool:
        return self.track_links or self.sms_attempts > 1 or self.whatsapp is not None


# A journey waits at most this long between steps, and a link lives at most
# this long: beyond it a due time is no date at all (1e308 s, Infinity), and
# every answer that shows one would fail.
MAX_DURATION_S = 90 * 86400.0


def duration_s(value: Any, field: str) -> float:
    """Seconds in (0, 90 days]; NaN, Infinity and anything longer are refused."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match[1]) * _UNITS[match[2]]
    else:
        raise ValueError(f"{field}: expected a duration like '4h', '90m' or '2s'")
    if not 0 < seconds <= MAX_DURATION_S:  # also false for NaN
        raise ValueError(f"{field}: expected a duration above 0 and at most 90 days")
    return seconds


def parse_policy(obj: Mapping[str, Any], where: str = "smart") -> Policy:
    """Validate a smart policy; errors name the field (`smart.wait: ...`)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"{where}: expected an object")
    unknown = set(obj) - POLICY_KEYS
    if unknown:
        raise ValueError(f"{where}.{sorted(unknown)[0]}: unknown key")
    attempts = obj.get("sms_attempts", 1)
    if isinstance(attempts, float) and attempts.is_integer():
        attempts = int(attempts)  # JSON has one number type: 7.0 is the integer 7
    if not isinstance(attempts, int) or isinstance(attempts, bool) or not 1 <= attempts <= 10:
        raise ValueError(f"{where}.sms_attempts: expected an integer from 1 to 10")
    templates = obj.get("retry_templates", [])
    if not isinstance(templates, list) or not all(isinstance(t, str) and t for t in templates):
        raise ValueError(f"{where}.retry_templates: expected a list of texts")
    track = obj.get("track_links", False)
    if not isinstance(track, bool):
        raise ValueError(f"{where}.track_links: expected true or false")
    return Policy(
        track_links=track, wait_s=duration_s(obj.get("wait", "4h"), f"{where}.wait"),
        sms_attempts=attempts, retry_templates=tuple(templates),
        whatsapp=_whatsapp(obj["whatsapp"], f"{where}.whatsapp") if obj.get("whatsapp") else None,
        link_ttl_s=duration_s(obj["link_ttl"], f"{where}.link_ttl") if obj.get("link_ttl")
        else None)


def _whatsapp(obj: Any, where: str) -> WhatsAppStep:
    if not isinstance(obj, Mapping) or not isinstance(obj.get("template"), str):
        raise ValueError(f"{where}.template: the WhatsApp template name is required")
    params = obj.get("params", [])
    if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
        raise ValueError(f"{where}.params: expected a list of texts")
    return WhatsAppStep(template=obj["template"], language=str(obj.get("language", "en")),
                        params=tuple(params), link_button=bool(obj.get("link_button", False)))


def merged(campaign: Mapping[str, Any] | None, message: Mapping[str, Any] | None
           ) -> dict[str, Any] | None:
    """The message's `smart` overrides the campaign's, key by key."""
    if not campaign and not message:
        return None
    return {**(campaign or {}), **(message or {})}


class Planner:
    """What a due journey does next (pure: no I/O)."""

    def __init__(self, public_base_url: str, max_segments: int) -> None:
        self._base = public_base_url.rstrip("/")
        self._max_segments = max_segments

    def short_url(self, code: str) -> str:
        return f"{self._base}/r/{code}"

    def next_step(self, j: Journey) -> JourneyStep:
        try:
            policy = parse_policy(j.policy)
        except ValueError as err:
            # Stored before durations were bounded (a wait of 1e308 s): end
            # it rather than fail the scheduler's tick for every journey.
            return JourneyStep(j.id, j.step, "EXHAUSTED", note=f"invalid policy: {err}")
        if j.state == "ESCALATED" or (j.step >= policy.sms_attempts and not policy.whatsapp):
            return JourneyStep(j.id, j.step, "EXHAUSTED", note="no click after the last step")
        link = self.short_url(j.links[0][0]) if j.links else ""
        if j.step < policy.sms_attempts:
            return JourneyStep(j.id, j.step, "ACTIVE", self._sms(j, policy, link),
                               note=f"reminder {j.step + 1} of {policy.sms_attempts}")
        assert policy.whatsapp is not None
        return JourneyStep(j.id, j.step, "ESCALATED", self._whatsapp(j, policy.whatsapp, link),
                           note="escalated to WhatsApp")

    def _sms(self, j: Journey, policy: Policy, link: str) -> NewMessage:
        templates = policy.retry_templates
        text = templates[min(j.step - 1, len(templates) - 1)] if templates else "{link}"
        text = text.replace("{link}", link)
        encoding, segments = count_segments(text)
        return NewMessage(tenant=j.tenant, campaign=j.campaign, destination=j.destination,
                          message=text, segments=segments, encoding=encoding, journey_id=j.id,
                          data={"_smsgw": {"journey_step": j.step + 1}})

    def _whatsapp(self, j: Journey, step: WhatsAppStep, link: str) -> NewMessage:
        components: list[dict[str, Any]] = []
        if step.params:
            components.append({"type": "body", "parameters": [
                {"type": "text", "text": p.replace("{link}", link)} for p in step.params]})
        if step.link_button and j.links:
            components.append({"type": "button", "sub_type": "url", "index": "0",
                               "parameters": [{"type": "text", "text": j.links[0][0]}]})
        template = {"name": step.template, "language": {"code": step.language},
                    "components": components}
        return NewMessage(tenant=j.tenant, campaign=j.campaign, destination=j.destination,
                          message=f"[template {step.template}]", kind="whatsapp",
                          journey_id=j.id,
                          data={"whatsapp": {"type": "template", "template": template},
                                "_smsgw": {"journey_step": j.step + 1,
                                           "category": "marketing"}})


class JourneyScheduler:
    def __init__(self, store: Store, planner: Planner, *, tick_s: float = 1.0,
                 batch: int = 1000, wake: Callable[[int], None] = lambda _: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._planner = planner
        self._tick_s = tick_s
        self._batch = batch
        self._wake = wake
        self._clock = clock

    async def run(self) -> None:
        while True:
            advanced = await self.tick()
            if advanced < self._batch:
                await asyncio.sleep(self._tick_s)

    async def tick(self) -> int:
        """Advance what is due now; returns how many journeys were looked at."""
        now = self._clock()
        due = await self._store.due_journeys(now, self._batch)
        if not due:
            return 0
        steps = [self._planner.next_step(j) for j in due]
        await self._store.advance_journeys(steps, now)
        sent = sum(1 for s in steps if s.message is not None)
        if sent:
            self._wake(sent)
        log.info("journeys.advanced", due=len(due), messages=sent,
                 exhausted=sum(1 for s in steps if s.state == "EXHAUSTED"))
        return len(due)
