"""A tenant's webhook receiver is down for 10 minutes: every event reaches it
exactly once per event id afterwards, and meanwhile it was retried with
backoff rather than hammered.

The 10 minutes are simulated: the daemon runs on an injected clock that the
test moves on, with the production retry settings (`[webhooks]` retry_base_s
10, retry_max_s 3600). Signatures are checked by the receiver against the
wall clock, as a real one would. Bounded: a few seconds.
"""

from __future__ import annotations

import math
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from spool.base import State
from tests.conftest import FakeClock
from tests.faults.common import settle
from tests.webhook_receiver import SECRET, Receiver, serving

pytestmark = [pytest.mark.timeout(60), pytest.mark.parametrize("backend", ["sqlite"])]

DOWN_S = 600.0
RETRY_BASE_S = 10.0
WINDOW_S = 5.0  # retries due this close together are let through in one step



class CountingReceiver(Receiver):
    """Counts every delivery attempt by event id, refused or not."""

    def __init__(self) -> None:
        super().__init__()
        self.tries: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        self.tries[request.headers.get("X-Smsgw-Event-Id", "?")] += 1
        return await super().handle(request)


@pytest.fixture
async def counting_receiver():
    async with serving(CountingReceiver()) as rec:
        yield rec


def due_times(db: Path) -> list[float]:
    with sqlite3.connect(db, timeout=10) as conn:
        return [r[0] for r in conn.execute("SELECT next_attempt_at FROM webhook_outbox WHERE "
                                           "delivered_at IS NULL AND dead_at IS NULL")]


async def retries_until(clock: FakeClock, db: Path, end: float) -> None:
    """Move the clock from one due retry to the next (taking those due within
    WINDOW_S together), each time until the daemon has tried them, up to `end`."""
    while (pending := due_times(db)) and min(pending) <= end:
        clock.advance(max(0.0, min(min(pending) + WINDOW_S, end) - clock()))
        now = clock()

        async def tried(now: float = now) -> bool:
            return all(t > now for t in due_times(db))
        assert await settle(tried, 10), "a due webhook was not tried"


def outbox(db: Path) -> dict[str, tuple[int, float | None]]:
    with sqlite3.connect(db, timeout=10) as conn:
        return {r[0]: (r[1], r[2]) for r in conn.execute(
            "SELECT event_id, attempts, delivered_at FROM webhook_outbox")}


async def test_receiver_down_10_minutes_gets_every_event_once(
        make_gateway, counting_receiver: CountingReceiver, tmp_path: Path) -> None:
    rec, clock = counting_receiver, FakeClock()
    gw = await make_gateway(clock=clock, webhooks={"retry_base_s": RETRY_BASE_S,
                                                   "retry_max_s": 3600.0, "timeout_s": 2})
    await gw.store.set_webhook(1, rec.url, SECRET)
    rec.down = True
    ids = []
    for i in range(10):
        async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                                   json={"destination": f"09834460{i}", "message": "x"}) as r:
            assert r.status == 202
            ids.append((await r.json())["id"])
    async with gw.session.post(f"{gw.url}/hooks/loop-a/inbound",
                               data={"from": "098344600", "text": "hola", "id": "in-1"}) as r:
        assert r.status == 200

    async def delivered() -> bool:
        return all([(await gw.store.get_message(None, i)).state == State.DELIVERED
                    for i in ids])
    assert await settle(delivered, 10)
    db = tmp_path / "spool.db"
    began = clock()
    await retries_until(clock, db, began + DOWN_S)  # ten simulated minutes, receiver down
    refused = Counter(rec.tries)
    clock.advance(began + DOWN_S - clock())
    rec.down = False
    await retries_until(clock, db, float("inf"))  # then until the last retry comes due
    came_back = clock() - began
    events = outbox(db)
    seen = Counter(e["id"] for e in rec.events)
    # Backoff doubles from retry_base_s, each wait cut by up to a quarter
    # (jitter): the n-th try comes at least 0.75 * base * (2^(n-1) - 1) after
    # the first, so n tries fit in the outage only while that is <= DOWN_S.
    bound = math.floor(1 + math.log2(DOWN_S / (0.75 * RETRY_BASE_S) + 1))
    print(f"\n{len(events)} events; {sum(refused.values())} attempts refused in {DOWN_S:g} s "
          f"down: per event {dict(sorted(Counter(refused.values()).items()))} (bound {bound}); "
          f"all delivered {came_back - DOWN_S:.0f} simulated s after the receiver came back, "
          f"with {dict(sorted(Counter(rec.tries.values()).items()))} attempts per event")
    assert {e["type"] for e in rec.events} >= {"message.sent", "message.delivered",
                                               "inbound.received"}
    assert set(seen) == set(events), "every event reached the receiver"
    assert max(seen.values()) == 1, "exactly once per event id"
    assert rec.bad_signatures == 0
    assert max(refused.values()) <= bound, "retried with backoff, not hammered"
    assert all(at is not None for _, at in events.values())
