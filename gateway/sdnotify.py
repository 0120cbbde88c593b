"""systemd's notify protocol (sd_notify(3)): readiness, status and watchdog.

The protocol is a few `KEY=VALUE` lines in one datagram to the AF_UNIX socket
named by `NOTIFY_SOCKET`; that is small enough not to pull in a dependency.
Outside systemd (no `NOTIFY_SOCKET`) every method is a no-op.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("smsgw.sdnotify")

# PID 1 reads the socket promptly; a bound on the send keeps a wedged manager
# from stalling the event loop for longer than this.
SEND_TIMEOUT_S = 1.0


def _socket_address(value: str) -> str | bytes | None:
    """A `NOTIFY_SOCKET` value as a `sendto` address, or None if unusable."""
    if value.startswith("@"):
        # Abstract namespace: the leading NUL is the actual first byte.
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    # e.g. "vsock:..." (systemd in a VM); nothing in an on-prem install uses it.
    return None


def _watchdog_interval_s(environ: Mapping[str, str]) -> float | None:
    """Half the watchdog timeout, as sd_watchdog_enabled(3) recommends."""
    pid = environ.get("WATCHDOG_PID")
    if pid and pid != str(os.getpid()):
        # The variables were meant for a parent that exec'd or forked us.
        return None
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


class Notifier:
    """Sends state changes to the service manager; never raises into the daemon."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        raw = environ.get("NOTIFY_SOCKET", "")
        self._address = _socket_address(raw) if raw else None
        if raw and self._address is None:
            log.warning("sdnotify.unsupported_socket", notify_socket=raw)
        self.enabled: bool = self._address is not None
        self.watchdog_interval_s: float | None = (
            _watchdog_interval_s(environ) if self.enabled else None
        )
        self._sock: socket.socket | None = None
        self._closed = False
        self._failing = False

    def ready(self, status: str | None = None) -> None:
        self._send("READY=1", status)

    def stopping(self, status: str | None = None) -> None:
        self._send("STOPPING=1", status)

    def watchdog(self) -> None:
        self._send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self._send(None, text)

    def close(self) -> None:
        """Release the socket; later calls become no-ops."""
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _send(self, state: str | None, status: str | None = None) -> None:
        if self._address is None or self._closed:
            return
        lines = [state] if state else []
        if status is not None:
            # A newline would start a new assignment, letting text set state.
            lines.append("STATUS=" + status.replace("\n", " "))
        try:
            self._socket().sendto("\n".join(lines).encode(), self._address)
        except OSError as err:
            self._report_failure(err)
        else:
            self._failing = False

    def _socket(self) -> socket.socket:
        if self._sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            sock.settimeout(SEND_TIMEOUT_S)
            self._sock = sock
        return self._sock

    def _report_failure(self, err: OSError) -> None:
        # A manager that re-executes comes back on the same path, so keep
        # trying, but one warning per outage is enough for the journal.
        if not self._failing:
            log.warning("sdnotify.send_failed", error=str(err), errno=err.errno)
        self._failing = True


async def watchdog_loop(
    notifier: Notifier, healthy: Callable[[], bool], stop: asyncio.Event
) -> None:
    """Ping the watchdog every interval while `healthy()`; return once `stop` is set.

    An unhealthy daemon is left unpinged on purpose: systemd then kills and
    restarts it after `WatchdogSec`, which is the recovery we want for a
    wedged process. Returns at once when no watchdog is configured.
    """
    interval_s = notifier.watchdog_interval_s
    if interval_s is None:
        return
    was_healthy = True
    while not stop.is_set():
        is_healthy = healthy()
        if is_healthy:
            notifier.watchdog()
        if is_healthy != was_healthy:
            _log_health_change(is_healthy)
            was_healthy = is_healthy
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)


def _log_health_change(is_healthy: bool) -> None:
    if is_healthy:
        log.info("sdnotify.watchdog_resumed")
    else:
        log.warning("sdnotify.watchdog_withheld")
