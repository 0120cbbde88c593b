"""The disk under the SQLite spool fills up: intake answers 503 naming the
storage, /readyz answers 503 naming storage writes, nothing half-written is
left behind, dispatch pauses, and once space returns intake, readiness and
dispatch carry on without a restart.

The limit is real: the spool lives on a small tmpfs and a filler file takes
(all but a sliver of) it, so SQLite gets ENOSPC from the kernel exactly as
on a full /var. Deleting the filler is "space returns". Mounting needs root;
elsewhere the tests are skipped with the reason. Bounded: seconds each.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from spool.health import PROBE_AFTER_S
from tests.conftest import Running
from tests.faults.common import (
    loop_channels,
    readiness,
    ready_again,
    sent_ids,
    settle,
    storage_write_problem,
)

pytestmark = pytest.mark.timeout(60)

DISK_BYTES = 16 * 1024 * 1024
TEXT = "Recordatorio de su cita: " + "x" * 1375  # 1,400 characters: ten segments


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK_BYTES},mode=0700",
                           "smsgw-fault-disk", str(mount)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (root needed): {done.stderr.strip()}")
    try:
        yield mount
    finally:
        # Lazy: a file still held open must not leave the mount behind.
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture
def storage_url(small_disk: Path) -> str:
    """make_gateway's spool, on the small disk."""
    return f"sqlite:///{small_disk / 'spool.db'}"


def fill(disk: Path, leave: int, name: str = "filler") -> Path:
    filler = disk / name
    st = os.statvfs(disk)
    remaining = st.f_bavail * st.f_frsize - leave
    chunk = b"\0" * (1 << 20)
    with open(filler, "wb") as fh:
        try:
            while remaining > 0:
                remaining -= fh.write(chunk[:remaining])
                fh.flush()
        except OSError as err:  # the last pages: full is what was wanted
            if err.errno != errno.ENOSPC:
                raise
    return filler


def batch(tag: str, n: int, text: str = TEXT) -> dict[str, Any]:
    return {"messages": [{"destination": f"+59899{i:06d}", "message": f"{tag} {i} {text}"}
                         for i in range(n)]}


async def post(gw: Running, body: dict[str, Any]) -> tuple[int, dict[str, str], dict]:
    async with gw.session.post(f"{gw.url}/api/v1/messages", headers=gw.headers(),
                               json=body) as r:
        raw = await r.text()
        try:
            payload = json.loads(raw)
        except ValueError:
            payload = {"not_json": raw[:200]}
        return r.status, dict(r.headers), payload


def assert_storage_503(status: int, headers: dict[str, str], body: dict) -> None:
    assert status == 503, f"a full disk must answer 503 with a JSON error, got {status}: {body}"
    assert int(headers["Retry-After"]) >= 1
    assert "storage" in body["error"]


def assert_not_ready_disk_full(status: int, body: dict) -> None:
    problem = storage_write_problem(body)
    print(f"/readyz on the full disk: {status} {body}")
    assert status == 503 and problem is not None, f"a full disk must make /readyz 503: {body}"
    assert "full" in problem, problem


async def until_not_ready(gw: Running) -> float:
    """Seconds until /readyz turns 503 naming the full disk: at once after a
    write that failed, at most PROBE_AFTER_S when nothing has been written."""
    began = time.monotonic()
    seen: list[tuple[int, dict]] = []

    async def not_ready() -> bool:
        seen.append(await readiness(gw))
        return seen[-1][0] == 503
    assert await settle(not_ready, PROBE_AFTER_S + 5, every_s=0.25), \
        f"/readyz still 200 on a full disk: {seen[-1]}"
    taken_s = time.monotonic() - began
    assert_not_ready_disk_full(*seen[-1])
    return taken_s


def states(db: Path) -> Counter[int]:
    with sqlite3.connect(db, timeout=10) as conn:
        return Counter(dict(conn.execute("SELECT state, count(*) FROM sms_spool GROUP BY state")))


def integrity(db: Path) -> list[str]:
    conn = sqlite3.connect(db, timeout=10)
    try:
        return [r[0] for r in conn.execute("PRAGMA integrity_check")]
    finally:
        conn.close()


async def fill_until_refused(gw: Running, disk: Path) -> tuple[list[int], list, Path]:
    """Leave 1 MB; two clients post batches of long messages until one is refused."""
    filler = fill(disk, 1_000_000)
    acked: list[int] = []
    refused: list[tuple[int, dict[str, str], dict]] = []
    for round_no in range(40):
        answers = await asyncio.gather(*(post(gw, batch(f"r{round_no}c{c}", 100))
                                         for c in range(2)))
        for status, headers, body in answers:
            if status == 202:
                acked += [m["id"] for m in body["messages"]]
            else:
                refused.append((status, headers, body))
        if refused:
            return acked, refused, filler
    raise AssertionError(f"the disk never filled up ({len(acked)} messages accepted)")


async def test_full_disk_refuses_intake_with_503_and_stores_nothing_half(
        make_gateway, small_disk: Path, tmp_path: Path) -> None:
    gw = await make_gateway(channels=loop_channels(tmp_path / "sent.jsonl", latency_ms=5),
                            server={"max_body_bytes": 4 * 1024 * 1024})
    db = small_disk / "spool.db"
    acked, refused, filler = await fill_until_refused(gw, small_disk)
    try:
        print(f"\ndisk full after {len(acked)} accepted messages; refused: "
              f"{[(s, b) for s, _, b in refused]}")
        for answer in refused:
            assert_storage_503(*answer)
        # The largest batch a client may send (1,000 long messages) overflows
        # SQLite's page cache mid-transaction: ENOSPC then comes from a
        # statement, not from the commit, and must still be a 503.
        big = await post(gw, batch("big", 1000))
        print(f"a 1,000-message batch on the full disk: {big[0]} {big[2]}")
        assert_storage_503(*big)
        assert integrity(db) == ["ok"]
        assert sum(states(db).values()) == len(acked), \
            "every accepted message is kept and no refused one is stored"
        # What is left may still take small writes (results, claims) while
        # batches fail. With the last sliver taken too, nothing fits.
        rest = fill(small_disk, 0, name="rest")
        try:
            await until_not_ready(gw)
        finally:
            rest.unlink()
    finally:
        filler.unlink()  # space returns; the daemon is not restarted
    assert await ready_again(gw, PROBE_AFTER_S + 5), \
        f"/readyz still 503 after space returned: {await readiness(gw)}"
    status, _, body = await post(gw, batch("after", 50))
    assert status == 202, body
    assert integrity(db) == ["ok"]


async def test_full_disk_pauses_dispatch_and_it_resumes_without_restart(
        make_gateway, small_disk: Path, tmp_path: Path) -> None:
    record = tmp_path / "sent.jsonl"
    # Throttled (a message per 100 ms per channel), no delivery reports: a
    # channel spends most of its time holding a message it has taken from the
    # spool and not yet started, which is when the disk fills below.
    gw = await make_gateway(channels=loop_channels(record, time_between_ms=100, concurrency=1,
                                                   delivery_reports=False))
    db = small_disk / "spool.db"
    status, _, body = await post(gw, batch("before", 30, "hola"))
    assert status == 202, body
    acked = [m["id"] for m in body["messages"]]

    async def some_sent() -> bool:
        return sum(sent_ids(record).values()) >= 6
    assert await settle(some_sent, 10, every_s=0.005)
    await asyncio.sleep(0.03)  # those sends' results are written; the next marks are not
    filler = fill(small_disk, 0)
    assert_storage_503(*await post(gw, {"destination": "+59899100000", "message": "full"}))
    at_fill = sum(sent_ids(record).values())
    assert_not_ready_disk_full(*await readiness(gw))
    await asyncio.sleep(1.0)
    during = sum(sent_ids(record).values()) - at_fill
    while_full = states(db)
    # A send needs its start mark committed first: at most the message each
    # channel already had in hand goes out while nothing can be written.
    assert during <= 2, f"{during} sends while the disk was full"

    filler.unlink()  # space returns; the daemon is not restarted
    status, _, body = await post(gw, batch("after", 10, "hola"))
    assert status == 202, body
    acked += [m["id"] for m in body["messages"]]
    returned = time.monotonic()

    async def all_sent() -> bool:
        return states(db)[4] == len(acked)
    done = await settle(all_sent, 10)
    after = states(db)
    print(f"\naccepted {len(acked)}; sent while full: {during}; states while full: "
          f"{dict(while_full)}; {time.monotonic() - returned:.1f} s after space returned: "
          f"{dict(after)}")
    assert done, f"not all sent after space returned (2 = SENDING, stuck): {dict(after)}"
    sends = sent_ids(record)
    assert set(sends) == set(acked), "every accepted message went out"
    assert max(sends.values()) == 1, "and each once: nothing was in doubt"
    assert integrity(db) == ["ok"]


async def test_readyz_sees_a_disk_fill_while_idle_and_the_space_return(
        make_gateway, small_disk: Path, tmp_path: Path) -> None:
    """An idle daemon writes nothing, so nothing shows that the disk filled
    behind its back (another program's file); readiness then writes a probe
    (a message-sized row, written and removed in one transaction) at most
    once per PROBE_AFTER_S. /readyz turns 503 naming storage writes, and 200
    once space returns, with no request and no restart in between."""
    gw = await make_gateway(channels=loop_channels(tmp_path / "sent.jsonl"))
    status, body = await readiness(gw)
    assert status == 200, body
    filler = fill(small_disk, 0)
    try:
        noticed_s = await until_not_ready(gw)
        # What readiness says is what intake finds.
        assert_storage_503(*await post(gw, {"destination": "+59899100000", "message": "full"}))
    finally:
        filler.unlink()
    returned = time.monotonic()
    assert await ready_again(gw, PROBE_AFTER_S + 5), \
        f"/readyz still 503 after space returned: {await readiness(gw)}"
    print(f"\n/readyz 503 {noticed_s:.1f} s after the disk filled, 200 "
          f"{time.monotonic() - returned:.1f} s after space returned")
    status, _, body = await post(gw, batch("after", 10, "hola"))
    assert status == 202, body
