"""Inbound messages from any channel: normalised, attributed, stored once.

The tenant and campaign are those of the last message sent to the sender,
which is what the customer is most likely answering.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from drivers.base import InboundMessage
from gateway.phone import InvalidNumber, normalize
from spool.base import InboundRecord, Store

log = structlog.get_logger("smsgw.inbound")


class InboundHandler:
    def __init__(self, store: Store, region: str, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._region = region
        self._clock = clock

    async def __call__(self, message: InboundMessage) -> int:
        sender = self._e164(message.sender)
        last = await self._store.last_message_to(sender)
        record = InboundRecord(
            channel=message.channel, sender=sender, recipient=message.recipient,
            text=message.text, received_at=message.at, provider_ref=message.provider_ref,
            tenant=last.tenant if last else None, campaign=last.campaign if last else None,
            reply_to=last.id if last else None, data=message.data or None)
        inbound_id, duplicate = await self._store.store_inbound(record)
        log.info("inbound.received", id=inbound_id, channel=message.channel,
                 reply_to=record.reply_to, duplicate=duplicate)
        return inbound_id

    def _e164(self, raw: str) -> str:
        # Alphanumeric senders ("BANK") and short codes stay as they are.
        try:
            return normalize(raw, self._region)
        except (InvalidNumber, ValueError):
            return raw
