"""Smart messaging: short links, clicks, journeys and cost per actuals.

The daemon runs for real; time is injected, so a 4-hour wait passes in a
few milliseconds of test. One test at the end uses real seconds.
"""

from __future__ import annotations

from collections import Counter

import pytest
from aiohttp import ClientSession

from spool.base import State
from tests.conftest import FakeClock, Running, loopback_channel
from tests.webhook_receiver import SECRET

HUMAN = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
         "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1")
IMESSAGE_PREVIEW = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 "
                    "(KHTML, like Gecko) Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 "
                    "Facebot Twitterbot/1.0")
POLICY = {"track_links": True, "wait": "4h", "sms_attempts": 2,
          "retry_templates": ["Last chance, see {link}"],
          "whatsapp": {"template": "promo_reminder", "language": "es",
                       "params": ["{link}"]}}



def channels() -> list[dict]:
    return [loopback_channel("sms-a", report_delay_ms=10),
            loopback_channel("sms-b", report_delay_ms=10),
            loopback_channel("wa", kind="whatsapp", cost=0.5, report_delay_ms=10)]


async def smart_gateway(make_gateway, clock=None, **extra) -> Running:
    gw = await make_gateway(channels=channels(), clock=clock,
                            journeys={"tick_s": 0.02, "click_flush_s": 0.05},
                            server={"public_base_url": "https://go.example"}, **extra)
    async with gw.session.patch(f"{gw.url}/api/v1/campaigns/default", headers=gw.headers(),
                                json={"smart": POLICY}) as r:
        assert r.status == 200, await r.text()
    await gw.app.services.campaigns.reload()
    return gw


async def send(gw: Running, destination: str, text: str) -> int:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json={"destination": destination, "message": text}) as r:
        assert r.status == 202, await r.text()
        return (await r.json())["id"]


async def journey_of(gw: Running, message_id: int) -> dict:
    m = await gw.store.get_message(None, message_id)
    assert m.journey_id is not None
    async with gw.session.get(f"{gw.url}/api/v1/journeys/{m.journey_id}",
                              headers=gw.headers()) as r:
        assert r.status == 200
        return await r.json()


async def until(gw: Running, message_id: int, check, timeout: float = 10) -> dict:
    async def probe():
        j = await journey_of(gw, message_id)
        return j if check(j) else None
    return await gw.wait_for(probe, timeout)


def sent_steps(j: dict) -> int:
    return sum(1 for s in j["steps"] if s["state_name"] in ("SENT", "DELIVERED"))


async def click(gw: Running, short_url: str, ua: str = HUMAN, method: str = "GET"):
    path = short_url.split("https://go.example", 1)[1]
    async with ClientSession() as s:
        async with s.request(method, gw.url + path, headers={"User-Agent": ua},
                             allow_redirects=False) as r:
            return r.status, r.headers.get("Location")


async def test_links_are_rewritten_and_redirect(make_gateway) -> None:
    gw = await smart_gateway(make_gateway)
    mid = await send(gw, "098344484", "Hola! Mirá https://shop.example/p?id=7&x=(1). Chau")
    j = await until(gw, mid, lambda j: sent_steps(j) == 1)
    [link] = j["links"]
    assert link["url"] == "https://shop.example/p?id=7&x=(1)"
    text = j["steps"][0]["text"]
    assert text == f"Hola! Mirá {link['short_url']}. Chau"
    assert len(link["code"]) == 8
    assert await click(gw, link["short_url"]) == (302, "https://shop.example/p?id=7&x=(1)")
    async with ClientSession() as s:
        async with s.get(f"{gw.url}/r/AAAAAAAA", allow_redirects=False) as r:
            assert r.status == 404 and "not valid" in await r.text()


async def test_bill_plan_never_read_read_after_second_read_after_first(make_gateway,
                                                                       receiver) -> None:
    clock = FakeClock()
    gw = await smart_gateway(make_gateway, clock=clock)
    await gw.store.set_webhook(1, receiver.url, SECRET)
    early, late, never = [await send(gw, n, "Oferta: https://shop.example/o")
                          for n in ("098344401", "098344402", "098344403")]
    j_early = await until(gw, early, lambda j: sent_steps(j) == 1)
    # A preview bot and a HEAD fetch first: recorded, not a read.
    assert (await click(gw, j_early["links"][0]["short_url"], IMESSAGE_PREVIEW))[0] == 302
    assert (await click(gw, j_early["links"][0]["short_url"], method="HEAD"))[0] == 302
    await gw.wait_for(_flushed(gw))
    assert (await journey_of(gw, early))["state"] == "ACTIVE"
    await click(gw, j_early["links"][0]["short_url"])
    await until(gw, early, lambda j: j["state"] == "CLICKED")

    clock.advance(4 * 3600 + 1)  # the wait passes: second SMS to the two others
    j_late = await until(gw, late, lambda j: sent_steps(j) == 2)
    assert j_late["steps"][1]["text"] == f"Last chance, see {j_late['links'][0]['short_url']}"
    await click(gw, j_late["links"][0]["short_url"])
    await until(gw, late, lambda j: j["state"] == "CLICKED")
    await until(gw, never, lambda j: sent_steps(j) == 2)

    clock.advance(4 * 3600 + 1)  # then WhatsApp to the one who never reads
    j_never = await until(gw, never, lambda j: j["state"] == "ESCALATED" and sent_steps(j) == 3)
    wa = j_never["steps"][2]
    assert wa["kind"] == "whatsapp" and wa["channel"] == "wa"
    clock.advance(4 * 3600 + 1)
    j_never = await until(gw, never, lambda j: j["state"] == "EXHAUSTED")

    costs = {n: (await journey_of(gw, m))["cost"] for n, m in
             (("early", early), ("late", late), ("never", never))}
    assert costs == {"early": pytest.approx(0.15), "late": pytest.approx(0.3),
                     "never": pytest.approx(0.8)}
    assert len((await journey_of(gw, early))["steps"]) == 1, "nothing more after a click"

    async def clicks_arrived():
        return len(receiver.of("link.clicked")) == 2
    await gw.wait_for(clicks_arrived)
    payloads = {e["data"]["destination"]: e["data"] for e in receiver.of("link.clicked")}
    assert set(payloads) == {"+59898344401", "+59898344402"}
    assert payloads["+59898344401"]["url"] == "https://shop.example/o"
    assert payloads["+59898344401"]["user_agent"] == HUMAN
    assert payloads["+59898344402"]["message_id"] == j_late["steps"][1]["message_id"]

    async with gw.session.get(f"{gw.url}/api/v1/reports/cost", headers=gw.headers()) as r:
        report = await r.json()
    by_kind = {line["kind"]: line for line in report["lines"]}
    assert by_kind["sms"]["messages"] == 5 and by_kind["whatsapp"]["messages"] == 1
    assert report["total"] == pytest.approx(1.25)


def _flushed(gw: Running):
    async def check():
        return not gw.app.services.clicks._pending
    return check


async def test_blacklisting_ends_the_journey(make_gateway) -> None:
    clock = FakeClock()
    gw = await smart_gateway(make_gateway, clock=clock)
    mid = await send(gw, "098344404", "Oferta https://shop.example/x")
    await until(gw, mid, lambda j: sent_steps(j) == 1)
    await gw.store.blacklist_add([("+59898344404", None)])
    clock.advance(5 * 3600)
    j = await until(gw, mid, lambda j: j["state"] == "CANCELLED")
    assert "blacklist" in j["note"] and len(j["steps"]) == 1


async def test_blacklisting_blocks_the_waiting_steps_of_that_number_only(make_gateway) -> None:
    gw = await smart_gateway(make_gateway)
    await gw.store.update_campaign(1, enabled=False)  # nothing leaves: steps wait in 1
    await gw.app.services.campaigns.reload()
    step = await send(gw, "098344406", "Oferta https://shop.example/y")
    other = await send(gw, "098344407", "Oferta https://shop.example/z")
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(),
                               json={"name": "plain", "enabled": False}) as r:
        assert r.status == 201, await r.text()
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344406", "message": "plain", "campaign": "plain"}) as r:
        plain = (await r.json())["id"]
    assert (await gw.store.get_message(None, plain)).journey_id is None
    await gw.store.blacklist_add([("+59898344406", None)])
    states = {i: (await gw.store.get_message(None, i)).state for i in (step, other, plain)}
    # The journey's waiting step is blocked at once; the other number's is not;
    # a message outside any journey is left to the dispatcher's own check.
    assert states == {step: State.BLOCKED, other: State.TO_PROCESS, plain: State.TO_PROCESS}
    assert (await journey_of(gw, step))["state"] == "CANCELLED"
    assert (await journey_of(gw, other))["state"] != "CANCELLED"


async def test_a_failed_sms_counts_and_the_journey_moves_on(make_gateway) -> None:
    gw = await make_gateway(
        channels=[loopback_channel("bad", permanent_failure_rate=1.0),
                  loopback_channel("wa", kind="whatsapp", cost=0.5)],
        journeys={"tick_s": 0.02}, server={"public_base_url": "https://go.example"})
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344405", "message": "x https://a.example",
            "smart": {**POLICY, "sms_attempts": 2}}) as r:
        mid = (await r.json())["id"]
    j = await until(gw, mid, lambda j: j["state"] == "ESCALATED" and sent_steps(j) == 1)
    assert [s["state_name"] for s in j["steps"][:2]] == ["FAILED", "FAILED"]
    assert j["steps"][2]["kind"] == "whatsapp"
    assert j["cost"] == pytest.approx(0.5), "failed SMS cost nothing"


async def test_cancel_journey_and_policy_errors(make_gateway) -> None:
    gw = await smart_gateway(make_gateway)
    mid = await send(gw, "098344406", "see https://a.example")
    j = await until(gw, mid, lambda j: sent_steps(j) == 1)
    async with gw.session.post(f"{gw.url}/api/v1/journeys/{j['id']}/cancel",
                               headers=gw.headers()) as r:
        assert r.status == 200 and (await r.json())["state"] == "CANCELLED"
    async with gw.session.post(f"{gw.url}/api/v1/journeys/{j['id']}/cancel",
                               headers=gw.headers()) as r:
        assert r.status == 409
    async with gw.session.get(f"{gw.url}/api/v1/journeys/{j['id']}",
                              headers=gw.headers(gw.other_key)) as r:
        assert r.status == 404
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "destination": "098344406", "message": "x", "smart": {"wait": "soon"}}) as r:
        body = await r.json()
        assert r.status == 400 and body["field"] == "smart.wait"


async def test_end_to_end_in_real_seconds(make_gateway, receiver) -> None:
    """wait 2 s, 2 SMS, WhatsApp last: one clicks after the first SMS, one
    after the second, one never; a preview bot's fetch does not count."""
    gw = await smart_gateway(make_gateway)
    async with gw.session.patch(f"{gw.url}/api/v1/campaigns/default", headers=gw.headers(),
                                json={"smart": {**POLICY, "wait": "2s"}}) as r:
        assert r.status == 200
    await gw.app.services.campaigns.reload()
    await gw.store.set_webhook(1, receiver.url, SECRET)
    ids = [await send(gw, n, "Oferta https://shop.example/rt")
           for n in ("098344411", "098344412", "098344413")]
    first = await until(gw, ids[0], lambda j: sent_steps(j) == 1)
    await click(gw, first["links"][0]["short_url"], IMESSAGE_PREVIEW)
    await click(gw, first["links"][0]["short_url"])
    second = await until(gw, ids[1], lambda j: sent_steps(j) == 2, timeout=10)
    await click(gw, second["links"][0]["short_url"])
    never = await until(gw, ids[2], lambda j: j["state"] == "EXHAUSTED", timeout=15)
    results = [await journey_of(gw, i) for i in ids]
    assert [r["state"] for r in results] == ["CLICKED", "CLICKED", "EXHAUSTED"]
    assert [r["cost"] for r in results] == [pytest.approx(0.15), pytest.approx(0.3),
                                            pytest.approx(0.8)]
    assert never["steps"][-1]["kind"] == "whatsapp"

    async def two_clicks():
        return len(receiver.of("link.clicked")) == 2
    await gw.wait_for(two_clicks)
    assert Counter(e["data"]["destination"] for e in receiver.of("link.clicked")) == {
        "+59898344411": 1, "+59898344412": 1}
    assert [r["clicks"] for r in results] == [{"human": 1, "bot": 1}, {"human": 1, "bot": 0},
                                              {"human": 0, "bot": 0}]


async def test_stats_count_clicked_journeys_and_list_recent_clicks(make_gateway) -> None:
    gw = await smart_gateway(make_gateway)
    mid = await send(gw, "098344431", "Oferta https://shop.example/s")
    j = await until(gw, mid, lambda j: sent_steps(j) == 1)
    await click(gw, j["links"][0]["short_url"], IMESSAGE_PREVIEW)
    await click(gw, j["links"][0]["short_url"])
    await until(gw, mid, lambda j: j["state"] == "CLICKED")
    async with gw.session.get(f"{gw.url}/api/v1/stats", headers=gw.headers()) as r:
        stats = await r.json()
    [default] = [c for c in stats["campaigns"] if c["name"] == "default"]
    assert default["clicked"] == 1
    [recent] = stats["recent_clicks"]
    assert (recent["destination"], recent["url"], recent["user_agent"]) == (
        "+59898344431", "https://shop.example/s", HUMAN)
    async with gw.session.get(f"{gw.url}/api/v1/stats", headers=gw.headers(gw.other_key)) as r:
        assert (await r.json())["recent_clicks"] == []
