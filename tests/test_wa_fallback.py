"""WhatsApp smart utility fallback through the running daemon (loopback
WhatsApp channel that reports marketing templates failed with 131049)."""

from __future__ import annotations

import pytest

from spool.base import NewMessage, State
from tests.conftest import FakeClock, Running, loopback_channel

FALLBACK = {"whatsapp_fallback": {"enabled": True, "template": "permission_ask",
                                  "language": "es", "utility_price": 0.03,
                                  "session_price": 0.5, "list_button": "Opciones"}}
RENDERED = {"header": {"type": "image", "link": "https://cdn.example/sale.jpg"},
            "body": "Winter sale: 30% off", "footer": "Reply STOP to opt out",
            "buttons": [{"type": "url", "text": "Shop now", "url": "https://shop.example"}]}


async def fallback_gateway(make_gateway, clock=None, code: str = "131049") -> Running:
    gw = await make_gateway(
        channels=[loopback_channel("wa", kind="whatsapp", cost=0.5, report_delay_ms=10,
                                   undelivered_templates=["winter_sale"],
                                   undelivered_code=code)],
        journeys={"tick_s": 0.02}, clock=clock)
    async with gw.session.patch(f"{gw.url}/api/v1/campaigns/default", headers=gw.headers(),
                                json={"smart": FALLBACK}) as r:
        assert r.status == 200, await r.text()
    await gw.app.services.campaigns.reload()
    return gw


async def marketing(gw: Running, destination: str) -> int:
    template = {"name": "winter_sale", "language": {"code": "es"}, "components": []}
    [row] = await gw.store.insert_messages([NewMessage(
        tenant=1, campaign=1, destination=destination, message="[template winter_sale]",
        kind="whatsapp", data={"whatsapp": {"type": "template", "template": template,
                                            "rendered": RENDERED}})])
    gw.app.services.intake.accepted(1)
    return row.id


async def fallback_state(gw: Running, mid: int, state: str) -> dict:
    async def check():
        async with gw.session.get(f"{gw.url}/api/v1/messages/{mid}",
                                  headers=gw.headers()) as r:
            body = await r.json()
        return body if (body.get("fallback") or {}).get("state") == state else None
    return await gw.wait_for(check)


async def test_failed_marketing_is_recovered_after_the_customer_answers(make_gateway) -> None:
    gw = await fallback_gateway(make_gateway)
    mid = await marketing(gw, "+59898344484")
    asked = await fallback_state(gw, mid, "ASKED")
    assert asked["state_name"] == "FAILED" and asked["cost"] == 0
    assert asked["fallback"]["error_code"] == "131049"
    utility = await gw.store.get_message(None, asked["fallback"]["utility_message"])
    assert utility.data["whatsapp"]["template"]["name"] == "permission_ask"
    # The customer taps the quick reply of the utility template.
    async with gw.session.post(f"{gw.url}/hooks/wa/inbound",
                               data={"from": "+59898344484", "button": "YES", "id": "w1"}) as r:
        assert r.status == 200
    await fallback_state(gw, mid, "ANSWERED")

    async def session_sent():
        rows = await gw.store.list_messages(_all())
        sess = [m for m in rows if (m.data or {}).get("_smsgw", {}).get("category") == "marketing"
                and m.state in (State.SENT, State.DELIVERED)]
        return sess or None
    [session] = await gw.wait_for(session_sent)
    interactive = session.data["whatsapp"]["interactive"]
    assert interactive["type"] == "cta_url" and interactive["header"]["type"] == "image"
    utility = await gw.store.get_message(None, utility.id)
    assert (utility.cost, session.cost) == (pytest.approx(0.03), pytest.approx(0.5))
    # Question and answer go through the business number the customer knows:
    # the offer's, then the one the customer answered (its window is open).
    original = await gw.store.get_message(None, mid)
    assert utility.data["_smsgw"]["channel"] == original.channel == utility.channel == "wa"
    assert session.data["_smsgw"]["channel"] == "wa" == session.channel


async def test_no_answer_in_24_hours_ends_the_fallback(make_gateway) -> None:
    clock = FakeClock()
    gw = await fallback_gateway(make_gateway, clock=clock)
    mid = await marketing(gw, "+59898344485")
    await fallback_state(gw, mid, "ASKED")
    clock.advance(24 * 3600 + 1)
    await fallback_state(gw, mid, "EXPIRED")
    async with gw.session.post(f"{gw.url}/hooks/wa/inbound",
                               data={"from": "+59898344485", "button": "YES", "id": "w2"}) as r:
        assert r.status == 200
    rows = await gw.store.list_messages(_all())
    assert not [m for m in rows if (m.data or {}).get("_smsgw", {}).get("category")
                == "marketing"], "a late answer sends nothing"


async def test_other_failure_codes_are_not_recovered(make_gateway) -> None:
    gw = await fallback_gateway(make_gateway, code="131026")  # not on WhatsApp at all
    mid = await marketing(gw, "+59898344487")
    body = await fallback_state(gw, mid, "SKIPPED")
    assert body["fallback"]["utility_message"] is None


async def test_a_no_does_not_send_the_original(make_gateway) -> None:
    gw = await fallback_gateway(make_gateway)
    mid = await marketing(gw, "+59898344486")
    await fallback_state(gw, mid, "ASKED")
    async with gw.session.post(f"{gw.url}/hooks/wa/inbound",
                               data={"from": "+59898344486", "button": "No, gracias",
                                     "id": "w3"}) as r:
        assert r.status == 200
    body = await fallback_state(gw, mid, "ASKED")  # still waiting: "no" is not a yes
    assert body["fallback"]["state"] == "ASKED"


def _all():
    from spool.base import ListFilter
    return ListFilter(tenant=1, limit=1000)
