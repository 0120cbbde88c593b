"""Checks of a request that need no database (pure: values in, verdicts out).

What one request may create is bounded here: each tracked URL costs a link
row and a journey keeps it alive, so a megabyte of URLs must not become
tens of thousands of rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

from gateway.links import find_urls
from spool.base import NewMessage
from spool.storable import first_problem

MAX_LINKS_PER_MESSAGE = 10
# A full batch (1,000 messages) with two tracked links each.
MAX_LINKS_PER_REQUEST = 2000

Problem = tuple[str, str]  # (field, why)


def unstorable(prefix: str, values: Mapping[str, Any]) -> Problem | None:
    """The first text among `values` (strings or JSON values) that no
    backend can store, named `prefix + name` (`messages[3].agent`)."""
    for name, value in values.items():
        if value is not None and (found := first_problem(value, prefix + name)) is not None:
            return found
    return None


def link_count(message: str) -> int:
    """Short links a tracked message needs: one per distinct URL."""
    return len({message[start:end] for start, end in find_urls(message)})


def too_many_links(message: str) -> str | None:
    n = link_count(message)
    if n <= MAX_LINKS_PER_MESSAGE:
        return None
    return f"{n} links to track, more than the maximum {MAX_LINKS_PER_MESSAGE}"


def tracks_links(policy: Mapping[str, Any] | None) -> bool:
    return bool(policy) and policy.get("track_links") is True  # type: ignore[union-attr]


def too_many_in_request(rows: Sequence[NewMessage]) -> str | None:
    n = sum(len(r.journey.links) for r in rows if r.journey is not None)
    if n <= MAX_LINKS_PER_REQUEST:
        return None
    return f"{n} links to track, more than the maximum {MAX_LINKS_PER_REQUEST} per request"


def fingerprint(campaign: int, destination: str, message: str, priority: int | None, *,
                kind: str, agent: str | None, data: Any, smart: Any) -> str:
    """What makes two requests under one idempotency key the same request:
    everything the client chose, the destination as normalised (`098344484`
    and `+59898344484` are one number), the text before links are shortened
    (the codes are new each time)."""
    canonical = json.dumps([kind, campaign, destination, message, priority, agent, data, smart],
                           sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()[:32]
