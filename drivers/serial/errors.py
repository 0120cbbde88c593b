"""What a modem's error means for the message: retry elsewhere, or give up.

+CME ERROR codes are 3GPP TS 27.007 §9.2; +CMS ERROR codes are TS 27.005
§3.2.5, whose 0-127 are the network's RP-cause (TS 24.011 Annex E-2) and
128-255 the SMSC's TP-FCS (TS 23.040 §9.2.3.22). Only what is wrong with
the message itself (a number that does not exist, a barred destination, a
PDU the network refuses) is permanent; the state of the SIM, the modem or the
network is transient, because another channel may well send the message.
"""

from __future__ import annotations

from drivers.base import ChannelError, PermanentError, TransientError
from drivers.serial.at import ErrorResult

T, P = True, False  # transient, permanent

CME: dict[int, tuple[str, bool]] = {
    0: ("phone failure", T), 3: ("operation not allowed", T),
    4: ("operation not supported", T), 10: ("SIM not inserted", T),
    11: ("SIM PIN required", T), 12: ("SIM PUK required", T), 13: ("SIM failure", T),
    14: ("SIM busy", T), 15: ("SIM wrong", T), 16: ("incorrect password", T),
    17: ("SIM PIN2 required", T), 18: ("SIM PUK2 required", T), 20: ("memory full", T),
    21: ("invalid index", T), 22: ("not found", T), 23: ("memory failure", T),
    30: ("no network service", T), 31: ("network timeout", T),
    32: ("network not allowed - emergency calls only", T), 100: ("unknown", T),
}

CMS: dict[int, tuple[str, bool]] = {
    1: ("unassigned (unallocated) number", P), 8: ("operator determined barring", P),
    10: ("call barred", P), 21: ("short message transfer rejected", P),
    27: ("destination out of service", T), 28: ("unidentified subscriber", P),
    29: ("facility rejected", P), 30: ("unknown subscriber", P),
    38: ("network out of order", T), 41: ("temporary failure", T), 42: ("congestion", T),
    47: ("resources unavailable, unspecified", T),
    50: ("requested facility not subscribed", P),
    69: ("requested facility not implemented", P),
    81: ("invalid short message transfer reference value", T),
    95: ("invalid message, unspecified", P), 96: ("invalid mandatory information", P),
    97: ("message type non-existent or not implemented", P),
    98: ("message not compatible with short message protocol state", T),
    99: ("information element non-existent or not implemented", P),
    111: ("protocol error, unspecified", T), 127: ("interworking, unspecified", T),
    128: ("telematic interworking not supported", P),
    129: ("short message type 0 not supported", P), 130: ("cannot replace short message", P),
    143: ("unspecified TP-PID error", P), 144: ("data coding scheme not supported", P),
    145: ("message class not supported", P), 159: ("unspecified TP-DCS error", P),
    160: ("command cannot be actioned", P), 161: ("command unsupported", P),
    175: ("unspecified TP-Command error", P), 176: ("TPDU not supported", P),
    192: ("SC busy", T), 193: ("no SC subscription", T), 194: ("SC system failure", T),
    195: ("invalid SME address", P), 196: ("destination SME barred", P),
    197: ("SM rejected-duplicate SM", P), 198: ("TP-VPF not supported", P),
    199: ("TP-VP not supported", P), 208: ("SIM SMS storage full", T),
    209: ("no SMS storage capability in SIM", T), 210: ("error in MS", T),
    211: ("memory capacity exceeded", T), 212: ("SIM application toolkit busy", T),
    213: ("SIM data download error", T), 255: ("unspecified error cause", T),
    300: ("ME failure", T), 301: ("SMS service of ME reserved", T),
    302: ("operation not allowed", T), 303: ("operation not supported", T),
    304: ("invalid PDU mode parameter", P), 305: ("invalid text mode parameter", P),
    310: ("SIM not inserted", T), 311: ("SIM PIN required", T),
    312: ("PH-SIM PIN required", T), 313: ("SIM failure", T), 314: ("SIM busy", T),
    315: ("SIM wrong", T), 316: ("SIM PUK required", T), 317: ("SIM PIN2 required", T),
    318: ("SIM PUK2 required", T), 320: ("memory failure", T),
    321: ("invalid memory index", T), 322: ("memory full", T),
    330: ("SMSC address unknown", T), 331: ("no network service", T),
    332: ("network timeout", T), 340: ("no +CNMA acknowledgement expected", T),
    500: ("unknown error", T),
}

# Verbose texts (CMEE=2) that are not worded as in the tables above but
# appear in modem firmwares; matched as lower-case substrings.
_PERMANENT_WORDS = (
    "invalid destination", "unassigned", "unallocated", "invalid sme address", "barred",
    "unknown subscriber", "invalid pdu", "invalid message", "invalid mandatory",
    "invalid number", "invalid phone number", "not supported by destination",
)
_BY_NAME = {name.lower(): transient for table in (CME, CMS) for name, transient in
            table.values()}


def meaning(err: ErrorResult) -> tuple[str, bool]:
    """(human description, transient?) of a final error result."""
    if err.kind == "ERROR":
        # A bare ERROR says nothing about the message; often a busy modem.
        return err.text or "ERROR", True
    table = CME if err.kind == "CME" else CMS
    if err.code is not None:
        name, transient = table.get(err.code, (f"error {err.code}", True))
        return f"{err} ({name})", transient
    text = err.text.lower()
    if text in _BY_NAME:
        return str(err), _BY_NAME[text]
    return str(err), not any(word in text for word in _PERMANENT_WORDS)


def channel_error(err: ErrorResult, doing: str) -> ChannelError:
    """The exception a send raises for this result (TransientError or PermanentError)."""
    text, transient = meaning(err)
    code = f"{err.kind}:{err.code if err.code is not None else err.text}"
    cls = TransientError if transient else PermanentError
    return cls(f"{doing}: {text}", code=code)


# TS 23.040 §9.2.3.15 TP-Status of a status report.
_STATUS_NAMES = {
    0x00: "received by the recipient", 0x01: "forwarded, delivery unconfirmed",
    0x02: "replaced by the service centre", 0x20: "congestion", 0x21: "recipient busy",
    0x22: "no response from recipient", 0x23: "service rejected",
    0x24: "quality of service not available", 0x25: "error in recipient",
    0x40: "remote procedure error", 0x41: "incompatible destination",
    0x42: "connection rejected by recipient", 0x43: "not obtainable",
    0x44: "quality of service not available", 0x45: "no interworking available",
    0x46: "validity period expired", 0x47: "deleted by the sender",
    0x48: "deleted by the service centre", 0x49: "message does not exist",
}


def report_status(status: int) -> tuple[bool, bool, str]:
    """(delivered, final, description) of a TP-Status.

    0x00-0x1F: done, delivered. 0x20-0x3F: the centre is still trying (not
    final). 0x40-0x5F: permanent error. 0x60-0x7F: temporary error after
    which the centre gave up, so the message failed all the same.
    """
    name = _STATUS_NAMES.get(status, f"status {status:#04x}")
    if status < 0x20:
        return True, True, name
    if status < 0x40:
        return False, False, f"still trying: {name}"
    return False, True, f"{name} (TP-Status {status:#04x})"
