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


async def test_process_memory_and_the_sqlite_heap_are_exported(make_gateway, backend) -> None:
    gw = await make_gateway()
    await send(gw, "default", 3)
    found = await scrape(gw)
    names = {name for name, _ in found}
    # Our own registry: the process collector must be added to it explicitly.
    assert found[("process_resident_memory_bytes", ())] > 10 * 2**20
    assert "process_open_fds" in names
    if backend == "sqlite":
        # The spool's page caches live in SQLite's heap, which Python cannot see.
        assert found[("smsgw_sqlite_heap_bytes", ())] > 100_000
    else:
        assert "smsgw_sqlite_heap_bytes" not in names


def test_the_sqlite_heap_is_read_from_the_library_in_use() -> None:
    import sqlite3

    from spool.sqlite.heap import heap_bytes

    before = heap_bytes()
    assert before is not None, "the sqlite3 module's library was not found in the memory map"
    conn = sqlite3.connect(":memory:")
    conn.execute("PRAGMA cache_size=-8192")
    conn.execute("CREATE TABLE t (x TEXT)")
    conn.executemany("INSERT INTO t VALUES (?)", ((f"{i:0200d}",) for i in range(20_000)))
    grown = heap_bytes()
    conn.close()
    assert grown is not None and grown - before > 3 * 2**20  # 4 MB of rows cached
    after = heap_bytes()
    assert after is not None and after < grown


async def test_the_breaker_is_visible_open_probing_and_open_again(make_gateway) -> None:
    import datetime as dt

    from tests.test_stats import stats

    now = [1_900_000_000.0]
    gw = await make_gateway(clock=lambda: now[0], channels=[loopback_channel(
        "flaky", transient_failure_rate=1.0, block_after=2, block_for_s=60,
        latency_ms=1500)])
    await send(gw, "default", 3)

    async def channel() -> dict:
        view = await stats(gw, gw.key)
        return {c["name"]: c for c in view["channels"]}["flaky"]

    async def breaker() -> float:
        return (await scrape(gw))[("smsgw_channel_breaker", (("channel", "flaky"),))]

    async def is_open() -> bool:
        return await breaker() == 2
    await gw.wait_for(is_open)
    ch = await channel()
    assert (ch["status"], ch["breaker"]) == ("resting", "open")

    now[0] += 61  # the rest is over: one message, and only one, tries the channel

    async def probing() -> dict | None:
        ch = await channel()
        return ch if ch["status"] == "probing" and ch["in_flight"] == 1 else None
    ch = await gw.wait_for(probing)
    assert ch["breaker"] == "half_open" and ch["blocked_until"] is None
    assert await breaker() == 1

    # The probe fails too: resting again at once, twice as long.
    async def reopened() -> dict | None:
        ch = await channel()
        return ch if ch["breaker"] == "open" else None
    ch = await gw.wait_for(reopened)
    until = dt.datetime.fromisoformat(ch["blocked_until"]).timestamp()
    assert until - now[0] == pytest.approx(120, abs=1)
