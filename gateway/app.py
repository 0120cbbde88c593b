"""Assembly and lifecycle of the daemon.

`App.run()` enters the components through an AsyncExitStack (they close in
reverse order), runs the long-lived loops under a supervisor that restarts
them with backoff, and waits on a stop event that signal handlers only set.
On stop it drains in bounded stages: stop intake and claiming, give sends
in flight `shutdown_grace_s`, return what is left to the spool, close
channels, then the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass

import structlog
from aiohttp import web

from drivers.base import Channel, ChannelEvents, SharedHook, WebhookChannel
from drivers.registry import DRIVERS
from gateway.api import connections
from gateway.api.http import build_app
from gateway.auth import Authenticator, OpenNetworks, RateLimiter
from gateway.campaigns import CampaignBook
from gateway.clicks import ClickRecorder, LinkCache, MissLimiter
from gateway.dispatcher import Dispatcher
from gateway.edge import fdlimit
from gateway.edge.hooks import served_hooks
from gateway.fallback import FallbackWorker
from gateway.importer import SpoolFolderImporter
from gateway.inbound import InboundHandler
from gateway.inbound.attribution import resolve_bindings
from gateway.intake import Intake
from gateway.journeys import JourneyScheduler, Planner
from gateway.metrics import Metrics
from gateway.monitor import Monitor
from gateway.recorder import Recorder
from gateway.router import ChannelRunner, Router
from gateway.sdnotify import Notifier, watchdog_loop
from gateway.services import Services
from gateway.settings import Settings
from gateway.webhooks import WebhookSender
from spool import open_store
from spool.base import Store, StoreError

log = structlog.get_logger("smsgw.app")


class App:
    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.time,
                 notifier: Notifier | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.notifier = notifier or Notifier()
        self.store: Store = open_store(settings.storage.url,
                                       synchronous=settings.storage.synchronous,
                                       busy_timeout_ms=settings.storage.busy_timeout_ms,
                                       pool_size=settings.storage.pool_size)
        self.events = ChannelEvents()
        self.channels: list[tuple[Channel, int]] = []
        self._hooks: dict[str, WebhookChannel] = {}
        self.services: Services | None = None
        self.bound: list[tuple[str, int]] = []  # where the HTTP server listens
        self.started = asyncio.Event()

    def _build_channels(self) -> list[tuple[Channel, int]]:
        built = []
        for index, (cfg, options) in enumerate(zip(self.settings.channels,
                                                   self.settings.driver_options, strict=True)):
            spec = DRIVERS[cfg.driver]
            built += [(ch, index) for ch in spec.build(cfg.name, options, self.events)]
        everyone = [ch for ch, _ in built]
        for channel in everyone:
            if isinstance(channel, SharedHook):  # e.g. the numbers of one Meta app
                channel.meet(everyone)
        return built

    async def run(self, stop: asyncio.Event) -> None:
        async with AsyncExitStack() as stack:
            # Before anything opens: a hook left open unsaid refuses the start.
            self.channels = self._build_channels()
            self._hooks = served_hooks(self.channels, self.settings.channels)
            await self.store.open()
            stack.push_async_callback(self.store.close)
            version = await self.store.migrate()
            parts = await self._assemble()
            # Channels start last: a modem's start-up sweep may already
            # deliver inbound messages and reports, which need the rest.
            await self._start_channels(stack)
            async with asyncio.TaskGroup() as tg:
                sup = _Supervisor(tg)
                self._start_loops(sup, parts)
                site_runner = await self._serve(parts.services)
                sup.start("watchdog", lambda: watchdog_loop(
                    self.notifier, lambda: parts.services.ready, stop))
                parts.services.ready = True
                where = ", ".join(f"http://{h}:{p}" for h, p in self.bound)
                log.info("smsgw.started", listen=where, schema=version,
                         node=parts.dispatcher.node, channels=list(parts.router.runners),
                         storage=_safe_url(self.settings.storage.url))
                self.notifier.ready(f"listening on {where}")
                self.started.set()
                await stop.wait()
                await self._drain(parts, site_runner)
                sup.cancel_all()

    async def _assemble(self) -> _Parts:
        s = self.settings
        campaigns = CampaignBook(self.store, clock=self.clock)
        await campaigns.reload()
        monitor = Monitor(Metrics(sqlite_heap=s.storage.url.startswith("sqlite:")),
                          clock=self.clock)
        recorder = Recorder(self.store, clock=self.clock, on_recorded=monitor.recorded,
                            flush_interval_s=s.dispatcher.flush_interval_ms / 1000)
        runners = [ChannelRunner(channel, s.channels[index], s.dispatcher,
                                 mark_started=monitor.timed(recorder.mark_started),
                                 sink=recorder.commit, clock=self.clock)
                   for channel, index in self.channels]
        await self._preload_daily_counts(runners)
        bound = await resolve_bindings(self.store, s.channels)
        for runner, (_, index) in zip(runners, self.channels, strict=True):
            runner.tenants = bound.get(index, frozenset())
        router = Router(runners, clock=self.clock)
        dispatcher = Dispatcher(self.store, router, campaigns, recorder, s.dispatcher,
                                clock=self.clock)
        await dispatcher.recover_own()
        intake = Intake(self.store, s, campaigns, on_accept=dispatcher.wake, clock=self.clock)
        await intake.refresh_depth()
        webhooks = WebhookSender(self.store, s.webhooks, clock=self.clock)
        clicks = ClickRecorder(self.store, flush_s=s.journeys.click_flush_s,
                               on_clicked=lambda _: webhooks.wake(), clock=self.clock)
        scheduler = JourneyScheduler(
            self.store, Planner(s.server.public_base_url, s.intake.max_segments),
            tick_s=s.journeys.tick_s, batch=s.journeys.batch, wake=intake.accepted,
            clock=self.clock)
        fallbacks = FallbackWorker(self.store, campaigns, tick_s=s.journeys.tick_s,
                                   wake=intake.accepted, clock=self.clock)
        self.events.on_report = recorder.report
        self.events.on_sender_stop = dispatcher.sender_stops.record
        self.events.on_inbound = InboundHandler(
            self.store, campaigns, s.inbound, s.phone.default_region, clock=self.clock,
            kind_of=lambda name: router.runners[name].kind if name in router.runners else "sms",
            bound_to=lambda name: router.runners[name].tenants if name in router.runners
            else frozenset(),
            wake=intake.accepted, on_whatsapp=fallbacks.on_inbound)
        self.events.last_inbound = lambda kind, number, channel: self.store.last_inbound_at(
            number, [channel] if channel else
            [n for n, r in router.runners.items() if r.kind == kind])
        services = Services(
            settings=s, store=self.store, campaigns=campaigns, intake=intake,
            auth=Authenticator(self.store, cache_s=s.server.api_keys_cache_s),
            open_networks=OpenNetworks(s.server.legacy_open_networks), router=router,
            hooks=self._hooks, links=LinkCache(self.store),
            clicks=clicks, miss_limiter=MissLimiter(), monitor=monitor,
            limiter=RateLimiter(s.server.rate_limit_per_s, s.server.rate_limit_burst))
        self.services = services
        return _Parts(services, router, dispatcher, intake, recorder, webhooks, campaigns,
                      scheduler, fallbacks)

    def _start_loops(self, sup: _Supervisor, p: _Parts) -> None:
        sup.start("recorder", p.recorder.run)
        sup.start("intake", p.intake.run)
        for runner in p.router.runners.values():
            sup.start(f"channel:{runner.name}", runner.run)
        sup.start("dispatcher", p.dispatcher.run)
        sup.start("leases", p.dispatcher.lease_keeper)
        sup.start("webhooks", p.webhooks.run)
        sup.start("journeys", p.scheduler.run)
        sup.start("wa-fallback", p.fallbacks.run)
        sup.start("clicks", p.services.clicks.run)
        sup.start("depth", lambda: _every(1.0, p.intake.refresh_depth))
        sup.start("campaigns", lambda: _every(1.0, p.campaigns.fresh))
        if (monitor := p.services.monitor) is not None:
            sup.start("stats-sampler", lambda: monitor.sample_forever(
                self.store, self.settings.dashboard.sample_interval_s))
        if self.settings.spool_folder.enabled:
            sup.start("spool-folder", SpoolFolderImporter(p.services, clock=self.clock).run)

    async def _start_channels(self, stack: AsyncExitStack) -> None:
        for channel, _ in self.channels:
            try:
                await channel.start()
            except Exception as err:  # a broken channel must not stop the others
                log.error("channel.start_failed", channel=channel.name, error=str(err))
            stack.push_async_callback(channel.close)

    async def _preload_daily_counts(self, runners: list[ChannelRunner]) -> None:
        now = self.clock()
        sent_today = await self.store.sent_per_channel_since(_midnight(now))
        for runner in runners:
            runner.preload_today(sent_today.get(runner.name, 0), now)

    async def _serve(self, services: Services) -> web.AppRunner:
        runner, bound = await connections.serve(
            build_app(services), self.settings.server,
            shutdown_timeout_s=self.settings.dispatcher.shutdown_grace_s)
        self.bound.extend(bound)
        return runner

    async def _drain(self, p: _Parts, site_runner: web.AppRunner) -> None:
        services, intake, dispatcher, recorder = p.services, p.intake, p.dispatcher, p.recorder
        grace = self.settings.dispatcher.shutdown_grace_s
        self.notifier.stopping("draining")
        services.ready = False
        log.info("smsgw.stopping", in_flight=services.router.in_flight())
        await site_runner.cleanup()  # stop intake: finishes open requests first
        intake.close()
        dispatcher.stop_claiming()
        returned = dispatcher.return_queued()
        finished = await dispatcher.wait_in_flight(grace)
        try:
            with contextlib.suppress(TimeoutError):
                await recorder.drain(timeout_s=max(grace, 5.0))
            with contextlib.suppress(Exception):  # clicks are best-effort on the way out
                await services.clicks.flush()
            # Sends that did not finish in time: recovery decides (1 or 9 by policy).
            got = await self.store.recover(self.clock(), node=dispatcher.node)
        except StoreError as err:
            # The database is away: what could not be written stays claimed
            # by this node, and the next start recovers it (nothing is lost).
            log.warning("smsgw.drain_incomplete", error=str(err), all_finished=finished,
                        unrecorded=recorder.backlog)
            return
        log.info("smsgw.drained", returned=returned, all_finished=finished,
                 requeued=got.requeued, in_doubt=got.in_doubt)


@dataclass(frozen=True)
class _Parts:
    services: Services
    router: Router
    dispatcher: Dispatcher
    intake: Intake
    recorder: Recorder
    webhooks: WebhookSender
    campaigns: CampaignBook
    scheduler: JourneyScheduler
    fallbacks: FallbackWorker


class _Supervisor:
    """Owns every long-lived task: names it, logs a crash, restarts with backoff."""

    def __init__(self, tg: asyncio.TaskGroup) -> None:
        self._tg = tg
        self._tasks: list[asyncio.Task[None]] = []
        self._out_of_files = fdlimit.OnceLog("task.out_of_files")

    def start(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        self._tasks.append(self._tg.create_task(self._keep(name, factory), name=name))

    async def _keep(self, name: str, factory: Callable[[], Awaitable[None]]) -> None:
        backoff = 0.5
        while True:
            began = time.monotonic()
            try:
                await factory()
                return
            except asyncio.CancelledError:
                raise
            except StoreError as err:  # the database is away: no traceback, just wait
                log.warning("task.store_unavailable", task=name, error=str(err),
                            retry_in_s=backoff)
            except Exception as err:
                if not fdlimit.out_of_files(err):
                    log.exception("task.crashed", task=name, restart_in_s=backoff)
                else:  # descriptors free up as connections close: soon, quietly
                    self._out_of_files.hit(task=name)
                    backoff = min(backoff, fdlimit.RETRY_S)
            await asyncio.sleep(backoff)
            backoff = 0.5 if time.monotonic() - began > 60 else min(backoff * 2, 30.0)

    def cancel_all(self) -> None:
        for task in self._tasks:
            task.cancel()


async def _every(period_s: float, fn: Callable[[], Awaitable[None]]) -> None:
    while True:
        await asyncio.sleep(period_s)
        await fn()


def _midnight(now: float) -> float:
    local = time.localtime(now)
    return time.mktime((local.tm_year, local.tm_mon, local.tm_mday, 0, 0, 0, 0, 0, -1))


def _safe_url(url: str) -> str:
    # postgresql://user:password@host/db -> postgresql://user:***@host/db
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}:***@{host}"
    return url
