"""Router: round-robin over the healthy channels of a campaign's pool.

Each channel has a runner that owns its queue, its workers (as many as the
channel's concurrency: 1 for a modem port), its throttle
(`time_between_ms` plus jitter), its daily cap and its circuit breaker: a
channel that fails `block_after` times in a row rests `block_for_s`, then
sends one probe; the probe's success closes the breaker, its failure rests
the channel again for twice as long (up to MAX_REST_S).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import structlog

from drivers.base import (
    Channel,
    ChannelFault,
    OutgoingMessage,
    PermanentError,
    SendReceipt,
    TransientError,
)
from drivers.sms.segments import count_segments
from gateway.settings import ChannelSettings, DispatcherSettings
from spool.base import Claimed, Failed, Outcome, Retry, Sent

log = structlog.get_logger("smsgw.router")

DEFAULT_SEND_TIMEOUT_S = 60.0

# A failed probe doubles the rest up to this (or `block_for_s` if longer):
# after a long outage the provider is back within five minutes of the next
# probe, and an hour-long outage costs about fifteen probes.
MAX_REST_S = 300.0

MarkStarted = Callable[[int, str], Awaitable[None]]
Sink = Callable[[Outcome], Awaitable[None]]  # returns once the outcome is durable
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class Ticket:
    """Leave to send one message: `probe` is the half-open trial; `epoch`
    the breaker period the send started in."""

    probe: bool
    epoch: int


class Breaker:
    """A channel's circuit breaker, apart from I/O (it only logs its
    transitions): asked before each send, told how each send ended.

    closed: sends freely; `block_after` transient failures in a row open it.
    open: takes nothing until `blocked_until`.
    half_open: one probe at a time. Its success closes the breaker and
    resets the rest; its transient failure opens it again at once for twice
    the last rest. A send that started in an earlier period (in flight when
    the breaker opened) changes nothing and is not charged to its message.
    """

    def __init__(self, channel: str, block_after: int, block_for_s: float) -> None:
        self._channel = channel
        self._block_after = block_after
        self._block_for_s = block_for_s
        self._max_rest_s = max(block_for_s, MAX_REST_S)
        self._epoch = 0  # moves on at every transition
        self._tripped_at: float | None = None  # None: closed
        self.fail_streak = 0
        self.blocked_until = 0.0
        self.rest_s = 0.0  # the current or last rest; 0 while closed
        self.probing = False
        self.failed_probes = 0  # since the breaker opened

    def state(self, now: float) -> BreakerState:
        if self._tripped_at is None:
            return "closed"
        return "open" if now < self.blocked_until else "half_open"

    def room(self, now: float, capacity: int) -> int:
        """How many messages the channel may hold (queued or sending)."""
        state = self.state(now)
        return capacity if state == "closed" else 1 if state == "half_open" else 0

    def admit(self, now: float, message_id: int) -> Ticket | None:
        state = self.state(now)
        if state == "closed":
            return Ticket(False, self._epoch)
        if state == "open" or self.probing:
            return None
        self.probing = True
        log.info("channel.probe", channel=self._channel, id=message_id,
                 down_s=round(now - (self._tripped_at or now)))
        return Ticket(True, self._epoch)

    def release(self, ticket: Ticket) -> None:
        """The send is over; a probe that ended without a verdict on the
        channel (a permanent error, cancelled) lets the next message probe."""
        if ticket.probe and ticket.epoch == self._epoch:
            self.probing = False

    def succeeded(self, ticket: Ticket, now: float) -> None:
        if ticket.probe:
            log.info("channel.recovered", channel=self._channel,
                     down_s=round(now - (self._tripped_at or now)),
                     failed_probes=self.failed_probes)
            self._epoch += 1
            self._tripped_at, self.probing, self.failed_probes = None, False, 0
            self.fail_streak, self.rest_s = 0, 0.0
        elif ticket.epoch == self._epoch:
            self.fail_streak = 0

    def failed(self, ticket: Ticket, now: float, error: str) -> bool:
        """Record a transient failure; True when it is charged to the message."""
        if ticket.probe:
            self.probing = False
            self.failed_probes += 1
            self._open(now, min(self.rest_s * 2, self._max_rest_s))
            log.warning("channel.probe_failed", channel=self._channel, seconds=self.rest_s,
                        failed_probes=self.failed_probes, error=error)
            return True
        if ticket.epoch != self._epoch:
            return False  # started before the breaker opened: the channel's failure
        self.fail_streak += 1
        if self.fail_streak >= self._block_after:
            log.warning("channel.blocked", channel=self._channel, failures=self.fail_streak,
                        seconds=self._block_for_s, error=error)
            self._tripped_at = now
            self._open(now, self._block_for_s)
        return True

    def faulted(self, ticket: Ticket, now: float, error: str) -> None:
        """The channel itself was refused (credentials, account): open at once.
        Nothing is charged to the message; a send from an earlier period
        (the breaker opened while it was in flight) changes nothing."""
        if ticket.probe:
            self.failed(ticket, now, error)
            return
        if ticket.epoch != self._epoch:
            return
        log.warning("channel.faulted", channel=self._channel, seconds=self._block_for_s,
                    error=error)
        self._tripped_at = now
        self._open(now, self._block_for_s)

    def _open(self, now: float, rest_s: float) -> None:
        self._epoch += 1
        self.fail_streak = 0
        self.rest_s = rest_s
        self.blocked_until = now + rest_s


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
        self.breaker = Breaker(self.name, cfg.block_after, cfg.block_for_s)
        self.last_error: str | None = None
        # What refuses the channel itself ("authentication failed"), until a send goes.
        self.fault: str | None = None
        self._day = ""
        self.sent_today = 0
        self.sent_total = 0
        self.failed_total = 0
        self.freed: Callable[[], None] = lambda: None
        # The tenants this channel is bound to (`tenants` in its settings,
        # resolved at start); empty: every tenant's.
        self.tenants: frozenset[int] = frozenset()

    # routing view ----------------------------------------------------------
    @property
    def blocked_until(self) -> float:
        return self.breaker.blocked_until

    @property
    def fail_streak(self) -> int:
        return self.breaker.fail_streak

    def up(self) -> bool:
        return self._cfg.enabled and self.channel.health().up

    def serves(self, tenant: int | None) -> bool:
        return not self.tenants or tenant is None or tenant in self.tenants

    def eligible(self, now: float) -> bool:
        return (self.load < self.breaker.room(now, self.capacity) and self.up()
                and not self._capped(now))

    def free(self, now: float) -> int:
        return self.breaker.room(now, self.capacity) - self.load if self.eligible(now) else 0

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
            ticket = self.breaker.admit(self._clock(), message.id) if self.up() else None
            try:
                if ticket is None:
                    # Resting, probing or down since this was queued: back to
                    # the spool at once, unsent, so the router can pick
                    # another channel.
                    await self._sink(Retry(message.id, None, f"channel {self.name} unavailable",
                                           self._clock(), counts_as_attempt=False))
                    continue
                await self._throttle()
                await self._mark_started(message.id, self.name)
                await self._sink(await self._send(message, ticket))
            finally:
                if ticket is not None:
                    self.breaker.release(ticket)
                self.load -= 1
                self.freed()

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

    async def _send(self, m: Claimed, ticket: Ticket) -> Outcome:
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
            return self._transient(m, ticket, err)
        except Exception as err:  # a driver bug must not kill the worker
            log.exception("channel.send_crashed", channel=self.name, id=m.id)
            return self._transient(m, ticket, err)
        self.breaker.succeeded(ticket, self._clock())
        self.fault = None
        self.sent_total += 1
        self._roll_day(self._clock())
        self.sent_today += 1
        price = (m.data or {}).get("_smsgw", {}).get("price")
        cost = float(price) if isinstance(price, int | float) else self.cost * self._billed(
            m, receipt)
        return Sent(m.id, self.name, receipt.provider_ref, cost,
                    self._clock(), delivered=receipt.delivered, part_refs=receipt.part_refs,
                    destination=m.destination)

    def _billed(self, m: Claimed, receipt: SendReceipt) -> int:
        """Units charged: a WhatsApp message is one; an SMS is as many parts
        as our own splitter cuts, or more if the provider says so. Providers
        that answer with one id per request, or "0" (a Twilio Messaging
        Service), must not make a 4-part message cost one."""
        if self.kind == "whatsapp":
            return 1
        return max(receipt.parts, count_segments(m.message)[1])

    def _transient(self, m: Claimed, ticket: Ticket, err: BaseException) -> Outcome:
        now = self._clock()
        self.failed_total += 1
        self.last_error = _describe(err)
        if isinstance(err, ChannelFault):
            return self._faulted(m, ticket, err, now)
        # Sends made while the breaker was closed are the message's attempts:
        # nothing yet says the channel is at fault. So is the probe: a message
        # the provider refuses by itself would otherwise be the probe after
        # every rest and keep the channel shut. A send that was in flight
        # when the breaker opened is the channel's failure, not the message's.
        charged = self.breaker.failed(ticket, now, self.last_error)
        attempts = m.attempts + (1 if charged else 0)
        if charged and attempts >= self._policy.max_attempts:
            return Failed(m.id, self.name,
                          f"{self.last_error} (gave up after {attempts} attempts)")
        delay = min(self._policy.retry_max_s,
                    self._policy.retry_base_s * 2 ** (max(attempts, 1) - 1))
        delay *= self._rng.uniform(0.5, 1.0)  # full-ish jitter: retries do not stampede
        hinted = getattr(err, "retry_after_s", None)
        if hinted:
            delay = max(delay, hinted)
        return Retry(m.id, self.name, self.last_error, now + delay, counts_as_attempt=charged)

    def _faulted(self, m: Claimed, ticket: Ticket, err: ChannelFault, now: float) -> Outcome:
        """The channel is refused, not the message: rest the channel now and
        keep the message queued, uncharged, until the rest is over."""
        self.fault = err.fault
        self.breaker.faulted(ticket, now, self.last_error or err.fault)
        wake = max(self.breaker.blocked_until, now + (err.retry_after_s or 0.0))
        return Retry(m.id, self.name, self.last_error or err.fault, wake,
                     counts_as_attempt=False)


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

    def pool(self, names: Sequence[str], kind: str,
             tenant: int | None = None) -> list[ChannelRunner]:
        # A campaign's channel list names its SMS channels; a message of a
        # kind the list does not cover (a WhatsApp escalation) may use every
        # channel of its kind, as may a campaign with no list. A channel
        # bound to other tenants is never in a tenant's pool.
        mine = [r for r in self.runners.values() if r.kind == kind and r.serves(tenant)]
        chosen = [r for r in mine if _named(r.name, names)]
        return chosen or mine

    def pick(self, names: Sequence[str], kind: str,
             tenant: int | None = None) -> ChannelRunner | None:
        candidates = self.pool(names, kind, tenant)
        if not candidates:
            return None
        key = (kind, str(tenant), *names)
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
