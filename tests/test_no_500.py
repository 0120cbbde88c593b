"""Requests that each made the daemon answer an HTML 500 with a traceback.

Each now gets a JSON 4xx (the caller's mistake: 400, 401, 403) and at most
one log line; the tests assert the exact status, so an answer turned into a
JSON 500 by a catch-all would still fail them. The daemon is the real one
on loopback with every door open (tests/doors.py); header bytes that no
polite client sends go out through tests/rawhttp.py.
"""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import urlencode

import pytest
from structlog.testing import capture_logs

from drivers.simulators.dinstar import DinstarSimulator
from gateway.links import find_urls
from spool.base import JourneySpec, NewMessage
from tests import rawhttp
from tests.conftest import Running
from tests.doors import (
    DLR_SECRET,
    PUSH_TOKEN,
    WA_NUMBER,
    WA_VERIFY,
    every_door,
    meta_signature,
)

DEEP = b"[" * 5000
JSON = {"Content-Type": "application/json"}
# Valid UTF-8 but not ASCII; not UTF-8 at all; UTF-8's encoding of a lone surrogate.
ODD_BYTES = (b"caf\xc3\xa9", b"\xff\xfe\x80", b"\xed\xa0\x80")


@pytest.fixture
async def gw(make_gateway, dinstar: DinstarSimulator) -> Running:
    return await every_door(make_gateway, dinstar.url)


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What aiohttp logged for a handler that raised (it then answers 500)."""
    return [r.getMessage() for r in caplog.records
            if r.exc_info or (r.name.startswith("aiohttp") and r.levelno >= logging.ERROR)]


async def post(gw: Running, path: str, body: bytes, headers: dict[str, str]
               ) -> tuple[int, object]:
    async with gw.session.post(gw.url + path, data=body, headers=headers) as r:
        assert r.content_type == "application/json", (path, r.status, await r.text())
        return r.status, await r.json()


# deeply nested JSON ---------------------------------------------------------

async def test_json_nested_5000_deep_is_a_400_at_every_json_door(
        gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    answers = {
        "/dashboard/login": await post(gw, "/dashboard/login", DEEP, JSON),
        "/api/v1/messages": await post(gw, "/api/v1/messages", DEEP, {**JSON, **gw.headers()}),
        "/hooks/infobip/dlr?token=": await post(
            gw, f"/hooks/infobip/dlr?token={DLR_SECRET}", DEEP, JSON),
        "/hooks/whatsapp": await post(gw, "/hooks/whatsapp", DEEP,
                                      {"X-Hub-Signature-256": meta_signature(DEEP)}),
        "/hooks/dinstar-a/{token}": await post(gw, f"/hooks/dinstar-a/{PUSH_TOKEN}", DEEP, JSON),
    }
    assert {path: status for path, (status, _) in answers.items()} == dict.fromkeys(answers, 400)
    assert answers["/api/v1/messages"][1] == {
        "error": "JSON nested deeper than 64 levels", "field": "body"}
    assert answers["/hooks/dinstar-a/{token}"][1] == {"error_code": 400}  # Dinstar's own shape
    assert not tracebacks(caplog)


async def test_the_dlr_secret_is_checked_before_the_body_is_parsed(gw: Running) -> None:
    # Without the secret the body is never read: 403, not a parse error.
    assert (await post(gw, "/hooks/infobip/dlr", DEEP, JSON))[0] == 403
    assert (await post(gw, "/hooks/infobip/dlr?token=nope", b"{", JSON))[0] == 403
    assert (await post(gw, f"/hooks/infobip/dlr?token={DLR_SECRET}", b"{", JSON))[0] == 400


async def test_json_deeper_than_64_levels_is_refused_and_64_taken(gw: Running) -> None:
    def message(depth: int) -> bytes:
        data = b"[" * (depth - 1) + b"]" * (depth - 1)  # under the body's own object
        return b'{"destination": "098344484", "message": "hola", "data": {"x": ' + data + b"}}"

    assert (await post(gw, "/api/v1/messages", message(63), {**JSON, **gw.headers()}))[0] == 202
    # 900 parsed, then later dumps and loads of it nearly hit Python's recursion limit.
    for depth in (65, 900):
        status, body = await post(gw, "/api/v1/messages", message(depth), {**JSON, **gw.headers()})
        assert (status, body) == (400, {"error": "JSON nested deeper than 64 levels",
                                        "field": "body"})


# secrets that are not ASCII -------------------------------------------------

async def test_secrets_with_bytes_that_are_not_ascii_are_refused_not_crashed(
        gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    form = b"MessageSid=SM1&MessageStatus=delivered"
    for odd in ODD_BYTES:
        asks = {
            ("X-Api-Key", 401): ("GET", b"/api/v1/messages", [(b"X-Api-Key", odd)], b""),
            ("legacy X-Api-Key", 401): ("POST", b"/Integra/resources/SMS/SendSMS", [
                (b"X-Api-Key", odd),
                (b"Content-Type", b"application/x-www-form-urlencoded")],
                b"destination=098344484&message=hola"),
            ("X-Twilio-Signature", 403): ("POST", b"/hooks/twilio/status", [
                (b"X-Twilio-Signature", odd),
                (b"Content-Type", b"application/x-www-form-urlencoded")], form),
            ("X-Hub-Signature-256", 403): ("POST", b"/hooks/whatsapp", [
                (b"X-Hub-Signature-256", b"sha256=" + odd)], b"{}"),
            ("session cookie", 401): ("GET", b"/dashboard/session", [
                (b"Cookie", b"smsgw_session=e30." + odd)], b""),
            ("session cookie body", 401): ("GET", b"/api/v1/messages", [
                (b"Cookie", b"smsgw_session=" + odd + b".c2ln")], b""),
            ("metrics bearer", 401): ("GET", b"/metrics", [
                (b"Authorization", b"Bearer " + odd), (b"X-Forwarded-For", b"192.0.2.7")], b""),
        }
        for (what, expected), (method, target, headers, body) in asks.items():
            reply = await rawhttp.request(gw.url, method, target, headers, body)
            assert (what, odd, reply.status) == (what, odd, expected), reply.body
            assert reply.is_json, (what, reply.body)
    assert not tracebacks(caplog)


@pytest.mark.parametrize("escaped", ["caf%C3%A9", "%FF%FE", "%ED%A0%80"])
async def test_query_secrets_with_odd_bytes_are_refused(gw: Running, escaped: str) -> None:
    challenge = (f"/hooks/whatsapp?hub.mode=subscribe&hub.challenge=42"
                 f"&hub.verify_token={escaped}")
    async with gw.session.get(gw.url + challenge) as r:
        assert r.status == 403 and r.content_type == "application/json"
    async with gw.session.get(gw.url + challenge.replace(escaped, WA_VERIFY)) as r:
        assert (r.status, await r.text()) == (200, "42")  # the right token still works
    async with gw.session.post(f"{gw.url}/hooks/dinstar-a?token={escaped}", json={}) as r:
        assert (r.status, await r.json()) == (403, {"error_code": 403})


# Dinstar pushes ---------------------------------------------------------------

async def test_dinstar_push_with_an_infinite_or_huge_number_is_a_400_or_ignored(
        gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    hook = f"/hooks/dinstar-a/{PUSH_TOKEN}"
    for raw in (b'{"sms": [{"port": 1e400, "number": "+59898344484", "text": "hola",'
                b' "incoming_sms_id": 1e400}]}',
                b'{"sms_result": [{"port": 1e400, "user_id": 1e400, "count": 1e400}]}',
                b'{"sms_deliver_status": [{"port": 1, "ref_id": 1e400, "status_code": 0}]}',
                b'{"sms_result": [{"port": 0, "user_id": 100000000000000000000000}]}'):
        status, body = await post(gw, hook, raw, JSON)
        assert status in (200, 400), (raw, status)
        assert body == {"error_code": status}
    assert (await post(gw, hook, b'{"sms": ' + DEEP + b"}", JSON)) == (400, {"error_code": 400})
    assert not tracebacks(caplog)


# daily reports' time zone -----------------------------------------------------

@pytest.mark.parametrize("tz", ["America", "Europe", "Etc", "A" * 300, "America/" + "x" * 300])
async def test_daily_report_with_a_tz_that_is_no_zone_is_a_400_naming_tz(
        gw: Running, tz: str) -> None:
    for path in ("/api/v1/reports/daily", "/api/v1/reports/daily.csv"):
        async with gw.session.get(f"{gw.url}{path}?{urlencode({'tz': tz})}",
                                  headers=gw.headers()) as r:
            assert r.status == 400
            body = await r.json()
            assert body["field"] == "tz" and "unknown time zone" in body["error"]
    async with gw.session.get(f"{gw.url}/api/v1/reports/daily?tz=America/Montevideo",
                              headers=gw.headers()) as r:
        assert r.status == 200 and (await r.json())["tz"] == "America/Montevideo"


async def test_a_campaign_schedule_in_a_zone_folder_is_a_400(gw: Running) -> None:
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(), json={
            "name": "promo", "schedule": {"timezone": "America",
                                          "windows": ["mon-fri 09:00-18:00"]}}) as r:
        body = await r.json()
        assert r.status == 400 and body["field"] == "schedule", body
        assert "unknown time zone 'America'" in body["error"]


# form bodies ------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/Integra/resources/SMS/SendSMS", "/hooks/twilio/status",
                                  "/hooks/infobip/dlr"])
async def test_a_form_in_an_unknown_charset_or_not_in_its_charset_is_a_400(
        gw: Running, path: str, caplog: pytest.LogCaptureFixture) -> None:
    form = b"destination=098344484&message=hola&from=%2B59898344484&text=hola"
    bogus = {"Content-Type": "application/x-www-form-urlencoded; charset=bogus"}
    assert await post(gw, path, form, bogus) == (400, {
        "error": "unknown charset 'bogus' in Content-Type", "field": "Content-Type"})
    status, body = await post(gw, path, form.replace(b"hola", b"hol\xe1"),
                              {"Content-Type": "application/x-www-form-urlencoded"})
    assert (status, body["field"]) == (400, "body"), body
    assert not tracebacks(caplog)


# WhatsApp webhooks that are signed but not of the documented shape ------------

def envelope(*changes: object, entry: object = None) -> dict[str, object]:
    return {"object": "whatsapp_business_account",
            "entry": entry if entry is not None else [{"id": "WABA", "changes": list(changes)}]}


def messages_change(value: object) -> dict[str, object]:
    return {"field": "messages", "value": value}


GOOD_INBOUND = messages_change({
    "messaging_product": "whatsapp",
    "metadata": {"display_phone_number": "15550001111", "phone_number_id": WA_NUMBER},
    "contacts": [{"profile": {"name": "Ana"}, "wa_id": "59898344484"}],
    "messages": [{"from": "59898344484", "id": "wamid.good", "timestamp": "1700000000",
                  "type": "text", "text": {"body": "hola"}}]})

MALFORMED = [
    envelope(messages_change([{"statuses": []}])),  # value is a list
    envelope(messages_change("text")),
    envelope(entry={"changes": []}),
    envelope(entry=["not an object"]),
    envelope({"field": "messages", "value": {"metadata": [WA_NUMBER]}}),
    envelope(messages_change({"metadata": {"phone_number_id": WA_NUMBER},
                              "statuses": [1, {"id": ["x"], "status": {}, "errors": {}}]})),
    envelope(messages_change({"metadata": {"phone_number_id": WA_NUMBER},
                              "contacts": [{"wa_id": ["x"]}],
                              "messages": [[], {"from": 598, "type": ["text"], "text": []},
                                           {"from": "1", "type": "text", "text": {"body": 5},
                                            "timestamp": 1e400}]})),
    envelope({"field": "user_preferences", "value": {
        "metadata": {"phone_number_id": WA_NUMBER},
        "user_preferences": [5, {"wa_id": {}, "category": [], "value": "stop"}]}}),
    envelope({"field": ["messages"], "value": {}}),
]


async def test_a_signed_webhook_of_the_wrong_shape_is_answered_200_and_logged(
        gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    for doc in MALFORMED:
        raw = json.dumps(doc).encode()
        with capture_logs() as logs:
            async with gw.session.post(f"{gw.url}/hooks/whatsapp", data=raw, headers={
                    "X-Hub-Signature-256": meta_signature(raw)}) as r:
                assert (r.status, await r.text()) == (200, "EVENT_RECEIVED"), doc
        assert any(e["event"] == "whatsapp.webhook_ignored" for e in logs), (doc, logs)
    assert not tracebacks(caplog)


async def test_the_good_parts_of_a_half_malformed_webhook_are_kept(gw: Running) -> None:
    doc = envelope(messages_change(["junk"]), GOOD_INBOUND)
    raw = json.dumps(doc).encode()
    async with gw.session.post(f"{gw.url}/hooks/whatsapp", data=raw, headers={
            "X-Hub-Signature-256": meta_signature(raw)}) as r:
        assert r.status == 200
    [stored] = await gw.inbound()
    assert (stored.sender, stored.text, stored.provider_ref) == (
        "+59898344484", "hola", "wamid.good")


# tracked links with control characters ----------------------------------------

async def test_a_url_ends_at_a_control_character_so_its_link_redirects(gw: Running) -> None:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "message": "see https://x.example/a\x1bb?c=1 now",
            "smart": {"track_links": True}}) as r:
        assert r.status == 202, await r.text()
        mid = (await r.json())["id"]
    sent = (await gw.store.get_message(None, mid)).message
    [code] = re.findall(r"/r/([\w-]+)", sent)
    assert sent.endswith(f"/r/{code}\x1bb?c=1 now")  # the rest is text, as typed
    async with gw.session.get(f"{gw.url}/r/{code}", allow_redirects=False) as r:
        assert (r.status, r.headers["Location"]) == (302, "https://x.example/a")
    texts = ("http://x/a\x00b", "a\x7fb http://x/\x85", "http://x/\x1b[31m")
    assert [find_urls(t) for t in texts] == [[(0, 10)], [(4, 13)], [(0, 9)]]


async def test_a_stored_link_that_cannot_be_a_location_is_a_404_and_no_click(
        gw: Running, caplog: pytest.LogCaptureFixture) -> None:
    # As an older version stored it, before URLs stopped at control characters.
    tenant = await gw.store.tenant_by_name("default")
    campaign = await gw.store.campaign_by_name(tenant.id, "default")
    [row] = await gw.store.insert_messages([NewMessage(
        tenant=tenant.id, campaign=campaign.id, destination="+59898344484",
        message="see http://127.0.0.1:9/r/esccode1", journey=JourneySpec(
            policy={"track_links": True}, wait_s=3600,
            links=(("esccode1", "https://x.example/a\x1b[0m"),)))])
    with capture_logs() as logs:
        async with gw.session.get(f"{gw.url}/r/esccode1", allow_redirects=False) as r:
            assert r.status == 404 and r.content_type == "text/html"
    assert [e["event"] for e in logs if e["log_level"] == "warning"] == ["link.unredirectable"]
    await gw.app.services.clicks.flush()
    message = await gw.store.get_message(None, row.id)
    assert await gw.store.journey_clicks(message.journey_id) == (0, 0)
    assert not tracebacks(caplog)
