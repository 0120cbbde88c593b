"""Pieces the provider simulators share: a loopback aiohttp server, a script
of faults to answer with (errors, 429 + Retry-After, hangs), and a caller
for the gateway's webhooks that can stand in for a TLS-terminating reverse
proxy (sign with the public URL, deliver to the local one).

Used by `drivers.simulators.*` and by the generic HTTP driver's tests.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web


@dataclass(frozen=True)
class Fault:
    """One scripted answer. `hang_s` first; then `status` (None: answer normally)."""

    status: int | None = 500
    body: Any = None  # dict/list: JSON; str: text
    headers: Mapping[str, str] = field(default_factory=dict)
    hang_s: float = 0.0


class FaultScript:
    """Faults consumed one per request, in order; empty means behave."""

    def __init__(self) -> None:
        self._queue: deque[Fault] = deque()

    def add(self, fault: Fault, times: int = 1) -> None:
        self._queue.extend([fault] * times)

    def clear(self) -> None:
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)

    async def apply(self) -> web.Response | None:
        """The scripted response for this request, or None to answer normally."""
        if not self._queue:
            return None
        fault = self._queue.popleft()
        if fault.hang_s:
            await asyncio.sleep(fault.hang_s)
        if fault.status is None:
            return None
        if isinstance(fault.body, dict | list):
            return web.json_response(fault.body, status=fault.status, headers=fault.headers)
        return web.Response(status=fault.status, text=fault.body or "",
                            headers=fault.headers)


class LoopbackServer:
    """An aiohttp application served on 127.0.0.1 (port 0: any free one)."""

    def __init__(self, app: web.Application, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.app = app
        self._host = host
        self._port = port
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> str:
        # A short shutdown timeout: a scripted hang must not hold the test's teardown.
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        server: Any = site._server
        host, port = server.sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None


@dataclass(frozen=True)
class Delivery:
    url: str  # the URL as the provider signed it (public)
    status: int  # what the gateway answered; 0 when it could not be reached
    body: str


class Caller:
    """Calls the gateway's webhooks, like the provider's webhook sender does."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self._timeout_s = timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._routes: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self.deliveries: list[Delivery] = []

    def route(self, public_prefix: str, local_prefix: str) -> None:
        """Deliver calls for `public_prefix...` to `local_prefix...` (a reverse proxy)."""
        self._routes.append((public_prefix.rstrip("/"), local_prefix.rstrip("/")))

    def _local(self, url: str) -> str:
        for public, local in self._routes:
            if url.startswith(public):
                return local + url[len(public):]
        return url

    async def post(self, url: str, *, data: Any = None, body: bytes | None = None,
                   headers: Mapping[str, str] | None = None) -> Delivery:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        try:
            async with self._session.post(self._local(url), data=body if body is not None
                                          else data, headers=headers) as resp:
                got = Delivery(url, resp.status, await resp.text())
        except (aiohttp.ClientError, TimeoutError) as err:
            got = Delivery(url, 0, str(err))
        self.deliveries.append(got)
        return got

    async def get(self, url: str) -> Delivery:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self._timeout_s))
        async with self._session.get(self._local(url)) as resp:
            return Delivery(url, resp.status, await resp.text())

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> None:
        """Run a callback sequence in the background; close() cancels it."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self, timeout_s: float = 10.0) -> None:
        """Wait until every background callback sequence has finished."""
        if self._tasks:
            await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True),
                                   timeout_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None


class SimulatorServer:
    """What a provider simulator is from outside: a URL, start, close. The
    subclass builds `server` (its routes) and `caller` (its callbacks)."""

    server: LoopbackServer
    caller: Caller

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self) -> str:
        return await self.server.start()

    async def close(self) -> None:
        await self.caller.close()
        await self.server.close()


def dumps(payload: Any) -> bytes:
    # Compact like most providers; signatures are over these exact bytes.
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
