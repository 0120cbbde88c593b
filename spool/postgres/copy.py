"""Copy a SQLite spool into a PostgreSQL one: every table, counts verified.

The source is read in one read transaction, so every table comes from the
same moment even if a daemon is still writing to it. The target is filled
in one transaction with binary COPY: either every table arrives and every
count matches, or nothing changes. Triggers are off while rows arrive:
the history, counters and outbox rows are copied as they are, not made
again from the copies.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite
import asyncpg

from spool.base import StoreError
from spool.postgres.db import PgDb
from spool.postgres.journeys import LINK_STEP_S

# Bookkeeping that each side keeps for itself, never copied.
_OWN = {"schema_migrations", "sqlite_sequence", "spool_deltas"}


class CopyError(StoreError):
    """The copy cannot start or did not verify; the target is unchanged."""


@dataclass(frozen=True, slots=True)
class Copied:
    table: str
    rows: int
    seconds: float


Progress = Callable[[Copied], None]


class SqliteSource:
    """A SQLite spool file, read-only, from one snapshot."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: aiosqlite.Connection | None = None

    async def __aenter__(self) -> SqliteSource:
        if not self.path.is_file():
            raise CopyError(f"no SQLite spool at {self.path}")
        self._conn = await aiosqlite.connect(f"file:{self.path}?mode=ro", uri=True,
                                             isolation_level=None)
        await self._conn.execute("BEGIN")
        # The snapshot starts at the first read; everything after sees it.
        await self._conn.execute_fetchall("SELECT count(*) FROM sqlite_master")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._conn is not None:
            await self._conn.close()

    @property
    def conn(self) -> aiosqlite.Connection:
        assert self._conn is not None
        return self._conn

    async def schema_version(self) -> int:
        try:
            found = await self.conn.execute_fetchall("SELECT max(version) FROM schema_migrations")
        except sqlite3.OperationalError:
            return 0
        return next(iter(found))[0] or 0

    async def tables(self) -> list[str]:
        found = await self.conn.execute_fetchall(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return [r[0] for r in found if r[0] not in _OWN]

    async def columns(self, table: str) -> list[str]:
        return [r[1] for r in await self.conn.execute_fetchall(f'PRAGMA table_info("{table}")')]

    async def sequences(self) -> dict[str, int]:
        """AUTOINCREMENT's high-water marks: ids handed out once stay used."""
        try:
            found = await self.conn.execute_fetchall("SELECT name, seq FROM sqlite_sequence")
        except sqlite3.OperationalError:
            return {}
        return {r[0]: int(r[1]) for r in found}

    async def count(self, table: str) -> int:
        found = await self.conn.execute_fetchall(f'SELECT count(*) FROM "{table}"')
        return int(next(iter(found))[0])

    async def batches(self, table: str, columns: list[str],
                      size: int) -> AsyncIterator[list[tuple[Any, ...]]]:
        cols = ", ".join(f'"{c}"' for c in columns)
        found = await self.conn.execute_fetchall(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,))
        ddl = next(iter(found))[0] or ""
        # Rows in the order they were written, where SQLite keeps one.
        order = "" if "WITHOUT ROWID" in ddl.upper() else " ORDER BY rowid"
        cursor = await self.conn.execute(f'SELECT {cols} FROM "{table}"{order}')
        try:
            while batch := await cursor.fetchmany(size):
                yield [tuple(r) for r in batch]
        finally:
            await cursor.close()


async def copy_sqlite_to_postgres(source_path: str | Path, target_url: str, *,
                                  batch_rows: int = 5000,
                                  progress: Progress = lambda _: None) -> list[Copied]:
    target = PgDb(target_url, pool_size=1)
    await target.open()
    try:
        version = await target.migrate()
        async with SqliteSource(source_path) as source:
            found = await source.schema_version()
            if found != version:
                raise CopyError(f"the SQLite spool is at schema {found}, this smsgw at "
                                f"{version}: run `smsgw db migrate` on it first")
            async with target.transaction() as conn:
                return await _copy_all(source, conn, batch_rows, progress)
    finally:
        await target.close()


async def _copy_all(source: SqliteSource, conn: asyncpg.Connection, batch_rows: int,
                    progress: Progress) -> list[Copied]:
    tables = await _parents_first(conn, await source.tables())
    targets = await _target_columns(conn)
    missing = sorted(set(tables) - set(targets))
    if missing:
        raise CopyError(f"tables missing in the target: {', '.join(missing)}")
    await _check_empty(conn)
    for table in tables:
        await conn.execute(f'ALTER TABLE "{table}" DISABLE TRIGGER USER')
    await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in [*tables, "spool_deltas"]))
    done = []
    for table in tables:
        began = time.monotonic()
        copied = await _copy_table(source, conn, table, targets[table], batch_rows)
        done.append(Copied(table, copied, time.monotonic() - began))
        progress(done[-1])
    await _verify(source, conn, done)
    used = await source.sequences()
    for table in tables:
        await conn.execute(f'ALTER TABLE "{table}" ENABLE TRIGGER USER')
        if "id" in targets[table]:
            await _advance_identity(conn, table, used.get(table, 0))
    return done


async def _parents_first(conn: asyncpg.Connection, tables: list[str]) -> list[str]:
    """Referenced tables before the tables whose foreign keys point at them."""
    found = await conn.fetch(
        "SELECT c.relname AS child, p.relname AS parent FROM pg_constraint k "
        "JOIN pg_class c ON c.oid = k.conrelid JOIN pg_class p ON p.oid = k.confrelid "
        "WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace")
    parents: dict[str, set[str]] = {}
    for r in found:
        parents.setdefault(r["child"], set()).add(r["parent"])
    ordered: list[str] = []

    def visit(table: str) -> None:
        if table not in ordered:
            for parent in sorted(parents.get(table, ())):
                visit(parent)
            ordered.append(table)
    for table in tables:
        visit(table)
    return [t for t in ordered if t in tables]


async def _target_columns(conn: asyncpg.Connection) -> dict[str, dict[str, str]]:
    found = await conn.fetch(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE table_schema = current_schema()")
    out: dict[str, dict[str, str]] = {}
    for r in found:
        out.setdefault(r["table_name"], {})[r["column_name"]] = r["data_type"]
    return out


async def _check_empty(conn: asyncpg.Connection) -> None:
    # A fresh schema holds only the seeded default tenant and campaign.
    busy = await conn.fetchval(
        "SELECT (SELECT count(*) FROM sms_spool) + (SELECT count(*) FROM inbound) "
        "+ (SELECT count(*) FROM message_events) + (SELECT greatest(count(*) - 1, 0) "
        "FROM tenants) + (SELECT count(*) FROM api_keys)")
    if busy:
        raise CopyError("the target database already holds a spool; copy into a new one")


async def _copy_table(source: SqliteSource, conn: asyncpg.Connection, table: str,
                      types: dict[str, str], batch_rows: int) -> int:
    columns = await source.columns(table)
    unknown = [c for c in columns if c not in types]
    if unknown:
        raise CopyError(f"{table}: columns missing in the target: {', '.join(unknown)}")
    convert = [_converter(table, c, types[c]) for c in columns]
    adjust = _ADJUST.get(table, _as_is)(columns)
    total = 0
    async for batch in source.batches(table, columns, batch_rows):
        records = [adjust(tuple(fn(v) for fn, v in zip(convert, row, strict=True)))
                   for row in batch]
        await conn.copy_records_to_table(table, records=records, columns=columns)
        total += len(records)
    return total


def _stagger_links(columns: list[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    """SQLite keeps a journey's URLs in text order by rowid; PostgreSQL by
    created_at, one LINK_STEP_S apart (spool/postgres/journeys.py)."""
    journey, created = columns.index("journey"), columns.index("created_at")
    seen: dict[int, int] = {}

    def adjust(row: tuple[Any, ...]) -> tuple[Any, ...]:
        k = seen[row[journey]] = seen.get(row[journey], -1) + 1
        out = list(row)
        out[created] = row[created] + k * LINK_STEP_S
        return tuple(out)
    return adjust


def _as_is(columns: list[str]) -> Callable[[tuple[Any, ...]], tuple[Any, ...]]:
    return lambda row: row


_ADJUST = {"links": _stagger_links}


def _converter(table: str, column: str, data_type: str) -> Callable[[Any], Any]:
    """SQLite's loose typing, made to fit a PostgreSQL column, or an error."""
    fit: Callable[[Any], Any]
    if data_type in ("bigint", "integer", "smallint"):
        fit = _to_int
    elif data_type in ("double precision", "real", "numeric"):
        fit = _to_float
    else:
        fit = _to_text

    def convert(v: Any) -> Any:
        try:
            return None if v is None else fit(v)
        except (TypeError, ValueError):
            raise CopyError(f"{table}.{column}: {v!r} does not fit {data_type}") from None
    return convert


def _to_int(v: Any) -> int:
    if type(v) is int:
        return v
    if isinstance(v, float) and not v.is_integer():
        raise ValueError(v)  # a fraction would be lost
    if isinstance(v, bytes):
        raise TypeError(v)
    return int(v)


def _to_float(v: Any) -> float:
    if isinstance(v, bytes):
        raise TypeError(v)
    return float(v)


def _to_text(v: Any) -> str:
    if isinstance(v, bytes):
        raise TypeError(v)
    return v if type(v) is str else str(v)


async def _verify(source: SqliteSource, conn: asyncpg.Connection, done: list[Copied]) -> None:
    for copied in done:
        expected = await source.count(copied.table)
        landed = await conn.fetchval(f'SELECT count(*) FROM "{copied.table}"')
        if not expected == copied.rows == landed:
            raise CopyError(f"{copied.table}: {expected} rows in the source, {copied.rows} read, "
                            f"{landed} in the target; nothing was copied")


async def _advance_identity(conn: asyncpg.Connection, table: str, used: int) -> None:
    # Rows arrived with their ids; new ones continue after every id used.
    seq = await conn.fetchval("SELECT pg_get_serial_sequence($1, 'id')", table)
    if seq is not None:
        await conn.execute(f'SELECT setval($1, greatest($2, coalesce((SELECT max(id) FROM '
                           f'"{table}"), 0)) + 1, false)', seq, used)

