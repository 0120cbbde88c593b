"""The notify protocol against real AF_UNIX datagram sockets, as PID 1 would read them."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from gateway.sdnotify import Notifier, watchdog_loop


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    # sun_path holds 108 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="sdn-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _receiver(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.setblocking(False)
    return sock


@pytest.fixture
def path_receiver(socket_dir: Path) -> Iterator[tuple[socket.socket, str]]:
    address = str(socket_dir / "notify")
    sock = _receiver(address)
    yield sock, address
    sock.close()


def _drain(sock: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096))
        except BlockingIOError:
            return out


def _env(notify_socket: str, **extra: str) -> dict[str, str]:
    return {"NOTIFY_SOCKET": notify_socket, **extra}


def test_datagrams_on_a_path_socket(path_receiver: tuple[socket.socket, str]) -> None:
    sock, address = path_receiver
    notifier = Notifier(_env(address))
    assert notifier.enabled
    notifier.ready()
    notifier.ready("listening on 127.0.0.1:8080")
    notifier.status("3 channels up")
    notifier.watchdog()
    notifier.stopping("draining 2 sends")
    notifier.stopping()
    notifier.close()
    assert _drain(sock) == [
        b"READY=1",
        b"READY=1\nSTATUS=listening on 127.0.0.1:8080",
        b"STATUS=3 channels up",
        b"WATCHDOG=1",
        b"STOPPING=1\nSTATUS=draining 2 sends",
        b"STOPPING=1",
    ]


def test_datagrams_on_an_abstract_socket() -> None:
    name = f"smsgw-test-{uuid.uuid4().hex}"
    sock = _receiver(b"\0" + name.encode())
    try:
        notifier = Notifier(_env("@" + name))
        notifier.ready("up")
        notifier.watchdog()
        notifier.close()
        assert _drain(sock) == [b"READY=1\nSTATUS=up", b"WATCHDOG=1"]
    finally:
        sock.close()


def test_status_text_cannot_inject_assignments(
    path_receiver: tuple[socket.socket, str],
) -> None:
    sock, address = path_receiver
    notifier = Notifier(_env(address))
    notifier.status("modem down\nREADY=1")
    notifier.close()
    assert _drain(sock) == [b"STATUS=modem down READY=1"]


def test_without_notify_socket_everything_is_a_no_op() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval_s is None
    notifier.ready("x")
    notifier.watchdog()
    notifier.stopping()
    notifier.status("x")
    notifier.close()


def test_unsupported_socket_kind_is_disabled_with_a_warning() -> None:
    with capture_logs() as logs:
        notifier = Notifier(_env("vsock:2:1234"))
    assert not notifier.enabled
    assert [e["event"] for e in logs] == ["sdnotify.unsupported_socket"]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_is_half_the_timeout(
    extra: dict[str, str], expected: float | None
) -> None:
    notifier = Notifier(_env("@unused", **extra))
    assert notifier.watchdog_interval_s == expected


def test_a_vanished_socket_warns_once_and_never_raises(socket_dir: Path) -> None:
    address = str(socket_dir / "notify")
    sock = _receiver(address)
    sock.close()
    os.unlink(address)
    notifier = Notifier(_env(address))
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
        notifier.status("still here")
    assert [e["event"] for e in logs] == ["sdnotify.send_failed"]
    assert logs[0]["log_level"] == "warning"

    # The manager came back (daemon-reexec): sends work again, and the next
    # outage is reported again.
    sock = _receiver(address)
    with capture_logs() as logs:
        notifier.watchdog()
        sock.close()
        os.unlink(address)
        notifier.watchdog()
    notifier.close()
    assert [e["event"] for e in logs] == ["sdnotify.send_failed"]


def test_close_makes_later_calls_no_ops(path_receiver: tuple[socket.socket, str]) -> None:
    sock, address = path_receiver
    notifier = Notifier(_env(address))
    notifier.close()
    notifier.close()
    notifier.ready()
    assert _drain(sock) == []


async def _recv(sock: socket.socket, timeout_s: float = 1.0) -> bytes:
    return await asyncio.wait_for(asyncio.get_running_loop().sock_recv(sock, 4096), timeout_s)


async def test_watchdog_loop_pings_only_while_healthy(
    path_receiver: tuple[socket.socket, str],
) -> None:
    sock, address = path_receiver
    notifier = Notifier(_env(address, WATCHDOG_USEC="40000"))  # ping every 20 ms
    state = {"healthy": True}
    stop = asyncio.Event()
    task = asyncio.create_task(watchdog_loop(notifier, lambda: state["healthy"], stop))

    assert await _recv(sock) == b"WATCHDOG=1"
    assert await _recv(sock) == b"WATCHDOG=1"

    # Pings happen synchronously with the health check, so after the flip
    # anything still queued was sent before it.
    state["healthy"] = False
    _drain(sock)
    with pytest.raises(TimeoutError):
        await _recv(sock, timeout_s=0.15)

    state["healthy"] = True
    assert await _recv(sock) == b"WATCHDOG=1"

    stop.set()
    await asyncio.wait_for(task, 1.0)
    notifier.close()


async def test_watchdog_loop_returns_at_once_without_a_watchdog(
    path_receiver: tuple[socket.socket, str],
) -> None:
    sock, address = path_receiver
    notifier = Notifier(_env(address))
    await asyncio.wait_for(watchdog_loop(notifier, lambda: True, asyncio.Event()), 1.0)
    assert _drain(sock) == []
