"""Dispatcher and router behaviour through the running daemon and real SQLite."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from spool.base import ListFilter, State
from tests.conftest import Running, loopback_channel


async def submit(gw: Running, n: int, *, campaign: str = "default", prefix: str = "0983444",
                 key: str | None = None) -> list[int]:
    batch = {"messages": [{"destination": f"{prefix}{i:02d}", "message": f"m{i}",
                           "campaign": campaign} for i in range(n)]}
    async with gw.session.post(f"{gw.url}/api/v1/messages", json=batch,
                               headers=gw.headers(key)) as r:
        assert r.status == 202, await r.text()
        return [m["id"] for m in (await r.json())["messages"]]


async def settled(gw: Running, ids: list[int], states: set[State], timeout: float = 15):
    async def check():
        got = [await gw.store.get_message(None, i) for i in ids]
        return got if all(m.state in states for m in got) else None
    return await gw.wait_for(check, timeout)


async def test_round_robin_uses_every_channel(gateway: Running) -> None:
    ids = await submit(gateway, 20)
    done = await settled(gateway, ids, {State.SENT, State.DELIVERED})
    per_channel = Counter(m.channel for m in done)
    assert set(per_channel) == {"loop-a", "loop-b"}
    assert abs(per_channel["loop-a"] - per_channel["loop-b"]) <= 4
    assert all(m.cost == 0.15 and m.attempts == 1 for m in done)


async def test_delivery_reports_move_sent_to_delivered(gateway: Running) -> None:
    ids = await submit(gateway, 5)
    done = await settled(gateway, ids, {State.DELIVERED})
    assert all(m.delivered_at and m.delivered_at >= m.sent_at for m in done)


async def test_blacklist_blocks_at_dispatch(gateway: Running) -> None:
    await gateway.store.update_campaign(1, enabled=False)
    await gateway.app.services.campaigns.reload()
    ids = await submit(gateway, 3)
    # Listed after intake: the dispatcher's own check must catch it.
    await gateway.store.blacklist_add([("+59898344401", None)])
    await gateway.store.update_campaign(1, enabled=True)
    done = await settled(gateway, ids, {State.SENT, State.DELIVERED, State.BLOCKED})
    assert [m.state for m in done].count(State.BLOCKED) == 1
    blocked = next(m for m in done if m.state == State.BLOCKED)
    assert blocked.destination == "+59898344401" and blocked.cost == 0


async def test_blacklisted_at_intake_is_stored_blocked(gateway: Running) -> None:
    await gateway.store.blacklist_add([("+59898344400", 1)])
    ids = await submit(gateway, 2)
    first = await gateway.store.get_message(None, ids[0])
    assert first.state == State.BLOCKED and "blacklist" in first.error


async def test_transient_failures_retry_then_fail_after_max_attempts(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("flaky", transient_failure_rate=1.0,
                                                       block_after=100)],
                            dispatcher={"max_attempts": 3})
    [mid] = await submit(gw, 1)
    [m] = await settled(gw, [mid], {State.FAILED})
    assert m.attempts == 3
    assert "gave up after 3 attempts" in m.error
    notes = [e.state for e in await gw.store.message_events(mid)]
    assert notes.count(State.SENDING) == 3


async def test_permanent_failure_fails_at_once(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("bad", permanent_failure_rate=1.0)])
    [mid] = await submit(gw, 1)
    [m] = await settled(gw, [mid], {State.FAILED})
    assert m.attempts == 1 and "sim-permanent" in m.error


async def test_failing_channel_is_blocked_and_router_moves_on(make_gateway) -> None:
    gw = await make_gateway(channels=[
        loopback_channel("broken", transient_failure_rate=1.0, block_after=2, block_for_s=60,
                         concurrency=1),
        loopback_channel("good")], dispatcher={"max_attempts": 10})
    ids = await submit(gw, 30)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert {m.channel for m in done} == {"good"}
    broken = gw.app.services.router.runners["broken"]
    assert broken.blocked_until > time.time()
    assert broken.failed_total == 2  # then it rested; nothing else was tried on it


async def test_daily_limit_caps_a_channel(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("capped", daily_limit=5),
                                      loopback_channel("free")])
    ids = await submit(gw, 30)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    assert Counter(m.channel for m in done)["capped"] == 5


async def test_campaign_pool_restricts_channels(gateway: Running) -> None:
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns", headers=gateway.headers(),
                                    json={"name": "only-b", "channels": ["loop-b"]}) as r:
        assert r.status == 201
    ids = await submit(gateway, 10, campaign="only-b")
    done = await settled(gateway, ids, {State.SENT, State.DELIVERED})
    assert {m.channel for m in done} == {"loop-b"}


async def test_stopped_campaign_waits_then_sends_when_started(gateway: Running) -> None:
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns/default/stop",
                                    headers=gateway.headers()) as r:
        assert r.status == 200 and (await r.json())["enabled"] is False
    ids = await submit(gateway, 5)
    await gateway.wait_for(_after(0.3))
    assert {(await gateway.store.get_message(None, i)).state for i in ids} == {State.TO_PROCESS}
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns/default/start",
                                    headers=gateway.headers()) as r:
        assert r.status == 200
    await settled(gateway, ids, {State.SENT, State.DELIVERED})


async def test_a_reload_that_read_before_a_stop_does_not_land_after_it(store) -> None:
    """The dispatcher's periodic reload may read the campaigns just before a
    stop and finish just after the reload that follows the stop: the book
    must end with the campaign stopped, or it would be claimed from again."""
    import asyncio

    from gateway.campaigns import CampaignBook

    class SlowFirstRead:
        def __init__(self) -> None:
            self.read, self.go, self.calls = asyncio.Event(), asyncio.Event(), 0

        async def list_campaigns(self, tenant=None):
            self.calls += 1
            found = await store.list_campaigns(tenant)
            if self.calls == 1:
                self.read.set()
                await self.go.wait()  # the answer travels slowly
            return found

    slow = SlowFirstRead()
    book = CampaignBook(slow)  # type: ignore[arg-type]
    periodic = asyncio.create_task(book.reload())
    await slow.read.wait()  # it has read the campaign while still enabled
    await store.update_campaign(1, enabled=False)
    after_stop = asyncio.create_task(book.reload())
    await asyncio.sleep(0.05)
    slow.go.set()
    await asyncio.gather(periodic, after_stop)
    assert book.by_id(1).enabled is False
    assert 1 not in book.sendable(time.time())


def _after(seconds: float):
    deadline = time.monotonic() + seconds

    async def check():
        return time.monotonic() >= deadline
    return check


async def test_priority_orders_the_claims(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("one", concurrency=1)],
                            dispatcher={"batch_size": 1})
    await gw.store.update_campaign(1, enabled=False)
    await gw.app.services.campaigns.reload()
    batch = {"messages": [{"destination": "098344484", "message": f"p{p}", "priority": p}
                          for p in (1, 5, 3)]}
    async with gw.session.post(f"{gw.url}/api/v1/messages", json=batch,
                               headers=gw.headers()) as r:
        ids = [m["id"] for m in (await r.json())["messages"]]
    await gw.store.update_campaign(1, enabled=True)
    done = await settled(gw, ids, {State.SENT, State.DELIVERED})
    order = [m.message for m in sorted(done, key=lambda m: m.sent_at)]
    assert order == ["p5", "p3", "p1"]


async def claim_as_dead_node(store: Any, campaign: int, now: float) -> list[Any]:
    """What a node that died just after its claim leaves: a lease already
    expired. The campaign is stopped so that the live daemon takes nothing;
    a claim needs it enabled, so it is, for the claim's moment only (the
    live daemon's view of it was reloaded stopped a moment ago)."""
    await store.update_campaign(campaign, enabled=True)
    try:
        return await store.claim("dead-node", 1, now, now - 1, [campaign])
    finally:
        await store.update_campaign(campaign, enabled=False)


async def test_expired_lease_with_hold_policy_waits_for_release(gateway: Running) -> None:
    """A send that started on a node that died is in doubt; `hold` keeps it for an operator."""
    store = gateway.store
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns", headers=gateway.headers(),
                                    json={"name": "promo", "in_doubt": "hold",
                                          "enabled": False}) as r:
        assert r.status == 201
    [mid] = await submit(gateway, 1, campaign="promo")
    promo = await store.campaign_by_name(1, "promo")
    now = time.time()
    [claimed] = await claim_as_dead_node(store, promo.id, now)
    await store.mark_started([(claimed.id, "loop-a")], now)
    got = await store.recover(time.time())
    assert got.in_doubt == 1 and got.resent == 0
    assert (await store.get_message(None, mid)).state == State.UNCONFIRMED
    await store.update_campaign(promo.id, enabled=True)
    async with gateway.session.post(f"{gateway.url}/api/v1/messages/{mid}/release",
                                    headers=gateway.headers()) as r:
        assert r.status == 200
    [m] = await settled(gateway, [mid], {State.SENT, State.DELIVERED})
    assert m.attempts == 1


async def test_expired_lease_never_started_goes_back_to_queue(gateway: Running) -> None:
    store = gateway.store
    await store.update_campaign(1, enabled=False)
    await gateway.app.services.campaigns.reload()
    [mid] = await submit(gateway, 1)
    now = time.time()
    await claim_as_dead_node(store, 1, now)
    got = await store.recover(time.time())
    assert got.requeued == 1 and got.in_doubt == 0
    events = await store.message_events(mid)
    assert events[-1].state == State.TO_PROCESS and "before sending" in events[-1].note
    assert len(await store.list_messages(ListFilter(tenant=1, state=State.TO_PROCESS))) == 1


async def test_campaign_throttle_spaces_its_sends_and_spares_others(gateway: Running) -> None:
    async with gateway.session.post(f"{gateway.url}/api/v1/campaigns", headers=gateway.headers(),
                                    json={"name": "slow", "time_between_ms": 200}) as r:
        assert r.status == 201
    await gateway.app.services.campaigns.reload()
    slow = await submit(gateway, 5, campaign="slow", prefix="0983445")
    fast = await submit(gateway, 30, prefix="0983446")
    await settled(gateway, fast, {State.SENT, State.DELIVERED})
    await settled(gateway, slow, {State.SENT, State.DELIVERED})
    slow_claims = sorted([await claimed_at(gateway, i) for i in slow])
    fast_claims = sorted([await claimed_at(gateway, i) for i in fast])
    gaps = [b - a for a, b in zip(slow_claims, slow_claims[1:], strict=False)]
    assert min(gaps) >= 0.19, gaps  # the pacer spaces the claims
    # The unthrottled campaign was not paced: its 30 went out in less time
    # than the slow campaign's 5 took.
    assert fast_claims[-1] - fast_claims[0] < slow_claims[-1] - slow_claims[0]


async def claimed_at(gw: Running, message_id: int) -> float:
    events = await gw.store.message_events(message_id)
    return next(e.at for e in events if e.state == State.SENDING)


async def test_a_claim_takes_nothing_from_a_campaign_stopped_meanwhile(gateway: Running) -> None:
    # The dispatcher's view of the campaigns may be a moment old (a reload
    # that read before the stop); the claim itself asks the table, so a stop
    # that committed first is never claimed from.
    store = gateway.store
    await store.update_campaign(1, enabled=False)
    await gateway.app.services.campaigns.reload()
    [mid] = await submit(gateway, 1)
    now = time.time()
    assert await store.claim("stale-view", 5, now, now + 60, [1]) == []
    assert (await store.claim_paced("stale-view", now, now + 60, 1)).claimed == []
    assert (await store.get_message(None, mid)).state == State.TO_PROCESS
