"""The WhatsApp Cloud API driver through the running daemon against the
simulator. The public API does not take `kind` yet: rows are inserted with
the store and the intake is nudged, as a journey or the API will later."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest

from drivers.simulators.whatsapp import WhatsAppSimulator
from spool.base import NewMessage, State
from tests.conftest import Running

TOKEN = "wa-access-token"
SECRET = "wa-app-secret"
VERIFY = "wa-verify-token"
NUMBER_ID = "106540352242922"
PUBLIC = "https://smsgw.example.test"
HOOK = f"{PUBLIC}/hooks/whatsapp"
CUSTOMER = "+59898344484"
TEMPLATE = {"type": "template", "template": {
    "name": "order_shipped", "language": {"code": "es"},
    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Ana"}]},
                   {"type": "button", "sub_type": "quick_reply", "index": "0",
                    "parameters": [{"type": "payload", "payload": "MORE"}]}]}}


@pytest.fixture
async def sim():
    s = WhatsAppSimulator(access_token=TOKEN, app_secret=SECRET, phone_number_id=NUMBER_ID,
                          webhook_url=HOOK)
    await s.start()
    yield s
    await s.close()


async def gateway_with(make_gateway, sim: WhatsAppSimulator, **extra: Any) -> Running:
    channel = {"name": "whatsapp", "driver": "whatsapp", "phone_number_id": NUMBER_ID,
               "access_token": TOKEN, "app_secret": SECRET, "verify_token": VERIFY,
               "base_url": sim.url, "cost": 0.5, "request_timeout_s": 2, "block_after": 100,
               **extra}
    gw = await make_gateway(channels=[channel], dispatcher={"max_attempts": 5})
    sim.caller.route(PUBLIC, gw.url)
    return gw


async def enqueue(gw: Running, spec: dict[str, Any] | None, text: str = "hola",
                  destination: str = CUSTOMER) -> int:
    tenant = await gw.store.tenant_by_name("default")
    campaign = await gw.store.campaign_by_name(tenant.id, "default")
    data = {"whatsapp": spec} if spec is not None else None
    [row] = await gw.store.insert_messages([NewMessage(
        tenant=tenant.id, campaign=campaign.id, destination=destination, message=text,
        kind="whatsapp", data=data)])
    gw.app.services.intake.accepted(1)
    return row.id




def meta_signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def test_template_sent_then_delivered_then_read(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.outcome(CUSTOMER, "delivered", read=True)
    mid = await enqueue(gw, TEMPLATE, "Hola Ana, tu pedido salió")
    m = await gw.reaches(mid, {State.DELIVERED})
    [req] = sim.received
    assert req.path == f"/v25.0/{NUMBER_ID}/messages" and req.token == TOKEN
    assert req.body["to"] == "59898344484" and req.body["type"] == "template"
    assert req.body["template"] == TEMPLATE["template"]
    assert req.body["biz_opaque_callback_data"] == str(mid)
    assert m.provider_ref in sim.messages and m.cost == pytest.approx(0.5)
    await sim.caller.idle()
    assert [d.status for d in sim.caller.deliveries] == [200, 200, 200]  # sent, delivered, read
    assert (await gw.store.get_message(None, mid)).state == State.DELIVERED


async def test_template_through_the_json_api(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344484", "kind": "whatsapp", "whatsapp": TEMPLATE}) as r:
        assert r.status == 202, await r.text()
        mid = (await r.json())["id"]
    m = await gw.reaches(mid, {State.DELIVERED})
    assert (m.kind, m.channel) == ("whatsapp", "whatsapp")
    assert sim.received[0].body["template"] == TEMPLATE["template"]


async def test_failed_131049_keeps_the_code_in_the_error(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.outcome(CUSTOMER, "failed", 131049)
    mid = await enqueue(gw, TEMPLATE)
    m = await gw.reaches(mid, {State.FAILED})
    assert "131049" in m.error and "healthy ecosystem" in m.error


async def test_synchronous_refusal_fails_at_once_with_its_code(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.reject(131026, "Message undeliverable", "Unable to deliver message.")
    mid = await enqueue(gw, TEMPLATE)
    m = await gw.reaches(mid, {State.FAILED})
    assert m.attempts == 1 and "131026" in m.error


async def test_server_error_is_retried_then_sent(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.fail(1)
    mid = await enqueue(gw, TEMPLATE)
    m = await gw.reaches(mid, {State.DELIVERED})
    assert m.attempts == 2 and len(sim.received) == 2


async def test_rate_limit_honours_retry_after(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.rate_limit(1, retry_after_s=1.5)
    mid = await enqueue(gw, TEMPLATE)

    async def retry_recorded():
        m = await gw.store.get_message(None, mid)
        return m if m.attempts == 1 and m.state == State.TO_PROCESS else None
    waiting = await gw.wait_for(retry_recorded, 5)
    first = sim.received[0].at
    assert waiting.next_attempt_at >= first + 1.5 - 0.05
    assert "130429" in waiting.error
    await gw.reaches(mid, {State.DELIVERED})
    assert sim.received[1].at - first >= 1.5 - 0.05


async def test_provider_timeout_is_retried(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim, request_timeout_s=0.5)
    sim.hang(1, seconds=2.0)
    mid = await enqueue(gw, TEMPLATE)
    m = await gw.reaches(mid, {State.DELIVERED})
    assert m.attempts == 2


async def test_forged_webhooks_are_refused_and_change_nothing(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    sim.webhook_url = None  # statuses come from this test only
    mid = await enqueue(gw, TEMPLATE)
    m = await gw.reaches(mid, {State.SENT})
    sim.webhook_url = HOOK
    raw = json.dumps(sim.envelope({"statuses": [
        {"id": m.provider_ref, "status": "delivered", "timestamp": "1700000000",
         "recipient_id": "59898344484"}]})).encode()
    local = f"{gw.url}/hooks/whatsapp"
    for body, header in ((raw, None), (raw, meta_signature(raw, "not-the-secret")),
                         (raw.replace(b"delivered", b"delivered "), meta_signature(raw))):
        headers = {"Content-Type": "application/json"}
        if header:
            headers["X-Hub-Signature-256"] = header
        async with gw.session.post(local, data=body, headers=headers) as r:
            assert r.status == 403
    assert (await gw.store.get_message(None, mid)).state == State.SENT
    async with gw.session.post(local, data=raw, headers={
            "Content-Type": "application/json", "X-Hub-Signature-256": meta_signature(raw)}) as r:
        assert r.status == 200
    await gw.reaches(mid, {State.DELIVERED})


async def test_subscription_check(make_gateway, sim) -> None:
    await gateway_with(make_gateway, sim)
    ok = await sim.verify(VERIFY, "8123")
    assert (ok.status, ok.body) == (200, "8123")
    assert (await sim.verify("guess", "8123")).status == 403


async def test_inbound_stored_once_with_reply_data(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await gw.reaches(await enqueue(gw, TEMPLATE), {State.DELIVERED})
    first = await sim.inbound_text(CUSTOMER, "quiero saber mas", wamid="wamid.IN1")
    retry = await sim.inbound_text(CUSTOMER, "quiero saber mas", wamid="wamid.IN1")
    assert first.status == retry.status == 200
    await sim.inbound_button(CUSTOMER, "MORE", "Más info", context_id="wamid.tpl",
                             wamid="wamid.IN2")
    await sim.inbound_reply(CUSTOMER, "list_reply", "c1", "Jackets", wamid="wamid.IN3")
    stored = {r.provider_ref: r for r in await gw.inbound() if r.channel == "whatsapp"}
    assert sorted(stored) == ["wamid.IN1", "wamid.IN2", "wamid.IN3"]
    assert stored["wamid.IN1"].text == "quiero saber mas"
    assert stored["wamid.IN1"].sender == CUSTOMER
    button = stored["wamid.IN2"].data
    assert (button["type"], button["payload"], button["title"]) == ("button", "MORE", "Más info")
    listed = stored["wamid.IN3"].data
    assert (listed["type"], listed["id"], listed["title"]) == ("list_reply", "c1", "Jackets")


async def test_free_form_needs_the_window_open(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    closed = await enqueue(gw, {"type": "text"}, "¿Seguimos?")
    m = await gw.reaches(closed, {State.FAILED})
    assert "outside the 24-hour customer-service window; send a template" in m.error
    assert m.attempts == 1 and not sim.received
    assert (await sim.inbound_text(CUSTOMER, "hola")).status == 200
    ids = [await enqueue(gw, {"type": "text"}, "¿Seguimos?"),
           await enqueue(gw, {"type": "interactive", "interactive": {
               "type": "button", "body": {"text": "¿Cuándo?"}, "action": {"buttons": [
                   {"type": "reply", "reply": {"id": "am", "title": "Mañana"}},
                   {"type": "reply", "reply": {"id": "pm", "title": "Tarde"}}]}}}),
           await enqueue(gw, {"type": "interactive", "interactive": {
               "type": "cta_url", "body": {"text": "Tu pedido"}, "action": {
                   "name": "cta_url", "parameters": {"display_text": "Ver pedido",
                                                     "url": "https://s.example/aB3x"}}}}),
           await enqueue(gw, {"type": "image", "image": {"link": "https://cdn.example/p.jpg"}},
                         "Así quedó")]
    for mid in ids:
        await gw.reaches(mid, {State.DELIVERED})
    # Sent concurrently: any order.
    assert sorted(r.body["type"] for r in sim.received) == ["image", "interactive",
                                                            "interactive", "text"]


async def test_four_reply_buttons_fail_with_the_limit_named(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await sim.inbound_text(CUSTOMER, "hola")
    buttons = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"Opción {i}"}}
               for i in range(4)]
    mid = await enqueue(gw, {"type": "interactive", "interactive": {
        "type": "button", "body": {"text": "Elegí"}, "action": {"buttons": buttons}}})
    m = await gw.reaches(mid, {State.FAILED})
    assert "interactive.action.buttons: 1 to 3 reply buttons (got 4)" in m.error
    assert m.attempts == 1 and not sim.received


async def test_stop_on_whatsapp_blocks_the_next_message(make_gateway, sim) -> None:
    gw = await gateway_with(make_gateway, sim)
    await gw.reaches(await enqueue(gw, TEMPLATE), {State.DELIVERED})
    await sim.inbound_text(CUSTOMER, "Baja", wamid="wamid.STOP1")

    async def listed():
        return await gw.store.blacklisted([(CUSTOMER, 1)])
    await gw.wait_for(listed)
    nxt = await enqueue(gw, TEMPLATE)
    await gw.reaches(nxt, {State.BLOCKED})
