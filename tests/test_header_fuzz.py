"""Random bytes in every header the daemon reads, on every kind of door.

Seeded and bounded: the same 1,200 requests on every run (set
SMSGW_HEADER_FUZZ_SEED=random, or a number, to explore; _COUNT to send
more). Values are what no polite client sends: bytes that are not UTF-8,
valid UTF-8 that is not ASCII, control characters, 9,000-byte values, and
near-misses of real ones (a Bearer token, a session cookie, a charset).

Asserted of every answer: no 5xx (not even a JSON 500 from the last-resort
middleware: that would be a bug hidden, not handled); every error is JSON
(the short-link pages are HTML for people, by design), also when aiohttp's
HTTP parser refuses a request before routing (a NUL in a header, a header
over 8 KB: `HTTP/1.0 400`, counted apart). Storage plays no part in header
handling, so this runs on SQLite only.
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import pytest

from drivers.simulators.dinstar import DinstarSimulator
from tests import rawhttp
from tests.conftest import Running
from tests.doors import DLR_SECRET, PUSH_TOKEN, every_door

SEED = os.environ.get("SMSGW_HEADER_FUZZ_SEED", "20261205")
COUNT = int(os.environ.get("SMSGW_HEADER_FUZZ_COUNT", "1200"))
AT_ONCE = 8

FORM = b"application/x-www-form-urlencoded"
JSON = b"application/json"
# (method, target, headers it needs to reach its handler, body)
ROUTES: list[tuple[str, bytes, list[tuple[bytes, bytes]], bytes]] = [
    ("GET", b"/api/v1/messages", [], b""),
    ("POST", b"/api/v1/messages", [(b"Content-Type", JSON)],
     b'{"destination": "098344484", "message": "hola", "idempotency_key": "k1"}'),
    ("GET", b"/api/v1/stats", [], b""),
    ("GET", b"/api/v1/reports/daily", [], b""),
    ("POST", b"/api/v1/campaigns", [(b"Content-Type", JSON)], b'{"name": "fuzz"}'),
    ("POST", b"/Integra/resources/SMS/SendSMS", [(b"Content-Type", FORM)],
     b"destination=098344484&message=hola"),
    ("POST", b"/dashboard/login", [(b"Content-Type", JSON)],
     b'{"user": "admin", "password": "nope"}'),
    ("GET", b"/dashboard/session", [], b""),
    ("POST", b"/dashboard/logout", [], b""),
    ("GET", b"/metrics", [], b""),
    ("GET", b"/healthz", [], b""),
    ("GET", b"/readyz", [], b""),
    ("GET", b"/", [], b""),
    ("GET", b"/r/abcdefgh", [], b""),
    ("POST", b"/hooks/twilio/status", [(b"Content-Type", FORM)],
     b"MessageSid=SM1&MessageStatus=delivered"),
    ("POST", b"/hooks/twilio/inbound", [(b"Content-Type", FORM)],
     b"MessageSid=SM2&From=%2B59898344484&To=%2B15005550006&Body=hola"),
    ("GET", b"/hooks/whatsapp?hub.mode=subscribe&hub.challenge=1&hub.verify_token=x", [], b""),
    ("POST", b"/hooks/whatsapp", [(b"Content-Type", JSON)], b'{"object": "x"}'),
    ("POST", b"/hooks/infobip/dlr?token=" + DLR_SECRET.encode(), [(b"Content-Type", JSON)],
     b'{"results": [{"messageId": "1", "status": {"name": "DELIVERED_TO_HANDSET"}}]}'),
    ("POST", b"/hooks/dinstar-a/" + PUSH_TOKEN.encode(), [(b"Content-Type", JSON)],
     b'{"sn": "x", "sms": []}'),
]
HEADERS = [b"X-Api-Key", b"Authorization", b"Cookie", b"X-Twilio-Signature",
           b"X-Twilio-Webhooks-Signature-Settings", b"X-Hub-Signature-256", b"X-Forwarded-For",
           b"Forwarded", b"X-Real-IP", b"Host", b"Content-Type", b"Origin", b"X-CSRF-Token",
           b"User-Agent", b"Idempotency-Key", b"Accept", b"Accept-Encoding", b"Accept-Charset"]
# Real shapes to mutate, so the fuzz gets past the first `if`.
NEAR = [b"Bearer ", b"smsgw_session=", b"sgw_", b"sha256=", b"application/json; charset=",
        b"application/x-www-form-urlencoded; charset=", b"multipart/form-data; boundary=",
        b"for=", b"for=\"[", b"127.0.0.1, ", b"http://", b"key=k,algorithm=", b"127.0.0.1:"]


_VALUE_BYTES = [9, *range(0x20, 0x7F), *range(0x80, 0x100)]


def value(rng: random.Random) -> bytes:
    kind = rng.randrange(6)
    if kind == 0:  # any byte a header value may carry: tab, visible ASCII, obs-text
        raw = bytes(rng.choice(_VALUE_BYTES) for _ in range(rng.randrange(40)))
    elif kind == 1:  # not UTF-8
        raw = bytes(rng.randrange(0x80, 0x100) for _ in range(rng.randrange(1, 20)))
    elif kind == 2:  # UTF-8, not ASCII; surrogates encoded as UTF-8 would be
        raw = "".join(chr(rng.choice([0xE9, 0x1F600, 0x202E, 0xFEFF, 0x85, 0x2028]))
                      for _ in range(rng.randrange(1, 10))).encode()
        raw += rng.choice([b"", b"\xed\xa0\x80"])
    elif kind == 3:  # control characters aiohttp lets through (tab) and refuses
        raw = bytes(rng.choice([0, 1, 9, 11, 27, 127]) for _ in range(rng.randrange(1, 6)))
    elif kind == 4:  # long: over aiohttp's 8 KB per header, or just under
        raw = b"a" * rng.choice([300, 4000, 8100, 9000])
    else:
        raw = b""
    return rng.choice(NEAR) + raw if rng.random() < 0.5 else raw


def case(rng: random.Random, key: str) -> bytes:
    method, target, needed, body = rng.choice(ROUTES)
    headers = list(needed)
    if rng.random() < 0.5:
        headers.append((b"X-Api-Key", key.encode()))
    for name in rng.sample(HEADERS, rng.randrange(1, 4)):
        headers = [(n, v) for n, v in headers if n.lower() != name.lower()]
        headers.append((name, value(rng)))
    return rawhttp.build(method, target, headers, body)


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_random_header_bytes_never_get_a_5xx_and_errors_are_json(
        make_gateway, dinstar: DinstarSimulator, backend: str) -> None:
    gw: Running = await every_door(make_gateway, dinstar.url)
    rng = random.Random(None if SEED == "random" else int(SEED))
    requests = [case(rng, gw.key) for _ in range(COUNT)]
    seen: Counter[str] = Counter()
    bad: list[str] = []
    for start in range(0, len(requests), AT_ONCE):
        batch = requests[start:start + AT_ONCE]
        replies = await asyncio.gather(*(rawhttp.send(gw.url, raw) for raw in batch))
        for raw, reply in zip(batch, replies, strict=True):
            verdict = judge(raw, reply)
            seen[verdict] += 1
            if verdict.startswith("bad"):
                bad.append(f"{verdict}: {raw[:300]!r} -> {reply.status} {reply.body[:200]!r}")
    assert not bad, f"{len(bad)} bad answers, e.g.:\n" + "\n".join(bad[:10])
    # The fuzz reached the handlers, not only aiohttp's parser.
    assert seen["app"] > COUNT // 2, seen
    assert seen["parser"] > 0, seen  # and aiohttp's own refusals were judged too


def judge(raw: bytes, reply: rawhttp.Reply) -> str:
    if reply.status >= 500:
        return "bad: 5xx"
    if reply.version == b"HTTP/1.0" and reply.status == 400:
        # refused before any handler ran: still JSON, with our Server header
        return "parser" if reply.is_json else "bad: parser refusal not JSON"
    html_pages = raw.startswith((b"GET /r/", b"GET / "))
    if reply.status >= 400 and not reply.is_json and not html_pages:
        return "bad: error not JSON"
    return "app"
