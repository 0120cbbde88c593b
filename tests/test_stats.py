"""GET /api/v1/stats through the running daemon: counts, rates, channel health,
and the reasons a campaign is not sending."""

from __future__ import annotations

from typing import Any

from tests.conftest import Running, loopback_channel

FAST = {"sample_interval_s": 0.05}
NEVER_OPEN = {"timezone": "America/Montevideo", "windows": [],
              "exceptions": []}


async def stats(gw: Running, key: str | None = None, **headers: str) -> dict[str, Any]:
    hdrs = {**({"X-Api-Key": key} if key else {}), **headers}
    async with gw.session.get(f"{gw.url}/api/v1/stats", headers=hdrs) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def campaign(view: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in view["campaigns"] if c["name"] == name)


async def create(gw: Running, name: str, key: str | None = None, **fields: Any) -> None:
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(key),
                               json={"name": name, **fields}) as r:
        assert r.status == 201, await r.text()


async def send(gw: Running, campaign_name: str, count: int, key: str | None = None,
               start: int = 0) -> None:
    batch = {"messages": [{"destination": f"+5989834{start + i:04d}", "message": f"m{i}",
                           "campaign": campaign_name} for i in range(count)]}
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(key),
                               json=batch) as r:
        assert r.status == 202, await r.text()


async def test_counts_rates_and_channels_move_as_messages_go_out(make_gateway) -> None:
    gw = await make_gateway(dashboard=FAST)
    await create(gw, "promo")
    await send(gw, "promo", 20)

    async def all_processed() -> dict[str, Any] | None:
        view = await stats(gw, gw.key)
        c = campaign(view, "promo")
        return view if c["processed"] == 20 and c["send_rate_per_min"] == 20 else None

    view = await gw.wait_for(all_processed)
    c = campaign(view, "promo")
    assert c["active"] and c["on_schedule"] and c["status"] in ("idle", "sending")
    assert c["not_processed"] == 0 and c["other"] == 0 and c["blocked"] == 0
    assert c["sent"] + c["delivered"] == 20 and c["clicked"] == 0
    assert c["cost"] == 20 * 0.15
    assert sum(view["chart"]["processed"]) == 20 and len(view["chart"]["processed"]) == 60
    channels = {ch["name"]: ch for ch in view["channels"]}
    assert set(channels) == {"loop-a", "loop-b"}
    assert sum(ch["sent_per_min"] for ch in channels.values()) == 20
    assert all(ch["up"] and ch["status"] == "up" and ch["error_rate"] == 0
               for ch in channels.values())


async def test_a_tenant_sees_only_its_campaigns(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "mine")
    await create(gw, "theirs", key=gw.other_key)
    own = {(c["tenant"], c["name"]) for c in (await stats(gw, gw.key))["campaigns"]}
    other = {(c["tenant"], c["name"]) for c in (await stats(gw, gw.other_key))["campaigns"]}
    assert ("default", "mine") in own and all(t == "default" for t, _ in own)
    assert ("other", "theirs") in other and all(t == "other" for t, _ in other)
    async with gw.session.get(f"{gw.url}/api/v1/stats",
                              headers={"X-Api-Key": "sgw_wrong"}) as r:
        assert r.status == 401


async def test_keyless_operator_view_is_loopback_only(make_gateway) -> None:
    gw = await make_gateway(server={"metrics_token": "s3cret"})
    await create(gw, "theirs", key=gw.other_key)
    everything = await stats(gw)  # from 127.0.0.1: the operator's view of every tenant
    assert {(c["tenant"], c["name"]) for c in everything["campaigns"]} >= {
        ("default", "default"), ("other", "theirs")}
    proxied = {"X-Forwarded-For": "203.0.113.9"}
    async with gw.session.get(f"{gw.url}/api/v1/stats", headers=proxied) as r:
        assert r.status == 401
    assert (await stats(gw, **proxied, Authorization="Bearer s3cret"))["campaigns"]


async def test_stopped_campaign_says_so_and_start_fixes_it(make_gateway) -> None:
    gw = await make_gateway()
    await create(gw, "held", enabled=False)
    await send(gw, "held", 3)
    c = campaign(await stats(gw, gw.key), "held")
    assert c["status"] == "stopped" and not c["active"]
    assert c["not_processed"] == 3 and c["waiting"] == 3
    assert [d["code"] for d in c["diagnosis"]] == ["stopped"]
    assert c["diagnosis"][0]["fix"] == "start"
    async with gw.session.post(f"{gw.url}/api/v1/campaigns/held/start",
                               headers=gw.headers()) as r:
        assert r.status == 200

    async def drained() -> bool:
        return campaign(await stats(gw, gw.key), "held")["processed"] == 3
    await gw.wait_for(drained)


async def test_off_schedule_shows_when_it_opens(make_gateway) -> None:
    gw = await make_gateway()
    # Open one minute a week, on some other day than today: closed now.
    schedule = {"timezone": "UTC", "windows": [{"days": "*", "start": "00:00", "end": "00:01"}],
                "exceptions": []}
    await create(gw, "night", schedule=schedule)
    await create(gw, "never", schedule=NEVER_OPEN)
    await send(gw, "night", 2)
    view = await stats(gw, gw.key)
    night, never = campaign(view, "night"), campaign(view, "never")
    if night["on_schedule"]:  # the test ran in the one open minute
        return
    assert night["status"] == "off schedule" and night["waiting"] == 2
    assert night["next_window_at"].endswith("T00:00:00.000Z")
    assert night["diagnosis"][0]["code"] == "off_schedule"
    assert never["next_window_at"] is None
    assert "No window opens" in never["diagnosis"][0]["text"]


async def test_channel_down_and_errors_are_explained(make_gateway) -> None:
    gw = await make_gateway(channels=[
        loopback_channel("good"),
        loopback_channel("off", enabled=False),
        loopback_channel("flaky", transient_failure_rate=1.0, block_after=2, block_for_s=60)])
    await create(gw, "dead", channels=["off"])
    await create(gw, "shaky", channels=["flaky"])
    await send(gw, "dead", 1)
    await send(gw, "shaky", 2, start=100)
    dead = campaign(await stats(gw, gw.key), "dead")
    assert dead["status"] == "channel down"
    assert dead["diagnosis"][0]["code"] == "channels_down"
    assert "off: disabled in the configuration" in dead["diagnosis"][0]["text"]

    async def resting() -> dict[str, Any] | None:
        view = await stats(gw, gw.key)
        ch = {c["name"]: c for c in view["channels"]}["flaky"]
        # The breaker trips before the failed sends are recorded: wait for both.
        settled = ch["status"] == "resting" and ch["errors_5m"] >= 2 \
            and campaign(view, "shaky")["status"] == "channel resting"
        return view if settled else None

    view = await gw.wait_for(resting)
    flaky = {c["name"]: c for c in view["channels"]}["flaky"]
    assert flaky["error_rate"] == 1.0 and flaky["last_error"] and flaky["blocked_until"]
    assert "flaky: paused" in campaign(view, "shaky")["diagnosis"][0]["text"]
    off = {c["name"]: c for c in view["channels"]}["off"]
    assert off["status"] == "disabled" and off["up"] is False
    assert any(f["channel"] == "flaky" and not f["final"] for f in view["recent_failures"])


async def test_blacklisted_numbers_and_failures_are_listed_per_tenant(make_gateway) -> None:
    gw = await make_gateway(channels=[loopback_channel("bad", permanent_failure_rate=1.0)])
    async with gw.session.post(f"{gw.url}/api/v1/blacklist", headers=gw.headers(),
                               json={"destinations": ["+59898340000"]}) as r:
        assert r.status == 200
    await send(gw, "default", 3)

    async def settled() -> dict[str, Any] | None:
        view = await stats(gw, gw.key)
        c = campaign(view, "default")
        return view if c["blocked"] == 1 and c["failed"] == 2 else None

    view = await gw.wait_for(settled)
    codes = [d["code"] for d in campaign(view, "default")["diagnosis"]]
    assert "blacklisted" in codes
    failures = view["recent_failures"]
    assert len(failures) == 2 and all(f["final"] and f["channel"] == "bad" for f in failures)
    assert (await stats(gw, gw.other_key))["recent_failures"] == []
