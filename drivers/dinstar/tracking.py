"""Bookkeeping between a send and what the device says about it later.

`Pending` holds sends waiting for their network result (SENT_OK / FAILED),
keyed by our `user_id`. `SentIndex` holds sent messages waiting for their
delivery report, keyed by (port, TP-MR): the device's reports carry the
port, the number and the message reference, never our `user_id`.
Neither does I/O.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

from drivers.dinstar.wire import Fate, SmsResult, same_number

NETWORK_DONE = frozenset({"SENT_OK", "DELIVERED", "FAILED"})
REF_MODULO = 256  # TP-MR is one octet and wraps per SIM


class UserIds:
    """Our per-send `user_id`: unique across restarts without storing anything.

    Seeded from the millisecond clock, so a restart starts above every id the
    last run used unless that run sent more than 1,000 SMS a second (a
    32-port gateway does about 30). Kept below 2**31: the API says "integer"
    and firmware is C.
    """

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._ids = itertools.count(int(clock() * 1000) % 2**31)

    def next(self) -> int:
        return next(self._ids) % 2**31


@dataclass(eq=False)
class PendingSend:
    user_id: int
    port: int
    number: str  # as sent on the wire
    future: asyncio.Future[SmsResult]
    task_id: int | None = None


class Pending:
    def __init__(self) -> None:
        self._by_id: dict[int, PendingSend] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, user_id: int, port: int, number: str) -> PendingSend:
        future: asyncio.Future[SmsResult] = asyncio.get_running_loop().create_future()
        entry = PendingSend(user_id, port, number, future)
        self._by_id[user_id] = entry
        return entry

    def drop(self, user_id: int) -> None:
        self._by_id.pop(user_id, None)

    def user_ids(self) -> list[int]:
        return list(self._by_id)

    def resolve(self, result: SmsResult) -> bool:
        """True if the result is about a send still waiting; settles it when final."""
        entry = self._find(result)
        if entry is None:
            return False
        if result.status in NETWORK_DONE and not entry.future.done():
            entry.future.set_result(result)
        return True

    def _find(self, result: SmsResult) -> PendingSend | None:
        if result.user_id is not None:
            return self._by_id.get(result.user_id)
        # Pushed results of some firmware lack user_id; a port sends one of
        # ours at a time, so (port, number) is unambiguous among the pending.
        for entry in self._by_id.values():
            if entry.port == result.port and same_number(entry.number, result.number):
                return entry
        return None


@dataclass(eq=False)
class Tracked:
    """A sent message waiting for its delivery report(s)."""

    provider_ref: str
    user_id: int
    port: int
    number: str  # as sent on the wire
    destination: str  # E.164
    refs: tuple[int, ...]
    device_time: str
    sent_at: float
    delivered: set[int] = field(default_factory=set)
    settled: bool = False


class SentIndex:
    def __init__(self, window_s: float, max_entries: int = 50_000) -> None:
        self._window_s = window_s
        self._max = max_entries
        self._by_ref: dict[tuple[int, int], list[Tracked]] = {}
        self._by_id: OrderedDict[int, Tracked] = OrderedDict()
        self._order: deque[Tracked] = deque()

    def __len__(self) -> int:
        return len(self._by_id)

    def add(self, entry: Tracked) -> None:
        self._by_id[entry.user_id] = entry
        self._order.append(entry)
        for ref in entry.refs:
            bucket = self._by_ref.setdefault((entry.port, ref), [])
            bucket.insert(0, entry)
            del bucket[4:]  # a reference wraps after 256 sends on the port

    def by_user_id(self, user_id: int | None) -> Tracked | None:
        return None if user_id is None else self._by_id.get(user_id)

    def by_ref(self, port: int, ref: int, number: str) -> Tracked | None:
        for entry in self._by_ref.get((port, ref), ()):
            if same_number(entry.number, number):
                return entry
        return None

    def settle(self, entry: Tracked, ref: int | None, fate: Fate) -> Fate | None:
        """Apply one part's fate (ref None: the whole message's); return the
        message's, or None while parts are missing or once it was settled."""
        if entry.settled:
            return None
        if fate.delivered and ref is not None:
            entry.delivered.add(ref)
            if len(entry.delivered) < len(entry.refs):
                return None
        # Kept until it expires: the same report by push and by poll is
        # recognised and dropped rather than reported again.
        entry.settled = fate.final
        return fate

    def forget(self, entry: Tracked) -> None:
        if self._by_id.pop(entry.user_id, None) is None:
            return
        for ref in entry.refs:
            bucket = self._by_ref.get((entry.port, ref), [])
            if entry in bucket:
                bucket.remove(entry)
            if not bucket:
                self._by_ref.pop((entry.port, ref), None)

    def expire(self, now: float) -> None:
        while self._order and (now - self._order[0].sent_at > self._window_s
                               or len(self._by_id) > self._max):
            self.forget(self._order.popleft())
        while self._order and self._order[0].user_id not in self._by_id:
            self._order.popleft()

    def oldest_device_time(self) -> str | None:
        """When the oldest message still waiting for its report was sent."""
        for entry in self._order:
            if not entry.settled and entry.user_id in self._by_id:
                return entry.device_time
        return None


def part_refs(first_ref: int, count: int) -> tuple[int, ...]:
    # The result names the first part's reference; a port sends the parts
    # back to back, so the others follow it.
    return tuple((first_ref + i) % REF_MODULO for i in range(max(count, 1)))


class Seen:
    """A bounded set: the same report polled again is not reported again."""

    def __init__(self, size: int = 20_000) -> None:
        self._keys: OrderedDict[object, None] = OrderedDict()
        self._size = size

    def first(self, key: object) -> bool:
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self._size:
            self._keys.popitem(last=False)
        return True
