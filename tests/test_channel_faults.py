"""Credentials that stop working rest the channel and keep the queue.

Each provider simulator is made to refuse the gateway's credentials the way
the real one does (Kannel: `403 Authorization failed`; Twilio: HTTP 401,
error 20003; Meta: HTTP 401, error 190). The channel must rest through its
breaker, show the fault in /api/v1/stats, charge no message an attempt and
fail none (even with `max_attempts = 2` and several failed probes); once the
credentials work again, everything goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from drivers.simulators.twilio import TwilioSimulator
from drivers.simulators.whatsapp import WhatsAppSimulator
from spool.base import NewMessage, State
from tests.conftest import Running
from tests.test_http_driver import Aggregator, kannel
from tests.test_stats import stats

pytestmark = pytest.mark.timeout(60)

PUBLIC = "https://smsgw.example.test"
# Quick rests so that several probes fail within a second; few attempts so
# that charging them would fail the messages at once.
FAST = {"block_after": 5, "block_for_s": 0.1}
DISPATCH = {"max_attempts": 2}
QUEUED = 6
WAITING = {State.TO_PROCESS, State.SENDING}
DONE = {State.SENT, State.DELIVERED}


async def channel_view(gw: Running, name: str) -> dict[str, Any]:
    return {c["name"]: c for c in (await stats(gw, gw.key))["channels"]}[name]


async def rides_out_refused_credentials(gw: Running, channel: str, ids: list[int],
                                        requests: Callable[[], int],
                                        fix: Callable[[], None]) -> None:
    """With the credentials refused: the channel shows the fault, several
    probes fail, and the queue stays whole and uncharged. Then `fix`: all go."""
    async def faulted() -> dict[str, Any] | None:
        view = await channel_view(gw, channel)
        return view if view["fault"] == "authentication failed" and requests() >= 4 else None

    view = await gw.wait_for(faulted, 15)
    assert view["breaker"] in ("open", "half_open")
    assert "authentication failed" in view["last_error"]
    assert requests() < 4 + QUEUED  # the breaker rests it: no message tries on its own
    messages = [await gw.store.get_message(None, i) for i in ids]
    assert {m.state for m in messages} <= WAITING, [(m.state, m.error) for m in messages]
    assert all(m.attempts == 0 for m in messages)
    fix()
    done = [await gw.reaches(i, DONE, timeout=30) for i in ids]
    assert all(m.attempts == 1 for m in done)
    assert (await channel_view(gw, channel))["fault"] is None


async def submit(gw: Running) -> list[int]:
    return [await gw.submit_one(f"0983444{i:02d}", f"hola {i}") for i in range(QUEUED)]


# Kannel through the generic HTTP driver -------------------------------------------

async def test_kannel_rotated_password_rests_the_channel_and_keeps_the_queue(
        make_gateway) -> None:
    agg = Aggregator()
    await agg.server.start()
    try:
        gw = await make_gateway(channels=[kannel(agg, password="old-password", **FAST)],
                                dispatcher=DISPATCH)
        ids = await submit(gw)
        assert (await gw.store.get_message(None, ids[0])).state in WAITING

        def rotate() -> None:  # the operator puts in Kannel's password
            gw.app.services.router.runners["kannel"].channel._opt = \
                gw.app.services.router.runners["kannel"].channel._opt.model_copy(
                    update={"password": "kpass"})

        await rides_out_refused_credentials(gw, "kannel", ids, lambda: len(agg.received),
                                            rotate)
    finally:
        await agg.caller.close()
        await agg.server.close()


# Twilio ---------------------------------------------------------------------------

@pytest.fixture
async def twilio() -> AsyncIterator[TwilioSimulator]:
    sim = TwilioSimulator(account_sid="AC" + "1" * 32, auth_token="tok")
    await sim.start()
    yield sim
    await sim.close()


async def test_twilio_20003_rests_the_channel_and_keeps_the_queue(
        make_gateway, twilio: TwilioSimulator) -> None:
    gw = await make_gateway(channels=[{
        "name": "twilio", "driver": "twilio", "account_sid": twilio.account_sid,
        "auth_token": "tok", "from_number": "+15005550006", "public_base_url": PUBLIC,
        "base_url": twilio.url, "status_callbacks": False, **FAST}], dispatcher=DISPATCH)
    twilio.auth_token = "rotated-at-twilio"  # the account's token changed under us
    ids = await submit(gw)

    def restore() -> None:
        twilio.auth_token = "tok"

    await rides_out_refused_credentials(gw, "twilio", ids, lambda: len(twilio.received),
                                        restore)
    assert not twilio.faults


# WhatsApp (Meta) ------------------------------------------------------------------

async def test_whatsapp_expired_token_rests_the_channel_and_keeps_the_queue(
        make_gateway) -> None:
    sim = WhatsAppSimulator(access_token="wa-token", app_secret="wa-secret",
                            phone_number_id="106540352242922")
    await sim.start()
    try:
        gw = await make_gateway(channels=[{
            "name": "whatsapp", "driver": "whatsapp", "phone_number_id": "106540352242922",
            "access_token": "wa-token", "app_secret": "wa-secret", "verify_token": "v",
            "base_url": sim.url, **FAST}], dispatcher=DISPATCH)
        sim.access_token = "token-of-the-new-system-user"
        ids = await enqueue_templates(gw)

        def restore() -> None:
            sim.access_token = "wa-token"

        await rides_out_refused_credentials(gw, "whatsapp", ids, lambda: len(sim.received),
                                            restore)
    finally:
        await sim.close()


async def enqueue_templates(gw: Running) -> list[int]:
    tenant = await gw.store.tenant_by_name("default")
    campaign = await gw.store.campaign_by_name(tenant.id, "default")
    template = {"type": "template", "template": {"name": "notice",
                                                 "language": {"code": "es"}}}
    rows = await gw.store.insert_messages([NewMessage(
        tenant=tenant.id, campaign=campaign.id, destination=f"+5989834440{i}",
        message="notice", kind="whatsapp", data={"whatsapp": template})
        for i in range(QUEUED)])
    gw.app.services.intake.accepted(len(rows))
    return [r.id for r in rows]


