"""What one request may ask for, on both backends through the real daemon:
no unknown fields, one request per idempotency key, a bounded number of
links (none for a message that will never go), durations that are dates,
and no answer that strict JSON parsers refuse."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

from gateway.intake.limits import MAX_LINKS_PER_MESSAGE
from gateway.journeys import Planner
from spool.base import JourneySpec, NewMessage
from tests.conftest import Running

API = "/api/v1/messages"
TRACKED = {"track_links": True}


async def post(gw: Running, body: Any, path: str = API) -> tuple[int, dict[str, Any]]:
    async with gw.session.post(gw.url + path, json=body, headers=gw.headers()) as r:
        return r.status, await r.json()


async def strict_json(gw: Running, path: str) -> tuple[int, Any]:
    """The answer parsed as browsers do: `Infinity` and `NaN` are errors."""
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} answered the non-JSON token {token}")
    async with gw.session.get(gw.url + path, headers=gw.headers()) as r:
        return r.status, json.loads(await r.read(), parse_constant=refuse)


async def stored(gw: Running) -> int:
    return sum(sum(c.by_state.values()) for c in await gw.store.counts())


async def link_rows(gw: Running) -> int:
    if hasattr(gw.store.db, "reader"):
        found = await gw.store.db.reader.execute_fetchall("SELECT count(*) FROM links")
        return int(next(iter(found))[0])
    return int(await gw.store.db.fetchval("SELECT count(*) FROM links"))


# -- item 17: unknown fields ------------------------------------------------------

async def test_unknown_fields_are_a_400_naming_them(gateway: Running) -> None:
    ok = {"destination": "098344484", "message": "hola"}
    assert await post(gateway, {**ok, "campain": "promo"}) == (
        400, {"error": "unknown field 'campain'", "field": "campain"})
    status, body = await post(gateway, {"messages": [ok, {**ok, "prority": 5}]})
    assert (status, body["field"]) == (400, "messages[1].prority")
    # A batch's own fields: `messages` only (a batch-wide campaign was ignored).
    status, body = await post(gateway, {"messages": [ok], "campaign": "promo"})
    assert (status, body["field"]) == (400, "campaign")
    assert await stored(gateway) == 0
    assert (await post(gateway, ok))[0] == 202


# -- item 16: idempotency keys --------------------------------------------------

async def test_a_key_reused_with_another_body_is_a_409(gateway: Running) -> None:
    first = {"destination": "098344484", "message": "otp 1234", "idempotency_key": "otp-1"}
    status, original = await post(gateway, first)
    assert status == 202
    # The same request again, the number spelt another way: the original.
    status, again = await post(gateway, {**first, "destination": "+59898344484"})
    assert (status, again["id"], again["duplicate"]) == (202, original["id"], True)
    for change in ({"message": "otp 9999"}, {"destination": "098344485"},
                   {"priority": 9}, {"data": {"order": 7}}, {"agent": "bob"}):
        assert await post(gateway, {**first, **change}) == (409, {
            "error": "idempotency key reused with a different request",
            "field": "idempotency_key"}), change
    batch = [{"destination": "098344484", "message": "new", "idempotency_key": "fresh"},
             {**first, "message": "otp 9999"}]
    status, body = await post(gateway, {"messages": batch})
    assert (status, body["field"]) == (409, "messages[1].idempotency_key")
    assert await stored(gateway) == 1, "the refused batch stored nothing"
    m = await gateway.store.get_message(None, original["id"])
    assert m.message == "otp 1234"


async def test_two_bodies_racing_for_one_key_one_wins(gateway: Running) -> None:
    """Both in the same group commit: one is stored, the other is a 409,
    and the requests around them are untouched."""
    bodies = [{"destination": "098344484", "message": f"v{i}", "idempotency_key": "race"}
              for i in range(2)]
    around = [{"destination": f"09834{i:04d}", "message": "x"} for i in range(40)]
    answers = await asyncio.gather(*(post(gateway, b) for b in [*around[:20], *bodies,
                                                                 *around[20:]]))
    racing = sorted(status for status, _ in answers[20:22])
    assert racing == [202, 409]
    assert all(status == 202 for status, _ in answers[:20] + answers[22:])
    assert await stored(gateway) == 41


# -- item 19: what one request may create --------------------------------------------

async def test_no_links_or_journeys_for_messages_that_will_not_go(gateway: Running) -> None:
    text = "Oferta https://shop.example/a y https://shop.example/b"
    status, invalid = await post(gateway, {"destination": "12", "message": text,
                                           "smart": TRACKED})
    assert (status, invalid["state_name"]) == (202, "INVALID")
    await gateway.store.blacklist_add([("+59898344401", None)])
    status, blocked = await post(gateway, {"destination": "098344401", "message": text,
                                           "smart": TRACKED})
    assert (status, blocked["state_name"]) == (202, "BLOCKED")
    for mid in (invalid["id"], blocked["id"]):
        m = await gateway.store.get_message(None, mid)
        assert (m.journey_id, m.message) == (None, text)
    assert await link_rows(gateway) == 0
    status, sent = await post(gateway, {"destination": "098344402", "message": text,
                                        "smart": TRACKED})
    assert sent["state_name"] == "TO_PROCESS" and await link_rows(gateway) == 2


async def test_links_per_message_and_per_request_are_bounded(gateway: Running) -> None:
    def urls(n: int) -> str:
        return " ".join(f"https://shop.example/{i}" for i in range(n))
    ok = {"destination": "098344484", "message": urls(MAX_LINKS_PER_MESSAGE),
          "smart": TRACKED}
    assert (await post(gateway, ok))[0] == 202
    status, body = await post(gateway, {**ok, "message": urls(MAX_LINKS_PER_MESSAGE + 1)})
    assert (status, body["field"]) == (400, "message")
    assert "more than the maximum 10" in body["error"]
    batch = [{**ok, "message": urls(MAX_LINKS_PER_MESSAGE + 1)} if i == 7 else ok
             for i in range(9)]
    status, body = await post(gateway, {"messages": batch})
    assert (status, body["field"]) == (400, "messages[7].message")
    # 201 messages of 10 links: 2,010 short links, over the 2,000 a request may make.
    status, body = await post(gateway, {"messages": [ok] * 201})
    assert (status, body["field"]) == (400, "messages")
    assert await link_rows(gateway) == 10
    # Without tracking, URLs are just text.
    assert (await post(gateway, {**ok, "message": urls(50), "smart": None}))[0] == 202


# -- item 9 (part): durations and non-finite numbers -------------------------------

async def test_unbounded_durations_are_a_400_naming_the_field(gateway: Running) -> None:
    base = {"destination": "098344484", "message": "x https://a.example"}
    for policy, field in [({"wait": 1e308}, "smart.wait"),
                          ({"wait": "2400h"}, "smart.wait"),
                          ({"wait": 0}, "smart.wait"),
                          ({"link_ttl": 1e308}, "smart.link_ttl"),
                          ({"link_ttl": "91d"}, "smart.link_ttl")]:
        smart = {**TRACKED, **policy}
        status, body = await post(gateway, {**base, "smart": smart})
        assert (status, body["field"]) == (400, field), (policy, body)
        status, body = await post(gateway, {"name": "promo", "smart": smart},
                                  "/api/v1/campaigns")
        assert (status, body["field"]) == (400, field), (policy, body)
    # The JSON number tokens Python reads as floats: Infinity, NaN, 1e400.
    for token in ("Infinity", "-Infinity", "NaN", "1e400"):
        raw = '{"destination": "098344484", "message": "x", "smart": {"track_links": true, ' \
              f'"wait": {token}}}}}'
        async with gateway.session.post(gateway.url + API, data=raw, headers={
                **gateway.headers(), "Content-Type": "application/json"}) as r:
            assert r.status == 400, (token, await r.text())
            assert (await r.json())["field"] in ("smart.wait", "body"), token
        raw = f'{{"destination": "098344484", "message": "x", "data": {{"n": {token}}}}}'
        async with gateway.session.post(gateway.url + API, data=raw, headers={
                **gateway.headers(), "Content-Type": "application/json"}) as r:
            assert r.status == 400, (token, await r.text())
    ok = {**base, "smart": {**TRACKED, "wait": "90d", "link_ttl": 7776000}}
    assert (await post(gateway, ok))[0] == 202
    assert await stored(gateway) == 1


async def test_what_was_stored_unbounded_still_answers_json(gateway: Running) -> None:
    """A journey and a campaign policy stored before durations were bounded:
    their pages answer 200 with strict JSON, and the scheduler ends the
    journey instead of failing on it."""
    policy = {"track_links": True, "wait": 1e308, "sms_attempts": 2}
    [row] = await gateway.store.insert_messages([NewMessage(
        1, 1, "+59898344484", "x http://127.0.0.1/r/abcdefgh",
        journey=JourneySpec(policy=policy, wait_s=1e308,
                            links=(("abcdefgh", "https://a.example"),)))])
    m = await gateway.store.get_message(None, row.id)
    await gateway.store.update_campaign(1, smart={"track_links": True, "wait": float("inf")})
    status, body = await strict_json(gateway, f"/api/v1/journeys/{m.journey_id}")
    assert status == 200 and body["policy"]["wait"] == 1e308
    status, body = await strict_json(gateway, "/api/v1/campaigns/default")
    assert status == 200 and body["smart"]["wait"] is None
    # The scheduler's next step for it: the end, not an exception every tick.
    journey = await gateway.store.get_journey(1, m.journey_id)
    step = Planner("http://127.0.0.1", 10).next_step(dataclasses.replace(journey, step=1))
    assert (step.state, step.message) == ("EXHAUSTED", None)
    assert "smart.wait" in step.note
