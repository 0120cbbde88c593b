"""Bringing a modem up (the init sequence) and reading its state (signal,
registration, operator). Shared by the channel and `smsgw modem probe`.

Every init step that fails raises InitError naming the step, so health and
logs say "init failed at AT+CPIN: ..." rather than a bare ERROR.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from drivers.serial.at import parameters
from drivers.serial.errors import meaning
from drivers.serial.port import AtPort, CommandError, PortTimeout
from drivers.serial.textmode import csmp

Mode = Literal["pdu", "text"]

REGISTRATION = {0: "not registered", 1: "registered (home)", 2: "searching",
                3: "registration denied", 4: "unknown", 5: "registered (roaming)",
                6: "registered (home, SMS only)", 7: "registered (roaming, SMS only)"}
REGISTERED = frozenset({1, 5, 6, 7})


class InitError(Exception):
    """An init step failed; `step` is the AT command (PIN masked)."""

    def __init__(self, step: str, detail: str, *, permanent: bool = False) -> None:
        super().__init__(f"init failed at {step}: {detail}")
        self.step = step
        self.detail = detail
        # True when retrying cannot help until the configuration changes.
        self.permanent = permanent


@dataclass
class SimState:
    """What survives reopening the port: a rejected PIN is never tried again,
    because three wrong tries lock the SIM until someone enters the PUK."""

    pin_rejected: bool = False


@dataclass(frozen=True, slots=True)
class InitPlan:
    pin: str | None
    mode: Literal["pdu", "text", "auto"]
    cnmi: str
    storage: str
    smsc: str | None
    delivery_reports: bool
    extra: Sequence[str]
    timeout_s: float


async def step(port: AtPort, command: str, timeout_s: float, *,
               label: str | None = None) -> list[str]:
    try:
        return await port.command(command, timeout_s, label=label)
    except CommandError as err:
        raise InitError(label or command, meaning(err.result)[0]) from err
    except PortTimeout as err:
        raise InitError(label or command, "no answer") from err


async def sync(port: AtPort, timeout_s: float, tries: int = 3) -> None:
    """Plain AT until the modem answers: after power-up or a reset the first
    characters are often lost while its UART settles (autobaud)."""
    # ESC leaves a half-typed AT+CMGS prompt behind; whatever the modem says
    # to it arrives while no command waits, and is dropped as stray.
    port.write_raw(b"\x1b\r")
    await asyncio.sleep(min(0.2, timeout_s))
    for _ in range(tries):
        try:
            await port.command("AT", timeout_s, fail_on_timeout=False)
            return
        except PortTimeout:
            continue
        except CommandError:
            return  # it answers; ERROR to a bare AT happens after a cancelled prompt
    port.wedged = True
    port.fail(f"no answer to AT after {tries} tries")
    raise InitError("AT", f"no answer after {tries} tries (modem mute or wrong baud rate)")


async def initialise(port: AtPort, plan: InitPlan, sim: SimState) -> Mode:
    t = plan.timeout_s
    await sync(port, t)
    await step(port, "ATZ", t)
    await step(port, "ATE0", t)
    await step(port, "AT+CMEE=1", t)
    await unlock(port, plan.pin, sim, t)
    mode = await message_format(port, plan.mode, t)
    try:
        # Phase 2+ (CSMS=1) would want every +CDS acknowledged with AT+CNMA.
        await port.command("AT+CSMS=0", t)
    except CommandError:
        pass
    await step(port, f"AT+CNMI={plan.cnmi}", t)
    mem = plan.storage
    await step(port, f'AT+CPMS="{mem}","{mem}","{mem}"', t)
    if plan.smsc:
        toa = 145 if plan.smsc.startswith("+") else 129
        await step(port, f'AT+CSCA="{plan.smsc}",{toa}', t)
    if mode == "text":
        await text_mode_setup(port, plan.delivery_reports, t)
    for command in plan.extra:
        await step(port, command, t)
    return mode


async def unlock(port: AtPort, pin: str | None, sim: SimState, timeout_s: float) -> None:
    status = await cpin(port, timeout_s)
    if status == "READY":
        return
    if status == "SIM PIN":
        await _enter_pin(port, pin, sim, timeout_s)
        return
    if status == "SIM PUK":
        raise InitError("AT+CPIN?", "the SIM is locked and asks for its PUK; unlock it in "
                        "a phone", permanent=True)
    raise InitError("AT+CPIN?", f"SIM not ready: {status}")


async def _enter_pin(port: AtPort, pin: str | None, sim: SimState, timeout_s: float) -> None:
    if not pin:
        raise InitError("AT+CPIN", "the SIM asks for a PIN and the channel has no `pin`",
                        permanent=True)
    if sim.pin_rejected:
        raise InitError("AT+CPIN", "the SIM rejected the configured PIN; not tried again "
                        "(a third wrong PIN locks the SIM): fix `pin` and restart",
                        permanent=True)
    try:
        await port.command(f'AT+CPIN="{pin}"', timeout_s, label='AT+CPIN="****"')
    except CommandError as err:
        sim.pin_rejected = True
        raise InitError("AT+CPIN", f"wrong PIN: the SIM rejected it ({meaning(err.result)[0]})",
                        permanent=True) from err
    except PortTimeout as err:
        raise InitError("AT+CPIN", "no answer") from err
    # The SIM is busy for a moment after a PIN (+CME ERROR: 14).
    for _ in range(20):
        if await cpin(port, timeout_s, busy_ok=True) == "READY":
            return
        await asyncio.sleep(0.25)
    raise InitError("AT+CPIN?", "the SIM did not become ready after the PIN")


async def cpin(port: AtPort, timeout_s: float, *, busy_ok: bool = False) -> str:
    try:
        lines = await port.command("AT+CPIN?", timeout_s)
    except CommandError as err:
        if busy_ok and err.result.code in (14, 314):
            return "BUSY"
        raise InitError("AT+CPIN?", meaning(err.result)[0]) from err
    except PortTimeout as err:
        raise InitError("AT+CPIN?", "no answer") from err
    for line in lines:
        if (found := parameters(line, "+CPIN")) is not None:
            return found[0].upper()
    return lines[-1] if lines else "no status"


async def message_format(port: AtPort, wanted: str, timeout_s: float) -> Mode:
    if wanted in ("pdu", "auto"):
        try:
            await step(port, "AT+CMGF=0", timeout_s)
            return "pdu"
        except InitError:
            if wanted == "pdu":
                raise
    await step(port, "AT+CMGF=1", timeout_s)
    return "text"


async def text_mode_setup(port: AtPort, delivery_reports: bool, timeout_s: float) -> None:
    await step(port, "AT+CSDH=1", timeout_s)
    try:
        await port.command('AT+CSCS="IRA"', timeout_s)
    except CommandError:
        pass  # older firmwares only know their default set
    await step(port, csmp(delivery_reports, 0), timeout_s)


# -- state --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Signal:
    dbm: int | None
    bars: int  # 0-4: none, marginal, ok, good, excellent

    @classmethod
    def from_csq(cls, rssi: int) -> Signal:
        # TS 27.007 §8.5: 0 is -113 dBm or less, 31 is -51 dBm or more, 99 unknown.
        if rssi == 99 or rssi < 0 or rssi > 31:
            return cls(None, 0)
        bars = sum(rssi >= edge for edge in (2, 10, 15, 20))
        return cls(-113 + 2 * rssi, bars)


async def signal(port: AtPort, timeout_s: float) -> Signal:
    for line in await port.command("AT+CSQ", timeout_s):
        if (found := parameters(line, "+CSQ")) is not None and found[0].isdigit():
            return Signal.from_csq(int(found[0]))
    return Signal(None, 0)


async def registration(port: AtPort, timeout_s: float) -> int | None:
    """TS 27.007 §7.2 <stat>; the answer is `+CREG: <n>,<stat>[,...]`."""
    for line in await port.command("AT+CREG?", timeout_s):
        found = parameters(line, "+CREG")
        if found is not None and len(found) >= 2 and found[1].isdigit():
            return int(found[1])
    return None


async def optional(port: AtPort, command: str, prefix: str, timeout_s: float,
                   index: int = 0) -> str | None:
    """One field of an answer, or None when the modem does not support it."""
    try:
        lines = await port.command(command, timeout_s)
    except CommandError:
        return None
    for line in lines:
        found = parameters(line, prefix) if prefix else (line,)
        if found is not None and len(found) > index:
            return found[index] or None
    return None


async def operator(port: AtPort, timeout_s: float) -> str | None:
    try:
        await port.command("AT+COPS=3,0", timeout_s)  # long alphanumeric names
    except CommandError:
        pass
    return await optional(port, "AT+COPS?", "+COPS", timeout_s, index=2)
