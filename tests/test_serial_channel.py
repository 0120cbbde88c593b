"""SerialChannel against the simulator on a real pty, without the daemon:
the corners the daemon tests do not reach."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from drivers.base import (
    ChannelEvents,
    DeliveryReport,
    InboundMessage,
    OutgoingMessage,
    TransientError,
)
from drivers.serial import SerialChannel, SerialOptions
from drivers.simulators.modem import ModemSimulator

pytestmark = pytest.mark.timeout(30)
FAST = {"command_timeout_s": 0.5, "cmgs_timeout_s": 1.0, "reset_wait_s": 0.05,
        "reopen_min_s": 0.05, "reopen_max_s": 0.2, "poll_interval_s": 0.1}


async def poll(check: Callable[[], Any], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.02)


class Rig:
    def __init__(self, sim: ModemSimulator, channel: SerialChannel) -> None:
        self.sim = sim
        self.channel = channel
        self.reports: list[DeliveryReport] = []
        self.inbound: list[InboundMessage] = []

    async def until(self, check: Callable[[], Any], timeout: float = 5.0) -> None:
        await poll(check, timeout)

    async def up(self) -> None:
        await self.until(lambda: self.channel.health().up)


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Callable[..., Any]]:
    made: list[Rig] = []

    async def make(sim_options: dict[str, Any] | None = None, **options: Any) -> Rig:
        sim = await ModemSimulator(tmp_path / f"tty{len(made)}", **(sim_options or {})).start()
        events = ChannelEvents()
        channel = SerialChannel("m1", SerialOptions(device=str(sim.link), **{**FAST, **options}),
                                events)
        r = Rig(sim, channel)

        async def report(dr: DeliveryReport) -> None:
            r.reports.append(dr)

        async def inbound(m: InboundMessage) -> None:
            r.inbound.append(m)
        events.on_report, events.on_inbound = report, inbound
        await channel.start()
        made.append(r)
        return r

    yield make
    for r in made:
        await r.channel.close()
        await r.sim.close()


async def test_routed_messages_and_reports(rig) -> None:
    r = await rig(cnmi="2,2,0,1,0")  # +CMT: straight to us, nothing stored
    await r.up()
    r.sim.inject_sms("+59898344400", "directo " * 30)
    await r.until(lambda: r.inbound)
    assert r.inbound[0].text == "directo " * 30 and not r.sim.storage
    assert not any(c.startswith("AT+CMGD") for c in r.sim.commands)


async def test_national_number_in_a_report_is_matched_to_our_send(rig) -> None:
    r = await rig({"auto_reports": False})
    await r.up()
    receipt = await r.channel.send(OutgoingMessage(1, "+59898344400", "hola"))
    r.sim.send_report(int(receipt.part_refs[0]), "098344400", 0x00)
    await r.until(lambda: r.reports)
    assert r.reports[0].destination == "+59898344400"
    assert r.reports[0].provider_ref == receipt.part_refs[0] and r.reports[0].delivered


async def test_parts_that_never_complete_are_stored_after_a_while(rig) -> None:
    r = await rig(inbound_part_timeout_s=0.3)
    await r.up()
    r.sim.inject_sms("+59898344400", "z" * 400, order=[1, 3])  # part 2 lost
    await r.until(lambda: r.inbound)
    [m] = r.inbound
    assert m.data["incomplete"] == {"total": 3, "received": [1, 3]}
    assert m.text == "z" * (153 + 94)
    await r.until(lambda: not r.sim.storage)


async def test_registration_and_signal_are_polled(rig) -> None:
    r = await rig({"creg": 2, "rssi": 10})
    await r.until(lambda: r.channel.health().last_error == "searching")
    health = r.channel.health()
    assert not health.up and health.signal_dbm == -93 and health.detail["bars"] == 2
    with pytest.raises(TransientError) as err:
        await r.channel.send(OutgoingMessage(1, "+59898344400", "hola"))
    assert err.value.code == "down"
    r.sim.creg, r.sim.rssi = 5, 31
    await r.up()
    assert r.channel.health().signal_dbm == -51
    assert r.channel.health().detail["registration"] == "registered (roaming)"
    assert r.channel.health().last_error is None


async def test_abandoned_send_resets_the_modem_and_comes_back(rig) -> None:
    r = await rig({"cmgs_delay_s": 2.0}, cmgs_timeout_s=5)
    await r.up()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):  # the router's send_timeout_s
            await r.channel.send(OutgoingMessage(1, "+59898344400", "slow"))
    assert not r.channel.health().up
    await r.up()
    assert "AT+CFUN=1,1" in r.sim.commands
    r.sim.cmgs_delay_s = 0
    receipt = await r.channel.send(OutgoingMessage(2, "+59898344400", "fast"))
    assert receipt.parts == 1


async def test_pin_is_entered_and_never_logged(rig) -> None:
    r = await rig({"pin": "4321"}, pin="4321")
    await r.up()
    assert r.sim.pin_attempts == 1 and r.channel.health().last_error is None
    assert "4321" not in repr(SerialOptions(device="x", pin="4321"))


async def test_close_while_the_device_is_absent(tmp_path: Path) -> None:
    ch = SerialChannel("gone", SerialOptions(device=str(tmp_path / "nothing"), **FAST),
                       ChannelEvents())
    await ch.start()
    await asyncio.sleep(0.2)
    assert not ch.health().up and "cannot open" in (ch.health().last_error or "")
    await ch.close()
