"""Shared fixtures: a real daemon (in-process or as a process) on loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from drivers.simulators.dinstar import DinstarSimulator
from gateway.app import App
from gateway.auth import generate_key, hash_key
from gateway.sdnotify import Notifier
from gateway.settings import Settings, settings_from_dict
from spool import open_store
from spool.base import InboundFilter, Message, State
from tests import pgdb

pytest_plugins = ["tests.webhook_receiver"]

ROOT = Path(__file__).resolve().parent.parent


def loopback_channel(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "driver": "loopback", "cost": 0.15, "report_delay_ms": 50, **extra}


def config(tmp: Path, *, channels: list[dict[str, Any]] | None = None,
           storage_url: str | None = None, **sections: dict[str, Any]) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "server": {"port": 0},
        "storage": {"url": storage_url or f"sqlite:///{tmp / 'spool.db'}",
                    "synchronous": "normal"},
        "dispatcher": {"node_name": "test-node", "poll_interval_ms": 20,
                       "retry_base_s": 0.05, "retry_max_s": 0.2, "shutdown_grace_s": 2},
        "spool_folder": {"path": str(tmp / "spool"), "poll_interval_s": 0.05, "stable_s": 0.1},
        "logging": {"format": "json", "level": "warning"},
        "channels": channels if channels is not None else [loopback_channel("loop-a"),
                                                           loopback_channel("loop-b")],
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


class FakeClock:
    """time.time() moved on by `advance`: simulated minutes and hours, never slept."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@dataclass
class Running:
    app: App
    url: str
    key: str  # API key of tenant "default"
    other_key: str  # API key of tenant "other"
    session: aiohttp.ClientSession

    @property
    def store(self) -> Any:
        return self.app.store

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"X-Api-Key": key or self.key}

    async def wait_for(self, check: Callable[[], Any], timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = await check()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"condition not met within {timeout}s")
            await asyncio.sleep(0.02)

    async def submit_one(self, destination: str = "098344484", text: str = "hola") -> int:
        """One SMS through the JSON API, as tenant "default"; its id."""
        async with self.session.post(f"{self.url}/api/v1/messages", headers=self.headers(),
                                     json={"destination": destination, "message": text}) as r:
            assert r.status == 202, await r.text()
            return int((await r.json())["messages"][0]["id"])

    async def reaches(self, mid: int, states: set[State], timeout: float = 10) -> Message:
        """The message once it is in one of `states`."""
        async def check() -> Message | None:
            m = await self.store.get_message(None, mid)
            return m if m.state in states else None
        return await self.wait_for(check, timeout)

    async def inbound(self) -> list[Any]:
        """Tenant "default"'s inbound messages."""
        tenant = await self.store.tenant_by_name("default")
        return list(await self.store.list_inbound(InboundFilter(tenant=tenant.id)))


async def start_app(settings: Settings, clock: Callable[[], float] | None = None
                    ) -> tuple[App, asyncio.Event, asyncio.Task[None]]:
    app = App(settings, notifier=Notifier({}), **({"clock": clock} if clock else {}))
    stop = asyncio.Event()
    task = asyncio.create_task(app.run(stop))
    started = asyncio.create_task(app.started.wait())
    done, _ = await asyncio.wait({task, started}, timeout=20,
                                 return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        started.cancel()
        task.result()  # raises the start-up error
    assert started in done, "daemon did not start in time"
    return app, stop, task


@pytest.fixture(scope="session")
def pg_server() -> pgdb.PgServer:
    return pgdb.PgServer(pgdb.server_url())


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    """Every test that stores anything runs on both backends."""
    return str(request.param)


@pytest.fixture
def storage_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, empty spool for this test on `backend`."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'spool.db'}"
        return
    server: pgdb.PgServer = request.getfixturevalue("pg_server")
    if server.problem is not None:
        if pgdb.promised():
            pytest.fail(f"{server.problem} (promised by ${pgdb.ENV} or CI=true)")
        pytest.skip(f"{server.problem}; set ${pgdb.ENV} to a server to run these")
    schema, url = server.new_schema()
    yield url
    server.drop_schema(schema)


@pytest.fixture
async def store(storage_url: str) -> AsyncIterator[Any]:
    """The spool on `backend`, opened and migrated, without a daemon."""
    s = open_store(storage_url, synchronous="normal")
    await s.open()
    await s.migrate()
    yield s
    await s.close()


@pytest.fixture
async def make_gateway(tmp_path: Path, storage_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process daemons on one spool (a new one per test, on each backend);
    `await make_gateway(channels=..., dispatcher={...})`."""
    started: list[tuple[asyncio.Event, asyncio.Task[None], aiohttp.ClientSession]] = []

    async def make(*, clock: Callable[[], float] | None = None, **overrides: Any) -> Running:
        settings = settings_from_dict(config(tmp_path, storage_url=storage_url, **overrides))
        app, stop, task = await start_app(settings, clock)
        keys = []
        for name in ("default", "other"):
            key = generate_key()
            tenant = await app.store.tenant_by_name(name)
            if tenant is None:
                await app.store.create_tenant(name, hash_key(key))
            else:
                await app.store.add_api_key(tenant.id, hash_key(key))
            keys.append(key)
        assert app.services is not None
        await app.services.campaigns.reload()
        host, port = app.bound[0]
        session = aiohttp.ClientSession()
        started.append((stop, task, session))
        return Running(app, f"http://{host}:{port}", keys[0], keys[1], session)

    yield make
    for stop, task, session in reversed(started):
        await session.close()
        stop.set()
        await asyncio.wait_for(task, 20)


@pytest.fixture
async def gateway(make_gateway: Callable[..., Any]) -> Running:
    return await make_gateway()


@pytest.fixture
async def dinstar() -> AsyncIterator[DinstarSimulator]:
    """A two-port Dinstar gateway simulator on loopback."""
    simulator = DinstarSimulator(2)
    await simulator.start()
    yield simulator
    await simulator.close()
