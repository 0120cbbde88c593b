"""CSV files dropped into the spool folder of a running daemon."""

from __future__ import annotations

import asyncio
import csv
import os
from pathlib import Path

from spool.base import ListFilter, State
from tests.conftest import Running

GOOD_BAD_BLOCKED = (
    "\ufeffcampign;destiny;menssage;priority\n"  # legacy header, with a BOM
    "default;098344484;hola, qué tal;1\n"
    "default;098344485;\"quoted; with delimiter\";2\n"
    "default;098000000;listed number;\n"
    "default;12;not a number;\n"
    "nosuch;098344486;unknown campaign;\n"
    "default;098344487\n"
    "default;098344488;bad priority;high\n"
)


class ProcessDied(BaseException):
    """Stands for the process ending mid-import: nothing after it runs."""


async def drop(gw: Running, name: str, content: str) -> Path:
    incoming = gw.app.settings.spool_folder.path / "incoming"
    tmp = incoming / f"{name}.tmp"
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, incoming / name)  # written as *.tmp, then renamed: complete at once
    return incoming / name


async def moved(gw: Running, folder: str, name: str) -> Path:
    target = gw.app.settings.spool_folder.path / folder / name

    async def check():
        return target.exists()
    await gw.wait_for(check, timeout=10)
    return target


async def test_every_row_is_accounted_for(gateway: Running) -> None:
    await gateway.store.blacklist_add([("+59898000000", None)])
    await drop(gateway, "batch.csv", GOOD_BAD_BLOCKED)
    await moved(gateway, "processed", "batch.csv")
    errors = (gateway.app.settings.spool_folder.path / "processed" / "batch.errors.csv")
    with open(errors, newline="") as fh:
        lines = list(csv.reader(fh, delimiter=";"))
    assert lines[0] == ["line", "state", "reason", "raw"]
    listed = {int(line[0]): line for line in lines[1:]}
    assert set(listed) == {4, 5, 6, 7, 8}  # every row that will not go
    assert [listed[n][1] for n in (4, 5, 6, 7, 8)] == [
        "BLOCKED", "INVALID", "REJECTED", "REJECTED", "REJECTED"]
    assert "unknown campaign" in listed[6][2]
    assert listed[8][3] == "default;098344488;bad priority;high"
    stored = await gateway.store.list_messages(ListFilter(tenant=1))
    by_text = {m.message: m for m in stored}
    assert set(by_text) == {"hola, qué tal", "quoted; with delimiter", "listed number",
                            "not a number"}
    assert by_text["listed number"].state == State.BLOCKED
    assert by_text["not a number"].state == State.INVALID
    assert by_text["hola, qué tal"].priority == 1
    assert by_text["quoted; with delimiter"].destination == "+59898344485"


async def test_nothing_usable_goes_to_failed(gateway: Running) -> None:
    await drop(gateway, "junk.csv", "just;two\n\x00\x01;;;\n")
    await moved(gateway, "failed", "junk.csv")
    assert (gateway.app.settings.spool_folder.path / "failed" / "junk.errors.csv").exists()
    assert await gateway.store.list_messages(ListFilter(tenant=1)) == []


async def test_a_file_still_being_written_is_not_read(gateway: Running) -> None:
    incoming = gateway.app.settings.spool_folder.path / "incoming"
    path = incoming / "growing.csv"
    with open(path, "w") as fh:  # noqa: ASYNC230 - a writer slower than the watcher
        for i in range(8):
            fh.write(f"default;09834448{i};part {i}\n")
            fh.flush()
            # Shorter than stable_s (0.1 s) but longer than the poll (0.05 s):
            # the watcher sees the file many times, always still changing.
            await asyncio.sleep(0.06)
        assert not (gateway.app.settings.spool_folder.path / "processed" / "growing.csv").exists()
        fh.write("default;098344489;last\n")
    await moved(gateway, "processed", "growing.csv")
    stored = await gateway.store.list_messages(ListFilter(tenant=1))
    assert sorted(m.message for m in stored) == ["last", *[f"part {i}" for i in range(8)]]


async def test_symlinks_are_not_followed(gateway: Running, tmp_path: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("default;098344484;from outside\n")
    link = gateway.app.settings.spool_folder.path / "incoming" / "link.csv"
    link.symlink_to(secret)
    await drop(gateway, "after.csv", "default;098344485;real\n")
    await moved(gateway, "processed", "after.csv")
    assert link.is_symlink()  # left alone
    assert [m.message for m in await gateway.store.list_messages(ListFilter(tenant=1))] == [
        "real"]


async def test_resume_after_restart_neither_loses_nor_duplicates(make_gateway,
                                                                 tmp_path: Path) -> None:
    """A crash mid-file: the committed progress says where to resume."""
    from gateway.importer import FileImporter

    gw = await make_gateway(spool_folder={"enabled": False})
    services = gw.app.services
    path = tmp_path / "big.csv"
    path.write_text("".join(f"default;0983{i:05d};row {i}\n" for i in range(5000)))
    importer = FileImporter(services, 1, batch_rows=1000)
    calls = 0
    real_insert = gw.store.insert_messages

    async def dying_insert(rows, **kw):
        nonlocal calls
        calls += 1
        if calls == 3:
            raise ProcessDied  # the process dies here (not an Exception)
        return await real_insert(rows, **kw)

    gw.store.insert_messages = dying_insert
    try:
        await importer.run(path, "big-key", errors_to=tmp_path / "big.errors.csv")
    except ProcessDied:
        pass
    gw.store.insert_messages = real_insert
    progress = await gw.store.import_progress("big-key")
    assert progress is not None and progress.line == 2000 and not progress.done
    summary = await FileImporter(services, 1, batch_rows=1000).run(
        path, "big-key", errors_to=tmp_path / "big.errors.csv")
    assert summary.resumed_from_line == 2000
    assert summary.imported == 5000
    stored = await gw.store.list_messages(ListFilter(tenant=1, limit=10_000))
    texts = [m.message for m in stored]
    assert len(texts) == 5000 == len(set(texts))
