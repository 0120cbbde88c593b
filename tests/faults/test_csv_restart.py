"""A 100 MB CSV with 10% bad rows dropped into the spool folder, and the
daemon killed (SIGKILL) in the middle of importing it, then started again.

Proves: every good row is imported exactly once (each carries a unique
marker in its text, counted in the spool with plain SQL), every bad row and
every row stored but never to be sent (blocked, invalid) is listed once in
NAME.errors.csv with its line and state, and the file ends in processed/.
Prints the import rate. The campaign is stopped so that the daemon spends
the run importing, not sending. Bounded: about a minute.
"""

from __future__ import annotations

import csv
import os
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.proc import Daemon, free_port, smsgw, write_config

pytestmark = pytest.mark.timeout(180)

FILE_BYTES = 100 * 1024 * 1024  # the size
ROW_TEXT = "Estimado cliente, su pedido fue despachado y llega mañana entre 9 y 18 h."
BAD_EVERY = 10  # one row in ten is bad
UNSENDABLE_EVERY = 20  # and one in twenty is stored, but blocked or invalid
BLOCKED_NUMBER = "+59899199999"
MARKER = re.compile(r"^m(\d{8}) ")


def bad_row(n: int) -> str:
    """Rows the importer must reject (not store): three kinds, in turn."""
    kind = (n // BAD_EVERY) % 3
    if kind == 0:
        return f"default;+598990{n % 100000:05d};m{n:08d} {ROW_TEXT};urgent\n"  # priority
    if kind == 1:
        return f"default;+598990{n % 100000:05d}\n"  # no message column
    return f"nosuch;+598990{n % 100000:05d};m{n:08d} {ROW_TEXT};\n"  # unknown campaign


def unsendable_row(n: int) -> tuple[str, str]:
    """A row stored but never sent, and the state the report gives it."""
    if (n // UNSENDABLE_EVERY) % 2 == 0:
        return f"default;12;m{n:08d} {ROW_TEXT};\n", "INVALID"
    return f"default;{BLOCKED_NUMBER};m{n:08d} {ROW_TEXT};\n", "BLOCKED"


def write_csv(path: Path) -> tuple[int, set[int], dict[int, str]]:
    """FILE_BYTES of rows; returns the row count, the lines of the bad ones and
    the state of each unsendable one by line."""
    bad_lines: set[int] = set()
    unsendable: dict[int, str] = {}
    size = n = 0
    with open(path, "w", encoding="utf-8", newline="") as fh:
        chunk: list[str] = []
        while size < FILE_BYTES:
            if n % BAD_EVERY == BAD_EVERY - 1:
                row = bad_row(n)
                bad_lines.add(n + 1)
            elif n % UNSENDABLE_EVERY == 4:
                row, unsendable[n + 1] = unsendable_row(n)
            else:
                row = f"default;+598990{n % 100000:05d};m{n:08d} {ROW_TEXT};{n % 3}\n"
            chunk.append(row)
            size += len(row.encode())
            n += 1
            if len(chunk) == 10_000:
                fh.write("".join(chunk))
                chunk.clear()
        fh.write("".join(chunk))
    return n, bad_lines, unsendable


def stored_markers(db: Path) -> list[int]:
    with sqlite3.connect(db, timeout=30) as conn:
        return [int(MARKER.match(text).group(1))  # type: ignore[union-attr]
                for (text,) in conn.execute("SELECT message FROM sms_spool")]


def imported_count(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            return int(conn.execute("SELECT count(*) FROM sms_spool").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_big_csv_with_bad_rows_survives_a_kill_mid_import(tmp_path: Path) -> None:
    spool, db = tmp_path / "spool", tmp_path / "spool.db"
    port = free_port()
    config = write_config(tmp_path / "smsgw.toml", {
        "server": {"port": port},
        "storage": {"url": f"sqlite:///{db}", "synchronous": "full"},
        "dispatcher": {"node_name": "csv-node"},
        "spool_folder": {"path": str(spool), "poll_interval_s": 0.1, "stable_s": 0.2},
        "logging": {"format": "json", "level": "info"},
        "channels": [{"name": "loop-a", "driver": "loopback"}],
    })
    smsgw(config, "db", "migrate")
    smsgw(config, "campaign", "stop", "default")
    smsgw(config, "blacklist", "add", BLOCKED_NUMBER)
    made = time.monotonic()
    rows, bad_lines, unsendable = write_csv(tmp_path / "big.csv")
    good = {n for n in range(rows) if n + 1 not in bad_lines}
    print(f"\n{(tmp_path / 'big.csv').stat().st_size / 2**20:.0f} MB, {rows} rows "
          f"({len(bad_lines)} bad) written in {time.monotonic() - made:.1f} s")
    daemon = Daemon(config, port, tmp_path / "daemon.log").start()
    try:
        incoming = spool / "incoming"
        os.replace(tmp_path / "big.csv", incoming / "big.csv")  # dropped whole
        dropped = time.monotonic()
        # Kill once about a third is in: mid-file, between or inside a batch.
        while imported_count(db) < len(good) // 3:
            assert time.monotonic() - dropped < 90, "the import did not get going"
            time.sleep(0.05)
        assert daemon.kill(signal.SIGKILL) == -signal.SIGKILL
        at_kill, killed_after = imported_count(db), time.monotonic() - dropped
        assert (incoming / "big.csv").exists(), "the kill came after the import finished"
        daemon.start()
        restarted = time.monotonic()
        processed = spool / "processed" / "big.csv"
        while not processed.exists():
            assert time.monotonic() - restarted < 120, "the import did not finish"
            time.sleep(0.1)
        finished = time.monotonic()
    finally:
        daemon.stop()
    markers = stored_markers(db)
    with open(spool / "processed" / "big.errors.csv", newline="", encoding="utf-8") as fh:
        report = list(csv.reader(fh, delimiter=";"))
    listed = [int(r[0]) for r in report[1:]]
    total_s = finished - dropped
    print(f"killed after {killed_after:.1f} s with {at_kill} rows in; finished "
          f"{finished - restarted:.1f} s after the restart; {len(markers)} rows stored, "
          f"{len(listed)} listed as bad; {rows / total_s:,.0f} rows/s "
          f"({FILE_BYTES / 2**20 / total_s:.1f} MB/s) over the whole run, restart included")
    assert report[0] == ["line", "state", "reason", "raw"]
    assert len(markers) == len(set(markers)), "a good row was imported twice"
    assert set(markers) == good, "every good row imported"
    assert sorted(listed) == sorted(bad_lines | set(unsendable)), \
        "every row that will not go listed once, by its line"
    assert {int(r[0]): r[1] for r in report[1:] if r[1] != "REJECTED"} == unsendable
