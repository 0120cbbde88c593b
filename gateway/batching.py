"""Group commit: many callers, one transaction.

Callers `submit` an item and await its result; one flusher task takes
everything queued while the previous transaction ran and commits it as a
single batch. Under load the batches grow by themselves, which is what
turns a fsync per request into a fsync per few hundred.
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
                 *, max_items: int = 1000, linger_s: float = 0.0) -> None:
        self.name = name
        self._flush = flush
        self._max = max_items
        self._linger = linger_s
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
        items, waiters = self._items[:self._max], self._waiters[:self._max]
        del self._items[:self._max], self._waiters[:self._max]
        if not self._items:
            self._ready.clear()
        if not items:
            return
        try:
            results = await self._flush(items)
        except asyncio.CancelledError:
            for fut in waiters:
                if not fut.done():
                    fut.cancel()
            raise
        except Exception as err:  # the batch failed as a whole: tell every caller
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
