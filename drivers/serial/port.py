"""One serial port speaking AT commands, on pyserial-asyncio (no thread per port).

The port runs one command at a time. What the parser hands up is paired
with the command in flight (its `Info` lines and its final result); anything
unsolicited goes to `on_urc` at once, even in the middle of an answer. A
command that gets no answer in time fails the whole port: the modem is wedged
or gone, and the owner resets or reopens it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import serial
import serial_asyncio
import structlog

from drivers.serial.at import (
    URC_TYPES,
    AtParser,
    Echo,
    ErrorResult,
    Event,
    Info,
    Ok,
    Prompt,
)

log = structlog.get_logger("smsgw.serial")

T = TypeVar("T")
CTRL_Z = "\x1a"
ESC = b"\x1b"


class PortClosed(Exception):
    """The port is gone (unplugged, closed, or failed by a timeout)."""


class PortTimeout(PortClosed):
    """No answer in time; unless told otherwise the port is failed too."""


class CommandError(Exception):
    """The modem answered ERROR / +CME ERROR / +CMS ERROR."""

    def __init__(self, command: str, result: ErrorResult) -> None:
        super().__init__(f"{command}: {result}")
        self.command = command
        self.result = result


@dataclass
class _Pending:
    command: str
    done: asyncio.Future[Ok | ErrorResult]
    prompt: asyncio.Future[None] | None = None
    lines: list[str] = field(default_factory=list)


class AtPort(asyncio.Protocol):
    def __init__(self, device: str, on_urc: Callable[[Event], None]) -> None:
        self.device = device
        self._on_urc = on_urc
        self._parser = AtParser()
        self._transport: asyncio.Transport | None = None
        self._pending: _Pending | None = None
        self._lock = asyncio.Lock()
        self.lost: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        # True when the modem stopped answering (rather than vanishing): worth
        # a reset command before the port is reopened.
        self.wedged = False

    @classmethod
    async def open(cls, device: str, baudrate: int, on_urc: Callable[[Event], None]) -> AtPort:
        port = cls(device, on_urc)
        loop = asyncio.get_running_loop()
        try:
            # exclusive: a second daemon (or a stray minicom) on the same
            # modem would steal answers; flock makes it fail to open instead.
            transport, _ = await serial_asyncio.create_serial_connection(
                loop, lambda: port, device, baudrate=baudrate, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as err:
            raise PortClosed(f"cannot open {device}: {err}") from err
        port._transport = transport
        with contextlib.suppress(serial.SerialException, OSError):
            # What the modem said to a previous owner is not for us.
            transport.serial.reset_input_buffer()
        return port

    # asyncio.Protocol ------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        log.debug("modem.rx", device=self.device, data=data)
        for event in self._parser.feed(data):
            self._route(event)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self.fail(f"{self.device} closed: {exc}" if exc else f"{self.device} closed")

    def _route(self, event: Event) -> None:
        pending = self._pending
        if isinstance(event, URC_TYPES):
            self._on_urc(event)
        elif isinstance(event, Echo):
            return
        elif pending is None or pending.done.done():
            log.debug("modem.stray", device=self.device, line=str(event))
        elif isinstance(event, Prompt):
            if pending.prompt is not None and not pending.prompt.done():
                pending.prompt.set_result(None)
        elif isinstance(event, Info):
            pending.lines.append(event.text)
        else:
            pending.done.set_result(event)

    # commands -------------------------------------------------------------
    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self.lost.done()

    async def command(self, command: str, timeout_s: float, *, fail_on_timeout: bool = True,
                      label: str | None = None) -> list[str]:
        """Run one command; its Info lines, or CommandError / PortTimeout / PortClosed.

        `label` stands for the command in logs and errors (a PIN is a secret).
        """
        async with self._lock:
            pending = self._start(command, prompt=False, label=label)
            final = await self._await(pending, pending.done, timeout_s, fail_on_timeout)
            return self._finish(pending, final)

    async def submit(self, command: str, payload: str, timeout_s: float) -> list[str]:
        """AT+CMGS: the command, then `payload` + Ctrl-Z once the modem prompts."""
        async with self._lock:
            pending = self._start(command, prompt=True)
            assert pending.prompt is not None
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout_s
            either: set[asyncio.Future[Any]] = {pending.prompt, pending.done}
            first = asyncio.ensure_future(asyncio.wait(either,
                                                       return_when=asyncio.FIRST_COMPLETED))
            await self._await(pending, first, timeout_s, True)
            if not pending.done.done():
                self._write(payload + CTRL_Z, remember=payload, shown=payload)
            left = max(0.0, deadline - loop.time())
            final = await self._await(pending, pending.done, left, True)
            return self._finish(pending, final)

    def _start(self, command: str, *, prompt: bool, label: str | None = None) -> _Pending:
        if not self.is_open:
            raise PortClosed(self.lost.result() if self.lost.done() else "port not open")
        loop = asyncio.get_running_loop()
        shown = label or command
        self._pending = _Pending(shown, loop.create_future(),
                                 loop.create_future() if prompt else None)
        self._write(command + "\r", remember=command, shown=shown)
        return self._pending

    async def _await(self, pending: _Pending, fut: asyncio.Future[T], timeout_s: float,
                        fail_on_timeout: bool) -> T:
        try:
            async with asyncio.timeout(timeout_s):
                return await fut
        except TimeoutError:
            reason = f"no answer to {pending.command} within {timeout_s:g}s"
            self._pending = None
            if fail_on_timeout:
                self.wedged = True
                self.fail(reason)
            raise PortTimeout(reason) from None
        except asyncio.CancelledError:
            # The answer will still come and would be taken for the next
            # command's: the only safe state after this is a fresh port.
            self._pending = None
            self.wedged = True
            self.fail(f"{pending.command} was abandoned mid-answer")
            raise

    def _finish(self, pending: _Pending, final: Ok | ErrorResult) -> list[str]:
        self._pending = None
        if isinstance(final, ErrorResult):
            raise CommandError(pending.command, final)
        return pending.lines

    def _write(self, text: str, *, remember: str, shown: str) -> None:
        assert self._transport is not None
        self._parser.sent(remember)
        log.debug("modem.tx", device=self.device, data=shown)
        self._transport.write(text.encode("latin-1"))

    def write_raw(self, data: bytes) -> None:
        if self._transport is not None:
            self._transport.write(data)

    # end of life -------------------------------------------------------------
    def fail(self, reason: str) -> None:
        """Mark the port dead; whoever waits on an answer gets PortClosed."""
        if not self.lost.done():
            self.lost.set_result(reason)
        pending, self._pending = self._pending, None
        if pending is not None:
            if pending.prompt is not None:
                pending.prompt.cancel()
            if not pending.done.done():
                pending.done.set_exception(PortClosed(reason))

    async def close(self) -> None:
        transport = self._transport
        self.fail(f"{self.device} closed")
        if transport is None:
            return
        transport.close()
        # A vanished USB device may never flush what is buffered.
        for _ in range(50):
            if self._transport is None:
                return
            await asyncio.sleep(0.01)
        with contextlib.suppress(Exception):
            transport.abort()
