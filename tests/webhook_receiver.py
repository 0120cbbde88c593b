"""A tenant's webhook endpoint for tests: a real aiohttp server on 127.0.0.1
that verifies signatures and can be down for a while. Registered as a pytest
plugin, so every test can ask for the `receiver` fixture."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web

from gateway.webhooks import verify

SECRET = "whsec_test_secret"


class Receiver:
    """A tenant's webhook endpoint that can be down for a while."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.bad_signatures = 0
        self.down = False
        self.hits = 0

    async def handle(self, request: web.Request) -> web.Response:
        self.hits += 1
        body = await request.read()
        if self.down:
            return web.Response(status=503)
        if not verify(SECRET, body, request.headers.get("X-Smsgw-Signature", ""),
                      now=time.time()):
            self.bad_signatures += 1
            return web.Response(status=400)
        event = json.loads(body)
        assert request.headers["X-Smsgw-Event-Id"] == event["id"]
        self.events.append(event)
        return web.Response(status=204)

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


@asynccontextmanager
async def serving(rec: Receiver) -> AsyncIterator[Receiver]:
    """`rec` answering POST /hook on a free loopback port (its `url`)."""
    app = web.Application()
    app.router.add_post("/hook", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/hook"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
async def receiver():
    async with serving(Receiver()) as rec:
        yield rec


