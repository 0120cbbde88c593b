"""Money per segment: every driver, through the running daemon and its
simulator, bills an SMS by the gateway's own part count (a provider's count
may only raise it) and a WhatsApp message once.

Before this held, loopback, the generic HTTP driver with `id_from = "ours"`
(Kannel) and Twilio Messaging Service sends (which answer `num_segments:
"0"`) all billed one part, so a 4-part SMS cost 0.15 instead of 0.60.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from drivers.simulators.dinstar import DinstarSimulator
from drivers.simulators.modem import ModemSimulator
from drivers.simulators.twilio import TwilioSimulator
from drivers.simulators.whatsapp import WhatsAppSimulator
from drivers.sms.segments import count_segments
from spool.base import NewMessage, State
from tests.conftest import Running, loopback_channel
from tests.test_dinstar import dinstar_channel
from tests.test_http_driver import Aggregator, kannel
from tests.test_serial_gateway import serial_channel, wait_up

pytestmark = pytest.mark.timeout(60)

GSM7_4 = "Lorem ipsum dolor sit amet. " * 21 + "0123456789"  # 598 septets: 4 parts
UCS2_3 = "Привет, мир! " * 15 + "жжжжж"  # 200 UTF-16 units: 3 parts
DONE = {State.SENT, State.DELIVERED}
PUBLIC = "https://smsgw.example.test"


def test_the_texts_are_what_they_claim() -> None:
    assert count_segments(GSM7_4) == ("gsm7", 4)
    assert count_segments(UCS2_3) == ("ucs2", 3)


async def sent_costs(gw: Running) -> tuple[float, float]:
    """Submit the 4-part GSM-7 and the 3-part UCS-2 message; their costs once sent."""
    ids = [await gw.submit_one("098344401", GSM7_4), await gw.submit_one("098344402", UCS2_3)]
    done = [await gw.reaches(mid, DONE, timeout=15) for mid in ids]
    return done[0].cost, done[1].cost


def assert_per_segment(costs: tuple[float, float], unit: float) -> None:
    assert costs == (pytest.approx(4 * unit), pytest.approx(3 * unit))


async def test_loopback_bills_each_segment(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("loop-a", cost=0.15)])
    assert_per_segment(await sent_costs(gw), 0.15)


@pytest.fixture
async def twilio() -> AsyncIterator[TwilioSimulator]:
    sim = TwilioSimulator(account_sid="AC" + "1" * 32, auth_token="tok")
    await sim.start()
    yield sim
    await sim.close()


@pytest.mark.parametrize("sender", [{"from_number": "+15005550006"},
                                    {"messaging_service_sid": "MG" + "2" * 32}])
async def test_twilio_bills_each_segment_even_when_it_answers_zero(
        make_gateway, twilio: TwilioSimulator, sender: dict[str, str]) -> None:
    gw = await make_gateway(channels=[{
        "name": "twilio", "driver": "twilio", "account_sid": twilio.account_sid,
        "auth_token": "tok", "public_base_url": PUBLIC, "base_url": twilio.url,
        "status_callbacks": False, "cost": 0.0075, **sender}])
    assert_per_segment(await sent_costs(gw), 0.0075)
    answered = {m["num_segments"] for m in twilio.messages.values()}
    assert answered == ({"0"} if "messaging_service_sid" in sender else {"4", "3"})


async def test_http_driver_with_our_ids_bills_each_segment(make_gateway) -> None:
    agg = Aggregator()
    await agg.server.start()
    try:
        gw = await make_gateway(channels=[kannel(agg, cost=0.02)])
        agg.caller.route(PUBLIC, gw.url)
        assert_per_segment(await sent_costs(gw), 0.02)
    finally:
        await agg.caller.close()
        await agg.server.close()


async def test_dinstar_bills_each_segment(make_gateway) -> None:
    sim = DinstarSimulator(1, latency_s=0.01, dlr_delay_s=0.02)
    await sim.start()
    try:
        gw = await make_gateway(channels=[dinstar_channel(sim, ports="0", cost=0.1)])
        assert_per_segment(await sent_costs(gw), 0.1)
    finally:
        await sim.close()


async def test_whatsapp_bills_each_message_once_however_long(make_gateway) -> None:
    sim = WhatsAppSimulator(access_token="wa-token", app_secret="wa-secret",
                            phone_number_id="106540352242922")
    await sim.start()
    try:
        gw = await make_gateway(channels=[{
            "name": "whatsapp", "driver": "whatsapp", "phone_number_id": "106540352242922",
            "access_token": "wa-token", "app_secret": "wa-secret", "verify_token": "v",
            "base_url": sim.url, "cost": 0.5}])
        tenant = await gw.store.tenant_by_name("default")
        campaign = await gw.store.campaign_by_name(tenant.id, "default")
        rows = await gw.store.insert_messages([NewMessage(
            tenant=tenant.id, campaign=campaign.id, destination=f"+5989834440{i}",
            message=text, kind="whatsapp", data={"whatsapp": {"type": "template", "template": {
                "name": "notice", "language": {"code": "es"}, "components": [
                    {"type": "body", "parameters": [{"type": "text", "text": text}]}]}}})
            for i, text in enumerate((GSM7_4, UCS2_3))])
        gw.app.services.intake.accepted(len(rows))
        done = [await gw.reaches(r.id, DONE, timeout=15) for r in rows]
        assert [m.cost for m in done] == [pytest.approx(0.5)] * 2
    finally:
        await sim.close()


async def test_serial_modem_bills_each_segment(make_gateway, tmp_path) -> None:
    sim = await ModemSimulator(tmp_path / "ttyM1").start()
    try:
        gw = await make_gateway(channels=[serial_channel("m1", sim, cost=0.15)])
        await wait_up(gw, "m1")
        assert_per_segment(await sent_costs(gw), 0.15)
    finally:
        await sim.close()
