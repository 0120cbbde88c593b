"""spool -> serial driver -> real pty -> modem simulator, through the running daemon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from smspdudecoder.fields import SMSSubmit

from drivers.serial import SerialChannel
from drivers.simulators.modem import ModemSimulator, SentSms
from spool.base import State
from tests.conftest import Running

pytestmark = pytest.mark.timeout(60)
DONE = {State.SENT, State.DELIVERED}


def serial_channel(name: str, sim: ModemSimulator | Path, **extra: Any) -> dict[str, Any]:
    link = sim.link if isinstance(sim, ModemSimulator) else sim
    return {"name": name, "driver": "serial", "device": str(link), "cost": 0.15,
            "command_timeout_s": 0.5, "cmgs_timeout_s": 1.0, "reset_wait_s": 0.05,
            "reopen_min_s": 0.05, "reopen_max_s": 0.3, "poll_interval_s": 0.2, **extra}


@pytest.fixture
async def modems(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[ModemSimulator] = []

    async def make(name: str, **options: Any) -> ModemSimulator:
        sim = await ModemSimulator(tmp_path / f"tty{name}", **options).start()
        made.append(sim)
        return sim

    yield make
    for sim in made:
        await sim.close()


def channel(gw: Running, name: str) -> SerialChannel:
    found = next(ch for ch, _ in gw.app.channels if ch.name == name)
    assert isinstance(found, SerialChannel)
    return found


async def wait_up(gw: Running, *names: str, timeout: float = 10) -> None:
    async def check() -> bool:
        return all(channel(gw, n).health().up for n in names)
    await gw.wait_for(check, timeout)


async def submit(gw: Running, items: list[tuple[str, str]]) -> list[int]:
    body = {"messages": [{"destination": d, "message": m} for d, m in items]}
    async with gw.session.post(f"{gw.url}/api/v1/messages", json=body,
                               headers=gw.headers()) as r:
        assert r.status == 202, await r.text()
        return [m["id"] for m in (await r.json())["messages"]]


async def settled(gw: Running, ids: list[int], states: set[State], timeout: float = 20):
    async def check():
        got = [await gw.store.get_message(None, i) for i in ids]
        return got if all(m.state in states for m in got) else None
    return await gw.wait_for(check, timeout)


async def inbound(gw: Running) -> list[dict[str, Any]]:
    async with gw.session.get(f"{gw.url}/api/v1/inbound", headers=gw.headers()) as r:
        assert r.status == 200, await r.text()
        return list((await r.json())["inbound"])


def parts_to(sim: ModemSimulator, destination: str) -> list[SentSms]:
    return [s for s in sim.sent if s.destination == destination]


def independent(sent: SentSms) -> dict[str, Any]:
    assert sent.pdu is not None
    return SMSSubmit.decode(StringIO(sent.pdu))


# -- what goes out ---------------------------------------------------------------------------


async def test_texts_leave_the_modem_encoded_and_cut_right(modems, make_gateway) -> None:
    sim = await modems("m1", auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    texts = {
        "+59898344401": "Precio 5€ [promo] {ok}",
        "+59898344402": "Mañana á las 9, नमस्ते",
        "+59898344403": "x" * 66 + "😀" * 10,  # an emoji straddles the 67-unit cut
        "+59898344404": ("Lorem ipsum dolor sit amet, " * 15)[:400],
    }
    ids = await submit(gw, list(texts.items()))
    done = await settled(gw, ids, DONE)
    assert [m.channel for m in done] == ["m1"] * 4
    for destination, text in texts.items():
        parts = parts_to(sim, destination)
        decoded = [independent(p) for p in parts]
        assert "".join(d["user_data"]["data"] for d in decoded) == text
        assert all(d["header"]["srr"] for d in decoded)
    gsm, ucs2, emoji, long = (parts_to(sim, d) for d in texts)
    assert [independent(p)["dcs"]["encoding"] for p in gsm + ucs2] == ["gsm", "ucs2"]
    assert [p.text for p in emoji] == ["x" * 66, "😀" * 10]  # no lone surrogate anywhere
    assert len(long) == 3 and {p.encoding for p in long} == {"gsm7"}
    assert [(p.concat.total, p.concat.seq) for p in long if p.concat] == [(3, 1), (3, 2), (3, 3)]
    assert len({p.concat.ref for p in long if p.concat}) == 1
    by_id = {m.destination: m for m in done}
    assert by_id["+59898344404"].cost == pytest.approx(0.45)  # charged per part


async def test_delivery_reports_settle_single_and_multipart(modems, make_gateway) -> None:
    sim = await modems("m1", auto_reports=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    single, multi, failed = await submit(gw, [
        ("+59898344411", "hola"), ("+59898344412", "y" * 400), ("+59898344413", "chau")])
    await settled(gw, [single, multi, failed], {State.SENT})
    [one] = parts_to(sim, "+59898344411")
    sim.send_report(one.reference, one.destination, 0x00)
    await settled(gw, [single], {State.DELIVERED})
    three = parts_to(sim, "+59898344412")
    for part in three[:2]:
        sim.send_report(part.reference, part.destination, 0x00)
    sim.send_report(three[2].reference, three[2].destination, 0x21)  # still trying
    await asyncio.sleep(0.5)
    assert (await gw.store.get_message(None, multi)).state == State.SENT
    sim.send_report(three[2].reference, three[2].destination, 0x00)
    await settled(gw, [multi], {State.DELIVERED})
    history = await gw.store.message_events(multi)
    assert "all 3 parts" in (history[-1].note or "")
    [bad] = parts_to(sim, "+59898344413")
    sim.send_report(bad.reference, bad.destination, 0x41)
    [f] = await settled(gw, [failed], {State.FAILED})
    assert "incompatible destination" in (f.error or "")


async def test_stored_reports_are_read_and_deleted(modems, make_gateway) -> None:
    sim = await modems("m1", report_delay_s=0.05)
    gw = await make_gateway(channels=[serial_channel("m1", sim, cnmi="2,1,0,2,0")])
    await wait_up(gw, "m1")
    ids = await submit(gw, [("+59898344421", "via +CDSI")])
    await settled(gw, ids, {State.DELIVERED})
    assert any(c.startswith("AT+CMGR=") for c in sim.commands)
    await gw.wait_for(lambda: _async(not sim.storage))


async def _async(value: Any) -> Any:
    return value


# -- what comes in ------------------------------------------------------------------------------


async def test_inbound_stored_once_even_when_read_again_after_a_reset(
        modems, make_gateway) -> None:
    sim = await modems("m1", keep_deleted=True)  # a reset before AT+CMGD took effect
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    ids = await submit(gw, [("+59898344431", "¿Viene mañana?")])
    await settled(gw, ids, DONE)
    [index] = sim.inject_sms("+59898344431", "Sí, a las 9 😀")

    async def stored():
        return await inbound(gw)
    [got] = await gw.wait_for(stored)
    assert got["text"] == "Sí, a las 9 😀" and got["sender"] == "+59898344431"
    assert got["reply_to"] == ids[0] and got["channel"] == "m1"
    await gw.wait_for(lambda: _async(f"AT+CMGD={index}" in sim.commands))
    reads = sim.commands.count(f"AT+CMGR={index}")
    await sim.vanish()
    await asyncio.sleep(0.2)
    await sim.come_back()
    await wait_up(gw, "m1")
    await gw.wait_for(lambda: _async(sim.commands.count(f"AT+CMGR={index}") > reads))
    await asyncio.sleep(0.3)
    assert len(await inbound(gw)) == 1


async def test_multipart_inbound_is_reassembled(modems, make_gateway) -> None:
    sim = await modems("m1")
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    ids = await submit(gw, [("+59898344441", "¿Cómo le fue?")])
    await settled(gw, ids, DONE)
    text = "Muy bien, gracias. " * 12 + "नमस्ते 😀"
    indexes = sim.inject_sms("+59898344441", text, order=[3, 1, 2, 4])
    assert len(indexes) == 4

    async def stored():
        return await inbound(gw)
    [got] = await gw.wait_for(stored)
    assert got["text"] == text
    assert got["data"]["parts"] == 4
    await gw.wait_for(lambda: _async(not sim.storage))  # every part deleted once stored


async def test_absent_modem_starts_down_then_sweeps_what_the_sim_holds(
        tmp_path: Path, make_gateway) -> None:
    link = tmp_path / "ttyLATE"
    gw = await make_gateway(channels=[serial_channel("m1", link)])
    health = channel(gw, "m1").health()
    assert not health.up and "cannot open" in (health.last_error or "")
    ids = await submit(gw, [("+59898344451", "¿Llegó el pedido?")])
    sim = ModemSimulator(link)
    sim.inject_sms("+59898344451", "Sí, llegó ayer", notify=False)  # waiting on the SIM
    await sim.start()
    try:
        await wait_up(gw, "m1")
        await settled(gw, ids, DONE)

        async def stored():
            return await inbound(gw)
        [got] = await gw.wait_for(stored)
        assert got["text"] == "Sí, llegó ayer" and "AT+CMGL=4" in sim.commands
        await gw.wait_for(lambda: _async(not sim.storage))
    finally:
        await sim.close()


async def test_stop_from_a_modem_blocks_the_next_message(modems, make_gateway) -> None:
    sim = await modems("m1")
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    ids = await submit(gw, [("+59898344461", "Promo de invierno")])
    await settled(gw, ids, DONE)
    sim.inject_sms("+59898344461", "STOP")

    async def listed():
        return await gw.store.blacklisted([("+59898344461", 1)])
    await gw.wait_for(listed)
    [nxt] = await submit(gw, [("+59898344461", "Otra promo")])
    await settled(gw, [nxt], {State.BLOCKED})
