"""Dispatcher: spool -> blacklist -> router, under leases.

Claims take only what the channels can start soon, so a lease never waits
long behind a slow modem. Just before a channel is asked to send, the row
gets `started_at` (through the recorder, committed with its neighbours);
that mark is what tells recovery whether a crashed send may have gone out.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import structlog

from gateway.campaigns import CampaignBook
from gateway.recorder import Recorder
from gateway.router import Router
from gateway.settings import DispatcherSettings
from spool.base import Blocked, Claimed, Retry, Store

log = structlog.get_logger("smsgw.dispatcher")

NO_CHANNEL_RETRY_S = 5.0


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
        self._claiming = True
        self._pacer = Pacer()
        self.claimed_total = 0

    def wake(self) -> None:
        self._wake.set()

    def stop_claiming(self) -> None:
        self._claiming = False
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
                await self._campaigns.fresh()
                now = self._clock()
                batch = await self._claim(free, now)
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

    async def _claim(self, free: int, now: float) -> list[Claimed]:
        """Unpaced campaigns in one claim; each paced campaign whose slot is
        due gets one message (its `time_between_ms` apart)."""
        lease = now + self._policy.claim_lease_s
        free = min(free, self._policy.batch_size)
        unpaced, due = self._pacer.split(self._campaigns, now)
        batch = await self._store.claim(self.node, free, now, lease, unpaced) if unpaced else []
        for campaign in due:
            if len(batch) >= free:
                break
            one = await self._store.claim(self.node, 1, now, lease, [campaign])
            if one:
                self._pacer.sent(campaign, now)
            batch += one
        return batch

    async def _dispatch(self, batch: list[Claimed]) -> None:
        checked = [(m.destination, m.campaign) for m in batch
                   if self._campaigns.dncr(m.campaign) and not _meta(m).get("bypass_blacklist")]
        hits = await self._store.blacklisted(checked) if checked else set()
        for message in batch:
            if (message.destination, message.campaign) in hits:
                self._recorder.put(Blocked(message.id, "destination is on the blacklist"))
                continue
            runner = self._router.pick(self._pool(message), message.kind)
            if runner is None:
                self._recorder.put(Retry(message.id, None, "no channel available",
                                         self._clock() + NO_CHANNEL_RETRY_S,
                                         counts_as_attempt=False))
                continue
            await runner.offer(message)

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
        while True:
            await asyncio.sleep(period)
            now = self._clock()
            await self._store.renew_leases(self.node, now + self._policy.claim_lease_s)
            got = await self._store.recover(now)
            if got.requeued or got.in_doubt:
                log.warning("leases.expired", requeued=got.requeued, in_doubt=got.in_doubt,
                            resent=got.resent)

    # shutdown -------------------------------------------------------------------
    def return_queued(self) -> int:
        """Hand back what no channel has started; it was never sent."""
        now = self._clock()
        count = 0
        for runner in self._router.runners.values():
            for message in runner.take_queued():
                self._recorder.put(Retry(message.id, None, "shutting down", now,
                                         counts_as_attempt=False))
                count += 1
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


class Pacer:
    """When each throttled campaign (`time_between_ms`) may send next.

    Pacing is per node: with several daemons on one spool each keeps its
    own gap, so the campaign's rate is the gap times the number of nodes."""

    def __init__(self) -> None:
        self._next: dict[int, float] = {}
        self._gaps: dict[int, float] = {}

    def split(self, campaigns: CampaignBook, now: float) -> tuple[list[int], list[int]]:
        unpaced, due = [], []
        for campaign_id in campaigns.sendable(now):
            campaign = campaigns.by_id(campaign_id)
            gap = (campaign.time_between_ms / 1000) if campaign else 0.0
            if gap <= 0:
                unpaced.append(campaign_id)
                continue
            self._gaps[campaign_id] = gap
            if self._next.get(campaign_id, 0.0) <= now:
                due.append(campaign_id)
        return unpaced, due

    def sent(self, campaign_id: int, now: float) -> None:
        self._next[campaign_id] = now + self._gaps.get(campaign_id, 0.0)

    def wait_s(self, now: float, poll_s: float) -> float:
        upcoming = [t - now for t in self._next.values() if t > now]
        return max(0.001, min([poll_s, *upcoming]))


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await event.wait()
    except TimeoutError:
        pass
    event.clear()


def _meta(message: Claimed) -> dict[str, Any]:
    """smsgw's own annotations on a message (`data._smsgw`)."""
    meta = (message.data or {}).get("_smsgw")
    return meta if isinstance(meta, dict) else {}
