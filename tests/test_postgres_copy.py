"""`smsgw db copy`: a SQLite spool moved into PostgreSQL, table by table.

The source is filled through the SQLite store (so its triggers wrote the
history, counters, outbox and fallback rows), copied by the CLI as a
process, and compared with the target row for row.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from spool import open_store
from spool.base import (
    Campaign,
    Click,
    Failed,
    ImportProgress,
    InboundRecord,
    JourneySpec,
    NewMessage,
    Report,
    Retry,
    Sent,
)
from tests import pgdb
from tests.proc import smsgw, write_config


@pytest.fixture
def backend() -> str:
    return "postgres"


async def fill(path: Path) -> dict[str, object]:
    store = open_store(f"sqlite:///{path}", synchronous="normal")
    await store.open()
    await store.migrate()
    try:
        tenant = await store.create_tenant("acme", "ab" * 32)
        await store.set_webhook(tenant.id, "http://127.0.0.1:9/hook", "s3cret")
        promo = await store.create_campaign(Campaign(0, tenant.id, "promo", channels=("a",),
                                                     schedule={"mon": ["09:00", "18:00"]}))
        links = (("zz-first", "https://example.com/a"), ("aa-second", "https://example.com/b"))
        rows = [NewMessage(tenant.id, promo.id, f"+59898{i:06d}", f"m{i} ü", priority=i % 3,
                           data={"n": i}, idempotency_key=f"k{i}" if i % 2 else None)
                for i in range(300)]
        rows.append(NewMessage(tenant.id, promo.id, "+59898999999", "see https://x",
                               journey=JourneySpec({"link_ttl_s": 3600}, 3600.0, links)))
        rows.append(NewMessage(tenant.id, promo.id, "12", "bad", state=7, error="destination"))
        rows.append(NewMessage(tenant.id, promo.id, "+59898777777", "tpl", kind="whatsapp",
                               data={"whatsapp": {"type": "template"}}))
        await store.insert_messages(rows, import_progress=ImportProgress("file-1", 302, False,
                                                                         300, 0, 1))
        now = time.time()
        claimed = await store.claim("old-node", 400, now, now + 60, [promo.id])
        await store.mark_started([(c.id, "a") for c in claimed[:250]], now)
        sent = [Sent(c.id, "a", f"ref{c.id}", 0.15, now, part_refs=("1", "2"),
                     destination=c.destination) for c in claimed[:200] if c.kind == "sms"]
        wa = next(c for c in claimed if c.kind == "whatsapp")
        await store.record([*sent, Failed(wa.id, "wa", "template not delivered"),
                            Retry(claimed[220].id, "a", "busy", now + 5)], now)
        await store.record_reports([Report("a", "ref1", True, None, now),
                                    Report("a", "1", False, "gone", now, sent[5].destination)])
        await store.recover(time.time(), node="old-node")
        await store.store_inbound(InboundRecord("a", "+59898000001", "+59899000000", "STOP",
                                                now, provider_ref="in-1", tenant=tenant.id))
        await store.blacklist_add([("+59898000001", None), ("+59898000002", promo.id)])
        journey = next(m for m in await store.journey_messages(1))
        await store.record_clicks([Click("zz-first", journey.journey_id or 0, now, "GET",
                                         "10.0.0.1", "Mozilla/5.0", False)])
        return {"counts": await store.counts(), "journey": await store.get_journey(None, 1),
                "pending": await store.pending_count()}
    finally:
        await store.close()


def table_rows(url: str, table: str, columns: list[str]) -> list[tuple]:
    cols = ", ".join(f'"{c}"' for c in columns)
    return sorted(pgdb.query(url, f'SELECT {cols} FROM "{table}"'), key=repr)


async def test_copy_moves_every_table_and_the_store_carries_on(tmp_path: Path,
                                                               storage_url: str) -> None:
    source = tmp_path / "old.db"
    before = await fill(source)
    cfg = write_config(tmp_path / "smsgw.toml", {"storage": {"url": f"sqlite:///{source}"}})
    done = smsgw(cfg, "db", "copy", "--from", f"sqlite:///{source}", "--to", storage_url,
                 "--batch-rows", "70", check=False)
    assert done.returncode == 0, done.stderr
    assert "row counts verified" in done.stdout and "sms_spool" in done.stdout

    with sqlite3.connect(source) as db:
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' "
            "AND name NOT IN ('sqlite_sequence', 'schema_migrations')")]
        for table in tables:
            columns = [r[1] for r in db.execute(f'PRAGMA table_info("{table}")')]
            if table == "links":  # their created_at carries the URLs' order here
                columns.remove("created_at")
            want = sorted(db.execute(f'SELECT {", ".join(columns)} FROM "{table}"'), key=repr)
            assert table_rows(storage_url, table, columns) == want, table
    assert len(tables) >= 15

    store = open_store(storage_url)
    await store.open()
    try:
        assert await store.counts() == before["counts"]
        assert await store.pending_count() == before["pending"]
        assert (await store.get_journey(None, 1)).links == before["journey"].links
        [fresh] = await store.insert_messages([NewMessage(1, 1, "+59898123456", "after")])
        assert fresh.id == 304, "ids continue after the copied ones"
        assert (await store.create_tenant("later", "cd" * 32)).id == 3
    finally:
        await store.close()

    again = smsgw(cfg, "db", "copy", "--from", f"sqlite:///{source}", "--to", storage_url,
                  check=False)
    assert again.returncode == 1 and "already holds a spool" in again.stderr
    assert pgdb.query(storage_url, "SELECT count(*) FROM sms_spool")[0][0] == 304


def test_copy_refuses_other_urls(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "smsgw.toml", {})
    bad = smsgw(cfg, "db", "copy", "--from", "postgresql://x/y", "--to", "sqlite:///z.db",
                check=False)
    assert bad.returncode == 1 and "--from: expected sqlite:///" in bad.stderr
