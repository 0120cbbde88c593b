"""What the driver believes about a device and its ports: the health the
router reads. Fed by the status poll, by send results and by failed calls."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from drivers.base import Health
from drivers.dinstar.wire import PortInfo, is_registered, signal_dbm


@dataclass
class PortState:
    port: int
    reg: str | None = None  # None: the device has not said (or cannot)
    number: str = ""
    signal: int | None = None
    imsi: str = ""
    error: str | None = None
    fail_streak: int = 0
    rest_until: float = 0.0
    sent: int = 0
    failed: int = 0

    @property
    def registered(self) -> bool:
        return self.reg is None or is_registered(self.reg)

    def usable(self, now: float) -> bool:
        return self.registered and now >= self.rest_until

    @property
    def problem(self) -> str | None:
        if not self.registered:
            return f"port {self.port}: not registered ({self.reg or 'no state'})"
        return self.error


class DeviceState:
    def __init__(self, ports: Iterable[int], *, fail_limit: int, rest_s: float,
                 clock: Callable[[], float] = time.time) -> None:
        self.ports = {p: PortState(p) for p in ports}
        self.reachable: bool | None = None  # None until the first answer
        self.auth_failed = False
        self.error: str | None = "not connected yet"
        self.sn = ""
        self._fail_limit = fail_limit
        self._rest_s = rest_s
        self._clock = clock

    # the device ------------------------------------------------------------
    @property
    def usable(self) -> bool:
        return self.reachable is True and not self.auth_failed

    def answered(self) -> None:
        self.reachable, self.auth_failed, self.error = True, False, None

    def unreachable(self, error: str) -> None:
        self.reachable, self.error = False, error

    def refused(self, error: str) -> None:
        self.auth_failed, self.error = True, error

    # ports -----------------------------------------------------------------
    def port_info(self, infos: Iterable[PortInfo]) -> None:
        for info in infos:
            state = self.ports.get(info.port)
            if state is None:
                continue
            # Registered is not the same as able to send (a SIM out of credit
            # is registered): a port resting after failures keeps resting.
            state.reg, state.number, state.imsi = info.reg, info.number, info.imsi
            state.signal = info.signal

    def sent_ok(self, port: int) -> None:
        state = self.ports[port]
        state.sent += 1
        state.fail_streak, state.error = 0, None

    def send_failed(self, port: int, error: str) -> None:
        state = self.ports[port]
        state.failed += 1
        state.fail_streak += 1
        state.error = error
        if state.fail_streak >= self._fail_limit:
            self.rest(port, error)

    def rest(self, port: int, error: str) -> None:
        """The port cannot send for now (not registered, no SIM, failing)."""
        state = self.ports[port]
        state.rest_until = self._clock() + self._rest_s
        state.fail_streak, state.error = 0, error

    def number(self, port: int) -> str:
        state = self.ports.get(port)
        return state.number if state else ""

    def health(self, port: int) -> Health:
        state = self.ports[port]
        up = self.usable and state.usable(self._clock())
        error = self.error if not self.usable else state.problem
        return Health(up=up, last_error=error, signal_dbm=signal_dbm(state.signal),
                      detail={"port": port, "reg": state.reg, "number": state.number,
                              "imsi": state.imsi, "sn": self.sn, "sent": state.sent,
                              "failed": state.failed,
                              "device": "auth_failed" if self.auth_failed else
                              {True: "up", False: "down", None: "connecting"}[self.reachable]})
