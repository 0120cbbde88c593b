"""Slow and idle clients against the real daemon (a process, on loopback).

A bounded slowloris: a few hundred sockets that send half their headers (and
keep dribbling a byte), half a body, or nothing. The server must cut each of
them off after its deadline, answer /healthz meanwhile (the connection cap
makes room by closing the oldest slow socket), and still take a legit
message. Then the same with the daemon's open-file limit lowered below the
attack, so that it runs out of descriptors: the accept loop and the
spool-folder task ride it out, and the file dropped meanwhile is imported.
Each test takes a few seconds; every loop is bounded in count and time.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import config
from tests.proc import Daemon, free_port, write_config

# The HTTP edge is the same whatever the store: SQLite, the default.
pytestmark = pytest.mark.timeout(120)

DEADLINE_S = 1.0
FAST = {"header_timeout_s": DEADLINE_S, "body_timeout_s": DEADLINE_S,
        "keepalive_timeout_s": DEADLINE_S}
HALF_HEADERS = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
HALF_BODY = (b"POST /Integra/resources/SMS/SendSMS HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n"
             b"\r\ndestination=0983")


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Any]:
    started: list[Daemon] = []

    def start(**server: Any) -> Daemon:
        port = free_port()
        raw = config(tmp_path, server={"port": port, **server},
                     logging={"format": "json", "level": "warning"})
        d = Daemon(write_config(tmp_path / "smsgw.toml", raw), port, tmp_path / "daemon.log")
        started.append(d)
        return d.start()

    yield start
    for d in started:
        d.stop()


def get(url: str, timeout: float = 3.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


def legit_post(d: Daemon) -> int:
    body = urllib.parse.urlencode({"destination": "098344484", "message": "hola"}).encode()
    req = urllib.request.Request(d.url + "/Integra/resources/SMS/SendSMS", data=body)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status


def attack(port: int, counts: dict[bytes, int]) -> list[socket.socket]:
    """Open the sockets; each sends its prefix (b"" stays silent)."""
    socks = []
    for prefix, n in counts.items():
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            if prefix:
                s.sendall(prefix)
            s.setblocking(False)
            socks.append(s)
    return socks


def closed_by_server(s: socket.socket) -> bool:
    try:
        while s.recv(65536):  # a 4xx the server sent before closing is fine
            pass
        return True  # EOF
    except BlockingIOError:
        return False
    except (ConnectionResetError, BrokenPipeError):
        return True


def dribble(socks: list[socket.socket]) -> None:
    for s in socks:
        with contextlib.suppress(OSError):
            s.send(b"a")


def wait_all_closed(socks: list[socket.socket], within_s: float,
                    dribbling: list[socket.socket] = ()) -> list[socket.socket]:
    """The sockets still open after `within_s` (slowloris ones keep sending)."""
    deadline = time.monotonic() + within_s
    open_ = list(socks)
    while open_ and time.monotonic() < deadline:
        dribble([s for s in dribbling if s in open_])
        open_ = [s for s in open_ if not closed_by_server(s)]
        time.sleep(0.1)
    return open_


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_slowloris_is_cut_off_while_healthz_answers(daemon) -> None:
    d = daemon(max_connections=200, **FAST)
    socks = attack(d.port, {HALF_HEADERS: 150, HALF_BODY: 100, b"": 100})
    try:
        # 350 sockets against a cap of 200: the oldest slow ones make room.
        began = time.monotonic()
        answered = []
        while time.monotonic() - began < DEADLINE_S * 0.8:
            dribble(socks[:150])  # a byte at a time: the header deadline is not idle time
            answered.append(get(d.url + "/healthz"))
            time.sleep(0.05)
        assert answered and set(answered) == {200}
        still_open = wait_all_closed(socks, within_s=DEADLINE_S * 6, dribbling=socks[:150])
        assert not still_open, f"{len(still_open)} slow sockets were never closed"
        assert time.monotonic() - began < DEADLINE_S * 6
        assert legit_post(d) == 200
        assert get(d.url + "/healthz") == 200
    finally:
        for s in socks:
            s.close()
    assert d.proc is not None and d.proc.poll() is None
    assert "Traceback" not in d.log.read_text()


def test_running_out_of_file_descriptors_is_ridden_out(daemon, tmp_path: Path) -> None:
    d = daemon(header_timeout_s=2.0, keepalive_timeout_s=2.0)
    assert d.proc is not None
    # A limit the attack exceeds: ~60 descriptors spare, 250 slow sockets.
    cap = open_fds(d.proc.pid) + 60
    resource.prlimit(d.proc.pid, resource.RLIMIT_NOFILE, (cap, cap))
    socks = attack(d.port, {HALF_HEADERS: 250})
    try:
        time.sleep(0.3)
        assert open_fds(d.proc.pid) >= cap - 2, "the attack did not reach the limit"
        # Dropped while the daemon cannot open a file.
        incoming = tmp_path / "spool" / "incoming"
        (incoming / ".drop.csv").write_text("default;098344484;hola;0\n"
                                            "default;098344485;chau;0\n")
        (incoming / ".drop.csv").rename(incoming / "drop.csv")
        still_open = wait_all_closed(socks, within_s=40)
        assert not still_open, f"{len(still_open)} slow sockets were never closed"
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (tmp_path / "spool" / "processed" /
                                               "drop.csv").exists():
        time.sleep(0.1)
    assert (tmp_path / "spool" / "processed" / "drop.csv").exists()
    assert not list((tmp_path / "spool" / "failed").glob("drop*"))
    assert get(d.url + "/healthz") == 200
    assert legit_post(d) == 200
    assert d.proc.poll() is None
    log = d.log.read_text()
    assert "out_of_files" in log, "the daemon never ran out of descriptors"
    assert "Traceback" not in log and "task.crashed" not in log
