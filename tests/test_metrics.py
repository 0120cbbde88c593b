"""/metrics in Prometheus text format, from the running daemon."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Running, loopback_channel
from tests.test_stats import create, send


async def scrape(gw: Running, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]],
                                                    float]:
    async with gw.session.get(f"{gw.url}/metrics", headers=headers) as r:
        assert r.status == 200, await r.text()
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await r.text()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_counters_gauges_and_latency_follow_the_sends(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "promo", enabled=False)
    await send(gw, "promo", 4)
    await send(gw, "default", 6, start=10)

    async def sent() -> bool:
        found = await scrape(gw)
        return sum(v for (name, labels), v in found.items()
                   if name == "smsgw_messages_total" and ("state", "sent") in labels) == 6
    await gw.wait_for(sent)
    found = await scrape(gw)
    waiting = (("campaign", "promo"), ("state", "TO_PROCESS"), ("tenant", "default"))
    assert found[("smsgw_spool_messages", waiting)] == 4
    cost = found[("smsgw_campaign_cost", (("campaign", "default"), ("tenant", "default")))]
    assert cost == pytest.approx(6 * 0.15)
    latency = sum(v for (name, _), v in found.items()
                  if name == "smsgw_send_latency_seconds_count")
    assert latency == 6
    assert found[("smsgw_channel_up", (("channel", "loop-a"),))] == 1
    assert ("smsgw_channel_in_flight", (("channel", "loop-b"),)) in found
    assert found[("smsgw_webhook_backlog", ())] >= 0


async def test_remote_scrapers_need_the_token(make_gateway) -> None:
    gw = await make_gateway(server={"metrics_token": "tok-123"})
    proxied = {"X-Forwarded-For": "198.51.100.7"}
    for headers in (proxied, {**proxied, "Authorization": "Bearer wrong"}):
        async with gw.session.get(f"{gw.url}/metrics", headers=headers) as r:
            assert r.status == 401
    assert await scrape(gw, **proxied, Authorization="Bearer tok-123")


async def test_each_daemon_has_its_own_registry(make_gateway) -> None:
    first = await make_gateway()
    # Same spool, but a node that cannot send: its counters must stay its own.
    second = await make_gateway(dispatcher={"node_name": "node-2"},
                                channels=[loopback_channel("idle", enabled=False)])
    await send(first, "default", 3)

    async def counted() -> bool:
        found = await scrape(first)
        return sum(v for (n, labels), v in found.items()
                   if n == "smsgw_messages_total" and ("state", "sent") in labels) == 3
    await first.wait_for(counted)
    other = await scrape(second)
    assert not any(n == "smsgw_messages_total" for n, _ in other)
