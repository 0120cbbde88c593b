"""The database is unavailable for 10 seconds (another process holds SQLite's
write lock): the API answers 503 with Retry-After, /readyz 503 naming storage
writes, reads keep answering, dispatch pauses, and everything resumes within
seconds of the lock going, without a restart.

The lock is held by a separate Python process, as an operator's sqlite3
shell or a backup script would hold it. A burst is being dispatched when the
lock comes, so the dispatcher, the channels' start marks and the recorder
all meet it; a second test has the dispatcher's own claims meet it. Bounded:
about 20 seconds each.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.faults.common import (
    loop_channels,
    paced_burst,
    paced_outage,
    readiness,
    refused_for_storage,
    resumes_and_sends_all,
    sent_ids,
    settle,
    storage_write_problem,
)

pytestmark = pytest.mark.timeout(60)

LOCK_S = 10.0
# Sends a channel had in hand wait for their start marks, which wait out the
# recorder's back-off (capped at 5 s); new claims, the dispatcher's (also 5 s).
RESUME_S = 5.0
HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=5)
sys.stdin.readline()
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


class LockHolder:
    """Another process, ready to take the write lock the moment it is told."""

    def __init__(self, db: Path, seconds: float) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(db), str(seconds)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def lock(self) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "locked"


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_api_answers_503_while_locked_and_recovers(make_gateway, tmp_path) -> None:
    record = tmp_path / "sent.jsonl"
    # A message per 50 ms per channel: the burst below lasts past the lock.
    gw = await make_gateway(storage={"busy_timeout_ms": 200},
                            channels=loop_channels(record, time_between_ms=50, concurrency=1,
                                                   delivery_reports=False))
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": f"+59899{i:06d}", "message": f"burst {i}"}
                         for i in range(100)]}) as r:
        assert r.status == 202
        acked = [m["id"] for m in (await r.json())["messages"]]

    holder = LockHolder(tmp_path / "spool.db", LOCK_S)

    async def going() -> bool:
        return sum(sent_ids(record).values()) >= 10
    assert await settle(going, 10, every_s=0.005)
    # Those sends' results are written; each channel now waits out its
    # throttle holding the next message, not yet started.
    await asyncio.sleep(0.03)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, holder.lock)
    at_lock = sum(sent_ids(record).values())
    try:
        await refused_for_storage(gw)
        async with gw.session.get(gw.url + "/healthz") as r:
            assert r.status == 200  # alive: the loop answers
        status, body = await readiness(gw)
        assert status == 503 and "locked" in (storage_write_problem(body) or ""), body
        async with gw.session.get(f"{gw.url}/api/v1/messages/{acked[0]}",
                                  headers=gw.headers()) as r:
            assert r.status == 200, "reads do not need the write lock"
    finally:
        await loop.run_in_executor(None, holder.proc.wait)
    released = time.monotonic()
    during = sum(sent_ids(record).values()) - at_lock
    # Each channel may finish the one message it had started; no more.
    assert during <= 2, f"{during} sends while the spool could not record them"
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json={"destination": "098344484", "message": "y"}) as r:
        assert r.status == 202
        acked.append((await r.json())["id"])

    await resumes_and_sends_all(
        gw, record, acked, at_lock + during, released,
        f"locked {LOCK_S:g} s with {at_lock} of {len(acked) - 1} sent; sent while locked: "
        f"{during}", resume_bound_s=RESUME_S + 1)


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_dispatch_resumes_within_5s_of_a_10s_lock(make_gateway, tmp_path) -> None:
    """A paced campaign keeps the dispatcher claiming when the lock comes, so
    its own claims meet the lock for 10 s. It rides that out with a short
    back-off (one log line when the claims start failing, one when they work
    again) instead of crashing to the supervisor's 30 s one: messages flow
    again within 5 s of the lock going, and each is sent once."""
    record = tmp_path / "sent.jsonl"
    gw = await make_gateway(storage={"busy_timeout_ms": 200},
                            channels=loop_channels(record, delivery_reports=False))
    acked = await paced_burst(gw, 20, time_between_ms=200)
    holder = LockHolder(tmp_path / "spool.db", LOCK_S)
    loop = asyncio.get_running_loop()

    async def lock() -> None:
        await loop.run_in_executor(None, holder.lock)

    async def released() -> None:
        await loop.run_in_executor(None, holder.proc.wait)
    await paced_outage(gw, record, acked, what=f"SQLite locked {LOCK_S:g} s", start=lock,
                       end=released, resume_bound_s=RESUME_S)
