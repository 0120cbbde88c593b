"""A GSM modem on a real pseudo-terminal, speaking the AT dialect of
TS 27.007 / 27.005 the way USB modems do.

`link` becomes a symlink to the pty's slave device, so the driver opens it
like /dev/ttyUSB0. The simulator decodes and records every message it is
asked to send (`sent`), answers +CMGS with a message reference, sends status
reports (+CDS, or +CDSI for a stored one), and stores injected inbound
messages for AT+CMGR with a +CMTI. It can be told to answer errors, hang,
vanish (unplug) and come back, demand a PIN, take time per AT+CMGS, keep
echoing after ATE0, and chatter unsolicited lines into its answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import time
import tty
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.serial import pdu, textmode
from drivers.serial.at import split_fields

OK, ERROR = "OK", "ERROR"
CAPACITY = 30
_NEEDS_SIM = ("AT+CMGR", "AT+CMGL", "AT+CMGD", "AT+CMGF", "AT+CPMS", "AT+CNMI", "AT+CSCA",
              "AT+CNUM", "AT+CSMP")


@dataclass(frozen=True, slots=True)
class SentSms:
    """One part the simulator was asked to send, decoded."""

    destination: str
    text: str
    encoding: str
    reference: int  # the TP-MR it answered with
    concat: pdu.Concat | None
    status_report: bool
    pdu: str | None  # hex; None in text mode
    at: float


@dataclass
class _Stored:
    pdu: str
    report: bool = False
    stat: int = 0  # 0 REC UNREAD, 1 REC READ


@dataclass
class _Settings:
    """What ATZ or a power cycle puts back."""

    echo: bool = True
    cmee: int = 0
    cmgf: int = 0
    cnmi: tuple[int, ...] = (0, 0, 0, 0, 0)
    csmp: tuple[int, int, int, int] = (17, 167, 0, 0)
    sim: str = "READY"


@dataclass
class ModemSimulator:
    link: Path
    pin: str | None = None
    echo: bool = True
    sticky_echo: bool = False  # firmware that keeps echoing after ATE0
    pdu_mode: bool = True  # False: AT+CMGF=0 answers ERROR (text-mode-only modem)
    cmgs_delay_s: float = 0.0
    auto_reports: bool = True
    report_delay_s: float = 0.05
    report_status: int = 0x00
    verbose_errors: bool = False  # +CME ERROR: SIM busy, whatever AT+CMEE says
    chatter: bool = False  # ^RSSI and RING in the middle of answers
    keep_deleted: bool = False  # AT+CMGD answers OK and deletes nothing
    hang_on_cmgs: bool = False  # go mute at the next AT+CMGS
    vanish_after_sends: int | None = None  # unplug after this many parts
    rssi: int = 20
    creg: int = 1
    operator: str = "SIM Telecom"
    own_number: str = "+59899000001"
    smsc: str = "+59899000000"
    on_event: Callable[[str], None] = lambda _line: None
    sent: list[SentSms] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    storage: dict[int, _Stored] = field(default_factory=dict)
    pin_attempts: int = 0
    hung: bool = False

    def __post_init__(self) -> None:
        self.link = Path(self.link)
        self._master = self._slave = -1
        self._in = bytearray()
        self._out = bytearray()
        self._prompt: str | None = None  # the AT+CMGS waiting for its payload
        self._mr = 0
        self._concat_ref = 0
        self._failures: dict[str, list[str]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._plugged = 0  # counts plug-ins: a send begun before an unplug is lost with it
        self._reset()

    def _reset(self) -> None:
        self.s = _Settings(echo=self.echo, sim="SIM PIN" if self.pin else "READY")
        self._prompt = None

    # the pty -------------------------------------------------------------
    async def start(self) -> ModemSimulator:
        master, slave = os.openpty()
        tty.setraw(slave)  # the line discipline must not echo or translate; the modem does
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        tmp = self.link.with_name(self.link.name + ".tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        os.replace(tmp, self.link)
        asyncio.get_running_loop().add_reader(master, self._readable)
        return self

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._close_pty()

    def _close_pty(self) -> None:
        if self._master < 0:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._master)
        loop.remove_writer(self._master)
        for fd in (self._master, self._slave):
            os.close(fd)
        self._master = self._slave = -1
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()

    async def vanish(self) -> None:
        """Unplugged: the link goes, the pty closes (the driver reads EIO)."""
        self.on_event("vanished")
        self._plugged += 1
        self._close_pty()
        self._out.clear()

    async def come_back(self) -> None:
        """Plugged in again: a new pty behind the same link, freshly powered up."""
        self._reset()
        self.hung = False
        await self.start()
        self.on_event(f"back on {os.ttyname(self._slave)}")

    def hang(self) -> None:
        self.hung = True
        self.on_event("hung: not answering")

    def unhang(self) -> None:
        self.hung = False

    def fail(self, command: str, answer: str, times: int = 1) -> None:
        """The next `times` commands starting with `command` answer `answer`."""
        self._failures.setdefault(command.upper(), []).extend([answer] * times)

    def _readable(self) -> None:
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: no one has the slave open
        if self.hung:
            return
        if self.s.echo:
            self._write(data.decode("latin-1"))
        self._in += data
        self._consume()

    def _write(self, text: str) -> None:
        if self._master < 0:
            return
        self._out += text.encode("latin-1")
        self._flush()

    def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._out and self._master >= 0:
            try:
                sent = os.write(self._master, self._out)
            except BlockingIOError:
                loop.add_writer(self._master, self._flush)
                return
            del self._out[:sent]
        if self._master >= 0:
            loop.remove_writer(self._master)

    def _lines(self, *lines: str) -> None:
        self._write("".join(f"\r\n{line}\r\n" for line in lines))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # input -------------------------------------------------------------
    def _consume(self) -> None:
        while True:
            if self._prompt is not None:
                if not self._take_payload():
                    return
                continue
            end = self._in.find(b"\r")
            if end < 0:
                return
            line = self._in[:end].decode("latin-1").strip().strip("\n\x1b")
            del self._in[:end + 1]
            if line:
                self._command(line)

    def _take_payload(self) -> bool:
        for i, byte in enumerate(self._in):
            if byte in (0x1A, 0x1B):
                payload = self._in[:i].decode("latin-1").strip()
                del self._in[:i + 1]
                command, self._prompt = self._prompt, None
                if byte == 0x1B:  # ESC: the send is abandoned
                    self._lines(OK)
                else:
                    assert command is not None
                    self._spawn(self._submit(command, payload))
                return True
        return False

    def _command(self, line: str) -> None:
        self.commands.append(line)
        upper = line.upper()
        for prefix, answers in self._failures.items():
            if upper.startswith(prefix) and answers:
                self._lines(answers.pop(0))
                return
        if upper.startswith("AT+CMGS="):
            self._cmgs(line)
            return
        try:
            info, final = self._answer(upper, line)
        except _Refused as err:
            info, final = [], self._error(err.cme)
        if self.chatter and info:
            info = [info[0], "^RSSI: 17", *info[1:], "RING"]
        self._lines(*info, final)

    # answers -------------------------------------------------------------
    def _answer(self, upper: str, line: str) -> tuple[list[str], str]:
        if upper.startswith("AT+CPIN="):
            return self._enter_pin(split_fields(line[8:])[0])
        if self.s.sim != "READY" and upper.startswith(_NEEDS_SIM):
            raise _Refused(11 if self.s.sim == "SIM PIN" else 12)
        args = split_fields(line.partition("=")[2])
        # "AT+CMGF=0" is found as AT+CMGF; queries ("?", "=?") by their full text.
        key = upper.partition("=")[0] if "=" in upper and not upper.endswith("?") else upper
        handler = self._handlers(args).get(key)
        if handler is None:
            return [], ERROR
        try:
            return handler(), OK
        except (ValueError, IndexError):
            return [], ERROR

    def _handlers(self, a: tuple[str, ...]) -> dict[str, Callable[[], list[str]]]:
        s = self.s
        return {
            "AT": list, "ATZ": self._atz, "ATE0": lambda: _set(s, echo=self.sticky_echo),
            "ATE1": lambda: _set(s, echo=True), "AT+CSMS": lambda: ["+CSMS: 1,1,1"],
            "AT+CGMI": lambda: ["smsgw"], "AT+CGMM": lambda: ["ModemSim 1"],
            "AT+CGMR": lambda: ["sim-1.0"], "AT+CGSN": lambda: ["356938035643809"],
            "AT+CSQ": lambda: [f"+CSQ: {self.rssi},99"],
            "AT+CREG?": lambda: [f"+CREG: 0,{self.creg}"],
            "AT+CPIN?": lambda: [f"+CPIN: {s.sim}"], "AT+CMEE": lambda: _set(s, cmee=int(a[0])),
            "AT+CMGF": lambda: self._cmgf(int(a[0])), "AT+CMGF?": lambda: [f"+CMGF: {s.cmgf}"],
            "AT+CMGF=?": lambda: ["+CMGF: (0,1)" if self.pdu_mode else "+CMGF: (1)"],
            "AT+CNMI": lambda: _set(s, cnmi=tuple(int(x or 0) for x in (*a, "", "", "", ""))[:5]),
            "AT+CNMI=?": lambda: ["+CNMI: (0-2),(0-3),(0,2),(0-2),(0,1)"],
            "AT+CPMS": lambda: ["+CPMS: " + ",".join([f"{len(self.storage)},{CAPACITY}"] * 3)],
            "AT+CSCA?": lambda: [f'+CSCA: "{self.smsc}",145'],
            "AT+CSCA": lambda: _set(self, smsc=a[0]), "AT+CSDH": list, "AT+CSCS": list,
            "AT+CSMP": lambda: _set(s, csmp=tuple(int(x) for x in a[:4])),
            "AT+COPS": list, "AT+COPS?": lambda: [f'+COPS: 0,0,"{self.operator}",7'],
            "AT+CNUM": lambda: [f'+CNUM: "","{self.own_number}",145'],
            "AT+CMGR": lambda: self._cmgr(int(a[0])), "AT+CMGD": lambda: self._cmgd(a),
            "AT+CMGL": self._cmgl, "AT+CFUN": lambda: self._cfun(a),
        }

    def _atz(self) -> list[str]:
        sim = self.s.sim
        self._reset()
        self.s.sim = sim  # ATZ restores the profile; it does not lock the SIM again
        return []

    def _cfun(self, args: tuple[str, ...]) -> list[str]:
        if args[1:2] == ("1",):
            self.on_event("rebooting (AT+CFUN=1,1)")
            self._reset()
        return []

    def _cmgf(self, mode: int) -> list[str]:
        if mode == 0 and not self.pdu_mode:
            raise ValueError("PDU mode not supported")
        self.s.cmgf = mode
        return []

    def _enter_pin(self, given: str) -> tuple[list[str], str]:
        if self.s.sim != "SIM PIN":
            return [], self._error(3)
        self.pin_attempts += 1
        if given == self.pin:
            self.s.sim = "READY"
            return [], OK
        if self.pin_attempts >= 3:
            self.s.sim = "SIM PUK"
        return [], self._error(16)

    def _error(self, cme: int) -> str:
        words = {11: "SIM PIN required", 12: "SIM PUK required", 16: "incorrect password",
                 3: "operation not allowed", 21: "invalid index"}
        if self.verbose_errors or self.s.cmee == 2:
            return f"+CME ERROR: {words.get(cme, 'unknown')}"
        return f"+CME ERROR: {cme}" if self.s.cmee else ERROR

    # stored messages -------------------------------------------------------------
    def _cmgr(self, index: int) -> list[str]:
        item = self.storage.get(index)
        if item is None:
            return []
        stat, item.stat = item.stat, 1
        if self.s.cmgf == 0:
            return [f"+CMGR: {stat},,{len(item.pdu) // 2 - 1}", item.pdu]
        return self._cmgr_text(item, stat)

    def _cmgr_text(self, item: _Stored, stat: int) -> list[str]:
        name = "REC READ" if stat else "REC UNREAD"
        if item.report:
            found = pdu.parse_status_report(item.pdu)
            now = dt.datetime.now(dt.UTC)
            fields = textmode.report_fields(found.reference, found.recipient, found.status,
                                            now, now)
            return [f'+CMGR: "{name}",{fields}']
        msg = pdu.parse_deliver(item.pdu)
        stamp = msg.timestamp or dt.datetime.now(dt.UTC)
        return textmode.cmgr_deliver(name, msg.address, stamp,
                                     8 if msg.encoding == pdu.UCS2 else 0, msg.text)

    def _cmgd(self, args: tuple[str, ...]) -> list[str]:
        if not self.keep_deleted:
            if len(args) > 1 and args[1] not in ("", "0"):
                self.storage.clear()
            else:
                self.storage.pop(int(args[0]), None)
        return []

    def _cmgl(self) -> list[str]:
        out = []
        for index, item in sorted(self.storage.items()):
            if self.s.cmgf == 0:
                out += [f"+CMGL: {index},{item.stat},,{len(item.pdu) // 2 - 1}", item.pdu]
            else:
                out += [f'+CMGL: {index},"{"REC READ" if item.stat else "REC UNREAD"}"']
        return out

    def _store(self, item: _Stored) -> int:
        index = next(i for i in range(1, CAPACITY + 1) if i not in self.storage)
        self.storage[index] = item
        return index

    # sending -------------------------------------------------------------
    def _cmgs(self, line: str) -> None:
        if self.s.sim != "READY":
            self._lines(f"+CMS ERROR: {311 if self.s.sim == 'SIM PIN' else 316}")
            return
        if self.hang_on_cmgs:
            self.hang_on_cmgs = False
            self.hang()
            return
        self._prompt = line
        self._write("\r\n> ")

    async def _submit(self, command: str, payload: str) -> None:
        plugged = self._plugged
        if self.cmgs_delay_s:
            await asyncio.sleep(self.cmgs_delay_s)
        if plugged != self._plugged or self._master < 0:
            return  # unplugged while transmitting: the message never left the modem
        try:
            sms = self._decode(command, payload)
        except (ValueError, IndexError):
            self._lines("+CMS ERROR: 304")
            return
        self.sent.append(sms)
        part = f" part {sms.concat.seq}/{sms.concat.total} ref {sms.concat.ref}" \
            if sms.concat else ""
        self.on_event(f"sent mr={sms.reference} to={sms.destination} [{sms.encoding}]"
                      f"{part}: {sms.text!r}")
        self._lines(f"+CMGS: {sms.reference}", OK)
        if sms.status_report and self.auto_reports:
            self._spawn(self._report_later(sms.reference, sms.destination))
        if self.vanish_after_sends is not None and len(self.sent) >= self.vanish_after_sends:
            self.vanish_after_sends = None
            await asyncio.sleep(0.05)  # the answer reaches the driver before the unplug
            await self.vanish()

    def _decode(self, command: str, payload: str) -> SentSms:
        self._mr = (self._mr + 1) % 256
        if self.s.cmgf == 0:
            msg = pdu.parse_submit(payload)
            if int(command.split("=", 1)[1]) != len(bytes.fromhex(payload)) - 1 - int(
                    payload[:2], 16):
                raise ValueError("AT+CMGS length does not match the PDU")
            return SentSms(msg.address, msg.text, msg.encoding, self._mr, msg.concat,
                           msg.status_report, payload.upper(), time.time())
        fo, _vp, _pid, dcs = self.s.csmp
        number = split_fields(command.split("=", 1)[1])[0]
        text = textmode.decode_submit_body(dcs, payload)
        return SentSms(number, text, pdu.UCS2 if dcs == 8 else pdu.GSM7, self._mr, None,
                       bool(fo & 0x20), None, time.time())

    async def _report_later(self, mr: int, recipient: str) -> None:
        await asyncio.sleep(self.report_delay_s)
        self.send_report(mr, recipient, self.report_status)

    def send_report(self, mr: int, recipient: str, status: int = 0) -> None:
        """A status report for message reference `mr`, routed as AT+CNMI asked."""
        ds = self.s.cnmi[3]
        now = dt.datetime.now(dt.UTC)
        report = pdu.build_status_report(mr, recipient, status, submitted=now, done=now)
        if ds == 2:
            index = self._store(_Stored(report, report=True))
            self._lines(f'+CDSI: "SM",{index}')
        elif ds == 1 and self.s.cmgf == 0:
            self._lines(f"+CDS: {len(report) // 2 - 1}\r\n{report}")
        elif ds == 1:
            self._lines("+CDS: " + textmode.report_fields(mr, recipient, status, now, now))

    # inbound -------------------------------------------------------------
    def inject_sms(self, sender: str, text: str, *, order: list[int] | None = None,
                   notify: bool = True, stamp: dt.datetime | None = None) -> list[int]:
        """A message from `sender` arrives (in parts, in `order`); the SIM indexes."""
        self._concat_ref = (self._concat_ref + 1) % 256
        stamp = stamp or dt.datetime.now(dt.UTC).replace(microsecond=0)
        pdus = pdu.build_deliver(sender, text, stamp=stamp, concat_ref=self._concat_ref,
                                 smsc=self.smsc)
        indexes = []
        live = notify and self._master >= 0 and not self.hung
        for i in order or range(1, len(pdus) + 1):
            hex_pdu = pdus[i - 1]
            if live and self.s.cnmi[1] == 2 and self.s.cmgf == 0:  # routed, not stored
                self._lines(f"+CMT: ,{len(hex_pdu) // 2 - 1}\r\n{hex_pdu}")
                continue
            index = self._store(_Stored(hex_pdu))
            indexes.append(index)
            if live and self.s.cnmi[1] == 1:
                self._lines(f'+CMTI: "SM",{index}')
        self.on_event(f"inbound from {sender} in {len(pdus)} part(s) at {indexes}")
        return indexes


def _set(target: object, **values: object) -> list[str]:
    for name, value in values.items():
        setattr(target, name, value)
    return []


class _Refused(Exception):
    def __init__(self, cme: int) -> None:
        super().__init__(f"+CME ERROR: {cme}")
        self.cme = cme
