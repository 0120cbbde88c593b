"""The CLI's view of the gateway: the same store, intake and campaigns as
the daemon, opened directly on the database (the daemon may or may not be
running; SQLite's busy timeout and PostgreSQL's locks keep both honest)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from drivers.base import ChannelEvents
from drivers.registry import DRIVERS
from gateway.auth import Authenticator, OpenNetworks
from gateway.campaigns import CampaignBook
from gateway.clicks import ClickRecorder, LinkCache, MissLimiter
from gateway.intake import Intake
from gateway.router import ChannelRunner, Router
from gateway.services import Services
from gateway.settings import Settings
from spool import open_store
from spool.base import Store, Tenant


class CliError(Exception):
    """A user-facing failure: printed as one line, exit code 1."""


async def _no_mark(message_id: int, channel: str) -> None:  # CLI never sends
    return None


async def _no_sink(outcome: object) -> None:
    return None


def offline_router(settings: Settings) -> Router:
    """Channels as configured (for pools and prices); none is started."""
    runners = []
    events = ChannelEvents()
    for cfg, options in zip(settings.channels, settings.driver_options, strict=True):
        for channel in DRIVERS[cfg.driver].build(cfg.name, options, events):
            runners.append(ChannelRunner(channel, cfg, settings.dispatcher,
                                         mark_started=_no_mark, sink=_no_sink))
    return Router(runners)


@asynccontextmanager
async def opened_store(settings: Settings) -> AsyncIterator[Store]:
    store = open_store(settings.storage.url, synchronous=settings.storage.synchronous,
                       busy_timeout_ms=settings.storage.busy_timeout_ms,
                       pool_size=settings.storage.pool_size)
    await store.open()
    try:
        yield store
    finally:
        await store.close()


@asynccontextmanager
async def services(settings: Settings) -> AsyncIterator[Services]:
    """Everything a command needs; the schema is brought up to date first."""
    async with opened_store(settings) as store:
        await store.migrate()
        campaigns = CampaignBook(store)
        await campaigns.reload()
        yield Services(settings=settings, store=store, campaigns=campaigns,
                       intake=Intake(store, settings, campaigns),
                       auth=Authenticator(store),
                       open_networks=OpenNetworks(settings.server.legacy_open_networks),
                       router=offline_router(settings), links=LinkCache(store),
                       clicks=ClickRecorder(store), miss_limiter=MissLimiter())


async def tenant_named(s: Services, name: str) -> Tenant:
    found = await s.store.tenant_by_name(name)
    if found is None:
        raise CliError(f"no tenant named {name!r} (smsgw tenant add {name})")
    return found
