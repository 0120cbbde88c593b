"""The channel circuit breaker through a real ChannelRunner and Router on an
injected clock: closed -> open (rest) -> half-open (one probe) -> closed, or
open again at once for twice as long.

The channel is a small provider double whose sends wait at a gate and then
fail or succeed as the test says, so "in flight" is something the test can
hold and count.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Literal

import pytest

from drivers.base import Health, OutgoingMessage, PermanentError, SendReceipt, TransientError
from gateway.router import MAX_REST_S, ChannelRunner, Router
from gateway.settings import ChannelSettings, DispatcherSettings
from spool.base import Claimed, Failed, Outcome, Retry, Sent

pytestmark = pytest.mark.timeout(20)


class Provider:
    """A channel: each send waits for `gate`, then answers as `answer` says."""

    name = "prov"
    kind = "sms"

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self.answer: Literal["ok", "transient", "permanent"] = "transient"
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.most_in_flight = 0
        self.sends = 0

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def health(self) -> Health:
        return Health(up=True)

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        self.sends += 1
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        if self.answer == "transient":
            raise TransientError("provider answered 500", code="500")
        if self.answer == "permanent":
            raise PermanentError("invalid destination", code="21211")
        return SendReceipt(provider_ref=f"ref-{message.id}")


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Rig:
    runner: ChannelRunner
    router: Router
    provider: Provider
    clock: Clock
    outcomes: list[Outcome] = field(default_factory=list)
    next_id: int = 1

    @property
    def state(self) -> str:
        return self.runner.breaker.state(self.clock())

    async def send(self, n: int = 1, *, attempts: int = 0) -> None:
        """Offer `n` messages straight to the runner (as a batch already queued would be)."""
        for _ in range(n):
            await self.runner.offer(Claimed(self.next_id, 1, 1, "+59898344400", "hi", "sms",
                                            attempts))
            self.next_id += 1

    async def routed(self) -> bool:
        """Offer one message the way the dispatcher does: only if the router picks us."""
        runner = self.router.pick((), "sms")
        if runner is None:
            return False
        await self.send()
        return True

    async def outcome_count(self, n: int) -> list[Outcome]:
        await until(lambda: len(self.outcomes) >= n)
        return self.outcomes[:n]

    async def trip(self) -> None:
        """Fail `block_after` sends in a row: the breaker opens."""
        self.provider.answer = "transient"
        before = len(self.outcomes)
        await self.send(self.runner._cfg.block_after)
        await self.outcome_count(before + self.runner._cfg.block_after)
        assert self.state == "open"

    async def probe(self, answer: Literal["ok", "transient", "permanent"]) -> Outcome:
        self.clock.now = self.runner.blocked_until
        assert self.state == "half_open"
        self.provider.answer = answer
        before = len(self.outcomes)
        assert await self.routed()
        [outcome] = (await self.outcome_count(before + 1))[before:]
        return outcome


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.001)


@pytest.fixture
async def make_rig() -> AsyncIterator[Callable[..., Rig]]:
    tasks: list[asyncio.Task[None]] = []

    def make(*, concurrency: int = 4, block_after: int = 2, block_for_s: float = 60.0,
             max_attempts: int = 5) -> Rig:
        provider, clock = Provider(concurrency), Clock()
        outcomes: list[Outcome] = []

        async def sink(o: Outcome) -> None:
            outcomes.append(o)

        async def mark_started(message_id: int, channel: str) -> None: ...

        cfg = ChannelSettings(name=provider.name, driver="loopback", block_after=block_after,
                              block_for_s=block_for_s, concurrency=concurrency)
        policy = DispatcherSettings(node_name="t", max_attempts=max_attempts)
        runner = ChannelRunner(provider, cfg, policy, mark_started=mark_started, sink=sink,
                               clock=clock)
        tasks.append(asyncio.create_task(runner.run(), name="runner"))
        return Rig(runner, Router([runner], clock=clock), provider, clock, outcomes)

    yield make
    for task in tasks:
        task.cancel()
        with suppress(asyncio.CancelledError):
            await task


async def test_half_open_lets_one_probe_at_a_time_whatever_the_concurrency(make_rig) -> None:
    rig = make_rig(concurrency=4)
    await rig.trip()
    assert rig.router.free_capacity() == 0 and not await rig.routed()
    rig.clock.advance(59.9)
    assert rig.state == "open" and rig.router.free_capacity() == 0

    rig.clock.advance(0.1)
    assert rig.state == "half_open" and rig.router.free_capacity() == 1
    rig.provider.answer, rig.provider.most_in_flight = "ok", 0
    rig.provider.gate.clear()
    before = len(rig.outcomes)
    assert await rig.routed()
    await until(lambda: rig.provider.in_flight == 1)
    # The probe is out: the router offers nothing more...
    assert rig.router.free_capacity() == 0 and not await rig.routed()
    # ...and messages queued anyway (a batch handed out before) go back unsent, uncharged.
    await rig.send(3)
    returned = (await rig.outcome_count(before + 3))[before:]
    assert all(isinstance(o, Retry) and o.channel is None and not o.counts_as_attempt
               for o in returned), returned
    assert rig.provider.in_flight == 1 and rig.provider.most_in_flight == 1

    rig.provider.gate.set()
    [probe] = (await rig.outcome_count(before + 4))[before + 3:]
    assert isinstance(probe, Sent)
    assert rig.state == "closed" and rig.router.free_capacity() == rig.runner.capacity == 8


async def test_failed_probe_reopens_at_once_with_a_doubling_rest(make_rig) -> None:
    rig = make_rig(concurrency=4, block_after=3, block_for_s=60.0)
    await rig.trip()
    assert rig.runner.blocked_until == rig.clock() + 60
    for rest in (120.0, 240.0, MAX_REST_S, MAX_REST_S):
        sends = rig.provider.sends
        outcome = await rig.probe("transient")
        # One failure, not block_after, opens it again; the probe was a real
        # send and counts as its message's attempt.
        assert rig.provider.sends == sends + 1
        assert isinstance(outcome, Retry) and outcome.counts_as_attempt
        assert rig.state == "open" and rig.runner.breaker.rest_s == rest
        assert rig.runner.blocked_until == rig.clock() + rest
        rig.clock.advance(rest - 0.1)
        assert rig.router.free_capacity() == 0
    assert rig.runner.breaker.failed_probes == 4


async def test_probe_success_restores_full_concurrency_and_the_first_rest(make_rig) -> None:
    rig = make_rig(concurrency=4, block_after=2, block_for_s=60.0)
    await rig.trip()
    await rig.probe("transient")
    assert rig.runner.breaker.rest_s == 120
    assert isinstance(await rig.probe("ok"), Sent)
    assert rig.state == "closed" and rig.runner.fail_streak == 0

    rig.provider.gate.clear()
    rig.provider.most_in_flight = 0
    before = len(rig.outcomes)
    await rig.send(4)
    await until(lambda: rig.provider.in_flight == 4)
    rig.provider.gate.set()
    done = (await rig.outcome_count(before + 4))[before:]
    assert all(isinstance(o, Sent) for o in done) and rig.provider.most_in_flight == 4

    await rig.trip()  # the next outage starts again from block_for_s
    assert rig.runner.breaker.rest_s == 60 and rig.runner.blocked_until == rig.clock() + 60


async def test_sends_in_flight_when_the_breaker_opens_are_not_charged(make_rig) -> None:
    """Four sends out at once, each its message's last attempt: the two that
    trip the breaker count (nothing said the channel was at fault yet); the
    two that fail after it opened are the channel's failures, not theirs."""
    rig = make_rig(concurrency=4, block_after=2, max_attempts=5)
    rig.provider.gate.clear()
    await rig.send(4, attempts=4)
    await until(lambda: rig.provider.in_flight == 4)
    rig.provider.gate.set()
    done = await rig.outcome_count(4)
    failed = [o for o in done if isinstance(o, Failed)]
    spared = [o for o in done if isinstance(o, Retry)]
    assert len(failed) == 2 and all("gave up after 5 attempts" in o.error for o in failed)
    assert len(spared) == 2 and not any(o.counts_as_attempt for o in spared)
    assert all(o.channel == "prov" and o.next_attempt_at > rig.clock() for o in spared)
    assert rig.state == "open"


async def test_probe_answered_with_a_permanent_error_lets_the_next_message_probe(
        make_rig) -> None:
    """A permanent error is the message's fault: it neither closes nor
    reopens the breaker, and frees the probe's place."""
    rig = make_rig(concurrency=4)
    await rig.trip()
    assert isinstance(await rig.probe("permanent"), Failed)
    assert rig.state == "half_open" and rig.router.free_capacity() == 1
    assert isinstance(await rig.probe("ok"), Sent)
    assert rig.state == "closed"
