"""Text mode (AT+CMGF=1), for modems whose PDU mode is missing or broken.

Text mode cannot concatenate: a message goes out only if it fits one part.
Text in the safe ASCII subset goes as is (character set "IRA"); anything
else goes as UCS-2 in hex (AT+CSMP data coding 8), which every text-mode
modem accepts whatever its character set, where "GSM" is ambiguous: some
firmwares read it as raw septets, so "@" (0x00) would end the string.
Inbound parts of a long message arrive as separate messages here, because
text mode hides the concatenation header.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass

from gsmmodem.pdu import TEXT_MODE

from drivers.base import PermanentError
from drivers.serial.at import split_fields
from drivers.serial.pdu import UCS2, alphabet, decode_payload
from drivers.sms import segments

# TP-FO for AT+CSMP: SMS-SUBMIT with a relative validity period, and the
# status report request bit when reports are wanted.
FO_SUBMIT = 0x11
FO_REPORT = 0x20
VALIDITY = 167  # one day (TS 23.040 §9.2.3.12.1)
# A CR inside the text makes the modem prompt again mid-message.
_SAFE = frozenset(TEXT_MODE) - {"\r"}


@dataclass(frozen=True, slots=True)
class TextSubmit:
    dcs: int  # 0 GSM-7, 8 UCS-2 (hex body)
    body: str


@dataclass(frozen=True, slots=True)
class TextInbound:
    sender: str
    text: str
    sent_at: str
    provider_ref: str


@dataclass(frozen=True, slots=True)
class TextReport:
    reference: int
    recipient: str
    status: int


def csmp(status_report: bool, dcs: int) -> str:
    fo = FO_SUBMIT | (FO_REPORT if status_report else 0)
    return f"AT+CSMP={fo},{VALIDITY},0,{dcs}"


def submit(text: str) -> TextSubmit:
    """What to write after the AT+CMGS prompt; PermanentError if it needs two parts."""
    if len(text) <= segments.GSM7_SINGLE_SEPTETS and _SAFE.issuperset(text):
        return TextSubmit(0, text)
    units = text.encode("utf-16-be")
    if len(units) // 2 <= segments.UCS2_SINGLE_UNITS:
        return TextSubmit(8, units.hex().upper())
    raise PermanentError("too long for one SMS, and this modem is in text mode, which "
                         "cannot concatenate parts", code="text-mode-multipart")


def parse_cmgr(header: str, body: str) -> TextInbound | TextReport:
    """`+CMGR: ...` (with AT+CSDH=1) and the line after it."""
    fields = split_fields(header.split(":", 1)[1])
    if _is_report(fields):
        return TextReport(int(fields[2]), fields[3], int(fields[7]))
    sender, sent_at = fields[1], fields[3] if len(fields) > 3 else ""
    dcs = int(fields[7]) if len(fields) > 7 and fields[7].isdigit() else 0
    text = _decode_body(dcs, body)
    digest = hashlib.sha256(f"text|{header}|{body}".encode()).hexdigest()[:32]
    return TextInbound(sender, text, sent_at, digest)


def _is_report(fields: tuple[str, ...]) -> bool:
    # +CMGR: <stat>,<fo>,<mr>,<ra>,<tora>,<scts>,<dt>,<st> -- a number where a
    # deliver has the sender, and a first octet that says STATUS-REPORT.
    return (len(fields) == 8 and fields[1].isdigit() and int(fields[1]) & 0x03 == 0x02)


def _decode_body(dcs: int, body: str) -> str:
    if alphabet(dcs) == UCS2:
        try:
            return decode_payload(UCS2, bytes.fromhex(body))
        except ValueError:
            return body  # already converted by the modem
    return body


def parse_cds(fields: tuple[str, ...]) -> TextReport:
    """+CDS: <fo>,<mr>,[<ra>],[<tora>],<scts>,<dt>,<st>"""
    return TextReport(int(fields[1]), fields[2], int(fields[6]))


# -- the simulator's side -------------------------------------------------------------


def format_scts(stamp: dt.datetime) -> str:
    """'24/11/24,10:00:00-12': the service-centre time stamp as text mode shows it."""
    offset = stamp.utcoffset() or dt.timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    return stamp.strftime("%y/%m/%d,%H:%M:%S") + f"{quarters:+03d}"


def cmgr_deliver(stat: str, sender: str, stamp: dt.datetime, dcs: int, text: str) -> list[str]:
    body = text.encode("utf-16-be").hex().upper() if dcs == 8 else text
    toa = 145 if sender.startswith("+") else 129
    return [f'+CMGR: "{stat}","{sender}",,"{format_scts(stamp)}",{toa},4,0,{dcs},'
            f'"+59899000000",145,{len(text)}', body]


def report_fields(mr: int, recipient: str, status: int, submitted: dt.datetime,
                  done: dt.datetime) -> str:
    return (f'6,{mr},"{recipient}",145,"{format_scts(submitted)}",'
            f'"{format_scts(done)}",{status}')


def decode_submit_body(dcs: int, body: str) -> str:
    return _decode_body(dcs, body)
