"""PostgreSQL connection handling: a pool, transactions, migrations.

Every daemon of a cluster has its own pool on the same database. Write
paths run through `run()`, which retries a transaction that lost a
deadlock or a serialization check (rows touched in a different order by
two daemons); everything else the database raises becomes a `StoreError`.
Cluster-wide "only one at a time" work takes a transaction-scoped advisory
lock named after the task and the schema, so two spools in two schemas of
one database never wait for each other.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import asyncpg

from spool import migrations
from spool.base import RowRejected, SchemaTooNew, StoreError
from spool.health import WriteHealth

T = TypeVar("T")

# What a lost connection or an unreachable server looks like from asyncpg.
DB_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError)
_RETRIED = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# The server is away, out of room, shutting down or read-only (a standby):
# nothing can be written. A constraint or a bad statement is about the row.
_UNAVAILABLE = (OSError, TimeoutError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError,
                asyncpg.InsufficientResourcesError, asyncpg.OperatorInterventionError,
                asyncpg.ReadOnlySQLTransactionError)
# A constraint or a value the server (or asyncpg's encoder: a lone
# surrogate) refuses is about the row; the store stays writable.
_ROW_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError,
               asyncpg.exceptions._base.DataError)
_TRIES = 5


class TryAgain(Exception):
    """The transaction lost a race that a second run resolves; `run()` retries it."""


def lock_sql(task: str, *, wait: bool = False) -> str:
    """An advisory lock on `task` in this schema, held until commit."""
    fn = "pg_advisory_xact_lock" if wait else "pg_try_advisory_xact_lock"
    return f"SELECT {fn}(hashtextextended('smsgw:{task}:' || current_schema(), 0))"


class PgDb:
    def __init__(self, url: str, *, pool_size: int = 10, synchronous: str = "full",
                 connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self._pool_size = pool_size
        # "normal" mirrors SQLite's: a crash of this process loses nothing;
        # a crash of the database server may lose the last commits.
        self._settings = {"synchronous_commit": "on" if synchronous == "full" else "off",
                          # Short OLTP statements: compiling them costs more than it saves.
                          "jit": "off"}
        self._timeout = connect_timeout_s
        self._pool: asyncpg.Pool | None = None
        self.writes = WriteHealth()  # what readiness reports

    async def open(self) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                self.url, min_size=1, max_size=self._pool_size, timeout=self._timeout,
                server_settings=self._settings)
        except DB_ERRORS as err:
            raise StoreError(f"cannot connect to PostgreSQL: {err}") from err

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("store is not open")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        """One transaction; rolled back on any error, cancellation included."""
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                yield conn
        except StoreError:
            raise
        except _ROW_ERRORS as err:
            raise RowRejected(f"row refused: {err}") from err
        except DB_ERRORS as err:
            raise StoreError(f"database error: {err}") from err

    async def run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`fn(conn, *args)` in a transaction, again if it lost a deadlock."""
        for attempt in range(1, _TRIES + 1):
            try:
                async with self.transaction() as conn:
                    result = await fn(conn, *args)
                self.writes.ok()
                return result
            except TryAgain as err:
                if attempt == _TRIES:
                    raise StoreError(f"gave up after {_TRIES} tries: {err}") from err
            except StoreError as err:
                self._note_failure(err.__cause__)
                if not isinstance(err.__cause__, _RETRIED) or attempt == _TRIES:
                    raise
            await asyncio.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    # Single statements run without BEGIN/COMMIT around them: one round trip,
    # and a statement is atomic on its own. Retried like `run()`.
    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self._single(self.pool.fetch, sql, args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self._single(self.pool.fetchrow, sql, args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self._single(self.pool.fetchval, sql, args)

    async def _single(self, call: Callable[..., Awaitable[T]], sql: str,
                      args: tuple[Any, ...]) -> T:
        for attempt in range(1, _TRIES + 1):
            try:
                return await call(sql, *args)
            except _RETRIED as err:
                if attempt == _TRIES:
                    raise StoreError(f"database error: {err}") from err
            except DB_ERRORS as err:
                self._note_failure(err)
                raise StoreError(f"database error: {err}") from err
            await asyncio.sleep(0.005 * attempt)
        raise AssertionError("unreachable")

    def _note_failure(self, err: BaseException | None) -> None:
        if isinstance(err, _UNAVAILABLE) and not isinstance(err, _ROW_ERRORS):
            self.writes.failed(str(err) or type(err).__name__)

    async def migrate(self) -> int:
        """Apply pending migrations, each in its own transaction. Daemons
        starting together queue on one lock: one applies, the others see
        the result."""
        known = migrations.load("postgres")
        current = await self.run(_prepare_migrations)
        if current > len(known):
            raise SchemaTooNew(f"database schema {current} is newer than this smsgw "
                               f"({len(known)}); upgrade smsgw")
        for migration in known[current:]:
            await self.run(_apply, migration)
        return len(known)

    async def schema_version(self) -> int:
        try:
            async with self.pool.acquire() as conn:
                if await conn.fetchval("SELECT to_regclass('schema_migrations')") is None:
                    return 0
                return await conn.fetchval("SELECT coalesce(max(version), 0) "
                                           "FROM schema_migrations")
        except DB_ERRORS as err:
            raise StoreError(f"database error: {err}") from err


async def _prepare_migrations(conn: asyncpg.Connection) -> int:
    await conn.execute(lock_sql("migrate", wait=True))
    await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY "
                       "KEY, name text NOT NULL, applied_at double precision NOT NULL)")
    return await conn.fetchval("SELECT coalesce(max(version), 0) FROM schema_migrations")


async def _apply(conn: asyncpg.Connection, migration: migrations.Migration) -> None:
    await conn.execute(lock_sql("migrate", wait=True))
    # Another daemon may have applied it while this one waited for the lock.
    if await conn.fetchval("SELECT 1 FROM schema_migrations WHERE version = $1",
                           migration.version):
        return
    await conn.execute(migration.sql)  # simple protocol: the whole script at once
    await conn.execute("INSERT INTO schema_migrations VALUES ($1, $2, $3)",
                       migration.version, migration.name, time.time())
