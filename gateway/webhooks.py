"""Tenant webhooks: events from the outbox, signed, delivered at least once.

Each event is POSTed as JSON `{"id", "type", "created_at", "data"}` with
`X-Smsgw-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` under the
tenant's secret. 2xx means done; anything else is retried with exponential
backoff for up to 24 hours. A retry carries the same event id, which is how a
receiver drops duplicates. A webhook URL is checked (http or https to a
host) before anything stores it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import structlog

from gateway.settings import WebhookSettings
from spool.base import OutboxEvent, Store

log = structlog.get_logger("smsgw.webhooks")


class BadWebhookUrl(ValueError):
    """The URL cannot be a webhook target; nothing should be stored."""


def check_webhook_url(url: str) -> str:
    """`url` unchanged when it is usable; else BadWebhookUrl saying why."""
    if len(url) > 2000 or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise BadWebhookUrl("webhook url must be one line under 2000 characters, no spaces")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # port: ValueError when not a number
    except ValueError as err:
        raise BadWebhookUrl(f"webhook url is malformed: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise BadWebhookUrl(f"webhook url must be http(s), not {parts.scheme!r}")
    if not host:
        raise BadWebhookUrl("webhook url needs a host")
    return url


def sign(secret: str, body: bytes, timestamp: int) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, body: bytes, header: str, *, now: float, tolerance_s: float = 300
           ) -> bool:
    """What a receiver does (and what tests use): constant-time, with replay window."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        stamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    if abs(now - stamp) > tolerance_s:
        return False
    expected = sign(secret, body, stamp).split("v1=", 1)[1]
    return hmac.compare_digest(expected, fields.get("v1", ""))


def backoff_s(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    # base, 2x, 4x ... capped (an hour by default), with jitter so a receiver
    # coming back is not hit by every event at the same instant.
    return min(max_s, base_s * 2 ** min(attempts, 30)) * rng.uniform(0.75, 1.0)


class WebhookSender:
    def __init__(self, store: Store, settings: WebhookSettings, *,
                 clock: Callable[[], float] = time.time,
                 session: aiohttp.ClientSession | None = None, poll_s: float = 0.2) -> None:
        self._store = store
        self._cfg = settings
        self._clock = clock
        self._session = session
        self._timeout = aiohttp.ClientTimeout(total=settings.timeout_s)
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._poll_s = poll_s
        self._rng = random.Random()
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        own = self._session is None
        session = self._session or aiohttp.ClientSession()
        try:
            while True:
                events = await self._store.claim_webhooks(self._clock(), 100, lease_s=60)
                if events:
                    await asyncio.gather(*(self._deliver(session, e) for e in events))
                    continue
                try:
                    async with asyncio.timeout(self._poll_s):
                        await self._wake.wait()
                except TimeoutError:
                    pass
                self._wake.clear()
        finally:
            if own:
                await session.close()

    async def _deliver(self, session: aiohttp.ClientSession, event: OutboxEvent) -> None:
        target = await self._store.webhook_target(event.tenant)
        if target is None:
            await self._store.webhook_failed(event.id, "tenant has no webhook_url", None)
            return
        url, secret = target
        body = self.body(event)
        headers = {"Content-Type": "application/json", "X-Smsgw-Event-Id": event.event_id,
                   # The receiver checks this against its own clock: wall time,
                   # whatever clock schedules the retries.
                   "X-Smsgw-Signature": sign(secret, body, int(time.time()))}
        async with self._slots:
            error = await self._post(session, url, body, headers)
        now = self._clock()
        if error is None:
            await self._store.webhook_delivered(event.id, now)
            log.info("webhook.delivered", event_id=event.event_id, type=event.type,
                     tenant=event.tenant, attempts=event.attempts + 1)
            return
        retry_at = now + backoff_s(event.attempts, self._cfg.retry_base_s,
                                   self._cfg.retry_max_s, self._rng)
        give_up = retry_at - event.created_at > self._cfg.give_up_after_s
        await self._store.webhook_failed(event.id, error, None if give_up else retry_at)
        log.warning("webhook.failed", event_id=event.event_id, tenant=event.tenant, error=error,
                    attempts=event.attempts + 1, gave_up=give_up)

    async def _post(self, session: aiohttp.ClientSession, url: str, body: bytes,
                    headers: dict[str, str]) -> str | None:
        try:
            async with session.post(url, data=body, headers=headers, timeout=self._timeout,
                                    allow_redirects=False) as resp:
                if 200 <= resp.status < 300:
                    return None
                return f"HTTP {resp.status}"
        except (aiohttp.ClientError, TimeoutError) as err:
            return f"{type(err).__name__}: {err}"[:300]

    @staticmethod
    def body(event: OutboxEvent) -> bytes:
        return json.dumps({"id": event.event_id, "type": event.type,
                           "created_at": event.created_at,
                           "data": json.loads(event.payload)}, separators=(",", ":")).encode()
