"""PostgreSQL goes away for 10 seconds, as when its server is stopped: the
API answers 503 with Retry-After, readiness says why, dispatch pauses, and
everything resumes within seconds of the server's return, without a restart.

The shared server is never stopped (other test runs use it): the daemon
reaches it through a TCP relay on loopback, and "stopping" is the relay
resetting every connection and refusing new ones, which is what a client
sees of a server that shuts down. A second test has the dispatcher's own
claims meet the outage. Bounded: about 20 seconds each.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import urllib.parse

import pytest

from tests.faults.common import (
    loop_channels,
    paced_burst,
    paced_outage,
    readiness,
    ready_again,
    refused_for_storage,
    resumes_and_sends_all,
    sent_ids,
    settle,
)

pytestmark = pytest.mark.timeout(90)

OUTAGE_S = 10.0
# Sends a channel had in hand wait for their start marks, which wait out the
# recorder's back-off (capped at 5 s); new claims, the dispatcher's (also 5 s).
RESUME_S = 5.0


class Relay:
    """127.0.0.1:<port> -> the real server, with a switch."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.refused = 0  # connections turned away while down
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()
        self._transports: set[asyncio.BaseTransport] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop_server(self) -> None:
        """Stop listening (new connections are refused) and reset every open one."""
        assert self._server is not None
        self._server.close()
        for transport in list(self._transports):
            transport.abort()
        # The links end on their own once their sockets are reset.
        await asyncio.wait_for(asyncio.gather(*self._links, return_exceptions=True), 5)
        self._server = None

    async def close(self) -> None:
        if self._server is not None:
            await self.stop_server()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        self._transports.add(writer.transport)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        finally:
            self._links.discard(task)
        self._links.add(task)
        self._transports.add(up_writer.transport)
        pipes = {asyncio.ensure_future(_pipe(reader, up_writer)),
                 asyncio.ensure_future(_pipe(up_reader, writer))}
        try:
            # Either side gone ends the link: the other is reset, as by a dead server.
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in (writer, up_writer):
                self._transports.discard(w.transport)
                w.transport.abort()
            await asyncio.gather(*pipes, return_exceptions=True)
            self._links.discard(task)


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


@pytest.fixture
async def relay(storage_url: str):
    parts = urllib.parse.urlsplit(storage_url)
    r = Relay(parts.hostname or "127.0.0.1", parts.port or 5432)
    await r.start()
    yield r
    await r.close()


def through(url: str, port: int) -> str:
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc.rsplit("@", 1)
    host = f"127.0.0.1:{port}"
    return urllib.parse.urlunsplit(parts._replace(
        netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))


@pytest.mark.parametrize("backend", ["postgres"])
async def test_postgres_away_10s_answers_503_and_resumes(relay: Relay, make_gateway,
                                                         storage_url: str, tmp_path) -> None:
    record = tmp_path / "sent.jsonl"
    gw = await make_gateway(storage={"url": through(storage_url, relay.port)},
                            channels=loop_channels(record, time_between_ms=50, concurrency=1,
                                                   delivery_reports=False))
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": f"+59899{i:06d}", "message": f"burst {i}"}
                         for i in range(100)]}) as r:
        assert r.status == 202
        acked = [m["id"] for m in (await r.json())["messages"]]

    async def going() -> bool:
        return sum(sent_ids(record).values()) >= 10
    assert await settle(going, 10, every_s=0.005)
    # Those sends' results are written; each channel now waits out its
    # throttle holding the next message, not yet started.
    await asyncio.sleep(0.03)
    await relay.stop_server()
    stopped = time.monotonic()
    at_stop = sum(sent_ids(record).values())
    await refused_for_storage(gw)
    async with gw.session.get(gw.url + "/readyz") as r:
        assert r.status == 503
        assert any(p.startswith("storage") for p in (await r.json())["problems"])
    async with gw.session.get(gw.url + "/healthz") as r:
        assert r.status == 200  # alive: the loop answers
    await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped))
    during = sum(sent_ids(record).values()) - at_stop
    await relay.start()  # the server is back, on the same address
    back = time.monotonic()
    # Each channel may finish the one message it had started; no more.
    assert during <= 2, f"{during} sends while the spool could not record them"

    async def accepting() -> bool:
        async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                                   json={"destination": "098344484", "message": "y"}) as r:
            if r.status == 202:
                acked.append((await r.json())["id"])
            return r.status == 202
    assert await settle(accepting, 10, every_s=0.5), "intake did not come back"
    intake_s = time.monotonic() - back

    await resumes_and_sends_all(
        gw, record, acked, at_stop + during, back,
        f"PostgreSQL away {OUTAGE_S:g} s with {at_stop} of 100 sent; sent meanwhile: {during}; "
        f"intake back {intake_s:.1f} s after the server", resume_bound_s=RESUME_S + 1)


@pytest.mark.parametrize("backend", ["postgres"])
async def test_dispatch_resumes_within_5s_of_a_10s_postgres_outage(
        relay: Relay, make_gateway, storage_url: str, tmp_path) -> None:
    """A paced campaign keeps the dispatcher claiming when the server goes,
    so its own claims meet the outage for 10 s. It rides that out with a
    short back-off (one log line as the claims start failing, one as they
    work again) instead of crashing to the supervisor's 30 s one: messages
    flow again within 5 s of the server's return, and each is sent once."""
    record = tmp_path / "sent.jsonl"
    gw = await make_gateway(storage={"url": through(storage_url, relay.port)},
                            channels=loop_channels(record, delivery_reports=False))
    acked = await paced_burst(gw, 20, time_between_ms=200)
    stopped = 0.0

    async def stop() -> None:
        nonlocal stopped
        await relay.stop_server()
        stopped = time.monotonic()

    async def come_back() -> None:
        status, body = await readiness(gw)
        assert status == 503 and any(p.startswith("storage") for p in body["problems"]), body
        await asyncio.sleep(OUTAGE_S - (time.monotonic() - stopped))
        await relay.start()
    await paced_outage(gw, record, acked, what=f"PostgreSQL away {OUTAGE_S:g} s", start=stop,
                       end=come_back, resume_bound_s=RESUME_S)
    assert await ready_again(gw, 10), f"/readyz still 503 after the outage: {await readiness(gw)}"
