"""The listening socket's defences against slow and idle clients.

aiohttp closes an idle keep-alive connection (`keepalive_timeout`) but has
no deadline for a request's headers or body, and no cap on connections: a
few hundred sockets that send one byte a minute hold as many file
descriptors for ever. Here each connection is a `GuardedHandler` (aiohttp's
own protocol plus two deadlines) and a `ConnectionGuard` caps how many
there are:

- headers: from the first byte of a request, `header_timeout_s` to finish them;
- body: from the end of the headers, `body_timeout_s` to finish sending it;
- at `max_connections` the oldest connection that is idle or still sending
  its request is closed to make room; one whose request is being answered
  is never touched, and a new connection is refused only when all are.

aiohttp's own refusals (a malformed request line, headers too long) answer
JSON here too, with one log line instead of a traceback.
"""

from __future__ import annotations

import asyncio
import enum
import secrets
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from typing import Any

import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod

from gateway.api.hosts import SERVER
from gateway.api.http import Handler
from gateway.edge import fdlimit
from gateway.settings import ServerSettings

log = structlog.get_logger("smsgw.http")

# Descriptors the daemon needs besides client connections: the database,
# channels, webhook deliveries, the spool folder, logs.
_RESERVED_FDS = 64


class _Phase(enum.Enum):
    IDLE = "idle"  # between requests (aiohttp's keepalive_timeout applies)
    HEADERS = "headers"  # a request has begun and its headers are not all in
    BODY = "body"  # the handler runs; the body may still be arriving
    BUSY = "busy"  # the handler runs on a complete request


class ConnectionGuard:
    """Every open connection, oldest first; the cap and the deadlines."""

    def __init__(self, settings: ServerSettings, *, report_every_s: float = 10.0) -> None:
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self.max_connections = settings.max_connections
        self._live: OrderedDict[GuardedHandler, None] = OrderedDict()
        self._shed: Counter[str] = Counter()
        self._report_every_s = report_every_s
        self._reported_at = 0.0

    def __len__(self) -> int:
        return len(self._live)

    def opened(self, handler: GuardedHandler) -> bool:
        """Admit a new connection (making room if needed); False: refused."""
        if len(self._live) >= self.max_connections:
            victim = next((h for h in self._live if h.evictable()), None)
            if victim is None:
                self.shed("refused")
                return False
            self._live.pop(victim)
            victim.force_close()
            self.shed("evicted")
        self._live[handler] = None
        return True

    def closed(self, handler: GuardedHandler) -> None:
        self._live.pop(handler, None)

    def shed(self, why: str) -> None:
        # Under attack this happens thousands of times: one line per period.
        self._shed[why] += 1
        now = time.monotonic()
        if now - self._reported_at >= self._report_every_s:
            log.warning("http.connections_shed", open=len(self._live),
                        max_connections=self.max_connections, **self._shed)
            self._shed.clear()
            self._reported_at = now


class GuardedHandler(web.RequestHandler):
    __slots__ = ("_guard", "_phase", "_deadline", "_request")

    def __init__(self, manager: web.Server, guard: ConnectionGuard, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._guard = guard
        self._phase = _Phase.IDLE
        self._deadline: asyncio.TimerHandle | None = None
        self._request: web.BaseRequest | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if not self._guard.opened(self):
            self.force_close()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self._request = None
        self._guard.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._phase is _Phase.IDLE and data:
            self._phase = _Phase.HEADERS
            self._arm(self._guard.header_timeout_s)
        super().data_received(data)

    def request_started(self, request: web.BaseRequest) -> None:
        self._disarm()
        if request.body_exists and not request.content.is_eof():
            self._phase, self._request = _Phase.BODY, request
            self._arm(self._guard.body_timeout_s)
        else:
            self._phase = _Phase.BUSY

    def request_finished(self) -> None:
        self._disarm()
        self._phase, self._request = _Phase.IDLE, None

    def evictable(self) -> bool:
        return self._phase in (_Phase.IDLE, _Phase.HEADERS) or self._sending_body()

    def _sending_body(self) -> bool:
        return (self._phase is _Phase.BODY and self._request is not None
                and not self._request.content.is_eof())

    def _arm(self, after_s: float) -> None:
        self._deadline = asyncio.get_running_loop().call_later(after_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self._phase is _Phase.HEADERS or self._sending_body():
            self._guard.shed(f"{self._phase.value}_timeout")
            self.force_close()

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None, message: str | None = None
                     ) -> web.StreamResponse:
        # aiohttp's refusals before any handler runs (bad request line, bad
        # or oversized headers): JSON like every other answer, one log line.
        if status >= 500:
            incident = secrets.token_hex(8)
            log.error("http.internal_error", id=incident, error=repr(exc)[:300])
            body: dict[str, str] = {"error": "internal error", "id": incident}
        else:
            level = log.debug if isinstance(exc, BadHttpMethod) else log.info
            level("http.bad_request", status=status, error=(message or repr(exc))[:200])
            first = (message or "").strip().splitlines()[:1]
            body = {"error": "malformed request" + (f": {first[0][:200]}" if first else "")}
        if request.writer.output_size > 0:
            raise ConnectionError("the response had begun; the connection is dropped")
        response = web.json_response(body, status=status, headers={"Server": SERVER})
        response.force_close()
        return response


def factory(server: web.Server, guard: ConnectionGuard, handler_args: dict[str, Any]
            ) -> Callable[[], GuardedHandler]:
    loop = asyncio.get_running_loop()
    return lambda: GuardedHandler(server, guard, loop=loop, **handler_args)


@web.middleware
async def deadlines(request: web.Request, handler: Handler) -> web.StreamResponse:
    protocol = request.protocol
    if not isinstance(protocol, GuardedHandler):  # an app served another way (tests)
        return await handler(request)
    protocol.request_started(request)
    try:
        return await handler(request)
    finally:
        protocol.request_finished()


class GuardedSite(web.BaseSite):
    """A TCP site whose connections are `GuardedHandler`s under one guard."""

    __slots__ = ("_host", "_port", "_make")

    def __init__(self, runner: web.AppRunner, host: str, port: int,
                 make: Callable[[], GuardedHandler], *, backlog: int = 1024) -> None:
        super().__init__(runner, backlog=backlog)
        self._host, self._port, self._make = host, port, make

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        self._server = await asyncio.get_running_loop().create_server(
            self._make, self._host, self._port, backlog=self._backlog, reuse_address=True)


async def serve(app: web.Application, settings: ServerSettings, *, shutdown_timeout_s: float
                ) -> tuple[web.AppRunner, list[tuple[str, int]]]:
    """Listen on `settings.host:port`; the runner and the addresses bound."""
    handler_args: dict[str, Any] = {"access_log": None,
                                    "keepalive_timeout": settings.keepalive_timeout_s}
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=shutdown_timeout_s,
                           **handler_args)
    await runner.setup()
    assert runner.server is not None
    if settings.max_connections + _RESERVED_FDS > fdlimit.limit():
        log.warning("http.max_connections_above_file_limit",
                    max_connections=settings.max_connections, open_file_limit=fdlimit.limit(),
                    fix="raise LimitNOFILE (ulimit -n) or lower server.max_connections")
    fdlimit.quiet_accept_errors(asyncio.get_running_loop())
    make = factory(runner.server, ConnectionGuard(settings), handler_args)
    site = GuardedSite(runner, settings.host, settings.port, make)
    await site.start()
    server: Any = site._server
    bound = [sock.getsockname()[:2] for sock in (server.sockets if server else [])]
    return runner, bound
