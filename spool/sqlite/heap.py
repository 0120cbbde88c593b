"""How much memory the SQLite library holds (page caches, statements, schema).

SQLite allocates outside Python's allocator, so neither tracemalloc nor the
interpreter sees it; `sqlite3_memory_used()` does. It is read from the very
library the `sqlite3` module is linked against, found in this process's
memory map: loading "libsqlite3.so" by name could give a second copy whose
counters say 0. When the module carries SQLite statically there is no such
library to ask, and the figure is unknown (None).
"""

from __future__ import annotations

import ctypes
import functools
import sqlite3  # noqa: F401  (maps the library this process really uses)
from collections.abc import Callable


def heap_bytes() -> int | None:
    """Bytes the SQLite library has allocated now, or None when unknown."""
    used = _memory_used()
    return None if used is None else int(used())


@functools.cache
def _memory_used() -> Callable[[], int] | None:
    path = _mapped_library()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)  # already loaded: the same handle, not a copy
        fn = lib.sqlite3_memory_used
    except (OSError, AttributeError):
        return None
    fn.restype = ctypes.c_int64
    fn.argtypes = []
    return fn


def _mapped_library() -> str | None:
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.rstrip("\n").partition("/")[2]
                if path and "libsqlite3.so" in path.rsplit("/", 1)[-1]:
                    return "/" + path
    except OSError:
        pass
    return None
