"""WhatsApp smart utility fallback (per campaign, off by default).

A marketing template that fails with one of the configured codes (131049,
"not delivered to maintain healthy ecosystem engagement", first) is followed
by a utility template asking permission. If the customer answers within
24 hours — a tap on the template's quick reply (`type: "button"`) or on an
interactive reply (`button_reply`/`list_reply`), or an affirmative word —
the original is sent as session message(s) built by `fallback_rules`.
No answer in 24 hours: the fallback ends as EXPIRED.

Charges: the utility message at `utility_price` (or its channel's cost),
the session messages at `session_price` (the marketing price).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

import structlog

from gateway.campaigns import CampaignBook
from gateway.fallback_rules import FallbackError, session_messages
from gateway.inbound import keyword
from spool.base import Fallback, NewMessage, Store

log = structlog.get_logger("smsgw.fallback")

DEFAULT_CODES = ("131049",)
WINDOW_S = 24 * 3600.0
YES = {"YES", "SI", "OK", "DALE", "CLARO", "SIM", "OUI", "JA", "ACEPTO", "QUIERO"}
NO = {"NO", "NOPE", "STOP", "BAJA", "CANCELAR", "NON", "NAO", "NEIN"}


def fallback_policy(campaign_smart: Mapping[str, Any] | None) -> dict[str, Any] | None:
    policy = (campaign_smart or {}).get("whatsapp_fallback")
    return policy if isinstance(policy, dict) and policy.get("enabled") else None


def is_yes(text: str, data: Mapping[str, Any] | None) -> bool:
    """A tap on any offered reply counts, unless it says no; typed text must say yes."""
    reply = (data or {}).get("reply") or {}
    if (data or {}).get("type") in ("button", "button_reply", "list_reply") or reply:
        said = str(reply.get("payload") or reply.get("id") or reply.get("title") or text)
        return keyword(said) not in NO
    return keyword(text) in YES


class FallbackWorker:
    def __init__(self, store: Store, campaigns: CampaignBook, *, tick_s: float = 1.0,
                 wake: Callable[[int], None] = lambda _: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._campaigns = campaigns
        self._tick_s = tick_s
        self._wake = wake
        self._clock = clock

    async def run(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self._tick_s)

    async def tick(self) -> None:
        now = self._clock()
        expired = await self._store.expire_fallbacks(now)
        if expired:
            log.info("fallback.expired", count=expired)
        for item in await self._store.fallbacks("PENDING", 100):
            await self._decide(item, now)

    async def _decide(self, item: Fallback, now: float) -> None:
        campaign = self._campaigns.by_id(item.campaign)
        policy = fallback_policy(campaign.smart if campaign else None)
        codes = {str(c) for c in (policy or {}).get("codes", DEFAULT_CODES)}
        if policy is None or (item.error_code or "") not in codes:
            await self._store.set_fallback(item.message_id, "SKIPPED", now)
            return
        template = {"name": policy["template"],
                    "language": {"code": str(policy.get("language", "en"))},
                    "components": policy.get("components", [])}
        original = await self._store.get_message(None, item.message_id)
        # The question comes from the business number the offer came from.
        meta = {"fallback": item.message_id, "category": "utility",
                **({"channel": original.channel} if original.channel else {}),
                **({"price": policy["utility_price"]} if "utility_price" in policy else {})}
        [row] = await self._store.insert_messages([NewMessage(
            tenant=item.tenant, campaign=item.campaign, destination=item.destination,
            message=f"[template {policy['template']}]", kind="whatsapp", priority=50,
            data={"whatsapp": {"type": "template", "template": template}, "_smsgw": meta},
            idempotency_key=f"fallback:{item.message_id}:utility")])
        await self._store.set_fallback(item.message_id, "ASKED", now, utility_id=row.id,
                                       until=now + WINDOW_S)
        self._wake(1)
        log.info("fallback.asked", message=item.message_id, utility=row.id,
                 error_code=item.error_code)

    async def on_inbound(self, sender: str, text: str, data: Mapping[str, Any] | None,
                         channel: str) -> bool:
        """A WhatsApp message from `sender` on `channel`: does it answer an open
        fallback? The session message goes back through that channel: the
        customer's 24-hour window is open on that business number only."""
        now = self._clock()
        item = await self._store.fallback_for(sender, channel, now)
        if item is None or not is_yes(text, data):
            return False
        original = await self._store.get_message(None, item.message_id)
        campaign = self._campaigns.by_id(item.campaign)
        policy = fallback_policy(campaign.smart if campaign else None) or {}
        rendered = ((original.data or {}).get("whatsapp") or {}).get("rendered")
        try:
            payloads = session_messages(rendered or {},
                                        list_button=str(policy.get("list_button", "Options")))
        except FallbackError as err:
            log.warning("fallback.cannot_carry", message=item.message_id, error=str(err))
            await self._store.set_fallback(item.message_id, "EXPIRED", now)
            return False
        meta = {"fallback": item.message_id, "category": "marketing", "channel": channel,
                **({"price": policy["session_price"]} if "session_price" in policy else {})}
        rows = await self._store.insert_messages([NewMessage(
            tenant=item.tenant, campaign=item.campaign, destination=sender,
            message=f"[session {n + 1}/{len(payloads)} of message {item.message_id}]",
            kind="whatsapp", priority=50, data={"whatsapp": payload, "_smsgw": meta},
            idempotency_key=f"fallback:{item.message_id}:session:{n}")
            for n, payload in enumerate(payloads)])
        await self._store.set_fallback(item.message_id, "ANSWERED", now,
                                       session_ids=[r.id for r in rows])
        self._wake(len(rows))
        log.info("fallback.answered", message=item.message_id, sent=[r.id for r in rows])
        return True
