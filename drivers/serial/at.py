"""AT command line protocol, sans-I/O: bytes in, frozen events out.

`AtParser().feed(b'+CMTI: "SM",3\\r\\n') == [NewSms(storage="SM", index=3)]`

The parser knows the shape of what modems say (3GPP TS 27.007 / 27.005 and
V.250), not what was asked: the port pairs `Info` lines and final results
with the command in flight, and hands everything unsolicited to the channel.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

ErrorKind = Literal["ERROR", "CME", "CMS"]


@dataclass(frozen=True, slots=True)
class Ok:
    """Final result: the command succeeded."""


@dataclass(frozen=True, slots=True)
class ErrorResult:
    """Final result: ERROR, +CME ERROR or +CMS ERROR, numeric or verbose."""

    kind: ErrorKind
    code: int | None = None
    text: str = ""

    def __str__(self) -> str:
        if self.kind == "ERROR":
            return self.text or "ERROR"
        detail = self.text if self.code is None else f"{self.code}"
        return f"+{self.kind} ERROR: {detail}"


@dataclass(frozen=True, slots=True)
class Prompt:
    """`> `: AT+CMGS waits for the PDU (or text) and Ctrl-Z."""


@dataclass(frozen=True, slots=True)
class Info:
    """An intermediate response line of the command in flight."""

    text: str


@dataclass(frozen=True, slots=True)
class Echo:
    """The modem repeating what was written (ATE1)."""

    text: str


@dataclass(frozen=True, slots=True)
class NewSms:
    """+CMTI: a message was stored at `index` of `storage`."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class ReportStored:
    """+CDSI: a status report was stored at `index` of `storage`."""

    storage: str
    index: int


@dataclass(frozen=True, slots=True)
class StatusReport:
    """+CDS: a status report routed straight to us.

    PDU mode carries the PDU on the next line (`pdu`); text mode puts the
    fields on the same line (`fields`).
    """

    pdu: str | None = None
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SmsDirect:
    """+CMT: a message routed straight to us instead of stored."""

    header: str
    body: str


@dataclass(frozen=True, slots=True)
class Ring:
    """RING: an incoming call (ignored; an SMS modem does not answer calls)."""


@dataclass(frozen=True, slots=True)
class Unsolicited:
    """Any other unsolicited line (^RSSI, ^BOOT, +CIEV, SMS Ready...)."""

    text: str


Event = (Ok | ErrorResult | Prompt | Info | Echo | NewSms | ReportStored | StatusReport
         | SmsDirect | Ring | Unsolicited)
URC_TYPES = (NewSms, ReportStored, StatusReport, SmsDirect, Ring, Unsolicited)

_FINAL_ERRORS = {
    "ERROR", "NO CARRIER", "NO DIALTONE", "BUSY", "NO ANSWER",
    # Some Huawei firmwares answer these instead of ERROR.
    "COMMAND NOT SUPPORT", "TOO MANY PARAMETERS",
}
# Lines some modems send on their own after boot or a reset, which must not
# be mistaken for part of a command's answer.
_URC_PREFIXES = (
    "^", "+CIEV:", "+CUSD:", "+CFUN:", "+QIND:", "+PACSP", "+STIN:", "+CBM:", "RDY",
    "SMS Ready", "Call Ready", "PB DONE",
    "NORMAL POWER DOWN", "UNDER-VOLTAGE", "OVER-VOLTAGE",
)
_ERROR_RE = re.compile(r"^\+(CME|CMS) ERROR:\s*(.*)$")
_STORED_RE = re.compile(r'^\+(CMTI|CDSI):\s*"?([^",]*)"?\s*,\s*(\d+)')


class AtParser:
    """Split the byte stream into lines and classify them.

    Responses end in CR LF, but an echo ends in the CR we wrote, so any run of
    CR/LF ends a line and empty lines are skipped. `sent()` tells the parser
    what was written so an echo is recognised whatever the ATE setting.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._echo: str | None = None
        self._header: str | None = None  # "+CDS: 25" waiting for its PDU line

    def sent(self, text: str) -> None:
        """Remember a written command (or PDU) so its echo can be dropped."""
        self._echo = _clean(text).upper()

    def feed(self, data: bytes) -> list[Event]:
        self._buf += data
        events: list[Event] = []
        while (end := _line_end(self._buf)) >= 0:
            line = _clean(self._buf[:end].decode("latin-1"))
            del self._buf[:end + 1]
            if line == ">":
                # Some modems end the prompt with a line break when an
                # unsolicited report (^RSSI, +CMTI) follows in the same burst.
                events.append(Prompt())
            elif line:
                events += self._line(line)
        if _clean(self._buf.decode("latin-1")) == ">":
            # The prompt is the one thing that arrives without a line end.
            self._buf.clear()
            events.append(Prompt())
        return events

    def _line(self, line: str) -> list[Event]:
        if self._header is not None:
            header, self._header = self._header, None
            if header.startswith("+CDS:"):
                return [StatusReport(pdu=line)]
            return [SmsDirect(header=header, body=line)]
        if self._echo is not None and line.upper() == self._echo:
            self._echo = None
            return [Echo(line)]
        if _has_second_line(line):
            self._header = line
            return []
        return [classify_line(line)]


def classify_line(line: str) -> Event:
    """One complete line that does not announce a second one."""
    if line == "OK":
        return Ok()
    if line in _FINAL_ERRORS:
        return ErrorResult("ERROR", None, line)
    if (m := _ERROR_RE.match(line)) is not None:
        return _error(m.group(1), m.group(2).strip())
    if line == "RING":
        return Ring()
    if (m := _STORED_RE.match(line)) is not None:
        cls = NewSms if m.group(1) == "CMTI" else ReportStored
        return cls(storage=m.group(2), index=int(m.group(3)))
    if line.startswith("+CDS:"):
        return StatusReport(fields=split_fields(line[5:]))
    if line.startswith(_URC_PREFIXES):
        return Unsolicited(line)
    return Info(line)


def _has_second_line(line: str) -> bool:
    # PDU mode: "+CMT: [<alpha>],<length>" and "+CDS: <length>" precede the
    # PDU; text mode's +CMT precedes the text, its +CDS carries everything.
    if line.startswith("+CMT:"):
        return True
    return line.startswith("+CDS:") and len(split_fields(line[5:])) == 1


def _error(kind: str, detail: str) -> ErrorResult:
    # CMEE=1 gives numbers, CMEE=2 words; some modems mix both regardless.
    code = int(detail) if detail.isdigit() else None
    return ErrorResult("CME" if kind == "CME" else "CMS", code, "" if code is not None else detail)


def _line_end(buf: bytearray) -> int:
    cr, lf = buf.find(b"\r"), buf.find(b"\n")
    if cr < 0:
        return lf
    return cr if lf < 0 else min(cr, lf)


def _clean(text: str) -> str:
    # Ctrl-Z and ESC come back in an echoed PDU; NULs appear after a reset.
    return text.strip().strip("\x1a\x1b\x00").strip()


def split_fields(text: str) -> tuple[str, ...]:
    """`1,"SM",,"a,b"` -> ('1', 'SM', '', 'a,b'): AT parameter lists, quotes kept out."""
    fields: list[str] = []
    current: list[str] = []
    quoted = False
    for char in text.strip():
        if char == '"':
            quoted = not quoted
        elif char == "," and not quoted:
            fields.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    fields.append("".join(current).strip())
    return tuple(fields)


def parameters(line: str, prefix: str) -> tuple[str, ...] | None:
    """Fields of `+PREFIX: a,b` or None when the line is something else."""
    head = prefix + ":"
    if not line.startswith(head):
        return None
    return split_fields(line[len(head):])
