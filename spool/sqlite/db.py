"""SQLite connection handling: WAL, one writer, migrations.

One connection writes, under an asyncio lock, each call one short
`BEGIN IMMEDIATE` transaction; a second connection serves reads, which WAL
lets run beside the writer. Other processes (the CLI) may write the same
file: `busy_timeout` makes them wait their turn instead of failing.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from spool import migrations
from spool.base import RowRejected, SchemaTooNew, StoreError
from spool.health import WriteHealth

T = TypeVar("T")
# A constraint or a bad value is about the row, not the store: the store
# stays writable and the rest of a batch can go in without that row.
_ROW_ERRORS = (sqlite3.IntegrityError, sqlite3.ProgrammingError)


class SqliteDb:
    def __init__(self, path: str | Path, *, synchronous: str = "full",
                 busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self._synchronous = synchronous.upper()
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.writes = WriteHealth()  # what readiness reports

    async def open(self) -> None:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._writer = await self._connect()
            self._reader = await self._connect()
        except sqlite3.Error as err:
            raise StoreError(f"cannot open {self.path}: {err}") from err

    async def _connect(self) -> aiosqlite.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves.
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self._synchronous}")
        await conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        # A bigger page cache and fewer checkpoints: bulk imports write pages of
        # several indexes at random; 16 MB per connection keeps RSS bounded.
        await conn.execute("PRAGMA cache_size=-16384")
        await conn.execute("PRAGMA wal_autocheckpoint=10000")
        await conn.execute("PRAGMA foreign_keys=OFF")
        return conn

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    @property
    def reader(self) -> _Reader:
        if self._reader is None:
            raise StoreError("store is not open")
        return _Reader(self._reader)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction; rolled back on any error, cancellation included."""
        if self._writer is None:
            raise StoreError("store is not open")
        async with self._lock:
            db = self._writer
            changes = db.total_changes
            try:
                await db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as err:
                self._note_failure(err)
                raise StoreError(f"database busy or unavailable: {err}") from err
            try:
                yield db
            except sqlite3.OperationalError as err:  # disk full, I/O error, locked
                await asyncio.shield(db.rollback())
                self._note_failure(err)
                raise StoreError(f"database unavailable: {err}") from err
            except BaseException:
                await asyncio.shield(db.rollback())
                raise
            try:
                await db.commit()
            except sqlite3.Error as err:
                await asyncio.shield(db.rollback())
                self._note_failure(err)
                raise StoreError(f"commit failed: {err}") from err
            self._note_commit(changes)

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn(conn)` as one write transaction on the writer's own thread.

        One hand-off to that thread for the whole transaction instead of one
        per statement: the dispatcher's claims and results take this path.
        (aiosqlite's `_execute` is the documented-in-source way to queue a
        function on its thread; the version range is pinned in pyproject.)
        """
        if self._writer is None:
            raise StoreError("store is not open")
        async with self._lock:
            changes = self._writer.total_changes
            try:
                result = await self._writer._execute(_transaction, fn, self._writer._conn)
            except _ROW_ERRORS as err:
                raise RowRejected(f"row refused: {err}") from err
            except sqlite3.Error as err:
                self._note_failure(err)
                raise StoreError(f"database busy or unavailable: {err}") from err
            self._note_commit(changes)
            return result

    def _note_commit(self, changes_before: int) -> None:
        # Only a commit that changed rows wrote pages: an empty one proves
        # nothing about the disk (it succeeds on a full one).
        if self._writer is not None and self._writer.total_changes != changes_before:
            self.writes.ok()

    def _note_failure(self, err: sqlite3.Error) -> None:
        # Full disk, I/O error, locked, read-only, corrupt: the store cannot
        # write. A constraint violation or a bad statement is about the row.
        if not isinstance(err, _ROW_ERRORS):
            self.writes.failed(str(err))

    async def migrate(self) -> int:
        known = migrations.load("sqlite")
        async with self.transaction() as db:
            await db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations "
                "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
            rows = await db.execute_fetchall("SELECT max(version) FROM schema_migrations")
        current = next(iter(rows))[0] or 0
        if current > len(known):
            raise SchemaTooNew(f"database schema {current} is newer than this smsgw "
                               f"({len(known)}); upgrade smsgw")
        for migration in known[current:]:
            async with self.transaction() as db:
                for statement in split_statements(migration.sql):
                    await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES (?, ?, ?)",
                                 (migration.version, migration.name, time.time()))
        return len(known)

    async def schema_version(self) -> int:
        try:
            rows = await self.reader.execute_fetchall("SELECT max(version) FROM schema_migrations")
        except StoreError:  # no such table: a new database
            return 0
        return next(iter(rows))[0] or 0


def _transaction(fn: Callable[[sqlite3.Connection], T], conn: sqlite3.Connection) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.commit()
    except BaseException:
        conn.rollback()  # also when COMMIT itself failed (disk full)
        raise
    return result


def split_statements(script: str) -> list[str]:
    """Split a script into statements; trigger bodies keep their inner ';'."""
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        if not buf and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement at end of migration: {buf[:60]!r}")
    return statements


class _Reader:
    """The read connection, with database errors turned into StoreError so
    callers (the HTTP layer: 503 + Retry-After) see one kind of failure."""

    __slots__ = ("_conn",)

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn

    async def execute_fetchall(self, sql: str, args: Any = ()) -> Iterable[sqlite3.Row]:
        try:
            return await self._conn.execute_fetchall(sql, args)
        except sqlite3.OperationalError as err:
            raise StoreError(f"database unavailable: {err}") from err
