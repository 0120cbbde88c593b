"""A provider answers 500 for a while, then recovers: nothing is lost, each
message is accepted by the provider once, and meanwhile the channel rests
(its circuit breaker) instead of hammering the provider: after the first
wave it sends one probe per rest, the rest doubling up to MAX_REST_S.

Through the daemon against the Twilio simulator, with the production
defaults for retries and the breaker (retry_base_s 5, block_after 5,
max_attempts 5; block_for_s 60 for the ten-minute case). The outage is
simulated: the daemon runs on an injected clock that the test moves on, and
the simulator's outage is measured on the same clock. Bounded: a few
seconds each.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from drivers.http.simkit import Fault, FaultScript
from drivers.simulators.twilio import TwilioSimulator, _error_body
from gateway.router import MAX_REST_S
from gateway.settings import ChannelSettings, DispatcherSettings
from spool.base import ListFilter, Message, State
from tests.conftest import FakeClock
from tests.faults.common import settle

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("backend", ["sqlite"])]

SID = "AC" + "2" * 32
TOKEN = "twilio-fault-token"
PUBLIC = "https://smsgw.example.test"
MESSAGES = 40
POLICY = DispatcherSettings(node_name="outage")  # the production defaults
DEFAULT = {k: f.default for k, f in ChannelSettings.model_fields.items()}
TWILIO_CONCURRENCY = 8  # the driver's default



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


def probe_times(block_for_s: float, until_s: float) -> list[float]:
    """When the breaker probes, counted from its trip, before `until_s`."""
    times, rest, t = [], block_for_s, block_for_s
    while t < until_s:
        times.append(t)
        rest = min(rest * 2, max(block_for_s, MAX_REST_S))
        t += rest
    return times


@dataclass
class Result:
    failed_at: list[float]  # simulated seconds from the start, one per 500
    requests: int
    per_dest: Counter[str]
    stored: list[Message]
    settled: bool
    recovered_s: float | None  # simulated seconds after the outage's end


async def run_outage(make_gateway, sim: TwilioSimulator, outage_s: float, step_s: float,
                     **channel: Any) -> Result:
    clock = FakeClock()
    twilio = {"name": "twilio", "driver": "twilio", "account_sid": SID, "auth_token": TOKEN,
              "from_number": "+15005550006", "public_base_url": PUBLIC, "base_url": sim.url,
              "request_timeout_s": 2, **channel}
    gw = await make_gateway(clock=clock, channels=[twilio], dispatcher={
        "retry_base_s": POLICY.retry_base_s, "retry_max_s": POLICY.retry_max_s,
        "max_attempts": POLICY.max_attempts})
    sim.caller.route(PUBLIC, gw.url)
    start = clock()
    outage = sim.faults = Outage(clock, start + outage_s)
    destinations = [f"+5989834{i:04d}" for i in range(MESSAGES)]
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": d, "message": f"otp {i}"}
                         for i, d in enumerate(destinations)]}) as r:
        assert r.status == 202

    def accepted_all() -> bool:
        return Counter(m["to"] for m in sim.messages.values()) == Counter(destinations)

    # `step_s` simulated seconds per step, each step long enough for the daemon to act.
    recovered_s = None
    for _ in range(int((outage_s + 2 * MAX_REST_S) / step_s)):
        if accepted_all():
            recovered_s = clock() - start - outage_s
            break
        await asyncio.sleep(0.03)
        clock.advance(step_s)

    async def delivered() -> bool:
        stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
        return all(m.state == State.DELIVERED for m in stored)
    settled = await settle(delivered, 10)
    return Result([t - start for t in outage.failed_at], len(sim.received),
                  Counter(m["to"] for m in sim.messages.values()),
                  await gw.store.list_messages(ListFilter(tenant=1, limit=1000)), settled,
                  recovered_s)


def report(got: Result, outage_s: float, bound: int) -> None:
    spread = dict(sorted(Counter(round(t) for t in got.failed_at).items()))
    recovered = "never" if got.recovered_s is None else f"{got.recovered_s:.0f} s after its end"
    print(f"\n{len(got.failed_at)} requests answered 500 during the {outage_s:g} s outage "
          f"(simulated second: requests {spread}); bound {bound}; total requests "
          f"{got.requests}; all accepted {recovered}; attempts per message (the successful "
          f"send included) {dict(sorted(Counter(m.attempts for m in got.stored).items()))}; "
          f"states {dict(Counter(m.state.name for m in got.stored))}")


def assert_nothing_lost(got: Result) -> None:
    assert got.settled, f"not all delivered: {dict(Counter(m.state.name for m in got.stored))}"
    assert not [m for m in got.stored if m.state == State.FAILED]
    assert got.per_dest == Counter(f"+5989834{i:04d}" for i in range(MESSAGES)), \
        "each message accepted by the provider once"
    assert got.requests == len(got.failed_at) + MESSAGES


async def test_provider_500_for_a_minute_rests_the_channel_and_loses_nothing(
        make_gateway, sim: TwilioSimulator) -> None:
    outage_s, block_after, block_for_s, concurrency = 60.0, 5, 20.0, 8
    got = await run_outage(make_gateway, sim, outage_s, 1.0, concurrency=concurrency,
                           block_after=block_after, block_for_s=block_for_s)
    # The first wave: what was in flight plus what started before the
    # block_after-th failure; then one probe per rest.
    bound = block_after + concurrency + len(probe_times(block_for_s, outage_s))
    report(got, outage_s, bound)
    assert_nothing_lost(got)
    assert 0 < len(got.failed_at) <= bound, "the channel rested instead of hammering"


async def test_provider_500_for_ten_minutes_at_default_settings_fails_no_message(
        make_gateway, sim: TwilioSimulator) -> None:
    """Before the half-open probe, each rest reopened at full concurrency and
    cost eight messages an attempt: the first messages ran out of
    max_attempts within five minutes."""
    outage_s = 600.0
    got = await run_outage(make_gateway, sim, outage_s, 5.0)
    probes = probe_times(DEFAULT["block_for_s"], outage_s)
    bound = DEFAULT["block_after"] + TWILIO_CONCURRENCY + len(probes)
    report(got, outage_s, bound)
    assert_nothing_lost(got)
    assert max(m.attempts for m in got.stored) <= POLICY.max_attempts
    assert 0 < len(got.failed_at) <= bound, "one probe per rest after the first wave"
    # Back within one capped rest of the outage's end (plus simulated steps).
    assert got.recovered_s is not None and got.recovered_s <= MAX_REST_S + 30
