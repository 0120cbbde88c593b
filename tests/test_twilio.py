"""The Twilio driver through the running daemon against the Twilio simulator.

The simulator calls the gateway the way Twilio would call it behind a
TLS-terminating proxy: signed for the public URL, delivered to 127.0.0.1.
Signatures are cross-checked with twilio-python's RequestValidator, an
implementation that is not ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from drivers.simulators.twilio import TwilioSimulator
from drivers.twilio import callbacks, signature
from gateway.settings import ConfigError, settings_from_dict
from spool.base import State
from tests.conftest import Running, config, loopback_channel

SID = "AC" + "1" * 32
TOKEN = "twilio-test-token"
PUBLIC = "https://smsgw.example.test"
STATUS_URL = f"{PUBLIC}/hooks/twilio/status"
INBOUND_URL = f"{PUBLIC}/hooks/twilio/inbound"


@pytest.fixture
async def sim():
    s = TwilioSimulator(account_sid=SID, auth_token=TOKEN, inbound_url=INBOUND_URL)
    await s.start()
    yield s
    await s.close()


def twilio_channel(sim: TwilioSimulator, **extra: Any) -> dict[str, Any]:
    return {"name": "twilio", "driver": "twilio", "account_sid": SID, "auth_token": TOKEN,
            "from_number": "+15005550006", "public_base_url": PUBLIC, "base_url": sim.url,
            "cost": 0.0075, "request_timeout_s": 2, "block_after": 100, **extra}


async def gateway_with(make_gateway, sim: TwilioSimulator, **extra: Any) -> Running:
    gw = await make_gateway(channels=[twilio_channel(sim, **extra)],
                            dispatcher={"max_attempts": 5})
    sim.caller.route(PUBLIC, gw.url)
    return gw





# the signature, without I/O -------------------------------------------------

VECTOR_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
VECTOR = [("CallSid", "CA1234567890ABCDE"), ("Digits", "1234"), ("From", "+14158675309"),
          ("To", "+18005551212"), ("Caller", "+14158675309")]


def test_signature_matches_the_documented_vector_and_twilio_python() -> None:
    ours = signature.compute("12345", VECTOR_URL, VECTOR)
    assert ours == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert ours == RequestValidator("12345").compute_signature(VECTOR_URL, dict(VECTOR))
    assert signature.valid("12345", VECTOR_URL, VECTOR, ours)
    assert not signature.valid("54321", VECTOR_URL, VECTOR, ours)
    assert not signature.valid("12345", VECTOR_URL, VECTOR, None)


def test_signature_with_repeated_params_and_ports_agrees_with_twilio_python() -> None:
    params = [("MediaUrl", "https://b.example/2"), ("Body", "x"), ("MediaUrl", "https://a/1")]
    reference = RequestValidator(TOKEN)
    url = "https://gw.example.com:443/hooks/twilio/inbound"
    expected = reference.compute_signature(url, MultiDict(params))
    assert signature.compute(TOKEN, url, params) == expected
    # Twilio may sign with or without the default port: both are accepted.
    bare = reference.compute_signature("https://gw.example.com/hooks/twilio/inbound",
                                       MultiDict(params))
    assert signature.valid(TOKEN, url, params, bare)
    assert reference.validate(url, MultiDict(params), bare)


def test_sha256_settings_header_selects_the_algorithm() -> None:
    algorithm = signature.algorithm_of("key=webhooks_sharedkey_1,algorithm=HMAC_SHA256")
    assert algorithm == "HMAC_SHA256"
    signed = RequestValidator(TOKEN).compute_signature(STATUS_URL, dict(VECTOR), algorithm)
    assert signature.valid(TOKEN, STATUS_URL, VECTOR, signed, algorithm)
    assert signature.algorithm_of(None) == "HMAC_SHA1"


@pytest.mark.parametrize(("status", "final", "delivered"), [
    ("queued", False, False), ("sending", False, False), ("sent", False, False),
    ("delivered", True, True), ("undelivered", True, False), ("failed", True, False)])
def test_status_callbacks_map_to_reports(status: str, final: bool, delivered: bool) -> None:
    report = callbacks.status_report("twilio", {"MessageSid": "SM1", "MessageStatus": status,
                                                "ErrorCode": "30003", "To": "+1555"})
    assert (report.final, report.delivered, report.provider_ref) == (final, delivered, "SM1")
    assert report.detail["status"] == status
    if final and not delivered:
        assert report.error_code == "30003" and "30003" in (report.error or "")


def test_options_need_a_sender(tmp_path: Path) -> None:
    raw = config(tmp_path, channels=[
        {"name": "twilio", "driver": "twilio", "account_sid": SID, "auth_token": TOKEN,
         "public_base_url": PUBLIC}])
    with pytest.raises(ConfigError, match=r"channels\[0\].*from_number or messaging_service"):
        settings_from_dict(raw)


# through the daemon --------------------------------------------------------

async def test_send_then_delivered_by_signed_status_callback(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    mid = await gw.submit_one(text="hola mundo")
    m = await gw.reaches(mid, {State.DELIVERED})
    [req] = sim.received
    assert req.path == f"/2010-04-01/Accounts/{SID}/Messages.json" and req.user == SID
    assert req.get("To") == "+59898344484" and req.get("From") == "+15005550006"
    assert req.get("Body") == "hola mundo" and req.get("StatusCallback") == STATUS_URL
    assert m.provider_ref in sim.messages and m.cost == pytest.approx(0.0075)
    states = [e.state for e in await gw.store.message_events(mid)]
    assert states.index(State.SENT) < states.index(State.DELIVERED)
    assert [d.status for d in sim.caller.deliveries] == [200, 200]


async def test_undelivered_keeps_twilio_error_code(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.outcome("+59898344484", "undelivered", "30003")
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.FAILED})
    assert "30003" in m.error and "unreachable" in m.error


async def test_server_error_is_retried_then_sent(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.fail(1, status=500)
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.DELIVERED})
    assert m.attempts == 2 and len(sim.received) == 2
    notes = [e.note or "" for e in await gw.store.message_events(mid)]
    assert any("HTTP 500" in n for n in notes)


async def test_rate_limit_honours_retry_after(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.rate_limit(1, retry_after_s=1.5)
    mid = await gw.submit_one()

    async def retry_recorded():
        m = await gw.store.get_message(None, mid)
        return m if m.attempts == 1 and m.state == State.TO_PROCESS else None
    waiting = await gw.wait_for(retry_recorded, 5)
    first = sim.received[0].at
    # The dispatcher's own backoff is at most 0.2 s here: only Retry-After explains this.
    assert waiting.next_attempt_at >= first + 1.5 - 0.05
    await gw.reaches(mid, {State.DELIVERED})
    assert sim.received[1].at - first >= 1.5 - 0.05


async def test_provider_timeout_is_retried(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim, request_timeout_s=0.5)
    sim.hang(1, seconds=2.0)
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.DELIVERED})
    assert m.attempts == 2
    notes = [e.note or "" for e in await gw.store.message_events(mid)]
    assert any("did not answer in time" in n for n in notes)


async def test_client_error_fails_with_twilio_code(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.reject(21211, "The 'To' number is not a valid phone number.")
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.FAILED})
    assert m.attempts == 1 and "21211" in m.error


async def test_forged_or_missing_signature_is_refused_and_changes_nothing(
        make_gateway, sim) -> None:
    sim.auto_status = False
    gw = await gateway_with(make_gateway, sim)
    mid = await gw.submit_one()
    m = await gw.reaches(mid, {State.SENT})
    params = {"AccountSid": SID, "MessageSid": m.provider_ref, "MessageStatus": "delivered",
              "SmsSid": m.provider_ref, "SmsStatus": "delivered", "To": m.destination}
    local = f"{gw.url}/hooks/twilio/status"
    attempts = [
        {},  # no signature at all
        {"X-Twilio-Signature": RequestValidator("wrong-token").compute_signature(
            STATUS_URL, params)},
        # Right token, but signed for the local URL, not the one Twilio was given.
        {"X-Twilio-Signature": RequestValidator(TOKEN).compute_signature(local, params)},
    ]
    for headers in attempts:
        async with gw.session.post(local, data=params, headers=headers) as r:
            assert r.status == 403
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    # The same callback signed by the reference implementation is accepted.
    good = RequestValidator(TOKEN).compute_signature(STATUS_URL, params)
    async with gw.session.post(local, data=params, headers={"X-Twilio-Signature": good}) as r:
        assert r.status == 200
    await gw.reaches(mid, {State.DELIVERED})


async def test_inbound_is_stored_once_and_answered_with_empty_twiml(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await gw.reaches(await gw.submit_one(), {State.DELIVERED})  # makes the sender a known contact
    first = await sim.inbound("+59898344484", "quiero saber mas", sid="SM" + "a" * 32)
    retry = await sim.inbound("+59898344484", "quiero saber mas", sid="SM" + "a" * 32)
    for got in (first, retry):
        assert got.status == 200 and "<Response></Response>" in got.body
    stored = [r for r in await gw.inbound() if r.channel == "twilio"]
    assert len(stored) == 1
    assert stored[0].provider_ref == "SM" + "a" * 32 and stored[0].text == "quiero saber mas"
    assert stored[0].sender == "+59898344484"


async def test_forged_inbound_is_refused_and_not_stored(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await gw.reaches(await gw.submit_one(), {State.DELIVERED})
    params = {"MessageSid": "SM" + "b" * 32, "From": "+59898344484", "To": "+15005550006",
              "Body": "forged"}
    forged = RequestValidator("not-the-token").compute_signature(INBOUND_URL, params)
    async with gw.session.post(f"{gw.url}/hooks/twilio/inbound", data=params,
                               headers={"X-Twilio-Signature": forged}) as r:
        assert r.status == 403
    assert not [r for r in await gw.inbound() if r.channel == "twilio"]


async def test_stop_by_sms_blocks_the_next_message(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await gw.reaches(await gw.submit_one(), {State.DELIVERED})
    await sim.inbound("+59898344484", "STOP", sid="SM" + "s" * 32)

    async def listed():
        return await gw.store.blacklisted([("+59898344484", 1)])
    await gw.wait_for(listed)
    nxt = await gw.submit_one(text="otra promo")
    assert (await gw.store.get_message(None, nxt)).state == State.BLOCKED


# signing with a SharedKey (Webhook Settings) ---------------------------------

SHARED_ID = "webhooks_sharedkey_01jx6t3h0000000000000000aa"
SHARED_SECRET = "shared-key-secret"


def test_shared_key_signature_agrees_with_twilio_python() -> None:
    header = f"key={SHARED_ID},algorithm=HMAC_SHA256"
    assert signature.key_id_of(header) == SHARED_ID
    assert signature.key_id_of(None) is None
    signed = signature.compute(SHARED_SECRET, STATUS_URL, VECTOR, signature.algorithm_of(header))
    reference = RequestValidator(SHARED_SECRET)
    assert reference.validate(STATUS_URL, dict(VECTOR), signed, "HMAC_SHA256")
    assert not RequestValidator(TOKEN).validate(STATUS_URL, dict(VECTOR), signed, "HMAC_SHA256")


async def test_callbacks_signed_with_a_shared_key_are_accepted(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim, webhook_signing_key=SHARED_SECRET)
    sim.use_shared_key(SHARED_ID, SHARED_SECRET)
    mid = await gw.submit_one()
    await gw.reaches(mid, {State.DELIVERED})
    assert [d.status for d in sim.caller.deliveries] == [200, 200]
    sid = (await gw.store.get_message(None, mid)).provider_ref
    params = [("MessageSid", sid), ("MessageStatus", "delivered"), ("To", "+59898344484")]
    local = f"{gw.url}/hooks/twilio/status"
    header = {signature.SETTINGS_HEADER: f"key={SHARED_ID},algorithm=HMAC_SHA256"}
    # The settings header says "shared key": the auth token does not sign it.
    by_token = RequestValidator(TOKEN).compute_signature(STATUS_URL, dict(params), "HMAC_SHA256")
    async with gw.session.post(local, data=params,
                               headers={**header, signature.HEADER: by_token}) as r:
        assert r.status == 403
    # Plain callbacks (no settings header) are still signed with the auth token.
    sim.shared_key = None
    await gw.reaches(await gw.submit_one("098344485"), {State.DELIVERED})


async def test_rotation_takes_the_secret_named_by_the_key_id(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim, webhook_signing_keys={
        "webhooks_sharedkey_old": "old-secret", "webhooks_sharedkey_new": "new-secret"})
    for key_id, secret, dest in (("webhooks_sharedkey_old", "old-secret", "098344486"),
                                 ("webhooks_sharedkey_new", "new-secret", "098344487")):
        sim.use_shared_key(key_id, secret, "HMAC_SHA1")
        await gw.reaches(await gw.submit_one(dest), {State.DELIVERED})
    sim.use_shared_key("webhooks_sharedkey_new", "old-secret")  # the wrong one for that id
    mid = await gw.submit_one("098344488")
    await gw.wait_for(lambda: _settled(sim, 2 * 3))
    assert sim.caller.deliveries[-1].status == 403
    assert (await gw.store.get_message(None, mid)).state == State.SENT


async def test_shared_key_callbacks_are_refused_without_the_option(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.use_shared_key(SHARED_ID, TOKEN)  # even a key whose secret is the token
    mid = await gw.submit_one()
    await gw.wait_for(lambda: _settled(sim, 2))
    assert [d.status for d in sim.caller.deliveries] == [403, 403]
    assert (await gw.store.get_message(None, mid)).state == State.SENT


async def _settled(sim: TwilioSimulator, callbacks_made: int) -> bool:
    return len(sim.caller.deliveries) >= callbacks_made


# 21610: the recipient unsubscribed from our sender ---------------------------------

async def test_unsubscribed_recipient_fails_once_then_is_blocked(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.unsubscribed.add("+59898344484")
    m = await gw.reaches(await gw.submit_one(), {State.FAILED})
    assert m.attempts == 1 and "21610" in m.error and "unsubscribed" in m.error
    assert await gw.store.senders_stopped([("+59898344484", "twilio")]) == {
        ("+59898344484", "twilio")}
    later = await gw.reaches(await gw.submit_one(text="otra"), {State.BLOCKED})
    assert "unsubscribed" in later.error
    assert len(sim.received) == 1  # the queue stopped asking Twilio
    # Other numbers go on, and the number is not on the global list.
    await gw.reaches(await gw.submit_one("098344499"), {State.DELIVERED})
    assert not await gw.store.blacklisted([("+59898344484", 1)])


async def test_start_from_the_customer_lifts_the_stop_on_that_sender(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.unsubscribed.add("+59898344484")
    await gw.reaches(await gw.submit_one(), {State.FAILED})
    await gw.reaches(await gw.submit_one(text="otra"), {State.BLOCKED})
    async with gw.session.get(f"{gw.url}/api/v1/blacklist", headers=gw.headers(),
                              params={"scope": "sender_stop:twilio"}) as listed:
        assert (await listed.json())["destinations"] == ["+59898344484"]
    assert (await sim.inbound("+59898344484", "Start")).status == 200

    async def lifted() -> bool:
        return not await gw.store.senders_stopped([("+59898344484", "twilio")])
    await gw.wait_for(lifted)
    await gw.reaches(await gw.submit_one(text="de nuevo"), {State.DELIVERED})
    assert len(sim.received) == 2  # the refused one and the one after START


async def test_unsubscribed_on_one_sender_goes_through_another(make_gateway, sim) -> None:
    gw = await make_gateway(channels=[twilio_channel(sim), loopback_channel("modem")],
                            dispatcher={"max_attempts": 5})
    sim.caller.route(PUBLIC, gw.url)
    await gw.store.stop_sender("+59898344484", "twilio", 0.0, note="21610")
    done = [await gw.reaches(await gw.submit_one(text=f"m{i}"), {State.SENT, State.DELIVERED})
            for i in range(4)]
    assert {m.channel for m in done} == {"modem"} and not sim.received


async def test_unsubscribed_in_a_status_callback_is_the_same_stop(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim, messaging_service_sid="MG" + "3" * 32)
    sim.outcome("+59898344484", "failed", "21610")
    m = await gw.reaches(await gw.submit_one(), {State.FAILED})
    assert "21610" in m.error
    later = await gw.reaches(await gw.submit_one(text="otra"), {State.BLOCKED})
    assert "unsubscribed" in later.error
