"""Whether the store can write, as its own writes have shown lately.

Readiness asks this instead of writing on every poll: the daemon's writes
(intake, results, claims) are the evidence. After a failed one (full disk,
locked file, database away or read-only) the store is not ready until a
write succeeds and none has failed for `hold_s`: on a nearly full disk
small writes may still fit (SQLite reuses the WAL space a failed
transaction took) while batches do not, and readiness must not flap with
each. Only a write that changed something counts as a success: on SQLite an
empty transaction commits without touching the disk, even a full one. When
the evidence is older than `probe_after_s` (an idle daemon, or one whose
writes all stopped), readiness writes a probe first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from spool.base import StoreError

PROBE_AFTER_S = 5.0
HOLD_S = 5.0


class WriteHealth:
    def __init__(self, *, probe_after_s: float = PROBE_AFTER_S, hold_s: float = HOLD_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._probe_after_s = probe_after_s
        self._hold_s = hold_s
        self._clock = clock
        self._ok_at = -math.inf
        self._failed_at: float | None = None
        self._probed_at = -math.inf
        self._error = ""

    def ok(self) -> None:
        self._ok_at = self._clock()

    def failed(self, error: str) -> None:
        self._failed_at = self._clock()
        self._error = error

    def probe_due(self) -> bool:
        """True, once per `probe_after_s`, when nothing newer says how writes go."""
        now = self._clock()
        newest = max(self._ok_at, self._failed_at or -math.inf, self._probed_at)
        if now - newest < self._probe_after_s:
            return False
        self._probed_at = now  # a second caller meanwhile waits for this probe's verdict
        return True

    def check(self) -> None:
        """Raise StoreError, naming the last failure, while writes are failing."""
        if self._failed_at is None:
            return
        age_s = self._clock() - self._failed_at
        if self._failed_at >= self._ok_at or age_s < self._hold_s:
            raise StoreError(f"a write failed {age_s:.0f} s ago: {self._error}")
