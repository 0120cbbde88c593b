"""Modems misbehaving under the running daemon: a wrong PIN, a hang mid-send, an
unplug mid-burst, error answers, quirky firmwares, a modem that needs text mode."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from spool.base import State
from tests.test_serial_gateway import (
    DONE,
    channel,
    inbound,
    modems,  # noqa: F401  -- fixture
    parts_to,
    serial_channel,
    settled,
    submit,
    wait_up,
)

pytestmark = pytest.mark.timeout(90)


def numbers(n: int, start: int = 0) -> list[str]:
    return [f"+5989834{start + i:04d}" for i in range(n)]


async def test_wrong_pin_is_reported_and_never_retried(modems, make_gateway) -> None:  # noqa: F811
    locked = await modems("m1", pin="1234")
    good = await modems("m2")
    gw = await make_gateway(channels=[serial_channel("m1", locked, pin="0000"),
                                      serial_channel("m2", good)])
    await wait_up(gw, "m2")

    async def refused():
        h = channel(gw, "m1").health()
        return not h.up and "wrong PIN" in (h.last_error or "")
    await gw.wait_for(refused)
    ids = await submit(gw, [(n, "hola") for n in numbers(10)])
    done = await settled(gw, ids, DONE)
    assert {m.channel for m in done} == {"m2"}
    await asyncio.sleep(1.0)  # several reopen cycles of m1 meanwhile
    health = channel(gw, "m1").health()
    assert not health.up and "AT+CPIN" in (health.last_error or "")
    assert "0000" not in (health.last_error or "")
    assert locked.pin_attempts == 1  # a second wrong try would bring the SIM nearer to PUK
    assert sum(c.startswith("AT+CPIN?") for c in locked.commands) > 1


async def test_modem_that_hangs_mid_send_hands_over_to_the_other(
        modems, make_gateway) -> None:  # noqa: F811
    hangs = await modems("m1", hang_on_cmgs=True)
    good = await modems("m2")
    gw = await make_gateway(channels=[serial_channel("m1", hangs), serial_channel("m2", good)],
                            dispatcher={"max_attempts": 10})
    await wait_up(gw, "m1", "m2")
    dests = numbers(20, 100)
    ids = await submit(gw, [(n, f"m{i}") for i, n in enumerate(dests)])
    done = await settled(gw, ids, DONE)
    assert not channel(gw, "m1").health().up and hangs.hung
    assert "no answer" in str(channel(gw, "m1").health().last_error)
    sent_to = Counter(s.destination for s in good.sent) + Counter(
        s.destination for s in hangs.sent)
    assert set(sent_to) == set(dests)  # nothing lost
    assert all(m.channel in ("m1", "m2") for m in done)
    assert any(c.startswith("AT+CFUN=1,1") or c == "AT" for c in hangs.commands)
    hangs.unhang()
    await wait_up(gw, "m1")  # after the reset and reopen it answers again


async def test_unplugged_mid_burst_nothing_lost_and_it_comes_back(
        modems, make_gateway) -> None:  # noqa: F811
    sims = [await modems(f"m{i}", cmgs_delay_s=0.01) for i in (1, 2, 3)]
    sims[0].vanish_after_sends = 15
    gw = await make_gateway(
        channels=[serial_channel(f"m{i}", sim) for i, sim in enumerate(sims, start=1)],
        dispatcher={"max_attempts": 10})
    await wait_up(gw, "m1", "m2", "m3")
    dests = numbers(200, 1000)
    ids = await submit(gw, [(n, f"burst {i}") for i, n in enumerate(dests)])

    async def unplugged():
        return not sims[0].link.exists() and not channel(gw, "m1").health().up
    await gw.wait_for(unplugged)
    done = await settled(gw, ids, DONE, timeout=60)
    counts = Counter(m.channel for m in done)
    assert counts["m1"] <= len(sims[0].sent) < 20  # the rest went through m2 and m3
    went_out = Counter(s.destination for sim in sims for s in sim.sent)
    assert set(went_out) == set(dests)  # every message reached a modem
    assert sum(went_out.values()) - len(dests) <= 1  # at most the one in flight, twice
    await sims[0].come_back()
    await wait_up(gw, "m1")
    before = len(sims[0].sent)
    more = await submit(gw, [(n, "again") for n in numbers(12, 2000)])
    done = await settled(gw, more, DONE)
    assert "m1" in {m.channel for m in done} and len(sims[0].sent) > before


async def test_error_answers_map_to_retry_or_fail(modems, make_gateway) -> None:  # noqa: F811
    sim = await modems("m1", verbose_errors=True)
    gw = await make_gateway(channels=[serial_channel("m1", sim, block_after=100)],
                            dispatcher={"max_attempts": 5})
    await wait_up(gw, "m1")
    sim.fail("AT+CMGS", "+CMS ERROR: 1")
    [bad] = await submit(gw, [("+59898340001", "to nobody")])
    [m] = await settled(gw, [bad], {State.FAILED})
    assert m.attempts == 1 and "unassigned" in (m.error or "")
    sim.fail("AT+CMGS", "+CMS ERROR: invalid destination")
    [bad2] = await submit(gw, [("+59898340002", "to nowhere")])
    [m2] = await settled(gw, [bad2], {State.FAILED})
    assert "invalid destination" in (m2.error or "")
    sim.fail("AT+CMGS", "+CMS ERROR: 332", times=2)  # network timeout, twice
    [flaky] = await submit(gw, [("+59898340003", "eventually")])
    [m3] = await settled(gw, [flaky], DONE)
    assert m3.attempts == 3 and len(parts_to(sim, "+59898340003")) == 1


async def test_quirky_firmware_echo_and_chatter(modems, make_gateway) -> None:  # noqa: F811
    # Keeps echoing after ATE0 and sprinkles ^RSSI/RING into every answer.
    sim = await modems("m1", sticky_echo=True, chatter=True, rssi=25)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    ids = await submit(gw, [(n, "ñandú " * 30) for n in numbers(5, 300)])
    await settled(gw, ids, {State.DELIVERED})
    health = channel(gw, "m1").health()
    assert health.signal_dbm in (-63, -79)  # +CSQ: 25, or ^RSSI: 17 in between
    assert health.detail["operator"] == "SIM Telecom"


async def test_text_mode_modem(modems, make_gateway) -> None:  # noqa: F811
    sim = await modems("m1", pdu_mode=False)
    gw = await make_gateway(channels=[serial_channel("m1", sim)])
    await wait_up(gw, "m1")
    assert channel(gw, "m1").health().detail["mode"] == "text"
    ok, ucs2, long = await submit(gw, [("+59898340401", "Hola, todo bien?"),
                                       ("+59898340402", "Mañana 😀 a las 9"),
                                       ("+59898340403", "z" * 200)])
    await settled(gw, [ok, ucs2], {State.DELIVERED})
    assert [s.text for s in sim.sent] == ["Hola, todo bien?", "Mañana 😀 a las 9"]
    [m] = await settled(gw, [long], {State.FAILED})
    assert "text mode" in (m.error or "")
    sim.inject_sms("+59898340402", "Perfecto, gracias")

    async def stored():
        return await inbound(gw)
    [got] = await gw.wait_for(stored)
    assert got["text"] == "Perfecto, gracias" and got["sender"] == "+59898340402"
