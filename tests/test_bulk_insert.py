"""Big batches through insert_messages, as a CSV import writes them, on both backends.

SQLite writes a batch as multi-row INSERTs of a few fixed sizes; these
check that ids, fields, history, counters and the import's progress come
out exactly as one row at a time would leave them.
"""

from __future__ import annotations

import sys
from pathlib import Path

from gateway.importer import FileImporter
from spool.base import ImportProgress, ListFilter, NewMessage, State


def _batch(size: int, start: int = 0) -> list[NewMessage]:
    rows = []
    for i in range(start, start + size):
        invalid = i % 7 == 0
        rows.append(NewMessage(
            1, 1, f"+5989{i:07d}", f"text {i}",
            state=State.INVALID if invalid else State.TO_PROCESS, priority=i % 3,
            error="destination: too short" if invalid else None,
            data={"row": i} if i % 5 == 0 else None, agent="csv" if i % 2 else None))
    return rows


async def test_a_big_batch_is_stored_row_for_row(store) -> None:
    # 1,234 rows: every statement size SQLite uses (1000, 100, 10 and 1 rows).
    first = _batch(1234)
    progress = ImportProgress(key="bulk", line=1234, done=False, imported=1057, invalid=177)
    inserted = await store.insert_messages(first, import_progress=progress)
    ids = [i.id for i in inserted]
    assert ids == list(range(ids[0], ids[0] + 1234))
    assert [i.state for i in inserted] == [m.state for m in first]
    second = await store.insert_messages(_batch(3, start=1234))
    assert [i.id for i in second] == [ids[-1] + 1, ids[-1] + 2, ids[-1] + 3]

    stored = await store.list_messages(ListFilter(tenant=1, limit=2000))
    assert [m.id for m in stored] == [*ids, *(i.id for i in second)]
    for m, want in zip(stored, [*first, *_batch(3, start=1234)], strict=True):
        assert (m.destination, m.message, m.state, m.priority, m.error, m.data, m.agent) == (
            want.destination, want.message, want.state, want.priority, want.error, want.data,
            want.agent)
    for mid in (ids[0], ids[999], ids[1000], ids[-1]):
        assert len(await store.message_events(mid)) == 1

    [counts] = await store.counts()
    assert counts.by_state == {State.TO_PROCESS: 1060, State.INVALID: 177}
    assert await store.pending_count() == 1060
    saved = await store.import_progress("bulk")
    assert saved is not None and (saved.line, saved.imported) == (1234, 1057)


async def test_keys_repeated_in_a_big_batch_point_at_the_first_row(store) -> None:
    rows = [NewMessage(1, 1, f"+5989{i:07d}", f"t{i}", idempotency_key=f"k{i % 600}")
            for i in range(1200)]
    inserted = await store.insert_messages(rows)
    assert [i.duplicate for i in inserted] == [False] * 600 + [True] * 600
    assert [i.id for i in inserted[600:]] == [i.id for i in inserted[:600]]
    again = await store.insert_messages(rows[:3])
    assert [(i.id, i.duplicate) for i in again] == [(i.id, True) for i in inserted[:3]]


async def test_an_import_restores_the_switch_interval(make_gateway, tmp_path: Path) -> None:
    gw = await make_gateway(spool_folder={"enabled": False})
    path = tmp_path / "small.csv"
    path.write_text("".join(f"default;0983{i:05d};row {i}\n" for i in range(30)))
    before = sys.getswitchinterval()
    during: list[float] = []
    summary = await FileImporter(gw.app.services, 1, batch_rows=10).run(
        path, "small", errors_to=None, progress=lambda _: during.append(sys.getswitchinterval()))
    assert summary.imported == 30
    assert during and max(during) <= 0.0005
    assert sys.getswitchinterval() == before
