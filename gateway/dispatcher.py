"""Dispatcher: spool -> blacklist -> router, under leases.

Claims take only what the channels can start soon, so a lease never waits
long behind a slow modem. Just before a channel is asked to send, the row
gets `started_at` (through the recorder, committed with its neighbours);
that mark is what tells recovery whether a crashed send may have gone out.

A store that is away (full disk, locked file, server down) is ridden out
here with a short capped back-off, not by crashing to the supervisor, whose
back-off grows to 30 s: dispatch resumes within seconds of the store's
return. A claim that raised gave this node nothing to send, yet PostgreSQL
may have committed it before the connection broke: each claim carries a
random token, and once the store answers again the rows of a failed
claim's token still claimed and never started go back to the queue. They
never reached a channel, so this cannot send anything twice.

A paced campaign (`time_between_ms`) gets one message per slot, and the
slot is taken in the claim's own transaction (`Store.claim_paced`): the
pace holds for the whole cluster, not per daemon.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import structlog

from drivers.whatsapp.payload import template_category
from gateway.campaigns import CampaignBook
from gateway.recorder import Recorder
from gateway.router import Router
from gateway.sender_stops import SENDER_STOPPED, SenderStops
from gateway.settings import DispatcherSettings
from spool.base import MARKETING_STOPPED, Blocked, Claimed, Retry, Store, StoreError

log = structlog.get_logger("smsgw.dispatcher")

NO_CHANNEL_RETRY_S = 5.0
STORE_RETRY_FIRST_S = 0.5  # then doubling, up to:
STORE_RETRY_MAX_S = 5.0

T = TypeVar("T")


class Dispatcher:
    def __init__(self, store: Store, router: Router, campaigns: CampaignBook,
                 recorder: Recorder, policy: DispatcherSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._router = router
        self._campaigns = campaigns
        self._recorder = recorder
        self._policy = policy
        self._clock = clock
        self.node = policy.node_name
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._claiming = True
        self._outage = StoreOutage("claim", clock=clock)
        self._pacer = Pacer()
        self.sender_stops = SenderStops(store, router)
        self._lost_claims: set[int] = set()  # tokens of claims that raised
        self.claimed_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        self._claiming = False
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        poll_s = self._policy.poll_interval_ms / 1000
        handing: asyncio.Task[None] | None = None  # the previous batch, being handed out
        in_hand = 0
        try:
            while self._claiming:
                free = min(self._router.free_capacity() - in_hand,
                           self._policy.max_in_flight - self._router.in_flight() - in_hand)
                if free <= 0:
                    if handing is not None:
                        await handing
                        handing, in_hand = None, 0
                        continue
                    await _wait(self._router.capacity_changed, poll_s)
                    continue
                now = self._clock()
                try:
                    await self._campaigns.fresh()
                    await self._return_lost_claims()
                    batch = await self._claim(free, now)
                except StoreError as err:
                    await self._store_away(err, handing)
                    handing, in_hand = None, 0
                    continue
                self._outage.over()
                if handing is not None:  # its blacklist check ran beside this claim
                    await handing
                    handing, in_hand = None, 0
                if not batch:
                    await _wait(self._wake, self._pacer.wait_s(now, poll_s))
                    continue
                self.claimed_total += len(batch)
                handing = asyncio.create_task(self._dispatch(batch), name="dispatch-batch")
                in_hand = len(batch)
        finally:
            if handing is not None:
                await handing

    async def _store_away(self, err: StoreError, handing: asyncio.Task[None] | None) -> None:
        if handing is not None:
            await handing
        # A wake (new intake, stop) ends the wait early: the store may be back.
        await _wait(self._wake, self._outage.failed(err))

    async def _claim(self, free: int, now: float) -> list[Claimed]:
        """Unpaced campaigns in one claim; then one message of each paced
        campaign whose slot is due, the slot taken by the claim itself."""
        lease = now + self._policy.claim_lease_s
        free = min(free, self._policy.batch_size)
        unpaced, due = self._pacer.split(self._campaigns, now)
        batch: list[Claimed] = []
        if unpaced:
            with self._claim_token() as token:
                batch = await self._store.claim(self.node, free, now, lease, unpaced,
                                                token=token)
        for campaign in due:
            if len(batch) >= free:
                break
            try:
                with self._claim_token() as token:
                    # The clock now, not the cycle's: the slot starts when it is taken.
                    paced = await self._store.claim_paced(self.node, self._clock(), lease,
                                                          campaign, token=token)
            except StoreError:
                if not batch:
                    raise
                break  # what was claimed is committed: hand it out; the next claim meets this
            self._pacer.heard(campaign, paced.next_slot_at)
            batch += paced.claimed
        return batch

    @contextlib.contextmanager
    def _claim_token(self) -> Iterator[int]:
        """A token for one claim, kept if the claim raises: the server may
        have committed it all the same (the connection broke after COMMIT)."""
        token = secrets.randbits(63)
        try:
            yield token
        except BaseException:
            self._lost_claims.add(token)
            raise

    async def _return_lost_claims(self) -> None:
        """Rows that claims which raised took all the same are leased to this
        node (and renewed) but were never received: back to the queue."""
        if not self._lost_claims:
            return
        tokens = sorted(self._lost_claims)
        returned = await self._store.release_claims(tokens, self._clock())
        self._lost_claims.difference_update(tokens)
        if returned:
            log.warning("dispatcher.lost_claims_returned", claims=len(tokens), requeued=returned)
        else:  # the failed claims had been rolled back
            log.info("dispatcher.lost_claims_returned", claims=len(tokens), requeued=0)

    async def _dispatch(self, batch: list[Claimed]) -> None:
        checked = [(m.destination, m.campaign) for m in batch
                   if self._campaigns.dncr(m.campaign) and not _meta(m).get("bypass_blacklist")]
        try:
            # The rows are claimed (their leases are renewed meanwhile): a failed
            # lookup is retried, never skipped and never the batch dropped.
            hits = await self._retrying("blacklist", lambda: self._store.blacklisted(checked)
                                        ) if checked else set()
            stopped = await self._retrying("blacklist", lambda: self._marketing_stopped(batch))
            narrowed = await self._retrying("blacklist", lambda: self.sender_stops.narrowed(
                batch, self._pool))
        except StoreError:  # stopping while the store is away: none was offered
            self._give_back(batch, "shutting down")
            return
        for message in batch:
            if (message.destination, message.campaign) in hits:
                self._recorder.put(Blocked(message.id, "destination is on the blacklist"))
                continue
            if message.id in stopped:
                self._recorder.put(Blocked(message.id, MARKETING_STOPPED))
                continue
            left = narrowed.get(message.id)
            if left == ():
                self._recorder.put(Blocked(message.id, SENDER_STOPPED))
                continue
            runner = self._router.pick(left or self._pool(message), message.kind,
                                       message.tenant)
            if runner is None:
                self._recorder.put(Retry(message.id, None, "no channel available",
                                         self._clock() + NO_CHANNEL_RETRY_S,
                                         counts_as_attempt=False))
                continue
            await runner.offer(message)

    async def _retrying(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` until the store answers, with the short back-off; the last
        StoreError once claiming stops."""
        outage = StoreOutage(what, clock=self._clock)
        while True:
            try:
                result = await call()
            except StoreError as err:
                if not self._claiming:
                    raise
                await _pause(self._stopping, outage.failed(err))
                continue
            outage.over()
            return result

    def _give_back(self, batch: list[Claimed], why: str) -> None:
        """Return rows no channel was handed: they were never sent."""
        now = self._clock()
        for message in batch:
            self._recorder.put(Retry(message.id, None, why, now, counts_as_attempt=False))

    async def _marketing_stopped(self, batch: list[Claimed]) -> set[int]:
        """WhatsApp marketing templates whose customer stopped marketing messages
        on a channel that could send them. Meta refuses those anyway (131050);
        the customer's own word counts even where `dncr_check` is off."""
        asked = {m.id: [(m.destination, r.name)
                        for r in self._router.pool(self._pool(m), m.kind, m.tenant)]
                 for m in batch if m.kind == "whatsapp"
                 and template_category(m.data, _meta(m).get("category")) == "marketing"}
        pairs = [p for candidates in asked.values() for p in candidates]
        found = await self._store.marketing_stopped(pairs) if pairs else set()
        return {mid for mid, candidates in asked.items() if found.intersection(candidates)}

    def _pool(self, message: Claimed) -> tuple[str, ...]:
        # A reply goes back through the channel the customer wrote to.
        pinned = _meta(message).get("channel")
        if pinned:
            return (pinned,)
        campaign = self._campaigns.by_id(message.campaign)
        return campaign.channels if campaign else ()

    # leases -------------------------------------------------------------------
    async def recover_own(self) -> None:
        """At start: whatever this node held when it last stopped is not in flight now."""
        got = await self._store.recover(self._clock(), node=self.node)
        if got.requeued or got.in_doubt:
            log.warning("leases.recovered", node=self.node, requeued=got.requeued,
                        in_doubt=got.in_doubt, resent=got.resent)

    async def lease_keeper(self) -> None:
        """Renew this node's leases and take back those of nodes that died."""
        period = self._policy.claim_lease_s / 3
        outage = StoreOutage("leases", clock=self._clock)
        wait_s = period
        while True:
            await asyncio.sleep(wait_s)
            try:
                await self._keep_leases()
            except StoreError as err:
                # Soon again, not a period later: the leases run out meanwhile.
                wait_s = min(outage.failed(err), period)
                continue
            outage.over()
            wait_s = period

    async def _keep_leases(self) -> None:
        now = self._clock()
        await self._store.renew_leases(self.node, now + self._policy.claim_lease_s)
        got = await self._store.recover(now)
        if got.requeued or got.in_doubt:
            log.warning("leases.expired", requeued=got.requeued, in_doubt=got.in_doubt,
                        resent=got.resent)

    # shutdown -------------------------------------------------------------------
    def return_queued(self) -> int:
        """Hand back what no channel has started; it was never sent."""
        count = 0
        for runner in self._router.runners.values():
            taken = runner.take_queued()
            self._give_back(taken, "shutting down")
            count += len(taken)
        return count

    async def wait_in_flight(self, timeout_s: float) -> bool:
        deadline = self._clock() + timeout_s
        while self._router.in_flight() > 0:
            left = deadline - self._clock()
            if left <= 0:
                return False
            self._router.capacity_changed.clear()
            await _wait(self._router.capacity_changed, min(left, 0.1))
        return True


class StoreOutage:
    """One loop's view of a store that is away: the wait before each retry
    (0.5 s doubling to 5 s), and a log line when the outage starts and one
    when it ends, not one per retry."""

    def __init__(self, task: str, *, clock: Callable[[], float] = time.time) -> None:
        self._task = task
        self._clock = clock
        self._delay_s = STORE_RETRY_FIRST_S
        self._since: float | None = None
        self._tries = 0

    def failed(self, err: StoreError) -> float:
        """Note a failed try; return how long to wait before the next."""
        delay_s, self._delay_s = self._delay_s, min(self._delay_s * 2, STORE_RETRY_MAX_S)
        self._tries += 1
        if self._since is None:
            self._since = self._clock()
            log.warning("dispatcher.store_unavailable", task=self._task, error=str(err),
                        retry_in_s=delay_s, retry_max_s=STORE_RETRY_MAX_S)
        return delay_s

    def over(self) -> None:
        if self._since is not None:
            log.info("dispatcher.store_back", task=self._task, failed_tries=self._tries,
                     outage_s=round(self._clock() - self._since, 1))
        self._since, self._tries, self._delay_s = None, 0, STORE_RETRY_FIRST_S


class Pacer:
    """When each paced campaign (`time_between_ms`) may send next, as this
    node last heard it from the spool.

    The slots themselves live in the database and are taken by the claims
    (`Store.claim_paced`), so the pace holds across every daemon on the
    spool. This only tells the loop which campaigns to ask about and how
    long to sleep: a node that lost a slot to another learns the next one
    from that answer and wakes up for it."""

    def __init__(self) -> None:
        # campaign -> (its next slot, the gap it was heard with)
        self._next: dict[int, tuple[float, int]] = {}
        self._gaps: dict[int, int] = {}

    def split(self, campaigns: CampaignBook, now: float) -> tuple[list[int], list[int]]:
        unpaced, due = [], []
        for campaign_id in campaigns.sendable(now):
            campaign = campaigns.by_id(campaign_id)
            gap_ms = campaign.time_between_ms if campaign else 0
            if gap_ms <= 0:
                unpaced.append(campaign_id)
                continue
            self._gaps[campaign_id] = gap_ms
            slot, heard_gap_ms = self._next.get(campaign_id, (0.0, gap_ms))
            # A changed gap counts at once: ask the spool rather than wait out the old one.
            if slot <= now or heard_gap_ms != gap_ms:
                due.append(campaign_id)
        return unpaced, due

    def heard(self, campaign_id: int, next_slot_at: float | None) -> None:
        if next_slot_at is None:
            self._next.pop(campaign_id, None)
        else:
            self._next[campaign_id] = (next_slot_at, self._gaps.get(campaign_id, 0))

    def wait_s(self, now: float, poll_s: float) -> float:
        upcoming = [t - now for t, _ in self._next.values() if t > now]
        return max(0.001, min([poll_s, *upcoming]))


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


async def _pause(event: asyncio.Event, timeout_s: float) -> None:
    """Sleep `timeout_s`, or less if `event` is set; the event stays set."""
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass


def _meta(message: Claimed) -> dict[str, Any]:
    """smsgw's own annotations on a message (`data._smsgw`)."""
    meta = (message.data or {}).get("_smsgw")
    return meta if isinstance(meta, dict) else {}
