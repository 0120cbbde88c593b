"""What the fault tests share: an independent record of what went out, and
waiting for the product to get somewhere without hiding where it stopped."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any


def loop_channels(record: Path, names: tuple[str, ...] = ("loop-a", "loop-b"),
                  **extra: Any) -> list[dict[str, Any]]:
    """Loopback channels that append a line per accepted send to `record`."""
    return [{"name": name, "driver": "loopback", "cost": 0.15, "report_delay_ms": 30,
             "record_path": str(record), **extra} for name in names]


def sent_ids(record: Path) -> Counter[int]:
    """Message id -> times a channel accepted it. A line still being written
    by a live daemon is left for the next look."""
    if not record.exists():
        return Counter()
    lines = record.read_bytes().split(b"\n")
    return Counter(json.loads(line)["id"] for line in lines[:-1] if line)


async def settle(check: Callable[[], Awaitable[Any]], timeout_s: float,
                 every_s: float = 0.05) -> bool:
    """True once `check()` is truthy, False after `timeout_s`: the caller
    asserts with a message that says what was left."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await check():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(every_s)


async def readiness(gw: Any) -> tuple[int, dict[str, Any]]:
    """/readyz's status and body."""
    async with gw.session.get(gw.url + "/readyz") as r:
        return r.status, await r.json()


def storage_write_problem(body: dict[str, Any]) -> str | None:
    """The problem /readyz names when the store cannot write, if it names one."""
    return next((p for p in body["problems"] if p.startswith("storage writes:")), None)


async def ready_again(gw: Any, timeout_s: float) -> bool:
    async def ready() -> bool:
        return (await readiness(gw))[0] == 200
    return await settle(ready, timeout_s, every_s=0.25)


async def paced_burst(gw: Any, n: int, time_between_ms: int) -> list[int]:
    """`n` messages in a campaign paced `time_between_ms` apart: the
    dispatcher claims one at a time, so it is busy claiming (not waiting for
    a channel) when a fault comes."""
    async with gw.session.post(f"{gw.url}/api/v1/campaigns", headers=gw.headers(),
                               json={"name": "paced", "time_between_ms": time_between_ms}) as r:
        assert r.status == 201, await r.text()
    await gw.app.services.campaigns.reload()
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(), json={
            "messages": [{"destination": f"+59898{i:06d}", "message": f"paced {i}",
                          "campaign": "paced"} for i in range(n)]}) as r:
        assert r.status == 202, await r.text()
        return [m["id"] for m in (await r.json())["messages"]]


def outage_lines(logs: list[dict[str, Any]], task: str) -> tuple[int, int]:
    """How many times the dispatcher's `task` logged an outage's start and end."""
    mine = [e["event"] for e in logs if e.get("task") == task]
    return mine.count("dispatcher.store_unavailable"), mine.count("dispatcher.store_back")
