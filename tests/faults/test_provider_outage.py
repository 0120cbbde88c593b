"""A provider answers 500 for a minute, then recovers: nothing is lost, each
message is accepted by the provider once, and meanwhile the channel rests
(its circuit breaker) instead of hammering the provider.

Through the daemon against the Twilio simulator, with the production
defaults for retries and the breaker (retry_base_s 5, block_after 5). The
minute is simulated: the daemon runs on an injected clock that the test
moves on, and the simulator's outage is measured on the same clock.
Bounded: a few seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter

import pytest
from aiohttp import web

from drivers.http.simkit import Fault, FaultScript
from drivers.simulators.twilio import TwilioSimulator, _error_body
from spool.base import ListFilter, State
from tests.faults.common import settle

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("backend", ["sqlite"])]

SID = "AC" + "2" * 32
TOKEN = "twilio-fault-token"
PUBLIC = "https://smsgw.example.test"
OUTAGE_S = 60.0
BLOCK_AFTER, BLOCK_FOR_S, CONCURRENCY = 5, 20.0, 8
MESSAGES = 40


class FakeClock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class Outage(FaultScript):
    """Every request answers 500 until the clock reaches `until`; counts them."""

    def __init__(self, clock: FakeClock, until: float) -> None:
        super().__init__()
        self.clock, self.until = clock, until
        self.failed_at: list[float] = []

    def __len__(self) -> int:
        return 1 if self.clock() < self.until else 0

    async def apply(self) -> web.Response | None:
        now = self.clock()
        if now >= self.until:
            return None
        self.failed_at.append(now)
        fault = Fault(500, _error_body(20500, "Internal Server Error", 500))
        return web.json_response(fault.body, status=500)


@pytest.fixture
async def sim():
    s = TwilioSimulator(account_sid=SID, auth_token=TOKEN, status_delay_s=0.01)
    await s.start()
    yield s
    await s.close()


async def test_provider_500_for_a_minute_rests_the_channel_and_loses_nothing(
        make_gateway, sim: TwilioSimulator) -> None:
    clock = FakeClock()
    channel = {"name": "twilio", "driver": "twilio", "account_sid": SID, "auth_token": TOKEN,
               "from_number": "+15005550006", "public_base_url": PUBLIC, "base_url": sim.url,
               "request_timeout_s": 2, "concurrency": CONCURRENCY,
               "block_after": BLOCK_AFTER, "block_for_s": BLOCK_FOR_S}
    gw = await make_gateway(clock=clock, channels=[channel],
                            dispatcher={"retry_base_s": 5.0, "retry_max_s": 900.0,
                                        "max_attempts": 5})
    sim.caller.route(PUBLIC, gw.url)
    start = clock()
    outage = sim.faults = Outage(clock, start + OUTAGE_S)
    destinations = [f"+5989834{i:04d}" for i in range(MESSAGES)]
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": d, "message": f"otp {i}"}
                         for i, d in enumerate(destinations)]}) as r:
        assert r.status == 202

    async def accepted_all() -> bool:
        return Counter(m["to"] for m in sim.messages.values()) == Counter(destinations)

    # One simulated second per step, each step long enough for the daemon to act.
    for _ in range(int(OUTAGE_S) + 90):
        if await accepted_all():
            break
        await asyncio.sleep(0.03)
        clock.advance(1.0)

    async def delivered() -> bool:
        stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
        return all(m.state == State.DELIVERED for m in stored)
    settled = await settle(delivered, 10)
    stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
    per_dest = Counter(m["to"] for m in sim.messages.values())
    rests = math.ceil(OUTAGE_S / BLOCK_FOR_S)
    bound = rests * (BLOCK_AFTER + CONCURRENCY)
    spread = sorted({round(t - start) for t in outage.failed_at})
    print(f"\n{len(outage.failed_at)} requests answered 500 during the {OUTAGE_S:g} s outage "
          f"(at simulated seconds {spread}); bound {bound}; total requests "
          f"{len(sim.received)}; attempts per message "
          f"{dict(Counter(m.attempts for m in stored))}")
    assert settled, f"not all delivered: {dict(Counter(m.state.name for m in stored))}"
    assert per_dest == Counter(destinations), "each message accepted by the provider once"
    assert 0 < len(outage.failed_at) <= bound, "the channel rested instead of hammering"
    assert len(sim.received) == len(outage.failed_at) + MESSAGES
