"""What the gateway has been doing lately: rates, a one-hour history, recent failures.

Two sources feed it. The recorder's batches (this node's sends, per channel)
give channel rates, error rates, send latency and recent failures. Samples
of the trigger-kept spool counts (every node's work, per campaign) give
campaign send rates and the per-minute chart: the number of messages in
SENT + DELIVERED + FAILED only grows, so its increase between two samples
is what was processed in between, without counting the spool.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from gateway.metrics import Metrics
from spool.base import (
    Blocked,
    CampaignCounts,
    Failed,
    Outcome,
    Retry,
    Sent,
    State,
    Store,
    StoreError,
)

BUCKET_S = 10
HISTORY_S = 3600
PROCESSED = (State.SENT, State.DELIVERED, State.FAILED)
MarkStarted = Callable[[int, str], Awaitable[None]]


class Buckets:
    """Event counts in 10-second buckets over the last hour."""

    def __init__(self) -> None:
        self._counts: dict[int, int] = {}

    def add(self, now: float, n: int = 1) -> None:
        key = int(now // BUCKET_S)
        self._counts[key] = self._counts.get(key, 0) + n
        if len(self._counts) > HISTORY_S // BUCKET_S + 6:
            oldest = key - HISTORY_S // BUCKET_S - 1
            self._counts = {k: v for k, v in self._counts.items() if k >= oldest}

    def last(self, now: float, seconds: float) -> int:
        first = int((now - seconds) // BUCKET_S) + 1
        return sum(v for k, v in self._counts.items() if k >= first)

    def per_minute(self, now: float, minutes: int = 60) -> list[int]:
        """Oldest first; the last entry is the minute ending now."""
        out = [0] * minutes
        end = int(now // BUCKET_S)
        for key, value in self._counts.items():
            slot = (end - key) // (60 // BUCKET_S)
            if 0 <= slot < minutes:
                out[minutes - 1 - slot] += value
        return out


@dataclass(frozen=True, slots=True)
class FailureNote:
    at: float
    id: int
    channel: str | None
    error: str
    final: bool  # False: it will be retried


@dataclass(slots=True)
class ChannelActivity:
    sent: Buckets
    errors: Buckets


class Monitor:
    def __init__(self, metrics: Metrics | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.metrics = metrics or Metrics()
        self._clock = clock
        self.channels: dict[str, ChannelActivity] = {}
        self.processed: dict[int, Buckets] = {}  # per campaign, from spool counts
        self.failed: dict[int, Buckets] = {}
        self.failures: deque[FailureNote] = deque(maxlen=200)
        self._baseline: dict[int, tuple[int, int]] | None = None
        self._started: dict[int, float] = {}
        self.sampled_at: float | None = None

    def now(self) -> float:
        return self._clock()

    # this node's sends ---------------------------------------------------------
    def timed(self, mark: MarkStarted) -> MarkStarted:
        """Wrap the start mark: a send's latency runs from it to the channel's answer."""
        async def marked(message_id: int, channel: str) -> None:
            await mark(message_id, channel)
            if len(self._started) > 100_000:
                self._started.clear()  # outcomes lost to a crash path must not leak
            self._started[message_id] = self._clock()
        return marked

    def recorded(self, outcomes: list[Outcome]) -> None:
        # Counted per batch, not per message: at thousands a second the
        # per-message metric calls were a tenth of the dispatcher's time.
        now = self._clock()
        tally: Counter[tuple[str, str]] = Counter()
        for o in outcomes:
            began = self._started.pop(o.id, None)
            channel = getattr(o, "channel", None)
            if began is not None and channel:
                ended = o.at if isinstance(o, Sent) else now
                self.metrics.latency(channel, max(0.0, ended - began))
            tally[self._count(o, now)] += 1
        for (channel, state), n in tally.items():
            self.metrics.outcome(channel, state, n)
            if state == "sent":
                self._activity(channel).sent.add(now, n)

    def _count(self, o: Outcome, now: float) -> tuple[str, str]:
        match o:
            case Sent():
                return o.channel, "sent"
            case Retry(channel=None):
                return "", "requeued"
            case Retry():
                self._error(o.id, o.channel, o.error, now, final=False)
                return o.channel or "", "retry"
            case Failed():
                self._error(o.id, o.channel, o.error, now, final=True)
                return o.channel or "", "failed"
            case Blocked():
                return "", "blocked"
        return "", "other"

    def _error(self, message_id: int, channel: str | None, error: str, now: float, *,
               final: bool) -> None:
        if channel:
            self._activity(channel).errors.add(now)
        self.failures.append(FailureNote(now, message_id, channel, error, final))

    def _activity(self, channel: str) -> ChannelActivity:
        found = self.channels.get(channel)
        if found is None:
            found = self.channels[channel] = ChannelActivity(Buckets(), Buckets())
        return found

    def channel_rates(self, channel: str, now: float) -> tuple[int, int, int]:
        """(sent in the last minute, sends and errors in the last 5 minutes)."""
        a = self.channels.get(channel)
        if a is None:
            return 0, 0, 0
        return a.sent.last(now, 60), a.sent.last(now, 300), a.errors.last(now, 300)

    # every node's work, from the spool counts -----------------------------------
    async def sample_forever(self, store: Store, interval_s: float) -> None:
        while True:
            try:
                self.sample(await store.counts())
            except StoreError:
                pass  # the database is away: rates resume with the next sample
            await asyncio.sleep(interval_s)

    def sample(self, counts: Iterable[CampaignCounts]) -> None:
        now = self._clock()
        totals = {c.campaign: (sum(c.by_state.get(int(s), 0) for s in PROCESSED),
                               c.by_state.get(int(State.FAILED), 0)) for c in counts}
        if self._baseline is not None:
            for campaign, (done, failed) in totals.items():
                before = self._baseline.get(campaign, (0, 0))
                if done > before[0]:
                    self.processed.setdefault(campaign, Buckets()).add(now, done - before[0])
                if failed > before[1]:
                    self.failed.setdefault(campaign, Buckets()).add(now, failed - before[1])
        self._baseline = totals
        self.sampled_at = now

    def campaign_rate(self, campaign: int, now: float) -> int | None:
        if self.sampled_at is None:
            return None
        found = self.processed.get(campaign)
        return found.last(now, 60) if found else 0

    def chart(self, campaigns: Iterable[int], now: float) -> dict[str, list[int]]:
        processed, failed = [0] * 60, [0] * 60
        for campaign in campaigns:
            for series, source in ((processed, self.processed), (failed, self.failed)):
                if campaign in source:
                    for i, v in enumerate(source[campaign].per_minute(now)):
                        series[i] += v
        return {"processed": processed, "failed": failed}
