"""`smsgw modem probe DEVICE`: what is on this port, and can it send SMS?

Read-only apart from AT+CMGF=0 (to see whether PDU mode is accepted) and,
only when asked with a PIN, unlocking the SIM: a probe never spends a PIN
attempt on its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from drivers.serial import session
from drivers.serial.at import Event
from drivers.serial.port import AtPort, CommandError, PortClosed


class ProbeError(Exception):
    """The device is absent or mute; the message says which."""


@dataclass
class ProbeResult:
    device: str
    rows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, label: str, value: str | None) -> None:
        self.rows.append((label, value if value not in (None, "") else "unknown"))

    def render(self) -> str:
        width = max(len(label) for label, _ in self.rows)
        return "\n".join(f"{label.ljust(width)}  {value}" for label, value in self.rows)


def _ignore(_event: Event) -> None:
    return None


async def probe(device: str, *, baudrate: int = 115200, pin: str | None = None,
                timeout_s: float = 3.0) -> ProbeResult:
    try:
        port = await AtPort.open(device, baudrate, _ignore)
    except PortClosed as err:
        raise ProbeError(f"{device}: absent or not openable ({err})") from err
    try:
        await _answering(port, device, timeout_s)
        return await _collect(port, device, pin, timeout_s)
    except PortClosed as err:
        raise ProbeError(f"{device}: stopped answering ({err})") from err
    finally:
        await port.close()


async def _answering(port: AtPort, device: str, timeout_s: float) -> None:
    try:
        await session.sync(port, timeout_s)
        await port.command("ATE0", timeout_s)
        await port.command("AT+CMEE=1", timeout_s)
    except session.InitError as err:
        raise ProbeError(f"{device}: mute: no answer to AT within {timeout_s:g}s "
                         "(wrong port or baud rate, or the modem is hung)") from err
    except CommandError:
        pass  # an old modem without numeric errors still answers


async def _collect(port: AtPort, device: str, pin: str | None,
                   timeout_s: float) -> ProbeResult:
    t = timeout_s
    out = ProbeResult(device)
    out.add("device", device)
    out.add("manufacturer", await session.optional(port, "AT+CGMI", "", t))
    out.add("model", await session.optional(port, "AT+CGMM", "", t))
    out.add("revision", await session.optional(port, "AT+CGMR", "", t))
    out.add("IMEI", await session.optional(port, "AT+CGSN", "", t))
    sim = await _sim(port, pin, t)
    out.add("SIM", sim)
    ready = sim.startswith("READY")
    out.add("operator", await session.operator(port, t) if ready else "(SIM locked)")
    signal = await session.signal(port, t)
    out.add("signal", f"{signal.dbm} dBm ({signal.bars}/4 bars)" if signal.dbm is not None
            else "unknown (no signal or not detectable)")
    stat = await session.registration(port, t)
    out.add("registration", session.REGISTRATION.get(stat, f"stat {stat}")
            if stat is not None else None)
    out.add("SMSC", await session.optional(port, "AT+CSCA?", "+CSCA", t) if ready else None)
    out.add("PDU mode", await _pdu_mode(port, t))
    out.add("delivery reports", await _reports(port, t))
    return out


async def _sim(port: AtPort, pin: str | None, timeout_s: float) -> str:
    try:
        status = await session.cpin(port, timeout_s)
    except session.InitError as err:
        return err.detail
    if status != "SIM PIN":
        return status
    if not pin:
        return "SIM PIN (locked; pass --pin to unlock)"
    try:
        await session.unlock(port, pin, session.SimState(), timeout_s)
    except session.InitError as err:
        return f"SIM PIN: {err.detail}"
    return "READY (unlocked with the given PIN)"


async def _pdu_mode(port: AtPort, timeout_s: float) -> str:
    try:
        await port.command("AT+CMGF=0", timeout_s)
    except CommandError as err:
        return f"no ({err.result}): the channel falls back to text mode (mode = \"auto\")"
    return "yes"


async def _reports(port: AtPort, timeout_s: float) -> str:
    """Whether AT+CNMI can route status reports: its 4th range (<ds>) has 1 or 2."""
    try:
        lines = await port.command("AT+CNMI=?", timeout_s)
    except CommandError as err:
        return f"unknown (AT+CNMI=? answered {err.result})"
    for line in lines:
        if line.startswith("+CNMI:"):
            groups = re.findall(r"\(([^)]*)\)", line)
            ds = _expand(groups[3]) if len(groups) > 3 else set()
            if ds & {1, 2}:
                how = ", ".join(label for value, label in ((1, "+CDS (ds=1)"),
                                                            (2, "+CDSI (ds=2)")) if value in ds)
                return f"yes: {how}"
            return "no: AT+CNMI offers no status-report routing"
    return "unknown"


def _expand(spec: str) -> set[int]:
    """'0-2' -> {0, 1, 2}; '0,2' -> {0, 2}."""
    found: set[int] = set()
    for item in spec.split(","):
        low, _, high = item.strip().partition("-")
        if low.isdigit():
            found.update(range(int(low), int(high or low) + 1))
    return found
