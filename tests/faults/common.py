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
