"""`smsgw modem probe` and `smsgw simulate modem`, run as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from drivers.base import ChannelEvents, OutgoingMessage
from drivers.serial import SerialChannel, SerialOptions
from drivers.serial.probe import probe
from drivers.simulators.modem import ModemSimulator
from tests.conftest import ROOT
from tests.test_serial_channel import poll

pytestmark = pytest.mark.timeout(60)


async def smsgw(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_probe_reports_what_the_modem_is(tmp_path: Path) -> None:
    sim = await ModemSimulator(tmp_path / "ttyP", rssi=22).start()
    try:
        code, out, err = await smsgw("modem", "probe", str(sim.link), "--timeout-s", "2")
    finally:
        await sim.close()
    assert code == 0, err
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in out.splitlines())
    assert rows["manufacturer"] == "smsgw" and rows["IMEI"] == "356938035643809"
    assert rows["SIM"] == "READY" and rows["operator"] == "SIM Telecom"
    assert rows["signal"] == "-69 dBm (4/4 bars)"
    assert rows["registration"] == "registered (home)" and rows["SMSC"] == "+59899000000"
    assert rows["PDU mode"] == "yes" and rows["delivery reports"].startswith("yes")


async def test_probe_of_an_absent_device_fails_with_the_reason(tmp_path: Path) -> None:
    code, out, err = await smsgw("modem", "probe", str(tmp_path / "ttyNONE"))
    assert code == 1 and not out
    assert "absent" in err and "ttyNONE" in err


async def test_probe_of_a_mute_device_fails_with_the_reason(tmp_path: Path) -> None:
    sim = await ModemSimulator(tmp_path / "ttyMUTE").start()
    sim.hang()
    try:
        code, _, err = await smsgw("modem", "probe", str(sim.link), "--timeout-s", "0.3")
    finally:
        await sim.close()
    assert code == 1 and "mute" in err


async def test_probe_never_spends_a_pin_attempt_unasked(tmp_path: Path) -> None:
    sim = await ModemSimulator(tmp_path / "ttyPIN", pin="1234", pdu_mode=False).start()
    try:
        locked = await probe(str(sim.link), timeout_s=1)
        assert dict(locked.rows)["SIM"].startswith("SIM PIN (locked")
        assert sim.pin_attempts == 0
        opened = dict((await probe(str(sim.link), pin="1234", timeout_s=1)).rows)
    finally:
        await sim.close()
    assert opened["SIM"].startswith("READY") and opened["operator"] == "SIM Telecom"
    assert opened["PDU mode"].startswith("no")


async def test_simulator_command_line(tmp_path: Path) -> None:
    link = tmp_path / "ttyCLI"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SMSGW_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "gateway", "simulate", "modem", "--link", str(link),
        "--cmgs-delay-s", "0.05", "--inbound", "+59898344400:hola desde el simulador",
        "--inbound-delay-s", "0.5", cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE)
    assert proc.stdout is not None
    try:
        await asyncio.wait_for(_until(proc.stdout, "modem simulator on"), 10)
        got: list[object] = []

        async def keep(item: object) -> None:
            got.append(item)
        ch = SerialChannel("cli", SerialOptions(
            device=str(link), command_timeout_s=1, reopen_min_s=0.05, reset_wait_s=0.05),
            ChannelEvents(on_report=keep, on_inbound=keep))
        await ch.start()
        try:
            await poll(lambda: ch.health().up, 10)
            receipt = await ch.send(OutgoingMessage(1, "+59898344400", "a" * 200))
            line = await asyncio.wait_for(_until(proc.stdout, "part 2/2"), 10)
            assert "to=+59898344400" in line and receipt.parts == 2
            await poll(lambda: len(got) >= 3, 10)
        finally:
            await ch.close()
        texts = [getattr(g, "text", None) for g in got]
        assert "hola desde el simulador" in texts
    finally:
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert not link.exists()


async def _until(stream: asyncio.StreamReader, text: str) -> str:
    while True:
        line = (await stream.readline()).decode()
        if not line:
            raise AssertionError(f"output ended before {text!r}")
        if text in line:
            return line
