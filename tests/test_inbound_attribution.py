"""A customer's reply reaches the tenant that wrote to them on the number
they answered, never another tenant that wrote to them elsewhere.

Two loopback channels stand for two business numbers: "loop-a" (X) and
"loop-b" (Y). Tenant bravo sends its OTPs over X, tenant acme its promotions
over Y; customers write through each channel's inbound hook (real HTTP to
the running daemon), on both backends.

| case | outbound to the customer | reply on | reply belongs to |
| --- | --- | --- | --- |
| the issue's scenario | bravo on X, then acme on Y | X | bravo (not acme) |
| the same customer | bravo on X, then acme on Y | Y | acme |
| nobody wrote on that number | acme on Y | X | the operator |
| X bound to bravo | bravo on X, then acme on X (before the binding) | X | bravo |
| X bound to bravo, a stranger | nothing | X | bravo |
| STOP on X | bravo on X, acme on Y | X | bravo's campaign only is stopped |
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from gateway.auth import generate_key, hash_key
from gateway.settings import ConfigError, settings_from_dict
from spool.base import ListFilter, NewMessage, Retry, Sent, State
from tests.conftest import Running, config, loopback_channel, start_app
from tests.webhook_receiver import SECRET, Receiver

CUSTOMER = "+59898344484"
STRANGER = "+59898344499"


async def tenants(store: Any) -> dict[str, str]:
    """Tenants acme and bravo with an API key each (before any daemon starts,
    so that channels can be bound to them)."""
    keys = {}
    for name in ("acme", "bravo"):
        keys[name] = generate_key()
        await store.create_tenant(name, hash_key(keys[name]))
    return keys


@asynccontextmanager
async def daemon(tmp_path: Path, storage_url: str, keys: dict[str, str],
                 channels: list[dict[str, Any]]) -> AsyncIterator[Running]:
    """The daemon on `storage_url`, stopped on leaving: a test can restart
    it with another configuration on the same spool."""
    settings = settings_from_dict(config(tmp_path, storage_url=storage_url, channels=channels))
    app, stop, task = await start_app(settings)
    host, port = app.bound[0]
    try:
        async with aiohttp.ClientSession() as session:
            yield Running(app, f"http://{host}:{port}", keys["acme"], keys["bravo"], session)
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)


def two_numbers(**bravo_a: Any) -> list[dict[str, Any]]:
    return [loopback_channel("loop-a", **bravo_a), loopback_channel("loop-b")]


async def campaign(gw: Running, key: str, name: str, channels: list[str]) -> None:
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(key),
                               json={"name": name, "channels": channels}) as r:
        assert r.status == 201, await r.text()
    await gw.app.services.campaigns.reload()


async def send(gw: Running, key: str, name: str, destination: str, text: str) -> int:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(key),
                               json={"destination": destination, "message": text,
                                     "campaign": name}) as r:
        assert r.status == 202, await r.text()
        mid = int((await r.json())["id"])
    return (await gw.reaches(mid, {State.SENT, State.DELIVERED})).id


async def writes(gw: Running, channel: str, sender: str, text: str, ref: str) -> None:
    async with gw.session.post(f"{gw.url}/hooks/{channel}/inbound",
                               data={"from": sender, "text": text, "id": ref}) as r:
        assert r.status == 200, await r.text()


async def inbox(gw: Running, key: str) -> dict[str, dict[str, Any]]:
    """The tenant's inbound messages by text, through its own API key."""
    async with gw.session.get(f"{gw.url}/api/v1/inbound", headers=gw.headers(key)) as r:
        assert r.status == 200
        return {i["text"]: i for i in (await r.json())["inbound"]}


async def operator_inbox(gw: Running) -> set[str]:
    return {i.text for i in await gw.inbound()}


async def channel_of(gw: Running, mid: int) -> str | None:
    return (await gw.store.get_message(None, mid)).channel


async def test_a_reply_reaches_the_tenant_that_wrote_on_that_number(
        tmp_path: Path, storage_url: str, store: Any, receiver: Receiver) -> None:
    keys = await tenants(store)
    async with daemon(tmp_path, storage_url, keys, two_numbers()) as gw:
        acme = await store.tenant_by_name("acme")
        await store.set_webhook(acme.id, receiver.url, SECRET)
        await campaign(gw, keys["bravo"], "otp", ["loop-a"])
        await campaign(gw, keys["acme"], "promo", ["loop-b"])
        otp = await send(gw, keys["bravo"], "otp", CUSTOMER, "Your bravo code is 4821")
        promo = await send(gw, keys["acme"], "promo", CUSTOMER, "acme: 20% off today")
        await send(gw, keys["acme"], "promo", STRANGER, "acme: 20% off today")
        assert (await channel_of(gw, otp), await channel_of(gw, promo)) == ("loop-a", "loop-b")
        assert otp < promo  # acme wrote last, but on the other number

        await writes(gw, "loop-a", CUSTOMER, "4821", "in-otp")
        await writes(gw, "loop-b", CUSTOMER, "who is this?", "in-promo")
        await writes(gw, "loop-a", STRANGER, "hello?", "in-stranger")

        bravo_in, acme_in = await inbox(gw, keys["bravo"]), await inbox(gw, keys["acme"])
        assert set(bravo_in) == {"4821"} and bravo_in["4821"]["reply_to"] == otp
        assert set(acme_in) == {"who is this?"} and acme_in["who is this?"]["reply_to"] == promo
        # acme wrote to the stranger on Y only: a reply on X is nobody's guess.
        assert await operator_inbox(gw) == {"hello?"}
        [stranger] = [i for i in await gw.inbound() if i.text == "hello?"]
        assert stranger.reply_to is None and stranger.campaign is None

        async def acme_heard() -> list[dict[str, Any]]:
            return [e for e in receiver.of("inbound.received")
                    if e["data"]["text"] == "who is this?"]
        await gw.wait_for(acme_heard)
        assert [e["data"]["text"] for e in receiver.of("inbound.received")] == ["who is this?"]


async def test_stop_on_one_number_stops_only_that_tenants_campaign(
        tmp_path: Path, storage_url: str, store: Any) -> None:
    keys = await tenants(store)
    async with daemon(tmp_path, storage_url, keys, two_numbers()) as gw:
        await campaign(gw, keys["bravo"], "otp", ["loop-a"])
        await campaign(gw, keys["acme"], "promo", ["loop-b"])
        await send(gw, keys["bravo"], "otp", CUSTOMER, "Your bravo code is 4821")
        await send(gw, keys["acme"], "promo", CUSTOMER, "acme: 20% off today")
        await writes(gw, "loop-a", CUSTOMER, "STOP", "in-stop")
        bravo = await store.tenant_by_name("bravo")
        otp = await store.campaign_by_name(bravo.id, "otp")
        acme = await store.tenant_by_name("acme")
        promo = await store.campaign_by_name(acme.id, "promo")
        assert await store.blacklisted([(CUSTOMER, otp.id), (CUSTOMER, promo.id)]) == {
            (CUSTOMER, otp.id)}
        assert (await inbox(gw, keys["bravo"]))["STOP"]["action"] == "opt_out"
        # The confirmation is bravo's, on the number the customer wrote to.
        page = await store.list_messages(ListFilter(tenant=bravo.id, limit=1000))
        [confirm] = [m for m in page if m.message.startswith("You will receive no more")]
        assert (await gw.reaches(confirm.id, {State.SENT, State.DELIVERED})).channel == "loop-a"
        # acme may still write to the customer.
        await send(gw, keys["acme"], "promo", CUSTOMER, "acme: last chance")


async def test_a_bound_channel_keeps_its_replies_and_its_traffic(
        tmp_path: Path, storage_url: str, store: Any) -> None:
    keys = await tenants(store)
    # Before the binding, acme wrote on X after bravo.
    async with daemon(tmp_path, storage_url, keys, two_numbers()) as gw:
        await campaign(gw, keys["bravo"], "otp", ["loop-a"])
        await campaign(gw, keys["acme"], "promo", ["loop-a"])
        otp = await send(gw, keys["bravo"], "otp", CUSTOMER, "Your bravo code is 4821")
        late = await send(gw, keys["acme"], "promo", CUSTOMER, "acme: 20% off today")
        assert await channel_of(gw, late) == "loop-a"
    async with daemon(tmp_path, storage_url, keys, two_numbers(tenants=["bravo"])) as gw:
        await writes(gw, "loop-a", CUSTOMER, "4821", "in-otp")
        await writes(gw, "loop-a", STRANGER, "hi", "in-stranger")
        bravo_in = await inbox(gw, keys["bravo"])
        assert bravo_in["4821"]["reply_to"] == otp
        assert bravo_in["hi"]["reply_to"] is None  # nobody wrote: still bravo's number
        assert await inbox(gw, keys["acme"]) == {}
        assert await operator_inbox(gw) == set()
        # acme's campaign names X, but X is bravo's now: acme's next message
        # goes out over the channel acme may use.
        again = await send(gw, keys["acme"], "promo", CUSTOMER, "acme: last chance")
        assert await channel_of(gw, again) == "loop-b"


async def test_a_binding_to_an_unknown_tenant_stops_the_start(
        tmp_path: Path, storage_url: str) -> None:
    settings = settings_from_dict(config(
        tmp_path, storage_url=storage_url, channels=two_numbers(tenants=["bravo"])))
    with pytest.raises(ConfigError) as err:
        await start_app(settings)
    assert err.value.key == "channels[0].tenants" and "'bravo'" in str(err.value)


async def test_the_store_finds_the_last_message_sent_on_a_channel(store: Any) -> None:
    other = await store.create_tenant("other", hash_key(generate_key()))
    mine = await store.campaign_by_name(1, "default")
    theirs = await store.campaign_by_name(other.id, "default")
    assert mine and theirs

    async def went(tenant: int, campaign: int, channel: str, *, sent: bool = True) -> int:
        [row] = await store.insert_messages([NewMessage(tenant, campaign, CUSTOMER, "hi")])
        now = time.time()
        [claimed] = await store.claim("n", 1, now, now + 60, [campaign])
        outcome = (Sent(claimed.id, channel, f"ref-{row.id}", 0.1, now) if sent
                   else Retry(claimed.id, channel, "busy", now + 3600))
        await store.record([outcome], now)
        return row.id

    x1 = await went(1, mine.id, "loop-a")
    y1 = await went(other.id, theirs.id, "loop-b")
    x2 = await went(other.id, theirs.id, "loop-a")
    await went(1, mine.id, "loop-a", sent=False)  # tried on X, never went out

    async def last(channel: str, tenants: tuple[int, ...] = ()) -> int | None:
        found = await store.last_sent_on(CUSTOMER, channel, tenants)
        return None if found is None else found.id
    assert await last("loop-a") == x2
    assert await last("loop-b") == y1
    assert await last("loop-a", (1,)) == x1
    assert await last("loop-a", (1, other.id)) == x2
    assert await last("loop-b", (1,)) is None
    assert await last("loop-c") is None
    assert await store.last_sent_on(STRANGER, "loop-a") is None


async def test_a_fallback_is_answered_only_on_the_number_that_asked(make_gateway) -> None:
    """The WhatsApp utility fallback keeps working, on the asking number only."""
    wa = {"kind": "whatsapp", "cost": 0.5, "report_delay_ms": 10}
    gw = await make_gateway(channels=[
        loopback_channel("wa", undelivered_templates=["winter_sale"], undelivered_code="131049",
                         **wa),
        loopback_channel("wa2", **wa)], journeys={"tick_s": 0.02})
    smart = {"whatsapp_fallback": {"enabled": True, "template": "permission_ask"}}
    async with gw.session.patch(f"{gw.url}/api/v1/campaigns/default", headers=gw.headers(),
                                json={"smart": smart}) as r:
        assert r.status == 200, await r.text()
    await gw.app.services.campaigns.reload()
    template = {"name": "winter_sale", "language": {"code": "es"}, "components": []}
    [row] = await gw.store.insert_messages([NewMessage(
        tenant=1, campaign=1, destination=CUSTOMER, message="[template winter_sale]",
        kind="whatsapp", data={"whatsapp": {"type": "template", "template": template,
                                            "rendered": {"body": "Winter sale"}},
                               "_smsgw": {"channel": "wa"}})])
    gw.app.services.intake.accepted(1)

    async def fallback(state: str) -> Any:
        found = await gw.store.fallback_of(row.id)
        return found if found and found.state == state else None
    asked = await gw.wait_for(lambda: fallback("ASKED"))
    await gw.reaches(asked.utility_id, {State.SENT, State.DELIVERED})
    await writes(gw, "wa2", CUSTOMER, "YES", "yes-elsewhere")
    assert (await gw.store.fallback_of(row.id)).state == "ASKED"
    await writes(gw, "wa", CUSTOMER, "YES", "yes-here")
    await gw.wait_for(lambda: fallback("ANSWERED"))
