"""The database is unavailable for a while (another process holds SQLite's
write lock): the API answers 503 with Retry-After, dispatch pauses, and
everything resumes without a restart. Bounded: about 10 seconds."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest

from spool.base import ListFilter, State

pytestmark = pytest.mark.timeout(60)


def hold_write_lock(db: str, seconds: float, locked: threading.Event) -> None:
    conn = sqlite3.connect(db, isolation_level=None, timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    conn.execute("ROLLBACK")
    conn.close()


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_api_answers_503_while_locked_and_recovers(make_gateway, tmp_path) -> None:
    gw = await make_gateway(storage={"busy_timeout_ms": 200})
    db = str(tmp_path / "spool.db")
    locked = threading.Event()
    holder = threading.Thread(target=hold_write_lock, args=(db, 2.5, locked))
    holder.start()
    await asyncio.get_running_loop().run_in_executor(None, locked.wait, 5)
    try:
        async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                                   json={"destination": "098344484", "message": "x"}) as r:
            assert r.status == 503
            assert int(r.headers["Retry-After"]) >= 1
            assert "storage" in (await r.json())["error"]
        async with gw.session.get(gw.url + "/healthz") as r:
            assert r.status == 200  # alive: the loop answers
    finally:
        await asyncio.get_running_loop().run_in_executor(None, holder.join)
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json={"destination": "098344484", "message": "y"}) as r:
        assert r.status == 202
        mid = (await r.json())["id"]

    async def sent():
        return (await gw.store.get_message(None, mid)).state in (State.SENT, State.DELIVERED)
    await gw.wait_for(sent)
    stored = await gw.store.list_messages(ListFilter(tenant=1))
    assert [m.message for m in stored] == ["y"], "the refused request stored nothing"
