"""Several WhatsApp numbers of one Meta app behind one callback URL.

A Meta app has one webhook callback URL and sends there the statuses,
replies and marketing preferences of every number of the app. The operator
runs each number as its own channel and types one channel's hook into the
App Dashboard: that hook hands each change to the channel of its number,
provided that channel is of the same app (same app secret), and leaves out
what concerns a number of another app or one the gateway does not run.

Through the running daemon and Meta's simulator, whose two numbers call
back ONE URL (`/hooks/wa-a`), as Meta does; a second simulated app (another
app secret) owns a third number. On SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from drivers.simulators.whatsapp import WhatsAppSimulator
from drivers.whatsapp import numbers, webhook
from spool.base import Campaign, NewMessage, State
from tests.conftest import Running
from tests.test_whatsapp import NUMBER_ID, PUBLIC, SECRET, TEMPLATE, TOKEN, VERIFY, meta_signature

NUMBER_A, DISPLAY_A = NUMBER_ID, "15550000001"
NUMBER_B, DISPLAY_B = "106540352242933", "15550000002"
HOOK_A = f"{PUBLIC}/hooks/wa-a"  # the one URL typed into the App Dashboard
# Another Meta app, with its own secret, number and callback URL.
OTHER_TOKEN, OTHER_SECRET, NUMBER_C = "other-app-token", "other-app-secret", "209999999999001"
HOOK_C = f"{PUBLIC}/hooks/wa-c"
ANA, BETO = "+59898344484", "+59899111222"


@pytest.fixture
async def sim():
    s = WhatsAppSimulator(access_token=TOKEN, app_secret=SECRET, phone_number_id=NUMBER_A,
                          display_phone_number=DISPLAY_A, webhook_url=HOOK_A)
    s.add_number(NUMBER_B, DISPLAY_B)
    await s.start()
    yield s
    await s.close()


@pytest.fixture
async def other():
    s = WhatsAppSimulator(access_token=OTHER_TOKEN, app_secret=OTHER_SECRET,
                          phone_number_id=NUMBER_C, display_phone_number="15550000003",
                          webhook_url=HOOK_C)
    await s.start()
    yield s
    await s.close()


def channel(name: str, number: str, sim: WhatsAppSimulator, **extra: Any) -> dict[str, Any]:
    return {"name": name, "driver": "whatsapp", "phone_number_id": number,
            "access_token": TOKEN, "app_secret": SECRET, "verify_token": f"{VERIFY}-{name}",
            "base_url": sim.url, "cost": 0.5, "request_timeout_s": 2, **extra}


async def gateway(make_gateway, sim: WhatsAppSimulator,
                  other: WhatsAppSimulator | None = None) -> Running:
    channels = [channel("wa-a", NUMBER_A, sim), channel("wa-b", NUMBER_B, sim)]
    if other is not None:
        channels.append(channel("wa-c", NUMBER_C, other, access_token=OTHER_TOKEN,
                                app_secret=OTHER_SECRET))
    gw = await make_gateway(channels=channels, dispatcher={"max_attempts": 3})
    tenant = await gw.store.tenant_by_name("default")
    for ch in channels:  # campaign "via-wa-b" sends through channel wa-b only
        await gw.store.create_campaign(Campaign(0, tenant.id, f"via-{ch['name']}",
                                                channels=(ch["name"],)))
    await gw.app.services.campaigns.reload()
    for s in (sim, other):
        if s is not None:
            s.caller.route(PUBLIC, gw.url)
    return gw


async def enqueue(gw: Running, through: str, destination: str) -> int:
    tenant = await gw.store.tenant_by_name("default")
    campaign = await gw.store.campaign_by_name(tenant.id, f"via-{through}")
    [row] = await gw.store.insert_messages([NewMessage(
        tenant=tenant.id, campaign=campaign.id, destination=destination, message="Hola",
        kind="whatsapp", data={"whatsapp": TEMPLATE})])
    gw.app.services.intake.accepted(1)
    return row.id


async def inbound_by_ref(gw: Running) -> dict[str, Any]:
    return {r.provider_ref: r for r in await gw.inbound()}


async def test_each_number_gets_its_reports_replies_and_stops(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    to_ana, to_beto = await enqueue(gw, "wa-a", ANA), await enqueue(gw, "wa-b", BETO)
    a = await gw.reaches(to_ana, {State.DELIVERED})
    b = await gw.reaches(to_beto, {State.DELIVERED})
    assert (a.channel, b.channel) == ("wa-a", "wa-b")
    assert sorted(r.path for r in sim.received) == sorted(
        [f"/v25.0/{NUMBER_A}/messages", f"/v25.0/{NUMBER_B}/messages"])
    await sim.caller.idle()
    assert {(d.url, d.status) for d in sim.caller.deliveries} == {(HOOK_A, 200)}

    # Beto answers the second number: stored under wa-b, as a reply to its message.
    assert (await sim.inbound_text(BETO, "me interesa", to=NUMBER_B,
                                   wamid="wamid.B1")).status == 200
    reply = (await inbound_by_ref(gw))["wamid.B1"]
    assert (reply.channel, reply.recipient, reply.reply_to) == ("wa-b", f"+{DISPLAY_B}",
                                                                to_beto)
    # ... and his STOP there blacklists him.
    await sim.inbound_text(BETO, "Baja", to=NUMBER_B, wamid="wamid.B2")
    stop = (await inbound_by_ref(gw))["wamid.B2"]
    assert (stop.channel, stop.action) == ("wa-b", "opt_out")
    assert await gw.store.blacklisted([(BETO, b.campaign)])
    await gw.reaches(await enqueue(gw, "wa-b", BETO), {State.BLOCKED})
    # Ana's marketing stop told by the second number is that channel's stop only.
    assert (await sim.user_preferences(ANA, "stop", to=NUMBER_B)).status == 200
    assert await gw.store.marketing_stopped([(ANA, "wa-b")])
    assert not await gw.store.marketing_stopped([(ANA, "wa-a")])


async def test_one_post_with_entries_for_both_numbers(make_gateway, sim) -> None:
    gw = await gateway(make_gateway, sim)
    sim.webhook_url = None  # statuses come from this test only
    sent = [await gw.reaches(await enqueue(gw, ch, ANA), {State.SENT})
            for ch in ("wa-a", "wa-b")]
    sim.webhook_url = HOOK_A
    doc = {"object": "whatsapp_business_account", "entry": [
        sim.entry(sim.status_value(sent[0].provider_ref, "delivered"), number=NUMBER_A),
        sim.entry(sim.status_value(sent[1].provider_ref, "delivered"), number=NUMBER_B),
        sim.entry(sim.inbound_value(ANA, {"type": "text", "text": {"body": "gracias"}},
                                    to=NUMBER_B, wamid="wamid.AB"), number=NUMBER_B)]}
    assert (await sim.post(doc)).status == 200
    # Handed over before the 200: the reply is already stored, under wa-b.
    assert (await inbound_by_ref(gw))["wamid.AB"].channel == "wa-b"
    for message in sent:
        assert (await gw.reaches(message.id, {State.DELIVERED})).channel == message.channel


async def test_numbers_of_another_app_or_unknown_are_left_out(make_gateway, sim,
                                                              other) -> None:
    gw = await gateway(make_gateway, sim, other)
    other.webhook_url = None
    c = await gw.reaches(await enqueue(gw, "wa-c", ANA), {State.SENT})
    # The other app pointed at this app's hook: its signature is not ours.
    other.webhook_url = HOOK_A
    assert (await other.inbound_text(ANA, "hola", wamid="wamid.C0")).status == 403
    # Signed by this app, but naming the other app's number, or a number nobody
    # runs: 200 (Meta must not retry), and nothing reaches any channel.
    delivered_c = other.status_value(c.provider_ref, "delivered")
    with capture_logs() as logs:
        for number in (NUMBER_C, "300000000000009"):
            for value in (delivered_c, sim.inbound_value(
                    ANA, {"type": "text", "text": {"body": "hola"}}, wamid=f"wamid.{number}")):
                assert (await sim.post(sim.envelope(value, number=number))).status == 200
    assert await inbound_by_ref(gw) == {}
    assert (await gw.store.get_message(None, c.id)).state == State.SENT
    unrouted = [e for e in logs if e["event"] == "whatsapp.webhook_unrouted"]
    assert [(e["phone_number_id"], e["log_level"]) for e in unrouted] == [
        (NUMBER_C, "warning")] * 2 + [("300000000000009", "warning")] * 2
    assert "another Meta app" in unrouted[0]["reason"]
    assert not [e for e in logs if any(s in repr(e) for s in (SECRET, OTHER_SECRET, TOKEN))]
    # The other app through its own hook: accepted, and its own channel's.
    other.webhook_url = HOOK_C
    assert (await other.status(c.provider_ref, "delivered")).status == 200
    await gw.reaches(c.id, {State.DELIVERED})
    await other.inbound_text(ANA, "hola", wamid="wamid.C1")
    assert (await inbound_by_ref(gw))["wamid.C1"].channel == "wa-c"


async def test_forged_posts_are_refused_and_the_handshake_still_works(make_gateway,
                                                                       sim) -> None:
    gw = await gateway(make_gateway, sim)
    sim.webhook_url = None
    b = await gw.reaches(await enqueue(gw, "wa-b", ANA), {State.SENT})
    raw = json.dumps(sim.envelope(sim.status_value(b.provider_ref, "delivered"),
                                  number=NUMBER_B)).encode()
    for hook in ("wa-a", "wa-b"):
        for body, header in ((raw, None), (raw, meta_signature(raw, "not-the-secret")),
                             (raw.replace(b"delivered", b"delivered "), meta_signature(raw))):
            headers = {"Content-Type": "application/json"}
            if header:
                headers["X-Hub-Signature-256"] = header
            async with gw.session.post(f"{gw.url}/hooks/{hook}", data=body,
                                       headers=headers) as r:
                assert r.status == 403
    assert (await gw.store.get_message(None, b.id)).state == State.SENT
    sim.webhook_url = HOOK_A
    ok = await sim.verify(f"{VERIFY}-wa-a", "8123")
    assert (ok.status, ok.body) == (200, "8123")
    assert (await sim.verify(f"{VERIFY}-wa-b", "8123")).status == 403  # wa-a's token only
    assert (await sim.status(b.provider_ref, "delivered")).status == 200
    await gw.reaches(b.id, {State.DELIVERED})


# Without I/O ------------------------------------------------------------------

async def test_the_service_window_is_per_number(make_gateway, sim) -> None:
    """Meta opens the 24-hour window on the number the customer wrote to
    only: a session message through the other number is refused before it
    costs a request, and goes out through the number written to."""
    gw = await make_gateway(channels=[channel("wa-a", NUMBER_A, sim),
                                      channel("wa-b", NUMBER_B, sim)])
    sim.caller.route(PUBLIC, gw.url)
    tenant = await gw.store.tenant_by_name("default")
    for name in ("wa-a", "wa-b"):
        await gw.store.create_campaign(Campaign(0, tenant.id, f"via-{name}", channels=(name,)))
    await gw.app.services.campaigns.reload()
    assert (await sim.inbound_text(BETO, "hola", to=NUMBER_B, wamid="wamid.W1")).status == 200
    await gw.wait_for(lambda: _has_inbound(gw, "wamid.W1"))

    async def session(through: str) -> int:
        campaign = await gw.store.campaign_by_name(tenant.id, f"via-{through}")
        [row] = await gw.store.insert_messages([NewMessage(
            tenant=tenant.id, campaign=campaign.id, destination=BETO, message="¿Seguimos?",
            kind="whatsapp", data={"whatsapp": {"type": "text", "text": {"body": "¿Seguimos?"}}})])
        gw.app.services.intake.accepted(1)
        return row.id
    wrong = await gw.reaches(await session("wa-a"), {State.FAILED})
    assert wrong.channel == "wa-a" and "24-hour" in (wrong.error or "")
    right = await gw.reaches(await session("wa-b"), {State.DELIVERED})
    assert right.channel == "wa-b"
    assert [r.path for r in sim.received] == [f"/v25.0/{NUMBER_B}/messages"]


async def _has_inbound(gw: Running, ref: str) -> bool:
    return ref in await inbound_by_ref(gw)


def test_split_groups_changes_by_number() -> None:
    sim = WhatsAppSimulator(phone_number_id=NUMBER_A)
    sim.add_number(NUMBER_B, DISPLAY_B)
    doc = {"object": "whatsapp_business_account", "entry": [
        sim.entry({"statuses": []}, number=NUMBER_A),
        sim.entry({"statuses": []}, "user_preferences", number=NUMBER_B),
        sim.entry({"statuses": []}, "template_category_update"),
        {"id": "WABA", "changes": [{"field": "messages", "value": {"messages": []}}]}]}
    groups, ignored = webhook.split(doc)
    assert {k: len(v) for k, v in groups.items()} == {NUMBER_A: 1, NUMBER_B: 1, None: 1}
    assert ignored == ["field 'template_category_update'"]
    assert webhook.split({"object": "page"}) == ({}, ["not a whatsapp_business_account webhook"])


def test_numbers_route_to_the_same_app_only() -> None:
    def line(name: str, number: str, secret: str = SECRET) -> numbers.Line[str]:
        return numbers.Line(name, name, number, secret)
    alone = numbers.Numbers(line("a", "1"))
    assert (alone.take("1"), alone.take(None)) == ("a", "a")
    assert alone.take("2") == "no channel has this phone_number_id"
    app = numbers.Numbers(line("a", "1"), [line("b", "2"), line("c", "3", OTHER_SECRET),
                                           line("a2", "1"), line("b2", "2")])
    assert (app.take("1"), app.take("2")) == ("a", "b")
    assert "another Meta app" in str(app.take("3"))
    assert OTHER_SECRET not in str(app.take("3"))
    assert "several numbers" in str(app.take(None))  # which one? never a guess
    assert app.clashes == [("1", "a", "a2"), ("2", "b", "b2")]
    assert SECRET not in repr(line("a", "1"))


def test_one_number_cannot_be_two_channels(tmp_path) -> None:
    from gateway.settings import ConfigError, settings_from_dict
    from tests.conftest import config

    twice = [channel("wa-a", NUMBER_A, _NoSim()), channel("wa-b", NUMBER_A, _NoSim())]
    with pytest.raises(ConfigError, match=r"channels\[1\]\.phone_number_id.*'wa-a'"):
        settings_from_dict(config(tmp_path, channels=twice))
    apart = [channel("wa-a", NUMBER_A, _NoSim()), channel("wa-b", NUMBER_B, _NoSim())]
    assert len(settings_from_dict(config(tmp_path, channels=apart)).channels) == 2


class _NoSim:
    url = "http://127.0.0.1:9"
