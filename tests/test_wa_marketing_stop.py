"""A customer's "stop marketing messages" on WhatsApp (Meta's user_preferences
webhook, or a send refused with 131050) holds back WhatsApp marketing
templates to that number on that channel, and nothing else: SMS, utility and
authentication messages still go, and a "resume" lifts only that stop.

Through the running daemon, Meta's simulator (signed webhooks in Meta's
documented format) and a loopback SMS channel, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from drivers.base import OutgoingMessage, PermanentError
from drivers.simulators.whatsapp import WhatsAppSimulator
from drivers.whatsapp import webhook
from drivers.whatsapp.payload import prepare, template_category
from spool.base import (
    MARKETING_STOPPED,
    NewMessage,
    Report,
    Sent,
    State,
    marketing_scope,
)
from tests.conftest import FakeClock, Running, loopback_channel
from tests.test_journeys import journey_of, send, smart_gateway, until
from tests.test_whatsapp import (
    HOOK,
    NUMBER_ID,
    PUBLIC,
    SECRET,
    TOKEN,
    VERIFY,
    meta_signature,
)

CUSTOMER = "+59898344484"
MARKETING = {"type": "template", "category": "marketing", "template": {
    "name": "winter_sale", "language": {"code": "es"}}}
UTILITY = {"type": "template", "category": "utility", "template": {
    "name": "order_shipped", "language": {"code": "es"}}}
OTP = {"type": "template", "category": "AUTHENTICATION", "template": {
    "name": "login_code", "language": {"code": "es"}, "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "482913"}]}]}}
STOPS = marketing_scope("whatsapp")
WAIT_S = 4 * 3600 + 60  # POLICY's wait, and a minute


@pytest.fixture
async def sim():
    s = WhatsAppSimulator(access_token=TOKEN, app_secret=SECRET, phone_number_id=NUMBER_ID,
                          webhook_url=HOOK)
    s.marketing_templates.add("winter_sale")
    await s.start()
    yield s
    await s.close()


async def gateway(make_gateway, sim: WhatsAppSimulator) -> Running:
    whatsapp = {"name": "whatsapp", "driver": "whatsapp", "phone_number_id": NUMBER_ID,
                "access_token": TOKEN, "app_secret": SECRET, "verify_token": VERIFY,
                "base_url": sim.url, "cost": 0.5, "request_timeout_s": 2}
    gw = await make_gateway(channels=[whatsapp, loopback_channel("sms", report_delay_ms=10)],
                            dispatcher={"max_attempts": 3})
    sim.caller.route(PUBLIC, gw.url)
    return gw


async def submit(gw: Running, spec: dict[str, Any] | None = None) -> int:
    body: dict[str, Any] = {"destination": CUSTOMER, "message": "Hola"}
    if spec is not None:
        body.update(kind="whatsapp", whatsapp=spec)
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json=body) as r:
        assert r.status == 202, await r.text()
        return int((await r.json())["id"])


async def stopped(gw: Running, expected: bool = True) -> None:
    async def check():
        found = await gw.store.marketing_stopped([(CUSTOMER, "whatsapp")])
        return bool(found) == expected
    await gw.wait_for(check)


def templates_sent(sim: WhatsAppSimulator) -> list[str]:
    return [r.body["template"]["name"] for r in sim.received if r.body["type"] == "template"]


async def test_stop_holds_back_marketing_only_and_resume_lifts_it(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    assert (await sim.user_preferences(CUSTOMER, "stop")).status == 200
    await stopped(gw)
    held = await gw.reaches(await submit(gw, MARKETING), {State.BLOCKED})
    assert held.error == MARKETING_STOPPED
    for other in (UTILITY, OTP):
        await gw.reaches(await submit(gw, other), {State.DELIVERED})
    sms = await gw.reaches(await submit(gw), {State.DELIVERED})
    assert sms.channel == "sms"
    assert templates_sent(sim) == ["order_shipped", "login_code"]
    # Not on the do-not-contact list, which holds back every message ...
    assert await gw.store.blacklisted([(CUSTOMER, 1)]) == set()
    assert await listed(gw) == []
    # ... but listed apart, for the operator.
    assert await listed(gw, scope=STOPS) == [CUSTOMER]

    assert (await sim.user_preferences(CUSTOMER, "resume")).status == 200
    await stopped(gw, False)
    await gw.reaches(await submit(gw, MARKETING), {State.DELIVERED})
    assert templates_sent(sim)[-1] == "winter_sale"


async def test_a_131050_failure_is_the_same_stop(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    sim.set_marketing(CUSTOMER, "stop")  # its webhook never reached us
    refused = await gw.reaches(await submit(gw, MARKETING), {State.FAILED})
    assert "131050" in refused.error
    await stopped(gw)
    held = await gw.reaches(await submit(gw, MARKETING), {State.BLOCKED})
    assert held.error == MARKETING_STOPPED
    await gw.reaches(await submit(gw, UTILITY), {State.DELIVERED})
    await gw.reaches(await submit(gw), {State.DELIVERED})
    assert templates_sent(sim) == ["winter_sale", "order_shipped"]
    # Meta's resume lifts the stop that 131050 put there.
    await sim.user_preferences(CUSTOMER, "resume")
    await stopped(gw, False)
    await gw.reaches(await submit(gw, MARKETING), {State.DELIVERED})


async def test_a_131050_refusal_at_once_is_the_same_stop(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    sim.reject(131050, "Unable to deliver the message. This recipient has chosen to stop "
               "receiving marketing messages on WhatsApp from your business.")
    refused = await gw.reaches(await submit(gw, MARKETING), {State.FAILED})
    assert "131050" in refused.error and refused.attempts == 1
    await stopped(gw)
    await gw.reaches(await submit(gw, MARKETING), {State.BLOCKED})
    await gw.reaches(await submit(gw, OTP), {State.DELIVERED})


async def test_forged_or_foreign_preferences_change_nothing(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    item = {"wa_id": CUSTOMER[1:], "detail": "User requested to stop marketing messages",
            "category": "marketing_messages", "value": "stop", "timestamp": int(time.time())}
    raw = json.dumps(sim.envelope({"user_preferences": [item]}, "user_preferences")).encode()
    local = f"{gw.url}/hooks/whatsapp"
    for header in (None, meta_signature(raw, "not-the-secret"), meta_signature(raw + b" ")):
        headers = {"Content-Type": "application/json"}
        if header:
            headers["X-Hub-Signature-256"] = header
        async with gw.session.post(local, data=raw, headers=headers) as r:
            assert r.status == 403
    # Signed, but for another number of the same app: not this channel's customer.
    sim.phone_number_id = "999999999999999"
    foreign = json.dumps(sim.envelope({"user_preferences": [item]}, "user_preferences"))
    async with gw.session.post(local, data=foreign, headers={
            "Content-Type": "application/json",
            "X-Hub-Signature-256": meta_signature(foreign.encode())}) as r:
        assert r.status == 200
    sim.phone_number_id = NUMBER_ID
    assert await gw.store.marketing_stopped([(CUSTOMER, "whatsapp")]) == set()
    await gw.reaches(await submit(gw, MARKETING), {State.DELIVERED})


async def test_resume_lifts_nothing_a_stop_keyword_or_the_operator_put_there(
        make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    await gw.reaches(await submit(gw, UTILITY), {State.DELIVERED})
    await sim.inbound_text(CUSTOMER, "BAJA", wamid="wamid.STOP")  # campaign opt-out
    async with gw.session.post(f"{gw.url}/api/v1/blacklist", headers=gw.headers(),
                               json={"destinations": [CUSTOMER]}) as r:  # global, operator
        assert r.status == 200 and (await r.json())["added"] == 1
    await sim.user_preferences(CUSTOMER, "stop")
    await stopped(gw)
    await sim.user_preferences(CUSTOMER, "resume")
    await stopped(gw, False)
    assert await gw.store.blacklisted([(CUSTOMER, 1)]) == {(CUSTOMER, 1)}
    assert await listed(gw) == [CUSTOMER]
    assert await listed(gw, campaign="default") == [CUSTOMER]
    sms = await gw.reaches(await submit(gw), {State.BLOCKED})
    assert sms.error == "destination is on the blacklist"


async def test_an_escalation_to_marketing_is_held_back_and_the_journey_ends(
        make_gateway) -> None:
    clock = FakeClock()
    gw = await smart_gateway(make_gateway, clock=clock)  # WhatsApp step: channel "wa"
    mid = await send(gw, "098344406", "Oferta https://shop.example/x")
    await until(gw, mid, lambda j: j["steps"][0]["state_name"] == "DELIVERED")
    assert await gw.store.stop_marketing("+59898344406", "wa", clock(), "WhatsApp: test")
    clock.advance(WAIT_S)  # the SMS reminder still goes ...
    await until(gw, mid, lambda j: len(j["steps"]) == 2
                and j["steps"][1]["state_name"] == "DELIVERED")
    clock.advance(WAIT_S)  # ... the WhatsApp marketing step does not
    j = await until(gw, mid, lambda j: j["state"] == "CANCELLED")
    assert [s["kind"] for s in j["steps"]] == ["sms", "sms", "whatsapp"]
    assert j["steps"][2]["state_name"] == "BLOCKED" and j["note"] == MARKETING_STOPPED
    assert (await journey_of(gw, mid))["cost"] == pytest.approx(0.3)


async def listed(gw: Running, **query: str) -> list[str]:
    async with gw.session.get(f"{gw.url}/api/v1/blacklist", headers=gw.headers(),
                              params=query) as r:
        assert r.status == 200, await r.text()
        return list((await r.json())["destinations"])


# The store on its own ---------------------------------------------------------

async def test_a_late_resume_does_not_lift_a_newer_stop(store) -> None:
    assert await store.stop_marketing(CUSTOMER, "wa", 1000.0, "WhatsApp: stop")
    assert not await store.stop_marketing(CUSTOMER, "wa", 1200.0, "WhatsApp: stop")
    assert not await store.stop_marketing(CUSTOMER, "wa", 1100.0, "WhatsApp: stop")  # late
    assert not await store.resume_marketing(CUSTOMER, "wa", 1150.0)  # older than 1200
    assert await store.marketing_stopped([(CUSTOMER, "wa")]) == {(CUSTOMER, "wa")}
    assert await store.resume_marketing(CUSTOMER, "wa", 1200.0)
    assert await store.marketing_stopped([(CUSTOMER, "wa")]) == set()


async def test_a_stop_is_per_channel_and_apart_from_the_list(store) -> None:
    await store.stop_marketing(CUSTOMER, "wa-1", 1000.0, "WhatsApp: stop")
    pairs = [(CUSTOMER, "wa-1"), (CUSTOMER, "wa-2"), ("+59899111222", "wa-1")]
    assert await store.marketing_stopped(pairs) == {(CUSTOMER, "wa-1")}
    assert await store.blacklisted([(CUSTOMER, 1)]) == set()
    assert await store.blacklist_list(None) == []
    assert await store.blacklist_list(None, scope=marketing_scope("wa-1")) == [(CUSTOMER, None)]
    # The operator's list and the customer's stop live side by side.
    assert await store.blacklist_add([(CUSTOMER, None)], note="operator") == 1
    assert await store.blacklist_remove([(CUSTOMER, None)]) == 1
    assert await store.marketing_stopped(pairs) == {(CUSTOMER, "wa-1")}


async def test_a_131050_report_stops_the_number_dialled_on_that_channel(store) -> None:
    now = time.time()
    [row] = await store.insert_messages([NewMessage(
        1, 1, CUSTOMER, "[template winter_sale]", kind="whatsapp",
        data={"whatsapp": MARKETING})])
    await store.claim("n", 1, now, now + 60, [1])
    await store.record([Sent(row.id, "wa-1", "wamid.X", 0.5, now)], now)
    # Meta's recipient_id may be written otherwise; the row's number counts.
    await store.record_reports([Report("wa-1", "wamid.X", False, "WhatsApp: (#131050) ...",
                                       now + 1, "+598 98 344 484", "131050")])
    assert (await store.get_message(None, row.id)).state == State.FAILED
    assert await store.marketing_stopped([(CUSTOMER, "wa-1")]) == {(CUSTOMER, "wa-1")}
    assert not await store.resume_marketing(CUSTOMER, "wa-1", now)  # older than the refusal
    assert await store.resume_marketing(CUSTOMER, "wa-1", now + 2)


# Without I/O ------------------------------------------------------------------

def test_meta_documented_user_preferences_payload() -> None:
    # Meta's example (user_preferences webhook reference).
    doc = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398",
           "changes": [{"value": {
               "messaging_product": "whatsapp",
               "metadata": {"display_phone_number": "15550783881",
                            "phone_number_id": "106540352242922"},
               "contacts": [{"wa_id": "16505551234"}],
               "user_preferences": [{"wa_id": "16505551234",
                                     "detail": "User requested to resume marketing messages",
                                     "category": "marketing_messages", "value": "resume",
                                     "timestamp": 1731705721}]},
               "field": "user_preferences"}]}]}
    events = webhook.parse("wa", doc, "106540352242922")
    [pref] = events.preferences
    assert (pref.channel, pref.customer, pref.value, pref.at) == (
        "wa", "+16505551234", "resume", 1731705721.0)
    assert not events.inbound and not events.reports and not events.ignored
    assert not webhook.parse("wa", doc, "1").preferences  # another number of the app
    doc["entry"][0]["changes"][0]["value"]["user_preferences"][0]["category"] = "other"
    assert webhook.parse("wa", doc, "106540352242922").ignored


def test_template_category() -> None:
    assert template_category({"whatsapp": MARKETING}) == "marketing"
    assert template_category({"whatsapp": OTP}) == "authentication"
    assert template_category({"whatsapp": {"type": "template"}}, "marketing") == "marketing"
    assert template_category({"whatsapp": {"type": "text"}}, "marketing") is None
    assert template_category(None) is None
    # A misspelt category would slip past a stop: it never goes out.
    typo = {**MARKETING, "category": "marketting"}
    with pytest.raises(PermanentError, match="data.whatsapp.category 'marketting'"):
        prepare(OutgoingMessage(1, CUSTOMER, "", "whatsapp", {"whatsapp": typo}))
    assert "category" not in prepare(OutgoingMessage(1, CUSTOMER, "", "whatsapp",
                                                     {"whatsapp": MARKETING})).body["template"]
