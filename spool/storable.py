"""Text that every backend can store.

JSON's `\\ud800` escape and a shell's undecodable argument both give Python a
lone UTF-16 surrogate, which neither SQLite's nor PostgreSQL's driver can
encode; PostgreSQL's `text` also refuses NUL. Such a value must be turned
away at the door with its field named: inside a shared transaction it would
fail every row written with it.
"""

from __future__ import annotations

import math
import re
from typing import Any

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def problem(text: str) -> str | None:
    """Why `text` cannot be stored, or None when it can."""
    found = _UNSTORABLE.search(text)
    if found is None:
        return None
    char = found.group()
    what = "a NUL character" if char == "\x00" else "a lone UTF-16 surrogate"
    return f"contains {what} (U+{ord(char):04X}) at position {found.start()}"


def first_problem(value: Any, where: str) -> tuple[str, str] | None:
    """(field, why) for the first unstorable string, or NaN/Infinity, in a
    JSON value, keys included; `where` names the value (`data` ->
    `data.name[2]`). Iterative: a deeply nested value must not exhaust the
    stack."""
    stack: list[tuple[Any, str]] = [(value, where)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, str):
            if (why := problem(item)) is not None:
                return at, why
        elif isinstance(item, float) and not math.isfinite(item):
            return at, "is not a finite number (JSON has no NaN or Infinity)"
        elif isinstance(item, dict):
            for key, inner in reversed(item.items()):
                if isinstance(key, str) and (why := problem(key)) is not None:
                    return at, f"a key {why}"
                stack.append((inner, f"{at}.{key}"))
        elif isinstance(item, list):
            stack.extend((inner, f"{at}[{i}]") for i, inner in reversed(list(enumerate(item))))
    return None
