"""What readiness knows of writes: the store's own recent ones, and a probe
when those are stale. The fault tests (tests/faults/) drive it with a real
full disk, a locked file and a server that goes away; these pin the rules."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from spool import open_store
from spool.base import Campaign, Conflict, NewMessage, StoreError
from spool.health import WriteHealth


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_write_holds_readiness_until_writes_succeed_for_a_while() -> None:
    clock = Clock()
    health = WriteHealth(probe_after_s=5, hold_s=5, clock=clock)
    health.check()  # nothing failed yet
    assert health.probe_due(), "nothing known yet: probe"
    assert not health.probe_due(), "a second caller waits for that probe's verdict"
    health.ok()
    clock.now += 1
    health.failed("database or disk is full")
    clock.now += 3
    with pytest.raises(StoreError, match="a write failed 3 s ago: database or disk is full"):
        health.check()
    assert not health.probe_due(), "the failure is fresh evidence"
    health.ok()  # a small write still fits on the nearly full disk ...
    with pytest.raises(StoreError):
        health.check()  # ... which is no reason to flap back yet
    clock.now += 2
    health.check()  # 5 s without a failure, and the newest write succeeded
    health.failed("database is locked")
    clock.now += 60
    with pytest.raises(StoreError, match="60 s ago: database is locked"):
        health.check()  # the newest write failed, however long ago ...
    assert health.probe_due()  # ... so readiness writes a probe


async def test_probe_passes_on_a_healthy_store_and_a_refused_row_is_no_failure(store) -> None:
    await store.check_writes()  # probes: nothing was known
    await store.create_campaign(Campaign(id=0, tenant=1, name="twice"))
    with pytest.raises(Conflict):
        await store.create_campaign(Campaign(id=0, tenant=1, name="twice"))
    await store.check_writes()  # the store wrote fine; the row was refused
    assert [c.name for c in await store.list_campaigns(1)] == ["default", "twice"]


async def test_a_locked_sqlite_file_fails_readiness(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    store = open_store(f"sqlite:///{path}", busy_timeout_ms=50)
    await store.open()
    await store.migrate()
    message = NewMessage(tenant=1, campaign=1, destination="+59899000001", message="hola")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # an operator's shell holding the write lock
        with pytest.raises(StoreError):
            await store.insert_messages([message])
        with pytest.raises(StoreError, match="locked"):
            await store.check_writes()
        other.execute("ROLLBACK")
        await store.insert_messages([message])
        with pytest.raises(StoreError, match="locked"):
            await store.check_writes()  # held for a few seconds after the failure
    finally:
        other.close()
        await store.close()
