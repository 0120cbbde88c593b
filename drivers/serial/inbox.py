"""What arrives on a modem: messages (+CMTI / +CMT / stored on the SIM) and
status reports (+CDS / +CDSI), read, reassembled and handed to the gateway.

A message is deleted from the SIM only after the gateway has stored it, so a
crash or a reset in between means it is read again; its `provider_ref`, a
digest of its PDUs, lets the gateway store it once. Parts of a long message
stay on the SIM until the last one arrives, so a restart loses none of them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import structlog

from drivers.base import ChannelEvents, DeliveryReport, InboundMessage
from drivers.serial import pdu, textmode
from drivers.serial.at import parameters
from drivers.serial.errors import report_status
from drivers.serial.port import AtPort, CommandError
from drivers.serial.session import Mode

log = structlog.get_logger("smsgw.serial")

DestinationFor = Callable[[int, str], str | None]


@dataclass(frozen=True, slots=True)
class _Part:
    index: int | None  # None: routed straight to us (+CMT), not on the SIM
    hex: str
    message: pdu.Message


@dataclass
class _Held:
    first_seen: float
    parts: dict[int, _Part] = field(default_factory=dict)


class Inbox:
    def __init__(self, channel: str, events: ChannelEvents, destination_for: DestinationFor,
                 *, part_timeout_s: float, clock: Callable[[], float] = time.time) -> None:
        self._channel = channel
        self._events = events
        self._destination_for = destination_for
        self._part_timeout_s = part_timeout_s
        self._clock = clock
        self._held: dict[tuple[str, int, int], _Held] = {}
        self.recipient = ""  # the SIM's own number when AT+CNUM knows it

    # stored on the SIM ----------------------------------------------------------------
    async def sweep(self, port: AtPort, mode: Mode, timeout_s: float) -> None:
        """Everything already stored: after a restart, a reset, or lost +CMTI."""
        lines = await port.command("AT+CMGL=4" if mode == "pdu" else 'AT+CMGL="ALL"', timeout_s)
        indexes = [int(found[0]) for line in lines
                   if (found := parameters(line, "+CMGL")) is not None and found[0].isdigit()]
        for index in indexes:
            await self.read(port, index, mode, timeout_s)

    async def read(self, port: AtPort, index: int, mode: Mode, timeout_s: float) -> None:
        try:
            lines = await port.command(f"AT+CMGR={index}", timeout_s)
        except CommandError as err:
            log.info("modem.read_empty", channel=self._channel, index=index, error=str(err))
            return
        if not lines or (mode == "pdu" and len(lines) < 2):
            return  # an empty slot: already read and deleted
        # A text-mode status report is the header alone.
        header, body = lines[0], lines[1] if len(lines) > 1 else ""
        if mode == "text":
            await self._text_stored(port, index, header, body, timeout_s)
        elif pdu.is_status_report(body):
            await self.report_pdu(body)
            await self._delete(port, [index], timeout_s)
        else:
            await self._part(port, _Part(index, body, pdu.parse_deliver(body)), timeout_s)

    async def _text_stored(self, port: AtPort, index: int, header: str, body: str,
                           timeout_s: float) -> None:
        found = textmode.parse_cmgr(header, body)
        if isinstance(found, textmode.TextReport):
            await self._report(found.reference, found.recipient, found.status)
        else:
            await self._store(found.sender, found.text, found.provider_ref,
                              {"sent_at": found.sent_at, "mode": "text"})
        await self._delete(port, [index], timeout_s)

    # routed straight to us -------------------------------------------------------------
    async def direct(self, port: AtPort, header: str, body: str, mode: Mode,
                     timeout_s: float) -> None:
        if mode == "text":
            found = textmode.parse_cmgr('+CMGR: "REC UNREAD",' + header.split(":", 1)[1], body)
            if isinstance(found, textmode.TextInbound):
                await self._store(found.sender, found.text, found.provider_ref,
                                  {"sent_at": found.sent_at, "mode": "text"})
            return
        await self._part(port, _Part(None, body, pdu.parse_deliver(body)), timeout_s)

    async def report_pdu(self, hex_pdu: str) -> None:
        found = pdu.parse_status_report(hex_pdu)
        await self._report(found.reference, found.recipient, found.status)

    async def report_text(self, fields: Sequence[str]) -> None:
        found = textmode.parse_cds(tuple(fields))
        await self._report(found.reference, found.recipient, found.status)

    async def _report(self, reference: int, recipient: str, status: int) -> None:
        delivered, final, text = report_status(status)
        await self._events.report(DeliveryReport(
            self._channel, str(reference), delivered, None if delivered else text,
            destination=self._destination_for(reference, recipient), final=final,
            error_code=None if delivered else f"TP-Status {status:#04x}"))

    # reassembly -------------------------------------------------------------
    async def _part(self, port: AtPort, part: _Part, timeout_s: float) -> None:
        concat = part.message.concat
        if concat is None:
            await self._deliver([part], complete=True)
            await self._delete(port, [part.index], timeout_s)
            return
        key = (part.message.address, concat.ref, concat.total)
        held = self._held.setdefault(key, _Held(self._clock()))
        held.parts[concat.seq] = part
        if len(held.parts) < concat.total:
            return
        del self._held[key]
        parts = [held.parts[seq] for seq in sorted(held.parts)]
        await self._deliver(parts, complete=True)
        await self._delete(port, [p.index for p in parts], timeout_s)

    async def expire(self, port: AtPort, timeout_s: float) -> None:
        """Parts whose siblings never came: store what there is, free the SIM."""
        now = self._clock()
        for key, held in list(self._held.items()):
            if now - held.first_seen < self._part_timeout_s:
                continue
            del self._held[key]
            parts = [held.parts[seq] for seq in sorted(held.parts)]
            await self._deliver(parts, complete=False)
            await self._delete(port, [p.index for p in parts], timeout_s)

    async def _deliver(self, parts: list[_Part], *, complete: bool) -> None:
        first = parts[0].message
        encodings = {p.message.encoding for p in parts}
        if len(encodings) == 1:
            # Joined before decoding: a sender that split a surrogate pair
            # or an escape across parts still reads right.
            text = pdu.decode_payload(first.encoding, b"".join(p.message.payload for p in parts))
        else:
            text = "".join(p.message.text for p in parts)
        digest = hashlib.sha256("|".join(p.hex.upper() for p in parts).encode()).hexdigest()
        data: dict[str, object] = {"encoding": first.encoding, "parts": len(parts)}
        if first.timestamp is not None:
            data["sent_at"] = first.timestamp.isoformat()
        if not complete and first.concat is not None:
            data["incomplete"] = {"total": first.concat.total,
                                  "received": [p.message.concat.seq for p in parts
                                               if p.message.concat is not None]}
        await self._store(first.address, text, digest[:32], data)

    async def _store(self, sender: str, text: str, ref: str, data: dict[str, object]) -> None:
        await self._events.inbound(InboundMessage(
            channel=self._channel, sender=sender, recipient=self.recipient, text=text,
            provider_ref=ref, data=data))

    async def _delete(self, port: AtPort, indexes: Sequence[int | None],
                      timeout_s: float) -> None:
        for index in indexes:
            if index is None:
                continue
            try:
                await port.command(f"AT+CMGD={index}", timeout_s)
            except CommandError as err:
                # Left on the SIM: the next sweep reads it again and the
                # gateway recognises it by its reference.
                log.warning("modem.delete_failed", channel=self._channel, index=index,
                            error=str(err))
