"""SMS PDUs (3GPP TS 23.040) for AT+CMGS, AT+CMGR and +CDS, both directions.

`gsmmodem.pdu` is used where it is right: semi-octet numbers, septet
packing for a SUBMIT, the concatenation information element, and the
STATUS-REPORT layout. It is replaced where it is not: its encoder raises on
text outside the BMP (`encodeSmsSubmitPdu(n, "hi 😀")` -> ValueError), its
GSM-7 table has a backtick where the spec has a section sign, its UCS-2
decoder splits surrogate pairs, and its septet unpacker drops an "@" that
ends on an octet boundary. User text is cut by `drivers.sms.segments` and
decoded with the `gsm0338` codec or as UTF-16-BE.

The simulator uses the other direction (DELIVER and STATUS-REPORT out,
SUBMIT in), so both sides of the pty speak the same, tested layout.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass

import gsm0338  # noqa: F401  -- registers the "gsm03.38" codec
from gsmmodem import pdu as gp
from gsmmodem.exceptions import EncodingError

from drivers.sms import segments

GSM7, DATA8, UCS2 = "gsm7", "data8", "ucs2"
_CONCAT_8BIT = 0x00
_CONCAT_16BIT = 0x08


class PduError(ValueError):
    """The PDU cannot be read (truncated, unknown type, bad field)."""


@dataclass(frozen=True, slots=True)
class Concat:
    """Concatenation header: part `seq` of `total` of message `ref`."""

    ref: int
    total: int
    seq: int


@dataclass(frozen=True, slots=True)
class SubmitPdu:
    """One SMS-SUBMIT as AT+CMGS wants it: hex with the SMSC field, and the
    TPDU length (octets after that field) for `AT+CMGS=<length>`."""

    hex: str
    tpdu_length: int


@dataclass(frozen=True, slots=True)
class Message:
    """A decoded SMS-DELIVER (inbound) or SMS-SUBMIT (what the modem sends)."""

    address: str  # the sender of a DELIVER, the recipient of a SUBMIT
    encoding: str
    payload: bytes  # unpacked septets (gsm7), UTF-16-BE (ucs2) or octets
    concat: Concat | None = None
    timestamp: dt.datetime | None = None
    reference: int = 0  # TP-MR of a SUBMIT
    status_report: bool = False  # TP-SRR of a SUBMIT

    @property
    def text(self) -> str:
        return decode_payload(self.encoding, self.payload)


@dataclass(frozen=True, slots=True)
class StatusReportPdu:
    reference: int  # TP-MR of the SUBMIT it reports on
    recipient: str
    status: int  # TP-Status


# -- sending --------------------------------------------------------------------


def build_submit(destination: str, text: str, *, concat_ref: int, status_report: bool,
                 smsc: str | None = None) -> list[SubmitPdu]:
    """SUBMIT PDUs for `text`, one per part; TP-MR 0 lets the modem number them."""
    cut = segments.split(text)
    first = 0x01 | (0x20 if status_report else 0)
    head = _smsc_field(smsc)
    address = encode_address(destination)
    dcs = 0x08 if cut.encoding == "ucs2" else 0x00
    pdus = []
    for seq, part in enumerate(cut.parts, start=1):
        concat = Concat(concat_ref & 0xFF, cut.count, seq) if cut.count > 1 else None
        fo = first | (0x40 if concat else 0)
        tpdu = bytes([fo, 0x00]) + address + bytes([0x00, dcs])
        tpdu += _user_data(GSM7 if dcs == 0 else UCS2, part, concat)
        pdus.append(SubmitPdu((head + tpdu).hex().upper(), len(tpdu)))
    return pdus


def _smsc_field(smsc: str | None) -> bytes:
    if not smsc:
        return b"\x00"  # the SMSC stored in the SIM (AT+CSCA)
    digits = smsc.lstrip("+")
    octets = bytes(gp.encodeSemiOctets(digits))
    return bytes([len(octets) + 1, 0x91 if smsc.startswith("+") else 0x81]) + octets


def encode_address(number: str) -> bytes:
    """TP-DA / TP-OA: international, national digits, or alphanumeric."""
    if number.startswith("+") and number[1:].isdigit():
        digits, toa = number[1:], 0x91
    elif number.isdigit():
        digits, toa = number, 0x81
    else:
        septets = _encode_gsm7(number)
        packed = bytes(gp.packSeptets(bytearray(septets)))
        return bytes([math.ceil(len(septets) * 7 / 4), 0xD0]) + packed
    return bytes([len(digits), toa]) + bytes(gp.encodeSemiOctets(digits))


def _user_data(encoding: str, payload: bytes, concat: Concat | None) -> bytes:
    """TP-UDL + TP-UD, with the concatenation header when there is one."""
    udh = b""
    if concat is not None:
        ie = gp.Concatenation()
        ie.reference, ie.parts, ie.number = concat.ref, concat.total, concat.seq
        udh = bytes(ie.encode())
        udh = bytes([len(udh)]) + udh
    if encoding != GSM7:
        return bytes([len(udh) + len(payload)]) + udh + payload
    header_septets = math.ceil(len(udh) * 8 / 7)
    # gsmmodem's packSeptets takes the bit offset left by the header, which
    # is how its own (correct) multipart encoder calls it.
    shift = (len(udh) * 8) % 7
    packed = bytes(gp.packSeptets(bytearray(payload), padBits=shift))
    return bytes([header_septets + len(payload)]) + udh + packed


def _encode_gsm7(text: str) -> bytes:
    return text.encode("gsm03.38")


# -- receiving --------------------------------------------------------------------


class _Reader:
    def __init__(self, hex_pdu: str) -> None:
        try:
            self.data = bytes.fromhex(hex_pdu.strip())
        except ValueError as err:
            raise PduError(f"not a hex PDU: {hex_pdu[:40]!r}") from err
        self.pos = 0

    def byte(self) -> int:
        return self.take(1)[0]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise PduError("PDU is truncated")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def rest(self) -> bytes:
        return self.data[self.pos:]


def first_octet(hex_pdu: str) -> int:
    """TP-MTI and flags, after the SMSC field (which AT+CMGR includes)."""
    reader = _Reader(hex_pdu)
    reader.take(reader.byte())
    return reader.byte()


def is_status_report(hex_pdu: str) -> bool:
    return first_octet(hex_pdu) & 0x03 == 0x02


def parse_deliver(hex_pdu: str) -> Message:
    """An SMS-DELIVER read by AT+CMGR / AT+CMGL / +CMT (with the SMSC field)."""
    r = _Reader(hex_pdu)
    r.take(r.byte())  # SMSC
    fo = r.byte()
    if fo & 0x03 != 0x00:
        raise PduError(f"not an SMS-DELIVER (first octet {fo:#04x})")
    sender = _address(r)
    r.byte()  # TP-PID
    encoding = alphabet(r.byte())
    stamp = _timestamp(r.take(7))
    payload, concat = _read_user_data(r, encoding, bool(fo & 0x40))
    return Message(sender, encoding, payload, concat, stamp)


def parse_submit(hex_pdu: str) -> Message:
    """An SMS-SUBMIT as written after the AT+CMGS prompt (with the SMSC field)."""
    r = _Reader(hex_pdu)
    r.take(r.byte())
    fo = r.byte()
    if fo & 0x03 != 0x01:
        raise PduError(f"not an SMS-SUBMIT (first octet {fo:#04x})")
    reference = r.byte()
    recipient = _address(r)
    r.byte()
    encoding = alphabet(r.byte())
    r.take({0: 0, 2: 1}.get((fo >> 3) & 0x03, 7))  # TP-VP: none, relative, or 7 octets
    payload, concat = _read_user_data(r, encoding, bool(fo & 0x40))
    return Message(recipient, encoding, payload, concat, None, reference, bool(fo & 0x20))


def parse_status_report(hex_pdu: str) -> StatusReportPdu:
    """An SMS-STATUS-REPORT (+CDS, or AT+CMGR after +CDSI)."""
    try:
        found = gp.decodeSmsPdu(hex_pdu)
    except (EncodingError, ValueError, StopIteration, IndexError) as err:
        raise PduError(f"unreadable status report: {err}") from err
    if found.get("type") != "SMS-STATUS-REPORT":
        raise PduError(f"not a status report: {found.get('type')}")
    return StatusReportPdu(found["reference"], found["number"] or "", found["status"])


def alphabet(dcs: int) -> str:
    """TS 23.038 §4: which alphabet a data coding scheme selects."""
    group = dcs & 0xF0
    if group in (0xC0, 0xD0):  # message waiting indication, GSM-7
        return GSM7
    if group == 0xE0:  # message waiting indication, UCS-2
        return UCS2
    if group == 0xF0:
        return DATA8 if dcs & 0x04 else GSM7
    coding = (dcs >> 2) & 0x03
    return {0: GSM7, 1: DATA8, 2: UCS2}.get(coding, GSM7)


def decode_payload(encoding: str, payload: bytes) -> str:
    if encoding == GSM7:
        return payload.decode("gsm03.38", "replace")
    if encoding == UCS2:
        return payload.decode("utf-16-be", "replace")
    return payload.decode("latin-1")


def _address(r: _Reader) -> str:
    length, toa = r.byte(), r.byte()
    raw = r.take((length + 1) // 2)
    if toa & 0x70 == 0x50:  # alphanumeric, GSM-7 packed
        return decode_payload(GSM7, unpack_septets(raw, length * 4 // 7))
    digits = gp.decodeSemiOctets(bytearray(raw))[:length]
    return ("+" if toa & 0x70 == 0x10 else "") + digits


def _timestamp(raw: bytes) -> dt.datetime | None:
    digits = gp.decodeSemiOctets(bytearray(raw[:6]))
    tz = ((raw[6] & 0x0F) << 4) | (raw[6] >> 4)
    try:
        quarters = int(f"{tz & 0x7F:02x}")
        offset = dt.timedelta(minutes=15 * quarters) * (-1 if tz & 0x80 else 1)
        return dt.datetime.strptime(digits, "%y%m%d%H%M%S").replace(
            tzinfo=dt.timezone(offset))
    except ValueError:
        return None  # some networks send nonsense here; the text still counts


def _read_user_data(r: _Reader, encoding: str, udhi: bool) -> tuple[bytes, Concat | None]:
    udl = r.byte()
    ud = r.rest()
    header_len = ud[0] + 1 if udhi and ud else 0
    concat = _concat(ud[1:header_len]) if header_len else None
    if encoding == GSM7:
        septets = unpack_septets(ud, udl)
        return septets[math.ceil(header_len * 8 / 7):], concat
    if len(ud) < udl:
        raise PduError("user data is truncated")
    return ud[header_len:udl], concat


def _concat(header: bytes) -> Concat | None:
    elements = iter(header)
    while True:
        try:
            ie = gp.InformationElement.decode(elements)
        except StopIteration:
            return None
        if ie.id in (_CONCAT_8BIT, _CONCAT_16BIT) and ie.parts:
            return Concat(ie.reference, ie.parts, ie.number)


def unpack_septets(octets: bytes, count: int) -> bytes:
    """The first `count` septets, packed little-endian as TS 23.038 §6.1.2.1."""
    if count * 7 > len(octets) * 8:
        raise PduError("user data is truncated")
    bits = int.from_bytes(octets, "little")
    return bytes((bits >> (7 * i)) & 0x7F for i in range(count))


# -- the simulator's side --------------------------------------------------------


def build_deliver(sender: str, text: str, *, stamp: dt.datetime, concat_ref: int,
                  smsc: str | None = None) -> list[str]:
    """SMS-DELIVER PDUs (hex, with the SMSC field) as a network would hand them over."""
    cut = segments.split(text)
    dcs = 0x08 if cut.encoding == "ucs2" else 0x00
    out = []
    for seq, part in enumerate(cut.parts, start=1):
        concat = Concat(concat_ref & 0xFF, cut.count, seq) if cut.count > 1 else None
        fo = 0x04 | (0x40 if concat else 0)  # TP-MMS: no more messages waiting
        tpdu = bytes([fo]) + encode_address(sender) + bytes([0x00, dcs])
        tpdu += encode_timestamp(stamp)
        tpdu += _user_data(GSM7 if dcs == 0 else UCS2, part, concat)
        out.append((_smsc_field(smsc) + tpdu).hex().upper())
    return out


def build_status_report(reference: int, recipient: str, status: int, *,
                        submitted: dt.datetime, done: dt.datetime) -> str:
    tpdu = bytes([0x06, reference & 0xFF]) + encode_address(recipient)
    tpdu += encode_timestamp(submitted) + encode_timestamp(done) + bytes([status])
    return (b"\x00" + tpdu).hex().upper()


def encode_timestamp(stamp: dt.datetime) -> bytes:
    offset = stamp.utcoffset() or dt.timedelta(0)
    quarters = int(abs(offset.total_seconds()) // 900)
    digits = stamp.strftime("%y%m%d%H%M%S") + f"{quarters:02d}"
    raw = bytearray(gp.encodeSemiOctets(digits))
    if offset < dt.timedelta(0):
        raw[6] |= 0x08  # sign bit: bit 3 of the swapped time-zone octet
    return bytes(raw)
