"""GroupCommit: one transaction for many callers, and one caller's bad item
fails only that caller. The flush writes to a real SQLite file, so a bad
item fails the way it does in the spool: inside a transaction that is
rolled back whole."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.batching import GroupCommit


class AwayError(Exception):
    """Stands for the database being away: nobody's item is at fault."""


class Table:
    """A real SQLite table written in one transaction per flush."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, text TEXT NOT NULL)")
        self.flushes: list[int] = []
        self.away = False

    async def flush(self, items: list[str]) -> list[int]:
        self.flushes.append(len(items))
        if self.away:
            raise AwayError("database is away")
        self.conn.execute("BEGIN")
        try:
            # A lone surrogate cannot be encoded: UnicodeEncodeError mid-batch.
            ids = [self.conn.execute("INSERT INTO t (text) VALUES (?)", (i,)).lastrowid
                   for i in items]
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")
        await asyncio.sleep(0)
        return [int(i) for i in ids if i is not None]

    def texts(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT text FROM t ORDER BY id")]


@pytest.fixture
def table(tmp_path: Path) -> Iterator[Table]:
    t = Table(tmp_path / "t.db")
    yield t
    t.conn.close()


async def test_a_bad_item_fails_only_its_caller(table: Table) -> None:
    commit: GroupCommit[str, int] = GroupCommit("t", table.flush)
    items = [f"ok {i}" for i in range(64)]
    items[37] = "bad \ud800"
    futures = commit.submit_many(items)
    await commit.flush_once()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert isinstance(results[37], UnicodeEncodeError)
    assert all(isinstance(r, int) for i, r in enumerate(results) if i != 37)
    assert table.texts() == [t for i, t in enumerate(items) if i != 37]
    # Halving finds one culprit in about 2·log2(64) more flushes, not 64.
    assert table.flushes[0] == 64 and len(table.flushes) <= 1 + 2 * 6


async def test_several_bad_items_each_fail_alone(table: Table) -> None:
    commit: GroupCommit[str, int] = GroupCommit("t", table.flush)
    bad = {0, 5, 6, 31}
    items = [f"bad {i} \udc80" if i in bad else f"ok {i}" for i in range(32)]
    futures = commit.submit_many(items)
    await commit.flush_once()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert {i for i, r in enumerate(results) if isinstance(r, Exception)} == bad
    assert len(table.texts()) == 32 - len(bad)


async def test_an_error_nobody_holds_fails_the_batch_once(table: Table) -> None:
    commit: GroupCommit[str, int] = GroupCommit(
        "t", table.flush, isolate=lambda err: not isinstance(err, AwayError))
    table.away = True
    futures = commit.submit_many([f"ok {i}" for i in range(100)])
    await commit.flush_once()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert all(isinstance(r, AwayError) for r in results)
    assert table.flushes == [100], "no bisection while the store is away"


async def test_weight_bounds_a_batch_by_rows_not_items(table: Table) -> None:
    async def flush(requests: list[list[str]]) -> list[int]:
        table.flushes.append(sum(len(r) for r in requests))
        return [len(r) for r in requests]

    commit: GroupCommit[list[str], int] = GroupCommit("t", flush, max_items=10, weight=len)
    futures = commit.submit_many([["x"] * 4, ["x"] * 4, ["x"] * 4, ["x"] * 30])
    while len(commit):
        await commit.flush_once()
    assert await asyncio.gather(*futures) == [4, 4, 4, 30]
    # 4+4 fit in 10; the third starts the next; one over the limit goes alone.
    assert table.flushes == [8, 4, 30]
