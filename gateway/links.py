"""Short links: rewriting message text, unguessable codes, telling bots apart.

A code is 48 random bits from `secrets` (8 URL-safe characters), so codes
cannot be enumerated; the redirector only ever sends a visitor to a URL
stored under a code it issued, so it is never an open redirect.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable

from crawlerdetect import CrawlerDetect

CODE_BYTES = 6  # 48 bits

# http(s) URLs up to whitespace, a quote or a control character (no URL
# holds one, and none can go in a Location header); trailing sentence
# punctuation is not part of the URL ("visit https://x.example/a.").
_CONTROL = r"\x00-\x1f\x7f-\x9f\ud800-\udfff"  # C0, DEL, C1, lone surrogates
_URL = re.compile(r"https?://[^\s<>\"'\u00a0" + _CONTROL + "]+", re.IGNORECASE)
_UNSAFE = re.compile(f"[{_CONTROL}]")
_TRAILING = ".,;:!?)]}'\"»”’"

# Preview fetchers that the crawler list misses.
_EXTRA_BOTS = re.compile(r"Google-PageRenderer|GoogleMessages|iMessage|Applebot|"
                         r"WhatsApp|facebookexternalhit|Facebot|preview", re.IGNORECASE)


def new_code() -> str:
    return secrets.token_urlsafe(CODE_BYTES)


def find_urls(text: str) -> list[tuple[int, int]]:
    """(start, end) of every http(s) URL in `text`, trailing punctuation excluded."""
    spans = []
    for match in _URL.finditer(text):
        start, end = match.span()
        while end > start and text[end - 1] in _TRAILING:
            # Keep a closing bracket that belongs to the URL: ".../Foo_(bar)".
            if text[end - 1] == ")" and text[start:end].count("(") >= text[start:end].count(")"):
                break
            end -= 1
        spans.append((start, end))
    return spans


def redirectable(url: str) -> bool:
    """Whether `url` can be sent as a Location header. Links stored before
    `find_urls` stopped at control characters may hold one."""
    return _UNSAFE.search(url) is None


def rewrite(text: str, short_url: Callable[[str], str]) -> tuple[str, list[tuple[str, str]]]:
    """Replace each URL with `short_url(url)`; return the text and (url, short) pairs.

    The same URL twice in one message gets one code. Text outside URLs is
    left exactly as it was.
    """
    out, pairs, seen, last = [], [], {}, 0
    for start, end in find_urls(text):
        url = text[start:end]
        if url not in seen:
            seen[url] = short_url(url)
            pairs.append((url, seen[url]))
        out += [text[last:start], seen[url]]
        last = end
    out.append(text[last:])
    return "".join(out), pairs


class BotDetector:
    """Link-preview fetchers and crawlers: their visits are kept, not counted."""

    def __init__(self) -> None:
        self._detect = CrawlerDetect()

    def is_bot(self, user_agent: str | None, method: str) -> bool:
        if method == "HEAD":
            return True
        if not user_agent:
            return True  # browsers always send one; scanners often do not
        return bool(_EXTRA_BOTS.search(user_agent)) or bool(self._detect.isCrawler(user_agent))
