"""Inbound messages from any channel: normalised, attributed, acted on, stored once.

The reply is attributed through the channel it came in on (see
gateway.inbound.attribution): its tenant, and the campaign and agent of the last
message sent to the sender on that channel, which is what the customer is
answering. Then, in order:
an opt-out keyword (STOP, BAJA, ...) puts the sender on the blacklist and
confirms; a campaign keyword gets its auto-reply; a campaign outside its
schedule answers with its out-of-time message. Every side effect is
idempotent (blacklist insert, reply keyed by the inbound's reference) and
happens before the inbound row is stored, so a crash in between and the
channel's redelivery of the same message repeat nothing.

A WhatsApp marketing stop or resume (Meta's `user_preferences`, or 131050)
comes through here too, but is no message: it only sets or lifts that
channel's marketing stop for the number (no inbound row, which would open
the 24-hour window; no reply; nothing else on the blacklist changes).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from drivers.base import InboundMessage
from drivers.whatsapp.preferences import MarketingPreference, preference_of
from gateway.campaigns import CampaignBook
from gateway.inbound.attribution import Answered, attribute
from gateway.phone import InvalidNumber, normalize
from gateway.settings import InboundSettings
from spool.base import Campaign, InboundRecord, NewMessage, Store

log = structlog.get_logger("smsgw.inbound")

# (sender, text, data) of a WhatsApp message: the utility fallback listens here.
# (sender, text, data, the channel it came in on)
WhatsAppHook = Callable[[str, str, Mapping[str, Any] | None, str], Awaitable[bool]]

REPLY_PRIORITY = 100  # answers to a customer go before campaign traffic


@dataclass(frozen=True, slots=True)
class Decision:
    action: str | None  # opt_out, auto_reply, out_of_time
    reply: str | None = None


def keyword(text: str) -> str:
    """First word, upper case, accents and punctuation stripped: "¡Baja!" -> "BAJA"."""
    words = text.strip().split()
    if not words:
        return ""
    plain = unicodedata.normalize("NFKD", words[0])
    return "".join(c for c in plain if c.isalnum()).upper()


class InboundHandler:
    def __init__(self, store: Store, campaigns: CampaignBook, settings: InboundSettings,
                 region: str, *, kind_of: Callable[[str], str] = lambda _: "sms",
                 bound_to: Callable[[str], frozenset[int]] = lambda _: frozenset(),
                 wake: Callable[[int], None] = lambda _: None,
                 clock: Callable[[], float] = time.time,
                 on_whatsapp: WhatsAppHook | None = None) -> None:
        self._store = store
        self._bound_to = bound_to
        self._on_whatsapp = on_whatsapp
        self._campaigns = campaigns
        self._cfg = settings
        self._opt_out = {keyword(k) for k in settings.opt_out_keywords}
        self._opt_in = {keyword(k) for k in settings.opt_in_keywords}
        self._region = region
        self._kind_of = kind_of
        self._wake = wake
        self._clock = clock

    async def __call__(self, message: InboundMessage) -> int:
        """Handle one inbound message; its inbound row's id (0: a preference, not stored)."""
        preference = preference_of(message)
        # Only a WhatsApp channel speaks for Meta.
        if preference is not None and self._kind_of(message.channel) == "whatsapp":
            await self._marketing(preference)
            return 0
        sender = self._e164(message.sender)
        if message.provider_ref is not None:
            seen = await self._store.inbound_by_ref(message.channel, message.provider_ref)
            if seen is not None:
                log.info("inbound.duplicate", id=seen, channel=message.channel)
                return seen
        owner = await attribute(self._store, sender, message.channel,
                                self._bound_to(message.channel))
        await self._opted_in(message, sender)
        last = owner.message
        campaign = self._campaigns.by_id(last.campaign) if last else None
        decision = self.decide(message.text, campaign)
        await self._act(decision, message, sender, owner, campaign)
        record = InboundRecord(
            channel=message.channel, sender=sender, recipient=message.recipient,
            text=message.text, received_at=message.at, provider_ref=message.provider_ref,
            tenant=owner.tenant, campaign=campaign.id if campaign else None,
            reply_to=last.id if last else None, data=message.data or None,
            action=decision.action, agent=last.agent if last else None)
        inbound_id, duplicate = await self._store.store_inbound(record)
        log.info("inbound.received", id=inbound_id, channel=message.channel,
                 reply_to=record.reply_to, action=decision.action, duplicate=duplicate)
        if (not duplicate and decision.action != "opt_out" and self._on_whatsapp is not None
                and self._kind_of(message.channel) == "whatsapp"):
            await self._on_whatsapp(sender, message.text, message.data, message.channel)
        return inbound_id

    def decide(self, text: str, campaign: Campaign | None) -> Decision:
        word = keyword(text)
        if word and word in self._opt_out:
            return Decision("opt_out", self._cfg.opt_out_reply or None)
        replies = {keyword(k): v for k, v in (campaign.auto_replies or {}).items()} \
            if campaign else {}
        if word and word in replies:
            return Decision("auto_reply", replies[word])
        if campaign and campaign.out_of_time_message and not self._campaigns.on_schedule(
                campaign.id, self._clock()):
            return Decision("out_of_time", campaign.out_of_time_message)
        return Decision(None)

    async def _act(self, decision: Decision, message: InboundMessage, sender: str,
                   owner: Answered, campaign: Campaign | None) -> None:
        if decision.action == "opt_out":
            scope = campaign.id if campaign and self._cfg.opt_out_scope == "campaign" else None
            await self._store.blacklist_add([(sender, scope)],
                                            note=f"opt-out by {keyword(message.text)}")
            log.info("inbound.opt_out", sender=sender, campaign=scope)
        if decision.reply:
            await self._reply(decision, message, sender, owner.tenant, campaign)

    async def _opted_in(self, message: InboundMessage, sender: str) -> None:
        # The provider lifts its own block on these words, so the stop it
        # made us record for this sender (Twilio 21610) goes with it.
        if keyword(message.text) not in self._opt_in:
            return
        if await self._store.resume_sender(sender, message.channel, message.at):
            log.info("inbound.sender_resumed", sender=sender, channel=message.channel)

    async def _marketing(self, preference: MarketingPreference) -> None:
        customer = self._e164(preference.customer)
        if preference.value == "stop":
            changed = await self._store.stop_marketing(
                customer, preference.channel, preference.at,
                note=f"WhatsApp: {preference.detail or 'customer stopped marketing messages'}")
        else:
            changed = await self._store.resume_marketing(customer, preference.channel,
                                                         preference.at)
        # The number in clear, as inbound.opt_out has it: the operator's way to
        # answer "why was this number's promotion held back".
        log.info("inbound.whatsapp_marketing", value=preference.value, sender=customer,
                 channel=preference.channel, changed=changed)

    async def _reply(self, decision: Decision, message: InboundMessage, sender: str,
                     tenant: int, campaign: Campaign | None) -> None:
        if campaign is None:
            found = await self._campaigns.by_name(tenant, "default")
            if found is None:
                return
            campaign = found
        kind = self._kind_of(message.channel)
        meta = {"channel": message.channel, "reply_to_inbound": message.provider_ref,
                # the confirmation of an opt-out must reach a number now listed
                "bypass_blacklist": decision.action == "opt_out"}
        data: dict[str, object] = {"_smsgw": meta}
        if kind == "whatsapp":
            data["whatsapp"] = {"type": "text"}
        key = f"inbound:{message.channel}:{message.provider_ref}:{decision.action}" \
            if message.provider_ref else None
        await self._store.insert_messages([NewMessage(
            tenant=tenant, campaign=campaign.id, destination=sender, message=decision.reply or "",
            priority=REPLY_PRIORITY, data=data, kind=kind, idempotency_key=key)])
        self._wake(1)

    def _e164(self, raw: str) -> str:
        # Alphanumeric senders ("BANK") and short codes stay as they are.
        try:
            return normalize(raw, self._region)
        except (InvalidNumber, ValueError):
            return raw

