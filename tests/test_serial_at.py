"""The AT line protocol without a port: bytes in, events out; what error codes mean."""

from __future__ import annotations

import pytest

from drivers.base import PermanentError, TransientError
from drivers.serial.at import (
    AtParser,
    Echo,
    ErrorResult,
    Info,
    NewSms,
    Ok,
    Prompt,
    ReportStored,
    Ring,
    SmsDirect,
    StatusReport,
    Unsolicited,
    split_fields,
)
from drivers.serial.errors import channel_error, meaning, report_status

CDS_PDU = "0006010B919598384404F0621142016534006211420165340000"


def feed_bytewise(parser: AtParser, data: bytes) -> list[object]:
    events: list[object] = []
    for i in range(len(data)):
        events += parser.feed(data[i:i + 1])
    return events


def test_style_example() -> None:
    assert AtParser().feed(b'+CMTI: "SM",3\r\n') == [NewSms(storage="SM", index=3)]


@pytest.mark.parametrize("echo", [True, False])
def test_answer_with_and_without_echo(echo: bool) -> None:
    parser = AtParser()
    parser.sent("AT+CSQ")
    wire = (b"AT+CSQ\r" if echo else b"") + b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n"
    expected = [Echo("AT+CSQ")] if echo else []
    assert parser.feed(wire) == [*expected, Info("+CSQ: 20,99"), Ok()]


def test_events_do_not_depend_on_how_bytes_arrive() -> None:
    wire = b'ATI\r\r\nModemSim\r\n\r\n+CMTI: "ME",12\r\n\r\nOK\r\n'
    whole = AtParser()
    whole.sent("ATI")
    split = AtParser()
    split.sent("ATI")
    assert whole.feed(wire) == feed_bytewise(split, wire) == [
        Echo("ATI"), Info("ModemSim"), NewSms("ME", 12), Ok()]


def test_unsolicited_codes_interleaved_with_an_answer() -> None:
    wire = (b'\r\n+CMGL: 1,0,,25\r\n\r\n^RSSI: 17\r\n\r\nRING\r\n\r\n+CDSI: "SR",4\r\n'
            b'\r\n+CDS: 25\r\n' + CDS_PDU.encode() + b'\r\n\r\n0791AB\r\n\r\nOK\r\n')
    assert AtParser().feed(wire) == [
        Info("+CMGL: 1,0,,25"), Unsolicited("^RSSI: 17"), Ring(), ReportStored("SR", 4),
        StatusReport(pdu=CDS_PDU), Info("0791AB"), Ok()]


def test_status_report_pdu_split_across_reads() -> None:
    parser = AtParser()
    assert parser.feed(b"\r\n+CDS: 25\r\n" + CDS_PDU[:10].encode()) == []
    assert parser.feed(CDS_PDU[10:].encode() + b"\r\n") == [StatusReport(pdu=CDS_PDU)]


def test_text_mode_status_report_is_one_line() -> None:
    line = b'+CDS: 6,46,"+59898344400",145,"24/11/24,10:00:00-12","24/11/24,10:00:05-12",0\r\n'
    [event] = AtParser().feed(line)
    assert isinstance(event, StatusReport) and event.pdu is None
    assert event.fields[1] == "46" and event.fields[2] == "+59898344400"
    assert event.fields[6] == "0"


def test_routed_message_keeps_its_pdu() -> None:
    assert AtParser().feed(b"\r\n+CMT: ,24\r\n07910000\r\n") == [
        SmsDirect(header="+CMT: ,24", body="07910000")]


def test_prompt_without_line_end_then_pdu_echo_and_result() -> None:
    parser = AtParser()
    parser.sent("AT+CMGS=23")
    assert parser.feed(b"AT+CMGS=23\r\r\n> ") == [Echo("AT+CMGS=23"), Prompt()]
    parser.sent("0011000B91")
    assert parser.feed(b"0011000B91\x1a\r\n+CMGS: 7\r\n\r\nOK\r\n") == [
        Echo("0011000B91"), Info("+CMGS: 7"), Ok()]


def test_prompt_in_two_reads() -> None:
    parser = AtParser()
    assert parser.feed(b"\r\n") == []
    assert parser.feed(b">") == [Prompt()]
    assert parser.feed(b" ") == []
    assert parser.feed(b"\r\nOK\r\n") == [Ok()]


@pytest.mark.parametrize(("line", "event"), [
    (b"ERROR", ErrorResult("ERROR", None, "ERROR")),
    (b"+CME ERROR: 14", ErrorResult("CME", 14, "")),
    (b"+CMS ERROR: 332", ErrorResult("CMS", 332, "")),
    (b"+CME ERROR: SIM busy", ErrorResult("CME", None, "SIM busy")),
    (b"+CMS ERROR: invalid destination", ErrorResult("CMS", None, "invalid destination")),
    (b"COMMAND NOT SUPPORT", ErrorResult("ERROR", None, "COMMAND NOT SUPPORT")),
])
def test_final_errors(line: bytes, event: ErrorResult) -> None:
    assert AtParser().feed(b"\r\n" + line + b"\r\n") == [event]


@pytest.mark.parametrize(("result", "transient", "words"), [
    (ErrorResult("CME", 14), True, "SIM busy"),
    (ErrorResult("CME", None, "SIM busy"), True, "SIM busy"),
    (ErrorResult("CMS", 332), True, "network timeout"),
    (ErrorResult("CMS", None, "network timeout"), True, "network timeout"),
    (ErrorResult("CMS", 42), True, "congestion"),
    (ErrorResult("CMS", 1), False, "unassigned"),
    (ErrorResult("CMS", 195), False, "invalid SME address"),
    (ErrorResult("CMS", None, "invalid destination"), False, "invalid destination"),
    (ErrorResult("CMS", 304), False, "invalid PDU mode parameter"),
    (ErrorResult("ERROR"), True, "ERROR"),
    (ErrorResult("CMS", 999), True, "error 999"),
])
def test_error_meaning(result: ErrorResult, transient: bool, words: str) -> None:
    text, is_transient = meaning(result)
    assert is_transient is transient and words in text
    err = channel_error(result, "m1 AT+CMGS")
    assert isinstance(err, TransientError if transient else PermanentError)
    assert err.code and str(err).startswith("m1 AT+CMGS: ")


@pytest.mark.parametrize(("status", "delivered", "final"), [
    (0x00, True, True), (0x01, True, True), (0x21, False, False), (0x30, False, False),
    (0x41, False, True), (0x46, False, True), (0x62, False, True)])
def test_tp_status(status: int, delivered: bool, final: bool) -> None:
    assert report_status(status)[:2] == (delivered, final)


def test_fields_keep_quoted_commas() -> None:
    assert split_fields(' 1,"SM",,"a,b"') == ("1", "SM", "", "a,b")


def test_noise_after_reset_is_not_an_answer() -> None:
    # SIMCom modules announce themselves after a reboot; none of it may be
    # taken for the answer to the command in flight.
    events = AtParser().feed(b"\r\nRDY\r\n\r\n+CFUN: 1\r\n\r\nSMS Ready\r\n\x00\r\n")
    assert all(isinstance(e, Unsolicited) for e in events) and len(events) == 3
