"""A claim that PostgreSQL committed while its connection broke.

The daemon reaches the shared server through a relay that reads the wire
protocol both ways. Armed, it lets the next claim that takes rows run and
commit (the server has sent ReadyForQuery, which follows the COMMIT of an
implicit transaction), then resets that connection instead of passing the
answer on: the dispatcher sees a broken connection, the spool holds rows in
state 2 leased to it that it never received. They must be sent once each,
within seconds, without a restart (the lease keeper renews them, so waiting
for the lease would be forever).
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
import urllib.parse
from collections.abc import Callable

import pytest
from structlog.testing import capture_logs

from spool.base import ListFilter, State
from tests import pgdb
from tests.faults.common import loop_channels, sent_ids, settle

pytestmark = pytest.mark.timeout(60)

MESSAGES = 20
# How the dispatcher's claim statement begins (spool/postgres/dispatch.py).
CLAIM_SQL = "UPDATE sms_spool s SET state = 2,"


class ClaimCutter:
    """127.0.0.1:<port> -> the real server; `arm()` drops the next claim's answer.

    It reads the client's messages to tell a claim (asyncpg prepares each
    statement once per connection: Parse names it, every Bind refers to that
    name) and the server's to see where its answer ends."""

    def __init__(self, host: str, port: int, look: Callable[[], int]) -> None:
        self.target = (host, port)
        self.port = 0
        self.cut = asyncio.Event()
        self.cut_rows = 0  # rows the dropped answer carried
        # What `look()` said at the cut, before the daemon could hear of it: it
        # recovers within milliseconds, faster than a test could look after.
        self._look = look
        self.seen_at_cut = -1
        self._armed = False
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.Task[None]] = set()

    def arm(self) -> None:
        self._armed = True

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cancel()
        await asyncio.gather(*self._links, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._links.add(task)
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        link = _Link()
        upward = asyncio.ensure_future(self._requests(reader, up_writer, link))
        try:
            await self._answers(up_reader, writer, link)
        finally:
            upward.cancel()
            for w in (writer, up_writer):
                w.transport.abort()  # a reset, as from a server that went away
            with contextlib.suppress(asyncio.CancelledError):
                await upward
            self._links.discard(task)

    async def _requests(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                        link: _Link) -> None:
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            size = struct.unpack("!i", await src.readexactly(4))[0]  # the startup packet
            dst.write(struct.pack("!i", size) + await src.readexactly(size - 4))
            while True:
                head = await src.readexactly(5)
                body = await src.readexactly(struct.unpack("!i", head[1:])[0] - 4)
                if head[:1] == b"P":
                    name, query = body.split(b"\0")[:2]
                    if query.decode().startswith(CLAIM_SQL):
                        link.claims.add(name)
                elif head[:1] == b"B" and self._armed and body.split(b"\0")[1] in link.claims:
                    link.claiming = True  # before the server can answer it
                dst.write(head + body)
                await dst.drain()

    async def _answers(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                       link: _Link) -> None:
        """Pass the server's messages on, except a claim's answer while
        armed: held until its ReadyForQuery (the COMMIT is done by then),
        then dropped with the connection if it carried rows."""
        held: list[bytes] = []
        with contextlib.suppress(ConnectionError, OSError, asyncio.IncompleteReadError):
            while True:
                head = await src.readexactly(5)
                message = head + await src.readexactly(struct.unpack("!i", head[1:])[0] - 4)
                if not link.claiming:
                    dst.write(message)
                    await dst.drain()
                    continue
                held.append(message)
                if head[:1] != b"Z":
                    continue
                rows = sum(m[:1] == b"D" for m in held)
                if rows and self._armed:
                    self._armed, self.cut_rows = False, rows
                    self.seen_at_cut = self._look()  # blocks the loop: nobody moves
                    self.cut.set()
                    return
                link.claiming = False
                dst.write(b"".join(held))
                await dst.drain()
                held = []


class _Link:
    def __init__(self) -> None:
        self.claims: set[bytes] = set()  # names of the claim's prepared statements
        self.claiming = False


async def _pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await src.read(65536):
            dst.write(data)
            await dst.drain()


def through(url: str, port: int) -> str:
    """`url` by way of the relay, in plain text (the relay reads the protocol)."""
    parts = urllib.parse.urlsplit(url)
    user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    query = urllib.parse.parse_qsl(parts.query) + [("sslmode", "disable")]
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{port}",
                                                  query=urllib.parse.urlencode(query)))


@pytest.fixture
async def cutter(storage_url: str):
    parts = urllib.parse.urlsplit(storage_url)
    def leased() -> int:  # committed by the claim, unknown to the daemon
        return pgdb.query(storage_url, "SELECT count(*) FROM sms_spool WHERE state = 2 "
                                       "AND claimed_by = 'test-node' AND claim_token IS NOT "
                                       "NULL AND started_at IS NULL")[0][0]
    relay = ClaimCutter(parts.hostname or "127.0.0.1", parts.port or 5432, leased)
    await relay.start()
    yield relay
    await relay.close()


@pytest.mark.parametrize("backend", ["postgres"])
async def test_a_claim_committed_as_its_connection_broke_is_sent_soon(
        cutter: ClaimCutter, make_gateway, storage_url: str, tmp_path) -> None:
    record = tmp_path / "sent.jsonl"
    gw = await make_gateway(storage={"url": through(storage_url, cutter.port)},
                            channels=loop_channels(record, delivery_reports=False))
    # Stored while the campaign is stopped, so that one claim takes them all.
    await gw.store.update_campaign(1, enabled=False)
    await gw.app.services.campaigns.reload()
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": f"+59899{i:06d}", "message": f"lost {i}"}
                         for i in range(MESSAGES)]}) as r:
        assert r.status == 202, await r.text()
        acked = [m["id"] for m in (await r.json())["messages"]]
    with capture_logs() as logs:
        cutter.arm()
        await gw.store.update_campaign(1, enabled=True)
        await gw.app.services.campaigns.reload()
        try:
            await asyncio.wait_for(cutter.cut.wait(), 10)
        except TimeoutError:  # say what the spool and the dispatcher were doing
            raise AssertionError(
                f"no claim took the rows within 10 s: states "
                f"{pgdb.query(storage_url, 'SELECT state, count(*) FROM sms_spool GROUP BY 1')}"
                f", campaigns {pgdb.query(storage_url, 'SELECT id, enabled FROM campaigns')}"
                f", log {[e['event'] for e in logs][:30]}") from None
        cut_at = time.monotonic()
        leased = cutter.seen_at_cut

        async def all_sent() -> bool:
            stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
            return all(m.state == State.SENT for m in stored)
        done = await settle(all_sent, 20)
        after_s = time.monotonic() - cut_at
    returned = [e for e in logs if e["event"] == "dispatcher.lost_claims_returned"]
    notes = pgdb.query(storage_url, "SELECT count(DISTINCT message_id) FROM message_events "
                                    "WHERE note = 'claim lost in transit: never sent'")[0][0]
    stored = await gw.store.list_messages(ListFilter(tenant=1, limit=1000))
    print(f"\nclaim of {cutter.cut_rows} rows committed, its answer dropped and the "
          f"connection reset; {leased} leased to the node, unsent, just after; all "
          f"{MESSAGES} sent {after_s:.1f} s after the cut; returned: "
          f"{[(e['claims'], e['requeued']) for e in returned]}")
    assert cutter.cut_rows == MESSAGES, "the dropped claim had taken every message"
    assert leased == MESSAGES, "the claim committed though the daemon never got its answer"
    assert done, f"left behind: {[(m.id, m.state.name) for m in stored if m.state != State.SENT]}"
    assert after_s < 5, "sent within seconds, not after a lease or a restart"
    assert [e["requeued"] for e in returned if e["requeued"]] == [MESSAGES]
    assert notes == MESSAGES
    sends = sent_ids(record)
    assert set(sends) == set(acked) and max(sends.values()) == 1, "each sent exactly once"
    assert {m.attempts for m in stored} == {1}, "a claim lost in transit is not an attempt"
