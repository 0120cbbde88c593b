"""What the device says, from a push or a poll, turned into the gateway's
events: send results settle waiting sends, delivery statuses become
DeliveryReports, incoming SMS become InboundMessages. Push and poll may say
the same thing twice; each is reported once."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable

import structlog

from drivers.base import ChannelEvents, DeliveryReport, InboundMessage
from drivers.dinstar.state import DeviceState
from drivers.dinstar.tracking import Pending, Seen, SentIndex, Tracked
from drivers.dinstar.wire import (
    DeliverStatus,
    Fate,
    IncomingSms,
    SmsResult,
    from_wire_number,
    parse_device_time,
    tp_status,
)

log = structlog.get_logger("smsgw.dinstar")


class Feed:
    def __init__(self, name: str, ports: Iterable[int], *, events: ChannelEvents,
                 pending: Pending, index: SentIndex, state: DeviceState, number_prefix: str,
                 clock: Callable[[], float] = time.time) -> None:
        self._name = name
        self._ports = frozenset(ports)
        self._events = events
        self._pending = pending
        self._index = index
        self._state = state
        self._prefix = number_prefix
        self._clock = clock
        self._seen_reports = Seen()
        self._seen_inbound = Seen()

    def channel(self, port: int) -> str:
        return f"{self._name}:{port}"

    async def results(self, results: Iterable[SmsResult]) -> None:
        for result in results:
            if result.port not in self._ports or self._pending.resolve(result):
                continue
            # A result for a send already answered: the device aggregated the
            # delivery reports (DELIVERED), or the network failed it late.
            entry = self._index.by_user_id(result.user_id)
            if entry is None and result.user_id is None and result.ref_id is not None:
                entry = self._index.by_ref(result.port, result.ref_id, result.number)
            if entry is None or result.status not in ("DELIVERED", "FAILED"):
                continue
            fate = (Fate(True, True) if result.status == "DELIVERED"
                    else Fate(False, True, "the device reports the message FAILED"))
            if self._index.settle(entry, None, fate) is not None:
                await self._report(entry.port, entry.provider_ref, fate, entry.destination)

    async def deliveries(self, statuses: Iterable[DeliverStatus]) -> None:
        for status in statuses:
            key = (status.port, status.ref_id, status.number, status.time, status.status_code)
            if status.port in self._ports and self._seen_reports.first(key):
                await self._delivery(status)

    async def _delivery(self, status: DeliverStatus) -> None:
        fate = tp_status(status.status_code)
        entry = self._index.by_ref(status.port, status.ref_id, status.number)
        if entry is None:
            # Sent before a restart (or long ago): the spool knows each part by
            # (port channel, reference, destination) and settles the message.
            await self._report(status.port, str(status.ref_id), fate,
                               from_wire_number(status.number, self._prefix),
                               status.status_code)
            return
        verdict = self._index.settle(entry, status.ref_id, fate)
        if verdict is not None:
            await self._report(entry.port, entry.provider_ref, verdict, entry.destination,
                               status.status_code)

    async def _report(self, port: int, ref: str, fate: Fate, destination: str,
                      code: int | None = None) -> None:
        await self._events.report(DeliveryReport(
            channel=self.channel(port), provider_ref=ref, delivered=fate.delivered,
            error=fate.error, destination=destination, final=fate.final,
            error_code=None if code is None else str(code),
            detail={"port": port} if code is None else {"port": port, "tp_status": code}))

    async def incoming(self, messages: Iterable[IncomingSms]) -> None:
        for sms in messages:
            if sms.port not in self._ports:
                log.info("dinstar.inbound_other_port", device=self._name, port=sms.port)
                continue
            ref = inbound_ref(sms)
            if not self._seen_inbound.first(ref):
                continue
            at = parse_device_time(sms.timestamp) or self._clock()
            await self._events.inbound(InboundMessage(
                channel=self.channel(sms.port), sender=sms.number,
                recipient=self._state.number(sms.port), text=sms.text, provider_ref=ref, at=at,
                data={"port": sms.port, "smsc": sms.smsc, "imsi": sms.imsi}))

    def track(self, entry: Tracked) -> None:
        self._index.add(entry)


def inbound_ref(sms: IncomingSms) -> str:
    """The device's inbox id, with its timestamp: ids restart after a factory reset."""
    if sms.incoming_sms_id is not None:
        return f"{sms.incoming_sms_id}@{sms.timestamp}"
    raw = f"{sms.port}|{sms.number}|{sms.timestamp}|{sms.text}".encode()
    return "sha1:" + hashlib.sha1(raw).hexdigest()
