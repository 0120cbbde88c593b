"""A GSM modem on a serial port as one channel (`driver = "serial"`).

The channel owns one background task, the keeper, which opens the port,
runs the init sequence, and while the port lives polls signal and
registration and handles what the modem reports on its own. When the port
dies (a timeout, an unplug, an init failure) the channel is down at once,
the router skips it, and the keeper resets the modem if it was wedged,
closes the port, and tries again with backoff until the device answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

import structlog
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from drivers.base import (
    ChannelEvents,
    ChannelKind,
    Health,
    OutgoingMessage,
    SendReceipt,
    TransientError,
)
from drivers.serial import at, pdu, session, textmode
from drivers.serial.errors import channel_error
from drivers.serial.inbox import Inbox
from drivers.serial.port import AtPort, CommandError, PortClosed, PortTimeout

log = structlog.get_logger("smsgw.serial")


# A part the modem accepted whose message reference could not be read.
UNKNOWN_REFERENCE = -1

class SerialOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    device: str = Field(min_length=1)
    baudrate: int = Field(115200, gt=0)
    pin: SecretStr | None = None
    smsc: str | None = Field(None, pattern=r"^\+?[0-9]{3,20}$")
    delivery_reports: bool = True
    init: tuple[str, ...] = ()  # extra AT commands after the standard sequence
    # Sent when the modem stops answering, before the port is reopened;
    # "" only reopens. AT+CFUN=1,1 reboots most modules (the USB device
    # disappears for a few seconds, which the reopen loop waits out).
    reset_string: str = "AT+CFUN=1,1"
    mode: Literal["auto", "pdu", "text"] = "auto"
    cnmi: str = "2,1,0,1,0"  # buffer URCs, +CMTI for messages, +CDS for reports
    storage: str = "SM"
    command_timeout_s: float = Field(5.0, gt=0)
    # Per part. Below the channel's send_timeout_s (60 s by default), so a
    # mute modem is caught here, reset, and its message retried elsewhere.
    cmgs_timeout_s: float = Field(40.0, gt=0)
    reset_wait_s: float = Field(3.0, ge=0)
    reopen_min_s: float = Field(1.0, gt=0)
    reopen_max_s: float = Field(60.0, gt=0)
    poll_interval_s: float = Field(30.0, gt=0)
    sweep_interval_s: float = Field(300.0, gt=0)
    inbound_part_timeout_s: float = Field(3600.0, gt=0)
    # An unregistered SIM cannot send: keep the channel down until it is.
    require_registration: bool = True


class _Sweep:
    """Queue item: list and read everything stored on the SIM."""


class SerialChannel:
    kind: ChannelKind = "sms"
    concurrency = 1  # one AT command at a time on one port
    # A multipart message takes a CMGS round trip per part: the gateway's
    # send timeout for a modem channel defaults to this, not to 60 s.
    default_send_timeout_s = 180.0

    def __init__(self, name: str, options: SerialOptions, events: ChannelEvents, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self._opt = options
        self._clock = clock
        self._port: AtPort | None = None
        self._mode: session.Mode = "pdu"
        self._text_dcs: int | None = None
        self._sim = session.SimState()
        self._ready = False
        self._last_error: str | None = None
        self._signal = session.Signal(None, 0)
        self._registration: int | None = None
        self._operator: str | None = None
        self._urcs: asyncio.Queue[object] = asyncio.Queue()
        self._recent: dict[int, str] = {}  # message reference -> destination
        self._concat_ref = random.randrange(256)
        self._keeper: asyncio.Task[None] | None = None
        self.sent = 0
        self.inbox = Inbox(name, events, self._destination_for,
                           part_timeout_s=options.inbound_part_timeout_s, clock=clock)

    # lifecycle -------------------------------------------------------------
    async def start(self) -> None:
        """Never raises: an absent modem starts down and is retried in the background."""
        self._last_error = "opening"
        self._keeper = asyncio.get_running_loop().create_task(
            self._keep(), name=f"modem:{self.name}")

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await keeper
        self._ready = False
        if self._port is not None:
            await self._port.close()
            self._port = None

    def _usable(self) -> bool:
        stat = self._registration
        # A modem that does not report registration is taken at its word.
        registered = (stat is None or stat in session.REGISTERED
                      or not self._opt.require_registration)
        return self._ready and self._port is not None and self._port.is_open and registered

    def health(self) -> Health:
        stat = self._registration
        return Health(
            up=self._usable(), last_error=self._last_error,
            signal_dbm=self._signal.dbm,
            detail={"device": self._opt.device, "mode": self._mode, "bars": self._signal.bars,
                    "registration": None if stat is None else session.REGISTRATION.get(stat),
                    "operator": self._operator, "sent": self.sent})

    # the keeper -------------------------------------------------------------
    async def _keep(self) -> None:
        backoff = self._opt.reopen_min_s
        while True:
            began = time.monotonic()
            reason = await self._one_session()
            self._ready = False
            self._last_error = reason
            port, self._port = self._port, None
            if port is not None:
                await self._retire(port)
            if time.monotonic() - began > 60:
                backoff = self._opt.reopen_min_s
            log.warning("modem.down", channel=self.name, reason=reason, retry_in_s=backoff)
            await asyncio.sleep(backoff * random.uniform(0.8, 1.0))
            backoff = min(backoff * 2, self._opt.reopen_max_s)

    async def _one_session(self) -> str:
        """Open, init, serve until the port dies; the reason it ended."""
        try:
            port = await AtPort.open(self._opt.device, self._opt.baudrate, self._urc)
            self._port = port
            await self._bring_up(port)
            return await self._serve(port)
        except (session.InitError, PortClosed) as err:
            return str(err)
        except Exception as err:  # supervisor boundary: log it, reopen with backoff
            log.exception("modem.session_crashed", channel=self.name)
            return f"internal error: {err!r}"

    async def _bring_up(self, port: AtPort) -> None:
        opt = self._opt
        plan = session.InitPlan(
            pin=opt.pin.get_secret_value() if opt.pin else None, mode=opt.mode, cnmi=opt.cnmi,
            storage=opt.storage, smsc=opt.smsc, delivery_reports=opt.delivery_reports,
            extra=opt.init, timeout_s=opt.command_timeout_s)
        self._mode = await session.initialise(port, plan, self._sim)
        self._text_dcs = 0 if self._mode == "text" else None
        self.inbox.recipient = await session.optional(
            port, "AT+CNUM", "+CNUM", opt.command_timeout_s, index=1) or ""
        self._operator = await session.operator(port, opt.command_timeout_s)
        self._last_error = None
        await self._refresh(port)
        while not self._urcs.empty():  # notices meant for the previous port
            self._urcs.get_nowait()
        self._urcs.put_nowait(_Sweep())
        self._ready = True
        log.info("modem.up", channel=self.name, device=opt.device, mode=self._mode,
                 signal_dbm=self._signal.dbm, operator=self._operator)

    async def _serve(self, port: AtPort) -> str:
        tasks = [asyncio.create_task(self._guard(port, self._poll(port)),
                                     name=f"modem-poll:{self.name}"),
                 asyncio.create_task(self._guard(port, self._handle_urcs(port)),
                                     name=f"modem-urc:{self.name}")]
        try:
            return await asyncio.shield(port.lost)
        finally:
            self._ready = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _guard(self, port: AtPort, work: Coroutine[Any, Any, None]) -> None:
        try:
            await work
        except PortClosed:
            return  # the port is already failed; the keeper takes over
        except Exception as err:  # supervisor boundary: a bug must not leave a zombie port
            log.exception("modem.task_crashed", channel=self.name)
            port.fail(f"internal error: {err!r}")

    async def _retire(self, port: AtPort) -> None:
        try:
            if port.wedged and self._opt.reset_string:
                # ESC first: a modem stuck at the AT+CMGS prompt takes
                # everything else as message text.
                port.write_raw(b"\x1b\r" + self._opt.reset_string.encode() + b"\r")
                log.warning("modem.reset", channel=self.name, command=self._opt.reset_string)
                await asyncio.sleep(self._opt.reset_wait_s)
        finally:
            await port.close()

    # while up -------------------------------------------------------------
    async def _poll(self, port: AtPort) -> None:
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self._opt.poll_interval_s)
            await self._refresh(port)
            if time.monotonic() - last_sweep >= self._opt.sweep_interval_s:
                last_sweep = time.monotonic()
                self._urcs.put_nowait(_Sweep())
            await self.inbox.expire(port, self._opt.command_timeout_s)

    async def _refresh(self, port: AtPort) -> None:
        t = self._opt.command_timeout_s
        try:
            self._signal = await session.signal(port, t)
            self._registration = await session.registration(port, t)
        except CommandError as err:  # some firmwares answer ERROR while busy
            log.info("modem.poll_error", channel=self.name, error=str(err))
        stat = self._registration
        if stat is not None and stat not in session.REGISTERED:
            self._last_error = session.REGISTRATION.get(stat, "not registered")
        elif self._last_error in session.REGISTRATION.values():
            self._last_error = None

    def _urc(self, event: at.Event) -> None:
        if isinstance(event, at.Unsolicited) and event.text.startswith("^RSSI:"):
            # Huawei pushes the signal on its own; same scale as AT+CSQ.
            value = event.text.split(":", 1)[1].strip()
            if value.isdigit():
                self._signal = session.Signal.from_csq(int(value))
            return
        if isinstance(event, at.NewSms | at.ReportStored | at.StatusReport | at.SmsDirect):
            self._urcs.put_nowait(event)

    async def _handle_urcs(self, port: AtPort) -> None:
        while True:
            item = await self._urcs.get()
            try:
                await self._handle(port, item)
            except (CommandError, pdu.PduError, ValueError, IndexError) as err:
                log.warning("modem.unreadable", channel=self.name, item=repr(item),
                            error=str(err))
            except PortClosed:
                raise
            except Exception:  # e.g. the store is down: the SIM keeps the message
                log.exception("modem.inbound_failed", channel=self.name, item=repr(item))

    async def _handle(self, port: AtPort, item: object) -> None:
        t, mode = self._opt.command_timeout_s, self._mode
        match item:
            case _Sweep():
                await self.inbox.sweep(port, mode, t)
            case at.NewSms(storage=storage, index=index) | at.ReportStored(
                    storage=storage, index=index):
                await self._read_from(port, storage, index)
            case at.StatusReport(pdu=str(hex_pdu)):
                await self.inbox.report_pdu(hex_pdu)
            case at.StatusReport(fields=fields):
                await self.inbox.report_text(fields)
            case at.SmsDirect(header=header, body=body):
                await self.inbox.direct(port, header, body, mode, t)

    async def _read_from(self, port: AtPort, storage: str, index: int) -> None:
        t, mine = self._opt.command_timeout_s, self._opt.storage
        if storage and storage != mine:
            # Some modems store reports in "SR" or "ME" whatever CPMS says.
            await port.command(f'AT+CPMS="{storage}"', t)
        try:
            await self.inbox.read(port, index, self._mode, t)
        finally:
            if storage and storage != mine:
                await port.command(f'AT+CPMS="{mine}"', t)

    def _destination_for(self, reference: int, reported: str) -> str | None:
        known = self._recent.get(reference)
        if reported.startswith("+"):
            return reported
        # National or unknown-format recipient: trust our own record of whom
        # this reference went to when the last digits agree.
        if known and (not reported or known[-7:] == reported[-7:]):
            return known
        return reported or None

    # sending -------------------------------------------------------------
    async def send(self, message: OutgoingMessage) -> SendReceipt:
        port = self._port
        if not self._usable() or port is None:
            raise TransientError(f"modem {self.name} is down: {self._last_error}", code="down")
        if self._mode == "text":
            refs = [await self._send_text(port, message)]
        else:
            refs = await self._send_pdus(port, message)
        for ref in refs:
            self._recent[ref] = message.destination
        self.sent += 1
        mrs = ".".join(map(str, refs))
        return SendReceipt(provider_ref=f"{self._opt.device}:{time.time_ns()}:{mrs}",
                           parts=len(refs), part_refs=tuple(str(r) for r in refs))

    async def _send_pdus(self, port: AtPort, message: OutgoingMessage) -> list[int]:
        self._concat_ref = (self._concat_ref + 1) % 256
        pdus = pdu.build_submit(message.destination, message.text, concat_ref=self._concat_ref,
                                status_report=self._opt.delivery_reports, smsc=self._opt.smsc)
        # Parts that went out before a later part fails stay out: the retry
        # sends the whole message under a new reference, and the handset
        # never completes the first one.
        return [await self._submit(port, f"AT+CMGS={p.tpdu_length}", p.hex) for p in pdus]

    async def _send_text(self, port: AtPort, message: OutgoingMessage) -> int:
        body = textmode.submit(message.text)
        if body.dcs != self._text_dcs:
            await self._command(port, textmode.csmp(self._opt.delivery_reports, body.dcs))
            self._text_dcs = body.dcs
        return await self._submit(port, f'AT+CMGS="{message.destination}"', body.body)

    async def _submit(self, port: AtPort, command: str, payload: str) -> int:
        try:
            lines = await port.submit(command, payload, self._opt.cmgs_timeout_s)
        except CommandError as err:
            raise channel_error(err.result, f"{self.name} AT+CMGS") from err
        except PortTimeout as err:
            raise TransientError(f"{self.name}: {err}; resetting the modem",
                                 code="timeout") from err
        except PortClosed as err:
            raise TransientError(f"{self.name}: port lost: {err}", code="port") from err
        for line in lines:
            found = at.parameters(line, "+CMGS")
            if found is not None and found[0].isdigit():
                return int(found[0])
        # OK means the modem took the message; only its reference was lost
        # (line noise). Sending again would duplicate it: it counts as sent,
        # and no delivery report can be matched to this part.
        log.warning("modem.reference_unreadable", channel=self.name, lines=lines)
        return UNKNOWN_REFERENCE

    async def _command(self, port: AtPort, command: str) -> list[str]:
        try:
            return await port.command(command, self._opt.command_timeout_s)
        except CommandError as err:
            raise channel_error(err.result, f"{self.name} {command}") from err
        except PortClosed as err:
            raise TransientError(f"{self.name}: port lost: {err}", code="port") from err


def build(name: str, options: SerialOptions, events: ChannelEvents) -> list[SerialChannel]:
    return [SerialChannel(name, options, events)]
