"""Running out of file descriptors (EMFILE): a state to ride out, not a crash.

When the process holds its open-file limit, every socket, file and database
connection it tries to open fails until some close. Nothing is wrong with
the task that hit it, so it logs once, waits a little and goes on; the
traceback would only repeat the same line thousands of times.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import time
from typing import Any

import structlog

log = structlog.get_logger("smsgw.fdlimit")

_OUT_OF_FILES = frozenset({errno.EMFILE, errno.ENFILE})
RETRY_S = 1.0  # how soon a task tries again: descriptors free up as connections close


def out_of_files(exc: BaseException | None) -> bool:
    """True when `exc`, or an error it was raised from, is EMFILE/ENFILE."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, OSError) and exc.errno in _OUT_OF_FILES:
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


class OnceLog:
    """Logs the first EMFILE of an episode and how many followed, not each."""

    def __init__(self, event: str, *, quiet_s: float = 60.0) -> None:
        self._event = event
        self._quiet_s = quiet_s
        self._last = -quiet_s
        self._since = 0

    def hit(self, **fields: Any) -> None:
        now = time.monotonic()
        self._since += 1
        if now - self._last >= self._quiet_s:
            log.warning(self._event, repeats=self._since - 1, retry_in_s=RETRY_S, **fields)
            self._last, self._since = now, 0


def limit() -> int:
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """asyncio's accept loop already survives EMFILE (it pauses a second and
    retries) but logs a traceback each time: say it once instead."""
    previous = loop.get_exception_handler()
    once = OnceLog("http.accept_out_of_files")

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if out_of_files(context.get("exception")):
            once.hit(open_file_limit=limit())
        elif previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
