"""The generic HTTP driver, configured by the shipped examples
(config/examples/http-*.toml), through the running daemon against a
loopback aggregator that answers in Kannel's, Vonage's and Infobip's
documented formats and calls the gateway back with their reports."""

from __future__ import annotations

import itertools
import json
import time
import tomllib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from multidict import CIMultiDict

from drivers.base import OutgoingMessage, PermanentError, TransientError
from drivers.http import dlr, request, template
from drivers.http.common import Answer
from drivers.http.options import DlrOptions, HttpOptions
from drivers.http.simkit import Caller, Delivery, Fault, FaultScript, LoopbackServer
from gateway.settings import ConfigError, load_settings, settings_from_dict
from spool.base import Message, State
from tests import pgdb
from tests.conftest import ROOT, Running, config

PUBLIC = "https://smsgw.example.test"
SECRET = "dlr-s3cret"


class Aggregator:
    """Kannel's sendsms, Vonage's /sms/json and Infobip's /sms/2/text/advanced."""

    def __init__(self) -> None:
        self.faults = FaultScript()
        self.caller = Caller()
        self.received: list[dict[str, Any]] = []
        self.sent: dict[str, dict[str, Any]] = {}  # provider id -> what was asked
        self._ids = itertools.count(1)
        app = web.Application()
        app.router.add_get("/cgi-bin/sendsms", self._kannel)
        app.router.add_post("/sms/json", self._vonage)
        app.router.add_post("/sms/2/text/advanced", self._infobip)
        self.server = LoopbackServer(app)

    async def _take(self, request: web.Request, fields: dict[str, Any]) -> web.Response | None:
        self.received.append({"path": request.path, "headers": dict(request.headers),
                              "at": time.time(), **fields})
        return await self.faults.apply()

    async def _kannel(self, request: web.Request) -> web.Response:
        q = dict(request.query)
        scripted = await self._take(request, q)
        if scripted is not None:
            return scripted
        if (q.get("username"), q.get("password")) != ("smsgw", "kpass"):
            return web.Response(status=403, text="Authorization failed")
        self.sent[str(len(self.received))] = q
        return web.Response(status=202, text="0: Accepted for delivery")

    async def kannel_report(self, nth: int, value: int) -> Delivery:
        """Kannel fetches the dlr-url of send `nth` (1-based) with %d filled in."""
        url = self.sent[str(nth)]["dlr-url"].replace("%d", str(value))
        return await self.caller.get(url)

    async def _vonage(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        scripted = await self._take(request, form)
        if scripted is not None:
            return scripted
        if (form.get("api_key"), form.get("api_secret")) != ("vkey", "vsecret"):
            return web.json_response({"message-count": "1", "messages": [
                {"status": "4", "error-text": "Bad Credentials"}]})
        parts = 1 if len(form["text"]) <= 160 else -(-len(form["text"]) // 153)
        messages = []
        for _ in range(parts):
            mid = f"0C{next(self._ids):014X}"
            self.sent[mid] = form
            messages.append({"to": form["to"], "message-id": mid, "status": "0",
                             "remaining-balance": "15.53590000",
                             "message-price": "0.03330000", "network": "74801"})
        return web.json_response({"message-count": str(parts), "messages": messages})

    async def vonage_report(self, mid: str, status: str, err: str = "0") -> Delivery:
        form = self.sent[mid]
        return await self._post_json(form["callback"], {
            "msisdn": form["to"], "to": form["from"], "network-code": "74801",
            "messageId": mid, "price": "0.03330000", "status": status, "scts": "2001011400",
            "err-code": err, "client-ref": form["client-ref"],
            "message-timestamp": "2026-11-24 10:00:00"})

    async def _infobip(self, request: web.Request) -> web.Response:
        body = await request.json()
        scripted = await self._take(request, {"json": body})
        if scripted is not None:
            return scripted
        if request.headers.get("Authorization") != "App ikey":
            return web.json_response({"requestError": {"serviceException": {
                "messageId": "UNAUTHORIZED", "text": "Invalid login details"}}}, status=401)
        message = body["messages"][0]
        mid = f"ib-{next(self._ids)}"
        self.sent[mid] = message
        return web.json_response({"bulkId": "b-1", "messages": [{
            "to": message["destinations"][0]["to"], "messageId": mid, "status": {
                "groupId": 1, "groupName": "PENDING", "id": 26, "name": "PENDING_ACCEPTED",
                "description": "Message sent to next instance"}}]})

    async def infobip_report(self, mid: str, group: str, name: str,
                             error: str = "NO_ERROR") -> Delivery:
        message = self.sent[mid]
        result = {"bulkId": "b-1", "messageId": mid, "to": message["destinations"][0]["to"],
                  "callbackData": message["callbackData"], "smsCount": 1,
                  "status": {"groupName": group, "name": name},
                  "error": {"name": error, "permanent": error != "NO_ERROR"}}
        stranger = {**result, "messageId": "not-ours"}
        return await self._post_json(message["notifyUrl"], {"results": [stranger, result]})

    async def _post_json(self, url: str, payload: Any) -> Delivery:
        return await self.caller.post(url, body=json.dumps(payload).encode(),
                                      headers={"Content-Type": "application/json"})


@pytest.fixture
async def agg():
    a = Aggregator()
    await a.server.start()
    yield a
    await a.caller.close()
    await a.server.close()


def example(file: str, **overrides: Any) -> dict[str, Any]:
    with open(ROOT / "config" / "examples" / file, "rb") as fh:
        [channel] = tomllib.load(fh)["channels"]
    return {**channel, "public_base_url": PUBLIC, "dlr_secret": SECRET,
            "request_timeout_s": 2, "block_after": 100, **overrides}


async def gateway_with(make_gateway, agg: Aggregator, channel: dict[str, Any]) -> Running:
    gw = await make_gateway(channels=[channel], dispatcher={"max_attempts": 5})
    agg.caller.route(PUBLIC, gw.url)
    return gw




def kannel(agg: Aggregator, **extra: Any) -> dict[str, Any]:
    return example("http-kannel.toml", **{"url": f"{agg.server.url}/cgi-bin/sendsms",
                                          "password": "kpass", **extra})


def vonage(agg: Aggregator, **extra: Any) -> dict[str, Any]:
    return example("http-vonage.toml", **{"url": f"{agg.server.url}/sms/json",
                                          "api_key": "vkey", "password": "vsecret", **extra})


def infobip(agg: Aggregator, **extra: Any) -> dict[str, Any]:
    return example("http-infobip.toml", **{"url": f"{agg.server.url}/sms/2/text/advanced",
                                           "api_key": "ikey", **extra})


# Kannel ----------------------------------------------------------------------

async def test_kannel_send_and_reports_by_our_id(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg))
    mid = await gw.submit_one(text="hola")
    m = await gw.reaches(mid, {State.SENT})
    [req] = agg.received
    assert (req["to"], req["text"], req["from"], req["coding"]) == (
        "+59898344484", "hola", "SMSGW", "0")
    assert req["dlr-url"] == f"{PUBLIC}/hooks/kannel/dlr?id={mid}&status=%d&token={SECRET}"
    assert m.provider_ref == str(mid)
    assert (await agg.kannel_report(1, 8)).status == 200  # delivered to SMSC: not final
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    assert (await agg.kannel_report(1, 1)).status == 200
    await gw.reaches(mid, {State.DELIVERED})


async def test_kannel_unicode_coding_and_failed_report(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg))
    mid = await gw.submit_one(text="Olá 😀")
    await gw.reaches(mid, {State.SENT})
    assert agg.received[0]["coding"] == "2" and agg.received[0]["text"] == "Olá 😀"
    await agg.kannel_report(1, 16)
    m = await gw.reaches(mid, {State.FAILED})
    assert "delivery report: 16" in m.error


async def test_dlr_without_the_shared_secret_is_refused(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg))
    mid = await gw.submit_one()
    await gw.reaches(mid, {State.SENT})
    for token in ("", "&token=guess"):
        async with gw.session.get(f"{gw.url}/hooks/kannel/dlr?id={mid}&status=1{token}") as r:
            assert r.status == 403
    assert (await gw.store.get_message(None, mid)).state == State.SENT


async def test_kannel_unavailable_is_retried(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg))
    agg.faults.add(Fault(503, "Sending failed."))
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.SENT})
    assert m.attempts == 2


async def test_kannel_refusal_fails(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg))
    agg.faults.add(Fault(400, "Not routable. Do not try again."))
    m = await gw.reaches(await gw.submit_one(), {State.FAILED})
    assert m.attempts == 1 and "Not routable" in m.error


async def queued_by_a_channel_fault(gw: Running, channel: str) -> str:
    """What the channel says once it refused the credentials; the message
    stays queued, uncharged (tests/test_channel_faults.py: until they work)."""
    mid = await gw.submit_one()
    runner = gw.app.services.router.runners[channel]

    async def faulted() -> Message | None:
        m = await gw.store.get_message(None, mid)
        return m if runner.fault and m.state == State.TO_PROCESS else None
    m = await gw.wait_for(faulted, 5)
    assert m.attempts == 0 and m.error is None and runner.breaker.state(time.time()) == "open"
    assert runner.fault == "authentication failed" and runner.last_error
    return runner.last_error


async def test_kannel_wrong_password_is_a_channel_fault(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg, password="wrong"))
    error = await queued_by_a_channel_fault(gw, "kannel")
    assert "Authorization failed" in error


async def test_provider_timeout_is_retried(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, kannel(agg, request_timeout_s=0.5))
    agg.faults.add(Fault(504, hang_s=2.0))
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.SENT})
    assert m.attempts == 2


# Vonage ------------------------------------------------------------------------

async def test_vonage_send_and_json_receipt(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, vonage(agg))
    mid = await gw.submit_one(text="hola")
    m = await gw.reaches(mid, {State.SENT})
    [req] = agg.received
    assert (req["api_key"], req["api_secret"], req["to"], req["type"]) == (
        "vkey", "vsecret", "59898344484", "text")
    assert req["client-ref"] == str(mid)
    assert req["callback"] == f"{PUBLIC}/hooks/vonage/dlr?token={SECRET}"
    await agg.vonage_report(m.provider_ref, "accepted")
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    await agg.vonage_report(m.provider_ref, "delivered")
    await gw.reaches(mid, {State.DELIVERED})


async def test_vonage_long_text_is_delivered_when_every_part_is(make_gateway, agg,
                                                                storage_url) -> None:
    gw = await gateway_with(make_gateway, agg, vonage(agg, cost=0.05))
    mid = await gw.submit_one(text="x" * 200)
    m = await gw.reaches(mid, {State.SENT})
    assert len(agg.sent) == 2 and m.cost == pytest.approx(0.10)
    # The message's reference is its first part's: that part's report alone
    # must not settle the message.
    [other] = set(agg.sent) - {m.provider_ref}
    await agg.vonage_report(m.provider_ref, "delivered")
    await agg.vonage_report(other, "accepted")

    async def first_part_recorded() -> bool:  # reports are applied off the hook's path
        return bool(pgdb.query(storage_url, "SELECT count(*) FROM message_parts WHERE "
                                            "message_id = ? AND delivered = 1", mid)[0][0])
    await gw.wait_for(first_part_recorded)
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    await agg.vonage_report(other, "delivered")
    await gw.reaches(mid, {State.DELIVERED})


async def test_vonage_throttled_inside_a_200_is_retried(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, vonage(agg))
    agg.faults.add(Fault(200, {"message-count": "1", "messages": [
        {"status": "1", "error-text": "Throughput Rate Exceeded - please wait [ 30 ] and retry"}
    ]}))
    m = await gw.reaches(await gw.submit_one(), {State.SENT})
    assert m.attempts == 2


async def test_vonage_refusal_inside_a_200_fails(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, vonage(agg))
    agg.faults.add(Fault(200, {"message-count": "1", "messages": [
        {"status": "29", "error-text": "Non-Whitelisted Destination"}]}))
    m = await gw.reaches(await gw.submit_one(), {State.FAILED})
    assert "Non-Whitelisted" in m.error and "[29]" in m.error


async def test_vonage_bad_credentials_inside_a_200_is_a_channel_fault(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, vonage(agg, password="not-it"))
    error = await queued_by_a_channel_fault(gw, "vonage")
    assert "Bad Credentials" in error and "[4]" in error


# Infobip ------------------------------------------------------------------------

async def test_infobip_json_send_and_batched_reports(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, infobip(agg))
    mid = await gw.submit_one(text="hola")
    m = await gw.reaches(mid, {State.SENT})
    [req] = agg.received
    assert req["headers"]["Authorization"] == "App ikey"
    assert req["json"] == {"messages": [{
        "from": "InfoSMS", "destinations": [{"to": "59898344484"}], "text": "hola",
        "notifyUrl": f"{PUBLIC}/hooks/infobip/dlr?token={SECRET}",
        "notifyContentType": "application/json", "callbackData": str(mid)}]}
    await agg.infobip_report(m.provider_ref, "DELIVERED", "DELIVERED_TO_OPERATOR")
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    await agg.infobip_report(m.provider_ref, "DELIVERED", "DELIVERED_TO_HANDSET")
    await gw.reaches(mid, {State.DELIVERED})


async def test_infobip_undeliverable_report_fails_with_its_error(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, infobip(agg))
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.SENT})
    await agg.infobip_report(m.provider_ref, "UNDELIVERABLE", "UNDELIVERABLE_NOT_DELIVERED",
                             "EC_ABSENT_SUBSCRIBER")
    m = await gw.reaches(mid, {State.FAILED})
    assert "EC_ABSENT_SUBSCRIBER" in m.error


async def test_infobip_unauthorised_is_a_channel_fault_with_its_code(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, infobip(agg, api_key="no"))
    error = await queued_by_a_channel_fault(gw, "infobip")
    assert "Invalid login details" in error and "UNAUTHORIZED" in error


async def test_rate_limit_honours_retry_after(make_gateway, agg) -> None:
    gw = await gateway_with(make_gateway, agg, infobip(agg))
    agg.faults.add(Fault(429, {"requestError": {"serviceException": {
        "messageId": "TOO_MANY_REQUESTS", "text": "Too many requests"}}},
        {"Retry-After": "1.5"}))
    mid = await gw.submit_one()

    async def retry_recorded():
        m = await gw.store.get_message(None, mid)
        return m if m.attempts == 1 and m.state == State.TO_PROCESS else None
    waiting = await gw.wait_for(retry_recorded, 5)
    assert waiting.next_attempt_at >= agg.received[0]["at"] + 1.5 - 0.05
    m = await gw.reaches(mid, {State.SENT})
    assert m.attempts == 2 and agg.received[1]["at"] - agg.received[0]["at"] >= 1.5 - 0.05


# without I/O ----------------------------------------------------------------------

def test_examples_are_valid_configs() -> None:
    for path in sorted((ROOT / "config" / "examples").glob("http-*.toml")):
        settings = load_settings(path, environ={})
        assert [c.driver for c in settings.channels] == ["http"], path


def test_unknown_placeholder_is_a_config_error(tmp_path: Path) -> None:
    raw = config(tmp_path, channels=[{"name": "h", "driver": "http", "url": "https://x/{phone}",
                                      "id_from": "ours"}])
    with pytest.raises(ConfigError, match=r"channels\[0\].*unknown placeholders \['phone'\]"):
        settings_from_dict(raw)


def test_templates_render_values_and_leave_the_rest() -> None:
    values = {"to": "+598 9", "id": "7", "text": "a&b"}
    assert template.render("{dlr}?id={id}&status=%d", values) == "{dlr}?id=7&status=%d"
    assert template.render_url("https://x/send/{to}?t={text}", values) == \
        "https://x/send/%2B598%209?t=a%26b"
    assert template.render_tree({"m": [{"to": "{to}", "n": 3}]}, values) == \
        {"m": [{"to": "+598 9", "n": 3}]}
    doc = {"messages": [{"message-id": "A"}, {"message-id": "B"}], "status": {"name": "OK"}}
    assert template.lookup(doc, "messages.*.message-id") == ["A", "B"]
    assert template.first(doc, "status.name") == "OK" and template.first(doc, "nope.x") is None


def _opt(**kw: Any) -> HttpOptions:
    return HttpOptions(url="https://agg.example/send", **kw)


def _answer(status: int, body: str) -> Answer:
    return Answer(status, CIMultiDict(), body.encode())


MESSAGE = OutgoingMessage(id=9, destination="+59898344484", text="hola")


def test_answers_are_interpreted() -> None:
    opt = _opt(success_regex=r"^OK", id_regex=r"id=(?P<id>\w+)")
    assert request.interpret(opt, _answer(200, "OK id=abc"), MESSAGE).provider_ref == "abc"
    with pytest.raises(PermanentError, match="not recognised as success"):
        request.interpret(opt, _answer(200, "ERR"), MESSAGE)
    with pytest.raises(TransientError):
        request.interpret(opt, _answer(503, "busy"), MESSAGE)
    with pytest.raises(PermanentError) as caught:
        request.interpret(opt, _answer(400, "bad number"), MESSAGE)
    assert caught.value.code == "400"


def test_dlr_mapping_and_secret() -> None:
    spec = DlrOptions(id_field="id", status_field="stat", delivered_values=("DELIVRD",),
                      failed_values=("UNDELIV",), error_field="err", secret_param="k")
    [ok] = dlr.reports("c", spec, {"id": "1", "stat": "DELIVRD"}, None)
    [bad] = dlr.reports("c", spec, {"id": "2", "stat": "UNDELIV", "err": "001"}, None)
    [interim] = dlr.reports("c", spec, {"id": "3", "stat": "ENROUTE"}, None)
    assert (ok.delivered, ok.final) == (True, True)
    assert (bad.delivered, bad.error_code, bad.final) == (False, "001", True)
    assert interim.final is False
    assert not dlr.reports("c", spec, {"stat": "DELIVRD"}, None)
    assert dlr.authorised(spec, "s", {"k": "s"}, {})
    assert not dlr.authorised(spec, "s", {"k": "t"}, {})
    assert dlr.authorised(spec, "", {}, {})
