"""The messages report streams: the daemon's peak memory while it sends a
CSV of 1,000,000 rows, beside the same daemon sending 1,000 rows.

`python bench/report.py [--rows N]`. The spool is filled with SQL (the
insert triggers keep their counts as intake would); the campaign is
stopped so the daemon only reads. Peak RSS is the kernel's high-water mark
(VmHWM) of the daemon process, read before and after each report; RSS is
also sampled every 100 ms while the big report streams.
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Daemon, Workdir, log, rss_mb  # noqa: E402

SMALL = 1_000
# "Flat": what streaming the big report may add to the peak of the small one.
FLAT_MB = 20.0


def fill(db: Path, big: int) -> None:
    """`big` rows in campaign 1 and SMALL rows in a second campaign, all waiting."""
    conn = sqlite3.connect(db)
    now = time.time()
    with conn:
        conn.execute("UPDATE campaigns SET enabled = 0")
        conn.execute("INSERT INTO campaigns (tenant, name, enabled, created_at) "
                     "VALUES (1, 'small', 0, ?)", (now,))
        small_id = conn.execute("SELECT id FROM campaigns WHERE name = 'small'").fetchone()[0]
        for campaign, count in ((1, big), (small_id, SMALL)):
            for start in range(0, count, 50_000):
                conn.executemany(
                    "INSERT INTO sms_spool (tenant, campaign, destination, message, state, "
                    "created_at, updated_at) VALUES (1, ?, ?, ?, 1, ?, ?)",
                    [(campaign, f"+5989{i:07d}", f"Hola, your code is {i:06d}. Reply STOP",
                      now, now) for i in range(start, min(count, start + 50_000))])
    conn.close()


def operator_key(work: Workdir) -> str:
    found = re.search(r"(sgw_\S+)", work.cli("tenant", "key", "default"))
    assert found, "no key printed"
    return found.group(1)


def stream(url: str, key: str, pid: int) -> tuple[int, int, float, float]:
    """(rows, bytes, seconds, max sampled RSS MB) of one report download."""
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            peak[0] = max(peak[0], rss_mb(pid)[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    began = time.perf_counter()
    lines = size = 0
    request = urllib.request.Request(url, headers={"X-Api-Key": key})
    with urllib.request.urlopen(request, timeout=600) as response:
        while chunk := response.read(256 * 1024):
            size += len(chunk)
            lines += chunk.count(b"\n")
    elapsed = time.perf_counter() - began
    done.set()
    sampler.join()
    return lines - 1, size, elapsed, peak[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="smsgw-report-bench-") as tmp:
        work = Workdir.create(Path(tmp), "report", "normal")
        work.cli("db", "migrate")
        began = time.perf_counter()
        fill(work.db, args.rows)
        log(f"report: spool filled with {args.rows:,} + {SMALL:,} rows "
            f"in {time.perf_counter() - began:.1f}s")
        key = operator_key(work)
        base = f"{work.url}/api/v1/reports/messages.csv"
        with Daemon(work, "report-daemon") as daemon:
            time.sleep(1.0)
            ready = rss_mb(daemon.pid)
            small = stream(f"{base}?campaign=small", key, daemon.pid)
            small_hwm = rss_mb(daemon.pid)[1]
            big = stream(f"{base}?campaign=default", key, daemon.pid)
            big_hwm = rss_mb(daemon.pid)[1]
    return _print(args.rows, ready, small, small_hwm, big, big_hwm)


def _print(rows: int, ready: tuple[float, float], small: tuple[int, int, float, float],
           small_hwm: float, big: tuple[int, int, float, float], big_hwm: float) -> int:
    ok_rows = small[0] == SMALL and big[0] == rows
    growth = big_hwm - small_hwm
    log(f"  daemon ready: RSS {ready[0]:.1f} MB")
    log(f"  baseline: {small[0]:,} rows, {small[1] / 1e6:.2f} MB of CSV in {small[2]:.2f}s; "
        f"peak RSS {small_hwm:.1f} MB")
    log(f"  report:   {big[0]:,} rows, {big[1] / 1e6:.1f} MB of CSV in {big[2]:.1f}s "
        f"({big[0] / big[2]:,.0f} rows/s); peak RSS {big_hwm:.1f} MB "
        f"(sampled max {big[3]:.1f} MB)")
    verdict = "flat" if growth < FLAT_MB and ok_rows else "NOT flat" if ok_rows else "WRONG ROWS"
    log(f"  peak RSS ratio {big_hwm / small_hwm:.2f}x the {SMALL:,}-row baseline "
        f"(+{growth:.1f} MB; target < +{FLAT_MB:.0f} MB): {verdict}")
    return 0 if ok_rows else 1


if __name__ == "__main__":
    sys.exit(main())
