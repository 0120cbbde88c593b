"""The dispatcher's journal: start marks, results and delivery reports,
written in batches.

Just before a channel is asked to send, the row gets `started_at`; when the
channel answers, the outcome is written. Both kinds share one transaction
per cycle (whatever queued while the previous commit ran), so the hot path
costs one commit per batch, not two. An outcome not yet written when the
process dies leaves its row in SENDING with `started_at` set, which
recovery turns into UNCONFIRMED: a crash can only cost certainty about what
was in flight, never a message.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable

import structlog

from drivers.base import DeliveryReport
from spool.base import Blocked, Failed, Outcome, Report, Retry, Sent, Store

log = structlog.get_logger("smsgw.recorder")

# A report can overtake the result of its own send; keep it this long.
REPORT_PATIENCE_S = 60.0


class Recorder:
    def __init__(self, store: Store, *, flush_interval_s: float = 0.005,
                 clock: Callable[[], float] = time.time,
                 on_recorded: Callable[[list[Outcome]], None] = lambda _: None) -> None:
        self._store = store
        self._interval = flush_interval_s
        self._clock = clock
        self._on_recorded = on_recorded
        self._outcomes: list[Outcome] = []
        self._waiters: list[asyncio.Future[None] | None] = []
        self._started: list[tuple[int, str]] = []
        self._started_waiters: list[asyncio.Future[None]] = []
        self._reports: list[tuple[float, Report]] = []
        self._wake = asyncio.Event()

    def put(self, outcome: Outcome) -> None:
        """Record soon; nobody waits (the row was never handed to a channel)."""
        self._outcomes.append(outcome)
        self._waiters.append(None)
        self._wake.set()

    async def mark_started(self, message_id: int, channel: str) -> None:
        """Durably note that `channel` is about to be asked to send the row."""
        fut = asyncio.get_running_loop().create_future()
        self._started.append((message_id, channel))
        self._started_waiters.append(fut)
        self._wake.set()
        await fut

    async def commit(self, outcome: Outcome) -> None:
        """Record and wait until it is durable. A channel slot is freed only
        then, so a crash can leave in doubt at most one message per slot."""
        fut = asyncio.get_running_loop().create_future()
        self._outcomes.append(outcome)
        self._waiters.append(fut)
        self._wake.set()
        await fut

    async def report(self, dr: DeliveryReport) -> None:
        # WhatsApp may report `read` without a `delivered` first: read implies it.
        read = dr.delivered and dr.detail.get("status") == "read"
        if not dr.final and not read:
            log.info("message.report_interim", channel=dr.channel, ref=dr.provider_ref)
            return
        self._reports.append((self._clock(), Report(dr.channel, dr.provider_ref, dr.delivered,
                                                    dr.error, dr.at, dr.destination,
                                                    dr.error_code)))
        self._wake.set()

    @property
    def backlog(self) -> int:
        return len(self._outcomes) + len(self._reports) + len(self._started)

    async def run(self) -> None:
        backoff = 0.1
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._interval:
                await asyncio.sleep(self._interval)  # let a batch gather
            try:
                await self.flush()
                backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as err:  # store unavailable: keep everything, try again
                log.warning("recorder.flush_failed", error=str(err), backlog=self.backlog,
                            retry_in_s=backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()

    async def flush(self) -> None:
        outcomes, self._outcomes = self._outcomes, []
        waiters, self._waiters = self._waiters, []
        started, self._started = self._started, []
        started_waiters, self._started_waiters = self._started_waiters, []
        try:
            if outcomes or started:
                await self._store.record(outcomes, self._clock(), started=started)
        except BaseException:
            self._outcomes[:0] = outcomes
            self._waiters[:0] = waiters
            self._started[:0] = started
            self._started_waiters[:0] = started_waiters
            raise
        for fut in [*waiters, *started_waiters]:
            if fut is not None and not fut.done():
                fut.set_result(None)
        if outcomes:
            _log_batch(outcomes)
            self._on_recorded(outcomes)
        await self._flush_reports()

    async def _flush_reports(self) -> None:
        pending, self._reports = self._reports, []
        if not pending:
            return
        try:
            unmatched = await self._store.record_reports([r for _, r in pending])
        except BaseException:
            self._reports[:0] = pending
            raise
        now = self._clock()
        first_seen = {id(r): t for t, r in pending}
        keep = [(first_seen[id(r)], r) for r in unmatched
                if now - first_seen[id(r)] < REPORT_PATIENCE_S]
        for _, r in pending:
            if r not in unmatched:
                log.info("message.report", channel=r.channel, ref=r.provider_ref,
                         delivered=r.delivered)
        if keep:
            self._reports[:0] = keep
            # Try again shortly: the send's own result may be in the next batch.
            asyncio.get_running_loop().call_later(0.2, self._wake.set)

    async def drain(self, timeout_s: float) -> None:
        self._wake.set()
        async with asyncio.timeout(timeout_s):
            while self._outcomes or self._started:
                await self.flush()


def _log_batch(outcomes: list[Outcome]) -> None:
    # One line per state and channel, listing the ids: every state change is
    # in the journal without a line per message at thousands per second.
    groups: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    errors: dict[int, str] = {}
    for o in outcomes:
        match o:
            case Sent():
                groups[("SENT", o.channel)].append(o.id)
            case Retry():
                groups[("RETRY", o.channel)].append(o.id)
                errors[o.id] = o.error
            case Failed():
                groups[("FAILED", o.channel)].append(o.id)
                errors[o.id] = o.error
            case Blocked():
                groups[("BLOCKED", None)].append(o.id)
    for (state, channel), ids in groups.items():
        fields = {"errors": {i: errors[i] for i in ids}} if state in ("RETRY", "FAILED") else {}
        log.info("message.state", state=state, channel=channel, ids=ids, **fields)
