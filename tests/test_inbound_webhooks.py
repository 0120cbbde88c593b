"""Inbound pipeline and tenant webhooks, through the running daemon.

Customers write through the loopback channel's inbound hook (real HTTP);
the tenant's webhook receiver is a real aiohttp server on 127.0.0.1.
"""

from __future__ import annotations

import time
from collections import Counter

from gateway.webhooks import verify
from spool.base import State
from tests.conftest import Running
from tests.webhook_receiver import SECRET, Receiver


async def customer_writes(gw: Running, sender: str, text: str, ref: str | None = None) -> int:
    form = {"from": sender, "to": "+59899000000", "text": text}
    if ref:
        form["id"] = ref
    async with gw.session.post(f"{gw.url}/hooks/loop-a/inbound", data=form) as r:
        assert r.status == 200, await r.text()
        return (await r.json())["id"]


async def send(gw: Running, destination: str, text: str = "promo", **extra) -> int:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json={"destination": destination, "message": text,
                                     **extra}) as r:
        assert r.status == 202, await r.text()
        return (await r.json())["id"]


async def state_of(gw: Running, mid: int, *states: State):
    async def check():
        m = await gw.store.get_message(None, mid)
        return m if m.state in states else None
    return await gw.wait_for(check)


async def test_stop_blacklists_confirms_and_blocks_the_next_message(gateway: Running) -> None:
    first = await send(gateway, "098344484")
    await state_of(gateway, first, State.DELIVERED)
    await customer_writes(gateway, "098344484", "  ¡Baja! por favor", ref="in-1")
    # The confirmation goes out although the number is now listed.
    async def confirmation():
        page = await gateway.store.list_messages(_all())
        return [m for m in page if m.message.startswith("You will receive no more")]
    [confirm] = await gateway.wait_for(confirmation)
    confirmed = await state_of(gateway, confirm.id, State.SENT, State.DELIVERED)
    assert confirmed.channel == "loop-a"  # answered on the channel it came from
    listed = await gateway.store.blacklisted([("+59898344484", 1)])
    assert listed == {("+59898344484", 1)}
    again = await send(gateway, "098344484", "another promo")
    assert (await gateway.store.get_message(None, again)).state == State.BLOCKED
    [inbound] = await gateway.store.list_inbound(_inbound())
    assert inbound.action == "opt_out" and inbound.reply_to == first


async def test_the_same_inbound_twice_is_stored_and_answered_once(gateway: Running) -> None:
    await send(gateway, "098344485")
    first = await customer_writes(gateway, "098344485", "STOP", ref="dup-1")
    again = await customer_writes(gateway, "098344485", "STOP", ref="dup-1")
    assert first == again
    page = await gateway.store.list_messages(_all())
    assert sum(m.message.startswith("You will receive no more") for m in page) == 1
    assert len(await gateway.store.list_inbound(_inbound())) == 1


async def test_auto_reply_and_out_of_time_message(gateway: Running) -> None:
    async with gateway.session.patch(
            f"{gateway.url}/api/v1/campaigns/default", headers=gateway.headers(),
            json={"auto_replies": {"info": "Open 9 to 18, Mon-Fri."},
                  "out_of_time_message": "We are closed; we answer tomorrow."}) as r:
        assert r.status == 200, await r.text()
    # The customer answers what reached them: a reply is matched to a sent message.
    await state_of(gateway, await send(gateway, "098344486"), State.SENT, State.DELIVERED)
    await customer_writes(gateway, "098344486", "Info please", ref="a-1")
    # Closed all week: a schedule with no window is never open.
    async with gateway.session.patch(
            f"{gateway.url}/api/v1/campaigns/default", headers=gateway.headers(),
            json={"schedule": {"timezone": "America/Montevideo", "windows": []}}) as r:
        assert r.status == 200
    await gateway.app.services.campaigns.reload()
    await customer_writes(gateway, "098344486", "hello?", ref="a-2")
    texts = [m.message for m in await gateway.store.list_messages(_all())]
    assert "Open 9 to 18, Mon-Fri." in texts
    assert "We are closed; we answer tomorrow." in texts
    actions = [i.action for i in await gateway.store.list_inbound(_inbound())]
    assert actions == ["auto_reply", "out_of_time"]


async def test_conversations_and_agent_reply(gateway: Running) -> None:
    await state_of(gateway, await send(gateway, "098344487", agent="ana"),
                   State.SENT, State.DELIVERED)
    await customer_writes(gateway, "098344487", "Can I change my appointment?", ref="c-1")
    await customer_writes(gateway, "098344487", "Tuesday is better", ref="c-2")
    h = gateway.headers()
    async with gateway.session.get(f"{gateway.url}/api/v1/conversations",
                                   params={"agent": "ana", "origin": "098344487"},
                                   headers=h) as r:
        [conv] = (await r.json())["conversations"]
    assert conv["inbound"] == 2 and conv["customer"] == "+59898344487"
    async with gateway.session.get(f"{gateway.url}/api/v1/conversations/{conv['id']}",
                                   headers=h) as r:
        body = await r.json()
    assert [i["text"] for i in body["inbound"]] == ["Can I change my appointment?",
                                                    "Tuesday is better"]
    async with gateway.session.post(f"{gateway.url}/api/v1/conversations/{conv['id']}/reply",
                                    headers=h, json={"message": "Done: Tuesday 10:00",
                                                     "agent": "ana"}) as r:
        assert r.status == 202
        reply = (await r.json())["id"]
    sent = await state_of(gateway, reply, State.SENT, State.DELIVERED)
    assert sent.channel == "loop-a" and sent.agent == "ana"
    other = gateway.headers(gateway.other_key)
    async with gateway.session.get(f"{gateway.url}/api/v1/conversations/{conv['id']}",
                                   headers=other) as r:
        assert r.status == 404
    async with gateway.session.get(f"{gateway.url}/api/v1/inbound", headers=other) as r:
        assert (await r.json())["inbound"] == []


async def test_webhooks_are_signed_and_survive_a_receiver_outage(make_gateway,
                                                                 receiver: Receiver) -> None:
    gw = await make_gateway(webhooks={"retry_base_s": 0.05, "retry_max_s": 0.5,
                                      "timeout_s": 2})
    await gw.store.set_webhook(1, receiver.url, SECRET)
    receiver.down = True
    ids = [await send(gw, f"09834449{i}") for i in range(5)]
    for mid in ids:
        await state_of(gw, mid, State.DELIVERED)
    await customer_writes(gw, "098344490", "hi there", ref="w-1")

    async def failing():
        return receiver.hits >= 10
    await gw.wait_for(failing)
    receiver.down = False

    async def all_events():
        return len(receiver.of("message.delivered")) == 5 and receiver.of("inbound.received")
    await gw.wait_for(all_events, timeout=20)
    ids_seen = Counter(e["id"] for e in receiver.events)
    assert max(ids_seen.values()) == 1, "each event once per event id"
    assert {e["data"]["id"] for e in receiver.of("message.sent")} == set(ids)
    assert {e["data"]["id"] for e in receiver.of("message.delivered")} == set(ids)
    [inbound] = receiver.of("inbound.received")
    assert inbound["data"]["text"] == "hi there" and inbound["data"]["sender"] == "+59898344490"
    assert receiver.bad_signatures == 0

    async def drained():  # the receiver's 2xx reaches the outbox a moment later
        return await gw.store.outbox_backlog() == 0
    await gw.wait_for(drained)


def test_signature_verification_rejects_forgery_and_replay() -> None:
    from gateway.webhooks import sign

    body = b'{"id":"e1"}'
    now = int(time.time())
    header = sign(SECRET, body, now)
    assert verify(SECRET, body, header, now=now)
    assert not verify(SECRET, body + b" ", header, now=now)
    assert not verify("other", body, header, now=now)
    assert not verify(SECRET, body, header, now=now + 301), "a replay after 5 minutes"
    assert not verify(SECRET, body, "garbage", now=now)


def _all():
    from spool.base import ListFilter
    return ListFilter(tenant=1, limit=1000)


def _inbound():
    from spool.base import InboundFilter
    return InboundFilter(tenant=1)
