"""Router: round-robin over the healthy channels of a campaign's pool.

Each channel has a runner that owns its queue, its workers (as many as the
channel's concurrency: 1 for a modem port), its throttle
(`time_between_ms` plus jitter), its daily cap and its circuit breaker (a
channel that fails `block_after` times in a row rests `block_for_s`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import structlog

from drivers.base import Channel, OutgoingMessage, PermanentError, TransientError
from gateway.settings import ChannelSettings, DispatcherSettings
from spool.base import Claimed, Failed, Outcome, Retry, Sent

log = structlog.get_logger("smsgw.router")

DEFAULT_SEND_TIMEOUT_S = 60.0

MarkStarted = Callable[[int, str], Awaitable[None]]
Sink = Callable[[Outcome], Awaitable[None]]  # returns once the outcome is durable


class ChannelRunner:
    def __init__(self, channel: Channel, cfg: ChannelSettings, policy: DispatcherSettings, *,
                 mark_started: MarkStarted, sink: Sink, clock: Callable[[], float] = time.time,
                 rng: random.Random | None = None) -> None:
        self.channel = channel
        self.name = channel.name
        self.kind = channel.kind
        self.cost = cfg.cost
        self._cfg = cfg
        self._policy = policy
        self._mark_started = mark_started
        self._sink = sink
        self._clock = clock
        self._rng = rng or random.Random()
        self.concurrency = cfg.concurrency or channel.concurrency
        self._send_timeout_s = cfg.send_timeout_s or getattr(
            channel, "default_send_timeout_s", DEFAULT_SEND_TIMEOUT_S)
        self.capacity = max(2, self.concurrency * 2)
        self._queue: deque[Claimed] = deque()
        self._ready = asyncio.Condition()
        self.load = 0  # queued + sending
        self._next_slot = 0.0
        self.fail_streak = 0
        self.blocked_until = 0.0
        self.last_error: str | None = None
        self._day = ""
        self.sent_today = 0
        self.sent_total = 0
        self.failed_total = 0
        self.freed: Callable[[], None] = lambda: None

    # routing view ----------------------------------------------------------
    def up(self) -> bool:
        return self._cfg.enabled and self.channel.health().up

    def eligible(self, now: float) -> bool:
        return (self.load < self.capacity and now >= self.blocked_until and self.up()
                and not self._capped(now))

    def free(self, now: float) -> int:
        return self.capacity - self.load if self.eligible(now) else 0

    def _capped(self, now: float) -> bool:
        if not self._cfg.daily_limit:
            return False
        self._roll_day(now)
        return self.sent_today + self.load >= self._cfg.daily_limit

    def _roll_day(self, now: float) -> None:
        day = dt.datetime.fromtimestamp(now).date().isoformat()
        if day != self._day:
            self._day, self.sent_today = day, 0

    def preload_today(self, sent: int, now: float) -> None:
        """Carry today's count across a restart: carriers cap SIMs per day."""
        self._roll_day(now)
        self.sent_today = sent

    async def offer(self, message: Claimed) -> None:
        self.load += 1
        async with self._ready:
            self._queue.append(message)
            self._ready.notify()

    def take_queued(self) -> list[Claimed]:
        """Remove what no worker has started (shutdown: it goes back to the spool)."""
        taken = list(self._queue)
        self._queue.clear()
        self.load -= len(taken)
        return taken

    # workers ----------------------------------------------------------------
    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            for i in range(self.concurrency):
                tg.create_task(self._worker(), name=f"channel:{self.name}:{i}")

    async def _worker(self) -> None:
        while True:
            async with self._ready:
                await self._ready.wait_for(lambda: bool(self._queue))
                message = self._queue.popleft()
            try:
                if self._resting():
                    # Blocked or down since this was queued: back to the spool
                    # at once, unsent, so the router can pick another channel.
                    await self._sink(Retry(message.id, None, f"channel {self.name} unavailable",
                                           self._clock(), counts_as_attempt=False))
                    continue
                await self._throttle()
                await self._mark_started(message.id, self.name)
                await self._sink(await self._send(message))
            finally:
                self.load -= 1
                self.freed()

    def _resting(self) -> bool:
        return self._clock() < self.blocked_until or not self.up()

    async def _throttle(self) -> None:
        gap_ms = self._cfg.time_between_ms
        if not gap_ms and not self._cfg.jitter_ms:
            return
        now = self._clock()
        wait = self._next_slot - now
        self._next_slot = max(now, self._next_slot) + (
            gap_ms + self._rng.uniform(0, self._cfg.jitter_ms)) / 1000
        if wait > 0:
            await asyncio.sleep(wait)

    async def _send(self, m: Claimed) -> Outcome:
        out = OutgoingMessage(id=m.id, destination=m.destination, text=m.message,
                              kind="whatsapp" if m.kind == "whatsapp" else "sms",
                              data=m.data or {}, attempt=m.attempts + 1)
        try:
            async with asyncio.timeout(self._send_timeout_s):
                receipt = await self.channel.send(out)
        except PermanentError as err:
            self.failed_total += 1
            return Failed(m.id, self.name, _describe(err))
        except (TransientError, TimeoutError) as err:
            return self._transient(m, err)
        except Exception as err:  # a driver bug must not kill the worker
            log.exception("channel.send_crashed", channel=self.name, id=m.id)
            return self._transient(m, err)
        self.fail_streak = 0
        self.sent_total += 1
        self._roll_day(self._clock())
        self.sent_today += 1
        price = (m.data or {}).get("_smsgw", {}).get("price")
        cost = float(price) if isinstance(price, int | float) else self.cost * receipt.parts
        return Sent(m.id, self.name, receipt.provider_ref, cost,
                    self._clock(), delivered=receipt.delivered, part_refs=receipt.part_refs,
                    destination=m.destination)

    def _transient(self, m: Claimed, err: BaseException) -> Outcome:
        now = self._clock()
        self.failed_total += 1
        self.last_error = _describe(err)
        self.fail_streak += 1
        if self.fail_streak >= self._cfg.block_after:
            self.blocked_until = now + self._cfg.block_for_s
            log.warning("channel.blocked", channel=self.name, failures=self.fail_streak,
                        seconds=self._cfg.block_for_s, error=self.last_error)
            self.fail_streak = 0
        attempts = m.attempts + 1
        if attempts >= self._policy.max_attempts:
            return Failed(m.id, self.name,
                          f"{self.last_error} (gave up after {attempts} attempts)")
        delay = min(self._policy.retry_max_s, self._policy.retry_base_s * 2 ** (attempts - 1))
        delay *= self._rng.uniform(0.5, 1.0)  # full-ish jitter: retries do not stampede
        hinted = getattr(err, "retry_after_s", None)
        if hinted:
            delay = max(delay, hinted)
        return Retry(m.id, self.name, self.last_error, now + delay)


def _named(channel: str, names: Sequence[str]) -> bool:
    # "dinstar-a" names every port channel of that gateway ("dinstar-a:0" ...).
    return channel in names or channel.split(":", 1)[0] in names


def _describe(err: BaseException) -> str:
    if isinstance(err, TimeoutError):
        return "channel did not answer in time"
    code = getattr(err, "code", None)
    return f"{err} [{code}]" if code else str(err) or type(err).__name__


class Router:
    def __init__(self, runners: Sequence[ChannelRunner],
                 clock: Callable[[], float] = time.time) -> None:
        self.runners = {r.name: r for r in runners}
        self._clock = clock
        self._turn: dict[tuple[str, ...], int] = {}
        self.capacity_changed = asyncio.Event()
        for runner in runners:
            runner.freed = self.capacity_changed.set

    def pool(self, names: Sequence[str], kind: str) -> list[ChannelRunner]:
        # A campaign's channel list names its SMS channels; a message of a
        # kind the list does not cover (a WhatsApp escalation) may use every
        # channel of its kind, as may a campaign with no list.
        chosen = [r for r in self.runners.values() if r.kind == kind and _named(r.name, names)]
        return chosen or [r for r in self.runners.values() if r.kind == kind]

    def pick(self, names: Sequence[str], kind: str) -> ChannelRunner | None:
        candidates = self.pool(names, kind)
        if not candidates:
            return None
        key = (kind, *names)
        start = self._turn.get(key, 0)
        now = self._clock()
        for step in range(len(candidates)):
            runner = candidates[(start + step) % len(candidates)]
            if runner.eligible(now):
                self._turn[key] = (start + step + 1) % len(candidates)
                return runner
        return None

    def nameable(self) -> set[str]:
        """What a campaign's channel list may name: channels and gateways."""
        return set(self.runners) | {n.split(":", 1)[0] for n in self.runners}

    def free_capacity(self) -> int:
        now = self._clock()
        return sum(r.free(now) for r in self.runners.values())

    def in_flight(self) -> int:
        return sum(r.load for r in self.runners.values())
