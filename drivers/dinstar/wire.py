"""The Dinstar "new version" HTTP API as data, without I/O.

JSON in, frozen records out; requests out as plain dicts. Sources and what is
unverified: docs/dinstar.md.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any, Literal

from drivers.sms.segments import is_gsm7

SEND_SMS = "/api/send_sms"
QUERY_RESULT = "/api/query_sms_result"
QUERY_DELIVER = "/api/query_sms_deliver_status"
QUERY_INCOMING = "/api/query_incoming_sms"
PORT_INFO = "/api/get_port_info"
STOP_SMS = "/api/stop_sms"

ACCEPTED = 202
OK = 200
MAX_RECIPIENTS = 128
MAX_TEXT_BYTES = 1500
MAX_QUERY_IDS = 32  # numbers / user ids per query_sms_result request
MAX_NUMBER_BYTES = 24
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # device local time

CODE_TEXT = {
    400: "request format not valid",
    403: "API refused (HTTP method, or the new-version API not enabled)",
    404: "no such path or task",
    413: "too many recipients or text over 1500 bytes",
    486: "port busy",
    500: "device error",
    503: "port not registered on the network",
    550: "no port available for sending",
}

# Registration strings differ between firmwares and between the API and the web UI.
_REGISTERED = {"register_ok", "registered", "mobile registered"}
_NUMBER = re.compile(r"^\+?\d{1,24}$")

Status = Literal["SENDING", "SENT_OK", "DELIVERED", "FAILED"]


class ApiError(Exception):
    """The device answered with an `error_code` other than the one expected."""

    def __init__(self, code: int | None, path: str) -> None:
        text = CODE_TEXT.get(code or 0, "undocumented code")
        super().__init__(f"{path}: error_code {code} ({text})")
        self.code = code
        self.path = path


@dataclass(frozen=True, slots=True)
class Accepted:
    task_id: int | None
    in_queue: int | None
    sn: str


@dataclass(frozen=True, slots=True)
class SmsResult:
    port: int
    user_id: int | None
    number: str
    time: str
    status: str
    count: int
    succ_count: int
    ref_id: int | None
    imsi: str = ""


@dataclass(frozen=True, slots=True)
class DeliverStatus:
    port: int
    number: str
    time: str
    ref_id: int
    status_code: int
    imsi: str = ""


@dataclass(frozen=True, slots=True)
class IncomingSms:
    incoming_sms_id: int | None
    port: int
    number: str
    text: str
    timestamp: str
    smsc: str = ""
    imsi: str = ""


@dataclass(frozen=True, slots=True)
class PortInfo:
    port: int
    reg: str
    number: str = ""
    signal: int | None = None
    imsi: str = ""

    @property
    def registered(self) -> bool:
        return is_registered(self.reg)


@dataclass(frozen=True, slots=True)
class Push:
    """One push from the device: routed on its top-level key."""

    sn: str
    results: tuple[SmsResult, ...] = ()
    deliveries: tuple[DeliverStatus, ...] = ()
    incoming: tuple[IncomingSms, ...] = ()


@dataclass(frozen=True, slots=True)
class Fate:
    """What one TP-Status (3GPP TS 23.040 §9.2.3.15) means for a message."""

    delivered: bool
    final: bool
    error: str | None = None


# -- requests -------------------------------------------------------------


def wire_number(destination: str, prefix: str) -> str | None:
    """E.164 -> what the device dials; None when the device would refuse it."""
    number = prefix + destination[1:] if destination.startswith("+") else destination
    return number if _NUMBER.match(number) else None


def from_wire_number(number: str, prefix: str) -> str:
    """Back to E.164 when the number says how; otherwise as it is."""
    if number.startswith("+"):
        return number
    if prefix in ("+", ""):
        return "+" + number
    return "+" + number[len(prefix):] if number.startswith(prefix) else number


def same_number(a: str, b: str) -> bool:
    # Reports may spell the destination differently than it was sent
    # ("+59898..." vs "59898..." vs "098..."): compare the subscriber digits.
    da, db = re.sub(r"\D", "", a), re.sub(r"\D", "", b)
    tail = min(len(da), len(db), 8)
    return tail > 0 and da[-tail:] == db[-tail:]


def encoding_for(text: str, configured: str) -> str:
    if configured != "auto":
        return configured
    return "gsm-7bit" if is_gsm7(text) else "unicode"


def send_body(text: str, port: int, number: str, user_id: int, *, encoding: str,
              report: bool) -> dict[str, Any]:
    # One recipient, one port: the router does the spreading, so the port that
    # sends is the channel the spool records.
    return {"text": text, "port": [port], "encoding": encoding,
            "request_status_report": report,
            "param": [{"number": number, "user_id": user_id}]}


def device_time(ts: float) -> str:
    return time.strftime(TIME_FORMAT, time.localtime(ts))


def parse_device_time(text: str) -> float | None:
    try:
        return time.mktime(time.strptime(text.strip(), TIME_FORMAT))
    except (ValueError, OverflowError, AttributeError):
        return None


# -- responses ------------------------------------------------------------


def _int(value: Any, default: int | None = None) -> int | None:
    # Some firmwares quote numbers. A push can say anything: 1e400 is an
    # infinite float (OverflowError), 1e20 a port no device has.
    try:
        number = int(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if abs(number) < 2**63 else default


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def error_code(body: Any) -> int | None:
    return _int(body.get("error_code")) if isinstance(body, dict) else None


def check(body: Any, path: str, expected: int = OK) -> dict[str, Any]:
    if not isinstance(body, dict) or error_code(body) != expected:
        raise ApiError(error_code(body), path)
    return body


def parse_accepted(body: Any) -> Accepted:
    ok = check(body, SEND_SMS, ACCEPTED)
    return Accepted(_int(ok.get("task_id")), _int(ok.get("sms_in_queue")), _str(ok.get("sn")))


def _result(item: dict[str, Any]) -> SmsResult:
    return SmsResult(port=_int(item.get("port"), -1) or 0, user_id=_int(item.get("user_id")),
                     number=_str(item.get("number")), time=_str(item.get("time")),
                     status=_str(item.get("status")).upper(),
                     count=_int(item.get("count"), 1) or 1,
                     succ_count=_int(item.get("succ_count"), 0) or 0,
                     ref_id=_int(item.get("ref_id")), imsi=_str(item.get("imsi")))


def _delivery(item: dict[str, Any]) -> DeliverStatus | None:
    ref, code = _int(item.get("ref_id")), _int(item.get("status_code"))
    if ref is None or code is None:
        return None
    return DeliverStatus(port=_int(item.get("port"), 0) or 0, number=_str(item.get("number")),
                         time=_str(item.get("time")), ref_id=ref, status_code=code,
                         imsi=_str(item.get("imsi")))


def _incoming(item: dict[str, Any]) -> IncomingSms:
    return IncomingSms(incoming_sms_id=_int(item.get("incoming_sms_id")),
                       port=_int(item.get("port"), 0) or 0, number=_str(item.get("number")),
                       text=_str(item.get("text")), timestamp=_str(item.get("timestamp")),
                       smsc=_str(item.get("smsc")), imsi=_str(item.get("imsi")))


def _items(body: dict[str, Any], key: str) -> list[dict[str, Any]]:
    items = body.get(key) or []
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def parse_results(body: Any) -> list[SmsResult]:
    return [_result(i) for i in _items(check(body, QUERY_RESULT), "result")]


def parse_deliveries(body: Any) -> list[DeliverStatus]:
    found = (_delivery(i) for i in _items(check(body, QUERY_DELIVER), "result"))
    return [d for d in found if d is not None]


def parse_incoming(body: Any) -> list[IncomingSms]:
    return [_incoming(i) for i in _items(check(body, QUERY_INCOMING), "sms")]


def parse_port_info(body: Any) -> list[PortInfo]:
    ok = check(body, PORT_INFO)
    return [PortInfo(port=_int(i.get("port"), -1) or 0, reg=_str(i.get("reg")),
                     number=_str(i.get("number")), signal=_int(i.get("signal")),
                     imsi=_str(i.get("imsi"))) for i in _items(ok, "info")]


def parse_push(body: Any) -> Push:
    if not isinstance(body, dict):
        raise ValueError("push body is not a JSON object")
    deliveries = (_delivery(i) for i in _items(body, "sms_deliver_status"))
    return Push(sn=_str(body.get("sn")),
                results=tuple(_result(i) for i in _items(body, "sms_result")),
                deliveries=tuple(d for d in deliveries if d is not None),
                incoming=tuple(_incoming(i) for i in _items(body, "sms")))


# -- meaning --------------------------------------------------------------


def is_registered(reg: str) -> bool:
    return reg.strip().lower() in _REGISTERED


def signal_dbm(signal: int | None) -> int | None:
    # The port reports the modem's CSQ (0..31); 99 means unknown.
    if signal is None or not 0 <= signal <= 31:
        return None
    return -113 + 2 * signal


def tp_status(code: int) -> Fate:
    if code == 0:
        return Fate(delivered=True, final=True)
    if code < 0x20:
        # "Transaction completed" without confirmation (forwarded, replaced):
        # nothing more will come, and it is not proof of delivery.
        return Fate(False, False, f"completed, delivery not confirmed (TP-Status {code:#04x})")
    if code < 0x40:
        return Fate(False, False, f"temporary error, SC still trying (TP-Status {code:#04x})")
    return Fate(False, True, f"not delivered (TP-Status {code:#04x})")
