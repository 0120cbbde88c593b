"""PostgreSQL for the tests: one fresh schema per test, and plain queries.

`SMSGW_TEST_PG_URL` (set by `make test` and `.ci/run`) promises a server:
then an unreachable one fails the tests that need it. Without it (or with
CI=true) a run by hand tries the local default and, if nothing answers,
skips those tests with the reason.

Each test gets its own schema in one database (selected through the URL's
`search_path`, which every connection of the store and of the daemons it
starts then uses): creating and dropping a schema costs milliseconds,
where a database per test would cost a checkpoint each.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import re
import sqlite3
import urllib.parse
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import asyncpg

ENV = "SMSGW_TEST_PG_URL"
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/smsgw_test"
_PREFIX = "smsgw_t"
T = TypeVar("T")
_counter = itertools.count(1)


def promised() -> bool:
    return bool(os.environ.get(ENV)) or os.environ.get("CI", "").lower() == "true"


def server_url() -> str:
    return os.environ.get(ENV) or DEFAULT_URL


def run_sync(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion from sync code, inside or outside a loop."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(factory())).result()  # type: ignore[arg-type]


def with_search_path(url: str, schema: str) -> str:
    parts = urllib.parse.urlsplit(url)
    query = [(k, v) for k, v in urllib.parse.parse_qsl(parts.query) if k != "search_path"]
    query.append(("search_path", schema))
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


async def _connect(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=5)
    except asyncpg.InvalidCatalogNameError:
        # The test database does not exist yet: create it from the maintenance one.
        parts = urllib.parse.urlsplit(url)
        name = parts.path.lstrip("/")
        admin = await asyncpg.connect(urllib.parse.urlunsplit(parts._replace(path="/postgres")),
                                      timeout=5)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        except asyncpg.DuplicateDatabaseError:
            pass
        finally:
            await admin.close()
        return await asyncpg.connect(url, timeout=5)


class PgServer:
    """The server the tests use; `problem` says why it cannot be used."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.problem: str | None = None
        try:
            run_sync(self._sweep)
        except Exception as err:  # any failure to reach it is the reason to report
            self.problem = f"PostgreSQL unreachable at {_safe(url)}: {err!r}"

    async def _sweep(self) -> None:
        """Drop schemas left by test runs whose process is gone."""
        conn = await _connect(self.url)
        try:
            names = [r[0] for r in await conn.fetch(
                "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", f"{_PREFIX}_%")]
            for name in names:
                pid = int(name.split("_")[2])
                if not _alive(pid):
                    # Another role's leftovers are not ours to drop; they cost nothing.
                    with contextlib.suppress(asyncpg.InsufficientPrivilegeError):
                        await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
        finally:
            await conn.close()

    def new_schema(self) -> tuple[str, str]:
        """A fresh empty schema: (its name, the store URL that selects it)."""
        name = f"{_PREFIX}_{os.getpid()}_{next(_counter)}"

        async def create() -> None:
            conn = await _connect(self.url)
            try:
                await conn.execute(f'CREATE SCHEMA "{name}"')
            finally:
                await conn.close()
        run_sync(create)
        return name, with_search_path(self.url, name)

    def drop_schema(self, name: str) -> None:
        async def drop() -> None:
            conn = await _connect(self.url)
            try:
                # A session left by a test that failed half-way must not hang
                # the run: its schema is then swept by a later run.
                await conn.execute("SET lock_timeout = '10s'")
                with contextlib.suppress(asyncpg.LockNotAvailableError):
                    await conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
            finally:
                await conn.close()
        run_sync(drop)


def query(url: str, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """One query on either backend, `?` placeholders; for tests that look
    at the spool with something other than smsgw's own code."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///"), timeout=10) as conn:
            return conn.execute(sql, args).fetchall()
    counter = itertools.count(1)
    pg_sql = re.sub(r"\?", lambda _: f"${next(counter)}", sql)

    async def fetch() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(url, timeout=10)
        try:
            return [tuple(r) for r in await conn.fetch(pg_sql, *args)]
        finally:
            await conn.close()
    return run_sync(fetch)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _safe(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
    return url
