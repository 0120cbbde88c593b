"""What only PostgreSQL has to get right: several daemons on one spool.

Each "daemon" here is a store with its own connection pool on the same
schema; they run concurrently on one event loop, which is enough for the
database to see interleaved transactions from separate sessions.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections import Counter
from pathlib import Path

import pytest

from spool import migrations, open_store
from spool.base import (
    Campaign,
    ImportProgress,
    NewMessage,
    SchemaTooNew,
    Sent,
    State,
    StoreError,
)
from tests import pgdb


@pytest.fixture
def backend() -> str:
    return "postgres"


async def stores(url: str, n: int, *, pool_size: int = 4) -> list:
    opened = []
    for _ in range(n):
        s = open_store(url, synchronous="normal", pool_size=pool_size)
        await s.open()
        opened.append(s)
    await asyncio.gather(*(s.migrate() for s in opened))
    return opened


async def close(opened: list) -> None:
    for s in opened:
        await s.close()


def batch(n: int, start: int = 0, campaign: int = 1) -> list[NewMessage]:
    return [NewMessage(1, campaign, f"+59898{start + i:06d}", f"m{start + i}") for i in range(n)]


async def test_concurrent_migrations_apply_each_once(storage_url: str) -> None:
    nodes = await stores(storage_url, 3)
    try:
        assert {await s.schema_version() for s in nodes} == {len(migrations.load("postgres"))}
        applied = pgdb.query(storage_url, "SELECT version FROM schema_migrations ORDER BY 1")
        assert [r[0] for r in applied] == list(range(1, len(applied) + 1))
        # The seed rows of the first migration exist once.
        assert pgdb.query(storage_url, "SELECT count(*) FROM tenants")[0][0] == 1
    finally:
        await close(nodes)


async def test_claims_from_three_nodes_never_overlap(storage_url: str) -> None:
    nodes = await stores(storage_url, 3)
    try:
        await nodes[0].insert_messages(batch(3000))
        claimed: dict[str, list[int]] = {f"node{i}": [] for i in range(3)}

        async def claimer(store, node: str) -> None:
            while True:
                now = time.time()
                got = await store.claim(node, 50, now, now + 60, [1])
                if not got:
                    return
                claimed[node] += [c.id for c in got]
                await store.record([Sent(c.id, node, f"r{c.id}", 0.1, now) for c in got], now)
        await asyncio.gather(*(claimer(s, n) for s, n in zip(nodes, claimed, strict=True)))
        every = [i for ids in claimed.values() for i in ids]
        assert len(every) == len(set(every)) == 3000
        assert all(len(ids) > 0 for ids in claimed.values()), claimed.keys()
        [counts] = await nodes[1].counts()
        assert counts.by_state == {State.SENT: 3000}
        assert counts.cost == pytest.approx(300.0)
        events = pgdb.query(storage_url, "SELECT node, count(*) FROM message_events "
                                         "WHERE state = 2 GROUP BY node")
        assert dict(events) == {n: len(ids) for n, ids in claimed.items()}, \
            "leases carry the node name"
    finally:
        await close(nodes)


async def test_a_paced_campaign_takes_one_slot_at_a_time_across_nodes(
        storage_url: str) -> None:
    """Three nodes ask for the same paced campaign at once, over and over,
    each sleeping until the next slot it was told of: every slot is taken by
    one of them, and no two claims are closer than the campaign's gap."""
    nodes = await stores(storage_url, 3)
    gap_s, run_s = 0.05, 1.0
    try:
        paced = await nodes[0].create_campaign(Campaign(0, 1, "paced",
                                                        time_between_ms=int(gap_s * 1000)))
        await nodes[0].insert_messages(batch(40, campaign=paced.id))
        taken: list[tuple[float, int, str]] = []

        async def claimer(store, node: str) -> None:
            deadline = time.time() + run_s
            while time.time() < deadline:
                now = time.time()
                got = await store.claim_paced(node, now, now + 60, paced.id)
                taken.extend((now, c.id, node) for c in got.claimed)
                await asyncio.sleep(max(0.0, (got.next_slot_at or now) - time.time()))
        await asyncio.gather(*(claimer(s, f"n{k}") for k, s in enumerate(nodes)))
        at = sorted(t for t, _, _ in taken)
        gaps = [b - a for a, b in zip(at, at[1:], strict=False)]
        ids = [i for _, i, _ in taken]
        print(f"\nthree nodes, one campaign paced {gap_s * 1000:.0f} ms for {run_s:g} s: "
              f"{len(taken)} claims, per node {dict(Counter(n for _, _, n in taken))}, "
              f"smallest gap {min(gaps) * 1000:.1f} ms")
        assert len(ids) == len(set(ids))
        assert min(gaps) >= gap_s - 1e-6, gaps
        assert run_s / gap_s - 3 <= len(taken) <= run_s / gap_s + 1
    finally:
        await close(nodes)


async def test_counters_stay_exact_under_concurrent_writers(storage_url: str) -> None:
    """Intake, claims, results and recovery from three nodes at once: the
    counters equal a count of the spool, and nothing deadlocks."""
    nodes = await stores(storage_url, 3)
    try:
        async def worker(store, k: int) -> None:
            for round_ in range(15):
                await store.insert_messages(batch(40, start=(k * 100 + round_) * 40))
                now = time.time()
                got = await store.claim(f"n{k}", 30, now, now + (60 if round_ % 3 else -1), [1])
                done = [c for i, c in enumerate(got) if i % 2 == 0]
                await store.record([Sent(c.id, "x", f"r{c.id}", 0.2, now) for c in done], now)
                await store.recover(time.time())
                await store.pending_count()
        await asyncio.gather(*(worker(s, k) for k, s in enumerate(nodes)))
        truth = Counter({(c, s): n for c, s, n in pgdb.query(
            storage_url, "SELECT campaign, state, count(*) FROM sms_spool GROUP BY 1, 2")})
        for store in nodes:
            [counts] = await store.counts()
            assert Counter({(1, s): n for s, n in counts.by_state.items()}) == truth
            sent = truth[(1, State.SENT)]
            assert counts.cost == pytest.approx(0.2 * sent)
            assert await store.pending_count() == truth[(1, State.TO_PROCESS)]
    finally:
        await close(nodes)


async def test_expired_leases_are_recovered_once_across_the_cluster(storage_url: str) -> None:
    nodes = await stores(storage_url, 3)
    try:
        await nodes[0].insert_messages(batch(200))
        now = time.time()
        got = await nodes[0].claim("dead", 200, now, now - 1, [1])
        await nodes[0].mark_started([(c.id, "x") for c in got[:20]], now)
        results = await asyncio.gather(*(s.recover(time.time()) for s in nodes))
        assert sum(r.requeued for r in results) == 180
        assert sum(r.in_doubt for r in results) == sum(r.resent for r in results) == 20
        history = pgdb.query(storage_url, "SELECT message_id, count(*) FROM message_events "
                                          "WHERE state = 9 GROUP BY 1")
        assert len(history) == 20 and {n for _, n in history} == {1}
    finally:
        await close(nodes)


async def test_own_leases_are_recovered_at_start_and_others_are_left(storage_url: str) -> None:
    nodes = await stores(storage_url, 2)
    try:
        await nodes[0].insert_messages(batch(100))
        now = time.time()
        mine = await nodes[0].claim("a", 40, now, now + 60, [1])
        theirs = await nodes[1].claim("b", 40, now, now + 60, [1])
        got = await nodes[0].recover(time.time(), node="a")
        assert got.requeued == len(mine) == 40
        assert await nodes[1].renew_leases("b", time.time() + 60) == len(theirs)
        states = dict(pgdb.query(storage_url, "SELECT claimed_by, count(*) FROM sms_spool "
                                              "WHERE state = 2 GROUP BY 1"))
        assert states == {"b": 40}
    finally:
        await close(nodes)


async def test_one_idempotency_key_sent_by_two_nodes_at_once_is_one_message(
        storage_url: str) -> None:
    nodes = await stores(storage_url, 2)
    try:
        keyed = [NewMessage(1, 1, "+59898344484", f"otp {i}", idempotency_key=f"k{i}")
                 for i in range(50)]
        first, second = await asyncio.gather(nodes[0].insert_messages(keyed),
                                             nodes[1].insert_messages(keyed))
        assert [a.id for a in first] == [b.id for b in second]
        assert [a.duplicate or b.duplicate for a, b in zip(first, second, strict=True)] \
            == [True] * 50
        assert pgdb.query(storage_url, "SELECT count(*) FROM sms_spool")[0][0] == 50
    finally:
        await close(nodes)


async def test_one_file_is_imported_by_one_node(storage_url: str) -> None:
    """Two daemons watching one folder: the second one's batch of lines the
    first already committed is refused, and nothing is stored twice."""
    nodes = await stores(storage_url, 2)
    try:
        first = ImportProgress("spool:big.csv", 2000, False, 2000)
        results = await asyncio.gather(
            *(s.insert_messages(batch(2000), import_progress=first) for s in nodes),
            return_exceptions=True)
        assert sorted(type(r).__name__ for r in results) == ["Conflict", "list"]
        await nodes[1].insert_messages(batch(10, 2000), import_progress=ImportProgress(
            "spool:big.csv", 2010, False, 2010))  # the next lines are still welcome
        await nodes[0].insert_messages([], import_progress=ImportProgress(
            "spool:big.csv", 2010, False, 2010))  # and so is a last, empty commit
        assert pgdb.query(storage_url, "SELECT count(*) FROM sms_spool")[0][0] == 2010
    finally:
        await close(nodes)


async def test_a_newer_schema_refuses_to_start(storage_url: str) -> None:
    [store] = await stores(storage_url, 1)
    try:
        pgdb.query(storage_url, "INSERT INTO schema_migrations VALUES (999, 'future', 0)")
        with pytest.raises(SchemaTooNew):
            await store.migrate()
    finally:
        await close([store])


async def test_an_unreachable_server_is_a_store_error() -> None:
    store = open_store("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="cannot connect"):
        await store.open()


async def test_schema_matches_sqlite(storage_url: str, tmp_path: Path) -> None:
    """The same tables, columns and indexes as the SQLite reference; only
    the counters' delta table is PostgreSQL's own."""
    assert [m.name for m in migrations.load("postgres")] == [
        m.name for m in migrations.load("sqlite")], "the same numbered migrations"
    [store] = await stores(storage_url, 1)
    await close([store])
    lite = open_store(f"sqlite:///{tmp_path / 'ref.db'}")
    await lite.open()
    await lite.migrate()
    await lite.close()
    with sqlite3.connect(tmp_path / "ref.db") as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")]
        lite_cols = {(t, r[1]) for t in tables for r in db.execute(f"PRAGMA table_info({t})")}
        lite_idx = {r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")}
    pg_cols = set(pgdb.query(storage_url, "SELECT table_name, column_name FROM "
                                          "information_schema.columns WHERE table_schema = "
                                          "current_schema()"))
    pg_idx = {r[0] for r in pgdb.query(storage_url, "SELECT indexname FROM pg_indexes WHERE "
                                                    "schemaname = current_schema()")}
    own = {("spool_deltas", c) for c in ("id", "campaign", "state", "n", "cost")}
    assert pg_cols - own == lite_cols
    assert {i for i in pg_idx if i.startswith(("ix_", "ux_"))} == lite_idx


def test_implements_every_store_method() -> None:
    """The protocol grows; the PostgreSQL store follows it, signature for signature."""
    import inspect

    from spool.base import Store
    from spool.postgres import PostgresStore
    from spool.sqlite import SqliteStore

    wanted = [n for n, v in vars(Store).items() if callable(v) and not n.startswith("_")]
    for name in wanted:
        assert hasattr(PostgresStore, name), f"PostgresStore lacks {name}"
        expected = inspect.signature(getattr(SqliteStore, name))
        assert inspect.signature(getattr(PostgresStore, name)) == expected, name
