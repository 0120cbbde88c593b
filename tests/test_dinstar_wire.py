"""The Dinstar driver's sans-I/O parts: config, wire codec, auth, bookkeeping."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from drivers.base import ChannelEvents, DeliveryReport
from drivers.dinstar import DinstarOptions, parse_ports
from drivers.dinstar.auth import AnyAuth, digest_response, parse_challenges
from drivers.dinstar.feed import Feed, inbound_ref
from drivers.dinstar.state import DeviceState
from drivers.dinstar.tracking import Pending, SentIndex, Tracked, UserIds, part_refs
from drivers.dinstar.wire import (
    ApiError,
    IncomingSms,
    SmsResult,
    from_wire_number,
    parse_accepted,
    parse_push,
    same_number,
    tp_status,
    wire_number,
)


@pytest.mark.parametrize(("spec", "ports"), [
    ("0-3", (0, 1, 2, 3)), ("0,2,5-7", (0, 2, 5, 6, 7)), ("7", (7,)), (" 3-4, 0 ", (0, 3, 4)),
    ("0-31", tuple(range(32)))])
def test_port_ranges(spec: str, ports: tuple[int, ...]) -> None:
    assert parse_ports(spec) == ports


@pytest.mark.parametrize("spec", ["", "3-1", "0-32", "a", "1,1", "0-3,2", "-1"])
def test_bad_port_ranges_are_config_errors(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_ports(spec)
    with pytest.raises(ValidationError):
        DinstarOptions(url="http://10.0.0.5", ports=spec)


def test_options_never_show_the_password() -> None:
    opts = DinstarOptions(url="https://10.0.0.5/", password="hunter2-x", push_token="tok-9")
    assert "hunter2-x" not in repr(opts) and "tok-9" not in repr(opts)
    assert opts.base_url == "https://10.0.0.5"
    with pytest.raises(ValidationError):
        DinstarOptions(url="10.0.0.5")


@pytest.mark.parametrize(("code", "delivered", "final"), [
    (0, True, True), (1, False, False), (0x1F, False, False), (0x20, False, False),
    (0x3F, False, False), (0x40, False, True), (0x45, False, True), (0xFF, False, True)])
def test_tp_status(code: int, delivered: bool, final: bool) -> None:
    fate = tp_status(code)
    assert (fate.delivered, fate.final) == (delivered, final)
    assert (fate.error is None) == delivered


def test_digest_response_matches_rfc_2617_example() -> None:
    [challenge] = parse_challenges(['Digest realm="testrealm@host.com", qop="auth,auth-int", '
                                    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", '
                                    'opaque="5ccc069c403ebaf9f0171e9517f40e41"'])
    assert challenge.scheme == "digest"
    got = digest_response(username="Mufasa", password="Circle Of Life", method="GET",
                          uri="/dir/index.html", params=challenge.params, nc=1,
                          cnonce="0a4f113b")
    assert got == "6629fae49393a05397450978507c4ef1"


def test_anyauth_answers_in_kind_and_gives_up_on_a_repeat() -> None:
    auth = AnyAuth("admin", "pw")
    assert auth.header("GET", "/api/x") is None  # like curl --anyauth: ask first
    assert auth.learn(['Basic realm="Web Server"'])
    assert auth.header("GET", "/api/x") == "Basic YWRtaW46cHc="
    assert not auth.learn(['Basic realm="Web Server"'])  # refused
    assert auth.learn(['Digest realm="r", nonce="n1", qop="auth"'])
    first = auth.header("POST", "/api/send_sms")
    assert first and 'nc=00000001' in first and 'uri="/api/send_sms"' in first
    assert "nc=00000002" in (auth.header("POST", "/api/send_sms") or "")
    assert not auth.learn(['Digest realm="r", nonce="n1", qop="auth"'])
    assert auth.learn(['Digest realm="r", nonce="n2", qop="auth", stale=true'])
    assert "pw" not in repr(auth)


def test_numbers_on_the_wire() -> None:
    assert wire_number("+59898344484", "+") == "+59898344484"
    assert wire_number("+59898344484", "00") == "0059898344484"
    assert wire_number("+59898344484", "") == "59898344484"
    assert wire_number("+5989834448412345678901234", "+") is None  # over 24 bytes
    assert from_wire_number("0059898344484", "00") == "+59898344484"
    assert from_wire_number("59898344484", "+") == "+59898344484"
    assert same_number("+59898344484", "098344484")
    assert not same_number("+59898344484", "+59898344485")


def test_send_answer_other_than_202_is_an_api_error() -> None:
    assert parse_accepted({"error_code": 202, "sn": "s", "task_id": "7"}).task_id == 7
    with pytest.raises(ApiError) as err:
        parse_accepted({"error_code": 550, "sn": "s"})
    assert err.value.code == 550 and "no port available" in str(err.value)


def test_push_is_routed_on_its_top_level_key() -> None:
    push = parse_push({"sn": "x", "sms_deliver_status": [
        {"port": 1, "number": "10086", "time": "2016-07-12 15:46:53", "ref_id": 215,
         "status_code": 0}, {"port": 1, "number": "10086"}]})
    assert [d.ref_id for d in push.deliveries] == [215] and not push.results
    push = parse_push({"sn": "x", "sms": [{"incoming_sms_id": 1, "port": 1, "number": "6717",
                                           "timestamp": "2016-07-12 15:46:18", "text": "t"}]})
    assert push.incoming[0].text == "t"
    assert not parse_push({"sn": "x", "ussd": [{"port": 1, "text": "Thank you!"}]}).incoming
    with pytest.raises(ValueError):
        parse_push(["not", "an", "object"])


async def test_pending_matches_pushes_without_user_id_by_port_and_number() -> None:
    pending = Pending()
    entry = pending.add(41, 2, "+59898344484")
    assert pending.resolve(_result(port=2, user_id=None, status="SENDING"))
    assert not entry.future.done()
    assert not pending.resolve(_result(port=3, user_id=None, status="SENT_OK"))
    assert pending.resolve(_result(port=2, user_id=None, status="SENT_OK"))
    assert entry.future.result().status == "SENT_OK"


def test_multipart_settles_when_every_part_has_reported() -> None:
    index = SentIndex(window_s=60)
    entry = _tracked(refs=part_refs(255, 3))
    index.add(entry)
    assert entry.refs == (255, 0, 1)
    assert index.settle(entry, 255, tp_status(0)) is None
    assert index.settle(entry, 0, tp_status(0x21)) == tp_status(0x21)  # interim
    assert index.by_ref(1, 1, "59898344484") is entry
    assert index.settle(entry, 0, tp_status(0)) is None
    assert index.settle(entry, 1, tp_status(0)) == tp_status(0)
    assert index.settle(entry, 1, tp_status(0)) is None  # the same report again
    index.expire(now=entry.sent_at + 61)
    assert index.by_ref(1, 1, "+59898344484") is None and len(index) == 0


async def test_report_for_an_unknown_send_names_the_part_and_destination() -> None:
    got: list[DeliveryReport] = []

    async def report(dr: DeliveryReport) -> None:
        got.append(dr)

    state = DeviceState([0, 1], fail_limit=3, rest_s=1)
    feed = Feed("gw", [0, 1], events=ChannelEvents(on_report=report), pending=Pending(),
                index=SentIndex(60), state=state, number_prefix="00")
    push = parse_push({"sms_deliver_status": [
        {"port": 1, "number": "0059898344484", "time": "t", "ref_id": 9, "status_code": 64},
        {"port": 5, "number": "0059898344484", "time": "t", "ref_id": 9, "status_code": 0}]})
    await feed.deliveries(push.deliveries)
    await feed.deliveries(push.deliveries)  # polled again: reported once
    [dr] = got
    assert (dr.channel, dr.provider_ref, dr.destination) == ("gw:1", "9", "+59898344484")
    assert not dr.delivered and dr.final and dr.error_code == "64"


def test_user_ids_are_fresh_across_restarts() -> None:
    first = UserIds(clock=lambda: 1_800_000_000.0)
    used = [first.next() for _ in range(100)]
    later = UserIds(clock=lambda: 1_800_000_001.0)  # restarted a second later
    assert later.next() > max(used) and max(used) < 2**31


def test_inbound_reference_is_stable_and_survives_a_reset_of_ids() -> None:
    a = IncomingSms(7, 1, "+5989", "hi", "2026-11-24 10:00:00")
    assert inbound_ref(a) == inbound_ref(IncomingSms(7, 1, "+5989", "hi", "2026-11-24 10:00:00"))
    assert inbound_ref(a) != inbound_ref(IncomingSms(7, 1, "+5989", "hi", "2027-01-01 09:00:00"))
    assert inbound_ref(IncomingSms(None, 1, "+5989", "hi", "x")).startswith("sha1:")


def _result(*, port: int, user_id: int | None, status: str) -> SmsResult:
    return SmsResult(port=port, user_id=user_id, number="59898344484", time="", status=status,
                     count=1, succ_count=1, ref_id=3)


def _tracked(refs: tuple[int, ...]) -> Tracked:
    return Tracked("123", 123, 1, "+59898344484", "+59898344484", refs,
                   "2026-11-24 10:00:00", 1000.0)


def test_example_config_expands_to_port_channels(tmp_path) -> None:
    from gateway.settings import load_settings
    from tests.conftest import ROOT

    settings = load_settings(ROOT / "config/examples/dinstar.toml", environ={})
    [channel], [options] = settings.channels, settings.driver_options
    assert channel.driver == "dinstar" and options.port_list == tuple(range(8))
    assert options.password.get_secret_value() == "admin"
