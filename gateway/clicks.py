"""Clicks on short links: looked up from memory, recorded off the hot path.

The redirect answers from a bounded in-memory cache of codes. The visit is
appended to a buffer that is classified (bot or human) and committed every
`flush_s` (0.25 s): a crash can lose at most the clicks of that last
fraction of a second, never a redirect.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict, defaultdict
from collections.abc import Callable

import structlog

from gateway.links import BotDetector
from spool.base import Click, LinkTarget, Store

log = structlog.get_logger("smsgw.clicks")


# Codes carry 48 random bits; still, a client that keeps missing is slowed
# down so that guessing is not even worth trying.
MISSES_PER_MINUTE = 30


class MissLimiter:
    def __init__(self) -> None:
        self._window = 0
        self._misses: defaultdict[str, int] = defaultdict(int)

    def allow(self, ip: str, now: float) -> bool:
        window = int(now // 60)
        if window != self._window:
            self._window, self._misses = window, defaultdict(int)
        return self._misses.get(ip, 0) < MISSES_PER_MINUTE

    def miss(self, ip: str) -> None:
        if len(self._misses) < 100_000:  # bounded under a distributed flood
            self._misses[ip] += 1


class LinkCache:
    """code -> target, LRU-bounded; misses are not cached (enumeration must
    not grow memory)."""

    def __init__(self, store: Store, *, size: int = 100_000) -> None:
        self._store = store
        self._size = size
        self._hits: OrderedDict[str, LinkTarget] = OrderedDict()

    async def get(self, code: str) -> LinkTarget | None:
        found = self._hits.get(code)
        if found is not None:
            self._hits.move_to_end(code)
            return found
        found = await self._store.link_target(code)
        if found is not None:
            self._hits[code] = found
            if len(self._hits) > self._size:
                self._hits.popitem(last=False)
        return found


class ClickRecorder:
    def __init__(self, store: Store, *, flush_s: float = 0.25,
                 on_clicked: Callable[[list[int]], None] = lambda _: None,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._flush_s = flush_s
        self._on_clicked = on_clicked
        self._clock = clock
        self._bots = BotDetector()
        self._pending: list[tuple[str, int, float, str, str | None, str | None]] = []

    def visit(self, target: LinkTarget, method: str, ip: str | None, ua: str | None) -> None:
        self._pending.append((target.code, target.journey, self._clock(), method, ip, ua))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._flush_s)
            await self.flush()

    async def flush(self) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        clicks = [Click(code, journey, at, method, ip, (ua or "")[:512] or None,
                        self._bots.is_bot(ua, method))
                  for code, journey, at, method, ip, ua in batch]
        try:
            ended = await self._store.record_clicks(clicks)
        except BaseException:
            self._pending[:0] = batch
            raise
        if ended:
            log.info("journey.clicked", journeys=ended)
            self._on_clicked(ended)
