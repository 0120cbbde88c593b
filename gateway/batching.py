"""Group commit: many callers, one transaction.

Callers `submit` an item and await its result; one flusher task takes
everything queued while the previous transaction ran and commits it as a
single batch. Under load the batches grow by themselves, which is what
turns a fsync per request into a fsync per few hundred.

Sharing a transaction must not mean sharing fate: when a batch fails for
something one of its items holds (a character the database refuses, a
constraint), it is retried in halves until the failing items are alone, so
only their callers see the error. Errors that are nobody's item's fault
(the database is away) fail the whole batch at once: bisecting those would
only multiply the waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import structlog

T = TypeVar("T")
R = TypeVar("R")

log = structlog.get_logger("smsgw.batching")


class GroupCommit(Generic[T, R]):
    def __init__(self, name: str, flush: Callable[[list[T]], Awaitable[Sequence[R]]],
                 *, max_items: int = 1000, linger_s: float = 0.0,
                 weight: Callable[[T], int] = lambda _: 1,
                 isolate: Callable[[Exception], bool] = lambda _: True) -> None:
        """`weight(item)` counts against `max_items` (an item may be a request
        of many rows); `isolate(err)` says whether a failed batch is retried
        in halves to find the items at fault."""
        self.name = name
        self._flush = flush
        self._max = max_items
        self._linger = linger_s
        self._weight = weight
        self._isolate = isolate
        self._items: list[T] = []
        self._waiters: list[asyncio.Future[R]] = []
        self._ready = asyncio.Event()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    def submit(self, item: T) -> asyncio.Future[R]:
        """Queue `item`; the future resolves once its batch is committed."""
        if self._closed:
            raise RuntimeError(f"{self.name} is closed")
        fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._items.append(item)
        self._waiters.append(fut)
        self._ready.set()
        return fut

    def submit_many(self, items: Sequence[T]) -> list[asyncio.Future[R]]:
        return [self.submit(i) for i in items]

    async def run(self) -> None:
        """Flush until closed and empty; cancelled, it fails what is queued."""
        try:
            while not (self._closed and not self._items):
                await self._ready.wait()
                if self._linger and len(self._items) < self._max and not self._closed:
                    await asyncio.sleep(self._linger)
                await self.flush_once()
        except asyncio.CancelledError:
            self._fail_all(RuntimeError(f"{self.name} stopped"))
            raise

    async def flush_once(self) -> None:
        n = self._batch_len()
        items, waiters = self._items[:n], self._waiters[:n]
        del self._items[:n], self._waiters[:n]
        if not self._items:
            self._ready.clear()
        if items:
            await self._settle(items, waiters)

    def _batch_len(self) -> int:
        """How many queued items fit in one batch (always at least one)."""
        total = 0
        for n, item in enumerate(self._items):
            total += self._weight(item)
            if total > self._max:
                return max(n, 1)
        return len(self._items)

    async def _settle(self, items: list[T], waiters: list[asyncio.Future[R]]) -> None:
        """Flush `items`; on a failure that an item may hold, flush each half
        again, down to single items, so one bad item fails only its caller."""
        try:
            results = await self._flush(items)
        except asyncio.CancelledError:
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as err:
            if len(items) > 1 and self._isolate(err):
                log.warning("batch.isolating", batch=self.name, items=len(items),
                            error=type(err).__name__)
                half = len(items) // 2
                await self._settle(items[:half], waiters[:half])
                await self._settle(items[half:], waiters[half:])
                return
            log.warning("batch.failed", batch=self.name, items=len(items), error=str(err))
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(err)
            return
        for fut, result in zip(waiters, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    def close(self) -> None:
        """Accept nothing more; `run` returns once the queue is flushed."""
        self._closed = True
        self._ready.set()

    def _fail_all(self, err: Exception) -> None:
        for fut in self._waiters:
            if not fut.done():
                fut.set_exception(err)
        self._items.clear()
        self._waiters.clear()
