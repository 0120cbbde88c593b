"""One Dinstar gateway, shared by the channels of its ports.

It owns the HTTP client, the health of the device and of each port, the
sends waiting for their result, and the loops that ask the device what the
push may have missed: port status (which doubles as the reconnect probe,
with backoff), send results, delivery statuses and the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from aiohttp import web

from drivers import webio
from drivers.base import ChannelEvents, OutgoingMessage, PermanentError, SendReceipt, TransientError
from drivers.dinstar import wire
from drivers.dinstar.client import AuthRejected, DeviceUnreachable, DinstarClient
from drivers.dinstar.feed import Feed
from drivers.dinstar.options import DinstarOptions
from drivers.dinstar.state import DeviceState
from drivers.dinstar.tracking import Pending, PendingSend, SentIndex, Tracked, UserIds, part_refs
from drivers.dinstar.wire import ApiError, SmsResult

log = structlog.get_logger("smsgw.dinstar")

_CALL_FAILED = (DeviceUnreachable, AuthRejected, ApiError)


class DinstarDevice:
    def __init__(self, name: str, options: DinstarOptions, events: ChannelEvents, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.name = name
        self.ports = options.port_list
        self._opt = options
        self._clock = clock
        self._client = DinstarClient(options.base_url, options.username,
                                     options.password.get_secret_value(),
                                     timeout_s=options.request_timeout_s,
                                     verify_tls=options.verify_tls)
        self.state = DeviceState(self.ports, fail_limit=options.port_fail_limit,
                                 rest_s=options.port_rest_s, clock=clock)
        self._pending = Pending()
        self._index = SentIndex(options.dlr_window_s)
        self.feed = Feed(name, self.ports, events=events, pending=self._pending,
                         index=self._index, state=self.state,
                         number_prefix=options.number_prefix, clock=clock)
        self._ids = UserIds(clock)
        self._users = 0
        self._tasks: list[asyncio.Task[None]] = []
        self._results_wanted = asyncio.Event()
        self._probe_now = asyncio.Event()
        self._inbox_cursor: int | None = None

    # lifecycle ---------------------------------------------------------------
    async def acquire(self) -> None:
        """A port channel starts; the first one starts the device."""
        self._users += 1
        if self._users == 1:
            await self._client.open()
            self._spawn("status", self._status_loop)
            self._spawn("results", self._result_loop)
            if self._opt.dlr_poll_interval_s:
                self._spawn("reports", self._report_loop)
            if self._opt.inbound_poll_interval_s:
                self._spawn("inbox", self._inbox_loop)

    async def release(self) -> None:
        """A port channel closes; the last one stops the device."""
        self._users -= 1
        if self._users > 0:
            return
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._client.close()

    def _spawn(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        task = asyncio.get_running_loop().create_task(self._keep(what, loop),
                                                      name=f"dinstar:{self.name}:{what}")
        self._tasks.append(task)

    async def _keep(self, what: str, loop: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("dinstar.loop_crashed", device=self.name, loop=what,
                              restart_in_s=backoff)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    # calls -------------------------------------------------------------------
    async def _call(self, method: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """One request, with what it teaches about the device's health."""
        try:
            body = await method(*args)
        except DeviceUnreachable as err:
            self._lost(str(err))
            raise
        except AuthRejected as err:
            self._refused(str(err))
            raise
        except ApiError as err:
            if err.code in (403, None):  # refused, or HTML: the old API answers
                self._refused(f"{err}: enable Mobile > API > New Version on the device")
            else:  # it answered, if not what we hoped
                self._answered(None)
            raise
        self._answered(body)
        return body

    def _answered(self, body: Any) -> None:
        if not self.state.usable:
            log.info("dinstar.up", device=self.name, url=self._client.base_url)
        self.state.answered()
        if isinstance(body, dict) and body.get("sn"):
            self.state.sn = str(body["sn"])

    def _lost(self, error: str) -> None:
        if self.state.reachable is not False:
            log.warning("dinstar.down", device=self.name, error=error)
            self._probe_now.set()  # start the reconnect backoff now
        self.state.unreachable(error)

    def _refused(self, error: str) -> None:
        if not self.state.auth_failed:
            log.error("dinstar.refused", device=self.name, error=error)
        self.state.refused(error)

    # sending -----------------------------------------------------------------
    async def send(self, port: int, message: OutgoingMessage) -> SendReceipt:
        number = wire.wire_number(message.destination, self._opt.number_prefix)
        if number is None:
            raise PermanentError(f"the device cannot dial {message.destination!r}",
                                 code="invalid-number")
        if len(message.text.encode()) > wire.MAX_TEXT_BYTES:
            raise PermanentError("text over the device's 1500 bytes", code="dinstar-413")
        self._check(port)
        user_id = self._ids.next()
        # Registered before the request: a push may overtake the response.
        waiting = self._pending.add(user_id, port, number)
        try:
            accepted = await self._submit(port, number, user_id, message.text)
            waiting.task_id = accepted.task_id
            self._results_wanted.set()
            result = await self._await_result(waiting)
        finally:
            self._pending.drop(user_id)
        return self._receipt(waiting, message, result)

    def _check(self, port: int) -> None:
        if not self.state.usable:
            raise TransientError(self.state.error or "device not connected", code="device-down")
        if not self.state.ports[port].usable(self._clock()):
            raise TransientError(self.state.ports[port].problem or f"port {port} unavailable",
                                 code="port-down")

    async def _submit(self, port: int, number: str, user_id: int, text: str) -> wire.Accepted:
        body = wire.send_body(text, port, number, user_id, report=self._opt.delivery_reports,
                              encoding=wire.encoding_for(text, self._opt.encoding))
        try:
            return wire.parse_accepted(await self._call(self._client.post, wire.SEND_SMS, body))
        except (DeviceUnreachable, AuthRejected) as err:
            raise TransientError(str(err), code="device-down") from err
        except ApiError as err:
            raise self._refusal(port, err) from err

    def _refusal(self, port: int, err: ApiError) -> Exception:
        code = f"dinstar-{err.code}"
        if err.code in (400, 413):
            return PermanentError(f"the device refused the message: {err}", code=code)
        if err.code in (503, 550):
            self.state.rest(port, f"port {port}: {err}")
        else:
            self.state.send_failed(port, f"port {port}: {err}")
        return TransientError(f"port {port}: {err}", code=code)

    async def _await_result(self, waiting: PendingSend) -> SmsResult:
        port, limit = waiting.port, self._opt.result_timeout_s
        try:
            async with asyncio.timeout(limit):
                result = await waiting.future
        except TimeoutError:
            # It may still go out; stopping the task makes a duplicate less likely.
            await self._stop_task(waiting.task_id)
            self.state.send_failed(port, f"port {port}: no result within {limit:g}s")
            raise TransientError(f"port {port}: no result within {limit:g}s",
                                 code="result-timeout") from None
        if result.status == "FAILED":
            error = (f"port {port}: the network did not take the SMS (FAILED, "
                     f"{result.succ_count}/{result.count} parts sent)")
            self.state.send_failed(port, error)
            raise TransientError(error, code="dinstar-failed")
        return result

    async def _stop_task(self, task_id: int | None) -> None:
        if task_id is None:
            return
        with contextlib.suppress(*_CALL_FAILED):
            await self._call(self._client.get, wire.STOP_SMS, {"task_id": str(task_id)})

    def _receipt(self, waiting: PendingSend, message: OutgoingMessage,
                 result: SmsResult) -> SendReceipt:
        self.state.sent_ok(waiting.port)
        ref = str(waiting.user_id)
        delivered = result.status == "DELIVERED"
        refs = () if result.ref_id is None or not self._opt.delivery_reports else part_refs(
            result.ref_id, result.count)
        if refs and not delivered:
            self.feed.track(Tracked(
                ref, waiting.user_id, waiting.port, waiting.number, message.destination, refs,
                result.time or wire.device_time(self._clock()), self._clock()))
        return SendReceipt(provider_ref=ref, parts=max(result.count, 1),
                           part_refs=tuple(str(r) for r in refs), delivered=delivered)

    # push --------------------------------------------------------------------
    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        if not self._push_allowed(request, subpath):
            return web.json_response({"error_code": 403}, status=403)
        try:
            push = wire.parse_push(webio.loads(await request.read()))
        except ValueError as err:  # webio.BadBody is one
            log.info("dinstar.push_refused", device=self.name, error=str(err))
            return web.json_response({"error_code": 400}, status=400)
        await self.feed.results(push.results)
        await self.feed.deliveries(push.deliveries)
        await self.feed.incoming(push.incoming)
        return web.json_response({"error_code": 200})

    @property
    def hook_auth_missing(self) -> str | None:
        # The device signs nothing; a secret in the configured push URL is
        # the only proof it is the device calling.
        return None if self._opt.push_token is not None else "push_token"

    def _push_allowed(self, request: web.Request, subpath: str) -> bool:
        if self._opt.push_token is None:  # the gateway restricts who may call
            return True
        given = subpath.strip("/") or request.query.get("token", "")
        return webio.same_secret(given, self._opt.push_token.get_secret_value())

    # loops -------------------------------------------------------------------
    async def _status_loop(self) -> None:
        backoff = 1.0
        while True:
            if await self._probe():
                backoff, wait = 1.0, self._opt.status_poll_interval_s
            else:
                wait, backoff = backoff, min(backoff * 2, self._opt.reconnect_max_s)
            self._probe_now.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._probe_now.wait()

    async def _probe(self) -> bool:
        query = {"port": ",".join(map(str, self.ports)), "info_type": "type,imsi,number,reg,signal"}
        try:
            infos = wire.parse_port_info(await self._call(self._client.get, wire.PORT_INFO, query))
        except (DeviceUnreachable, AuthRejected):
            return False
        except ApiError as err:
            # Firmware without get_port_info still answered: health then
            # comes from send results alone.
            return err.code not in (403, None)
        self.state.port_info(infos)
        return True

    async def _result_loop(self) -> None:
        pause = self._opt.result_poll_interval_ms / 1000
        while True:
            await self._results_wanted.wait()
            await asyncio.sleep(pause)
            ids = self._pending.user_ids()
            if not ids:
                self._results_wanted.clear()
                continue
            if not self.state.usable:
                continue
            for start in range(0, len(ids), wire.MAX_QUERY_IDS):
                chunk = ids[start:start + wire.MAX_QUERY_IDS]
                with contextlib.suppress(*_CALL_FAILED):
                    body = await self._call(self._client.post, wire.QUERY_RESULT,
                                            {"user_id": chunk})
                    await self.feed.results(wire.parse_results(body))

    async def _report_loop(self) -> None:
        restarted = True  # the first poll also looks for sends before a restart
        while True:
            await asyncio.sleep(self._opt.dlr_poll_interval_s)
            now = self._clock()
            self._index.expire(now)
            oldest = self._index.oldest_device_time()
            if not self.state.usable or (oldest is None and not restarted):
                continue
            # `time_after` compares whole seconds of the send time.
            since = (wire.parse_device_time(oldest) or 0.0) - 1 if oldest else 0.0
            since = max(since, now - self._opt.dlr_poll_lookback_s)
            query = {"port": list(self.ports), "time_after": wire.device_time(since)}
            with contextlib.suppress(*_CALL_FAILED):
                body = await self._call(self._client.post, wire.QUERY_DELIVER, query)
                await self.feed.deliveries(wire.parse_deliveries(body))
                restarted = False

    async def _inbox_loop(self) -> None:
        while True:
            if self.state.usable:
                with contextlib.suppress(*_CALL_FAILED):
                    await self._read_inbox()
            await asyncio.sleep(self._opt.inbound_poll_interval_s)

    async def _read_inbox(self) -> None:
        # An incremental cursor: only messages with a larger id come back.
        query = {"incoming_sms_id": self._inbox_cursor or 0, "flag": "all",
                 "port": list(self.ports)}
        messages = wire.parse_incoming(
            await self._call(self._client.post, wire.QUERY_INCOMING, query))
        ids = [m.incoming_sms_id for m in messages if m.incoming_sms_id is not None]
        if self._inbox_cursor is None:
            # First read since start: the inbox's history is not news.
            oldest = self._clock() - self._opt.inbound_backlog_s
            messages = [m for m in messages
                        if (wire.parse_device_time(m.timestamp) or oldest) >= oldest]
        await self.feed.incoming(messages)
        # Moved only once stored: a failed hand-over is read again (and deduplicated).
        self._inbox_cursor = max([self._inbox_cursor or 0, *ids])
