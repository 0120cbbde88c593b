"""Section 2: dispatch throughput, spool -> loopback channels with no latency.

N rows are written straight into the spool (the schema's triggers keep the
history and the counters as intake would), then the campaign is started on
a running daemon and the clock runs until every row is SENT or DELIVERED.

The baseline is what SQLite itself does with the same durability on this
disk at this moment: per 50 rows, one transaction inserts them and a second
one changes their state (the least a durable claim-and-record costs).
"""

from __future__ import annotations

import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from harness import BenchError, Daemon, Figure, Workdir, cpu_seconds, log, sql_scalar

TARGET_MSGS = 10_000
_DONE = "SELECT coalesce(sum(n), 0) FROM spool_counts WHERE state IN (4, 5)"


@dataclass
class DispatchOptions:
    rows: int
    synchronous: str
    max_s: float
    baseline_s: float


def prefill(db: Path, rows: int, *, campaign: int = 1, tenant: int = 1,
            seed: int = 7) -> None:
    """`rows` messages in state 1, as intake would have stored them."""
    rng = random.Random(seed)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # Set-up only: durability of the fill is not what is measured.
        conn.execute("PRAGMA synchronous=OFF")
        now = time.time()
        done = 0
        while done < rows:
            chunk = min(20_000, rows - done)
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT INTO sms_spool (tenant, campaign, destination, message, priority, "
                "state, note, kind, segments, encoding, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 0, 1, 'accepted', 'sms', 1, 'gsm7', ?, ?)",
                ((tenant, campaign, f"+5989{rng.randint(1, 9)}{rng.randrange(10**6):06d}",
                  f"Bench dispatch {done + i} your code is {rng.randrange(10**6):06d} ok",
                  now, now) for i in range(chunk)))
            conn.execute("COMMIT")
            done += chunk
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def sqlite_baseline(path: Path, synchronous: str, seconds: float,
                    max_rows: int = 5_000_000, smsgw_schema: bool = False) -> float:
    """Rows/s of: INSERT 50 rows in one transaction, UPDATE their state in another.

    With `smsgw_schema`, `path` is a freshly migrated spool and the loop runs
    on sms_spool itself, through its indexes and triggers.
    """
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous.upper()}")
        if not smsgw_schema:
            conn.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, "
                         "destination TEXT NOT NULL, message TEXT NOT NULL, "
                         "state INTEGER NOT NULL, updated_at REAL)")
            insert = "INSERT INTO t (destination, message, state, updated_at) VALUES (?,?,1,?)"
            update = "UPDATE t SET state = 4, updated_at = ? WHERE id BETWEEN ? AND ?"
        else:
            insert = ("INSERT INTO sms_spool (tenant, campaign, destination, message, state, "
                      "created_at, updated_at) VALUES (1, 1, ?, ?, 1, ?, ?)")
            update = "UPDATE sms_spool SET state = 4, updated_at = ? WHERE id BETWEEN ? AND ?"
        rows = 0
        began = time.perf_counter()
        deadline = began + seconds
        while time.perf_counter() < deadline and rows < max_rows:
            now = time.time()
            batch = [(f"+59898{(rows + i) % 10**6:06d}", "Bench baseline message text here", now)
                     for i in range(50)]
            conn.execute("BEGIN IMMEDIATE")
            if not smsgw_schema:
                cur = conn.executemany(insert, batch)
            else:
                cur = conn.executemany(insert, [(*b, now) for b in batch])
            last = conn.execute("SELECT last_insert_rowid()").fetchone()[0]
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            cur = conn.execute(update, (time.time(), last - 49, last))
            conn.execute("COMMIT")
            if cur.rowcount != 50:
                raise BenchError(f"baseline updated {cur.rowcount} rows, expected 50")
            rows += 50
        return rows / (time.perf_counter() - began)
    finally:
        conn.close()


def _copy_db(src: Path, dst: Path) -> None:
    with sqlite3.connect(src) as a, sqlite3.connect(dst) as b:
        a.backup(b)


def run(base: Path, opts: DispatchOptions) -> tuple[list[Figure], dict[str, float]]:
    log(f"dispatch: {opts.rows:,} rows, sync={opts.synchronous}, "
        f"at most {opts.max_s:g}s")
    work = Workdir.create(base, "dispatch", opts.synchronous)
    # The CLI migrates the new spool; the campaign waits stopped while we fill it.
    work.campaigns("stop")
    _copy_db(work.db, work.path / "baseline-schema.db")
    raw = sqlite_baseline(work.path / "baseline.db", opts.synchronous, opts.baseline_s)
    schema = sqlite_baseline(work.path / "baseline-schema.db", opts.synchronous,
                             opts.baseline_s / 2, smsgw_schema=True)
    log(f"  baseline raw SQLite (WAL, synchronous={opts.synchronous}): {raw:,.0f} rows/s; "
        f"same loop on the smsgw schema (indexes, triggers): {schema:,.0f} rows/s")
    t0 = time.perf_counter()
    prefill(work.db, opts.rows)
    log(f"  prefilled {opts.rows:,} rows in {time.perf_counter() - t0:.1f}s")

    figure = Figure(name=f"dispatch (sync={opts.synchronous})", unit="msgs/s", value=None,
                    baseline_name="raw SQLite 50-row txns", baseline=raw, target=TARGET_MSGS,
                    baseline_unit="rows/s")
    with Daemon(work) as daemon:
        work.campaigns("start")
        # The clock starts once the campaign is enabled in the database, not
        # while the CLI process is still starting up.
        cpu0 = cpu_seconds(daemon.pid)
        began = time.perf_counter()
        done, first_at, stalled, elapsed = _wait_all_sent(work, daemon, opts, began)
        cpu = cpu_seconds(daemon.pid) - cpu0
    exact = int(sql_scalar(work.db, "SELECT count(*) FROM sms_spool WHERE state IN (4, 5)"))
    left = int(sql_scalar(work.db, "SELECT count(*) FROM sms_spool WHERE state NOT IN (4, 5)"))
    figure.value = done / elapsed
    steady = ""
    if first_at is not None and elapsed > first_at:
        steady = f", {done / (elapsed - first_at):,.0f} msgs/s after the first send"
    figure.note = (f"{done:,} of {opts.rows:,} sent in {elapsed:.1f}s after `campaign start` "
                   f"(first send seen after {first_at or 0:.1f}s{steady}); "
                   f"daemon CPU {cpu:.1f}s = {cpu / max(done, 1) * 1e6:,.0f} us/msg; "
                   f"count(*) state IN (4,5) = {exact:,}, other states {left:,}; "
                   f"same loop on the smsgw schema {schema:,.0f} rows/s")
    if stalled:
        figure.failed = "dispatch stalled"
    elif done < opts.rows:
        figure.note += f"; stopped at the {opts.max_s:g}s limit"
    elif exact != opts.rows or left != 0:
        figure.failed = f"count(*) of sent rows is {exact:,}, expected {opts.rows:,}"
    log(f"  {figure.note}")
    work.remove()
    return [figure], {}


def _wait_all_sent(work: Workdir, daemon: Daemon, opts: DispatchOptions,
                   began: float) -> tuple[int, float | None, bool, float]:
    """Poll every 0.2 s until all rows are sent, the time limit, or a stall."""
    # The trigger-kept counters answer in microseconds; count(*) over the
    # spool would steal CPU from the daemon on a two-core machine. The exact
    # count(*) is checked once at the end.
    first_at = None
    last, last_change = 0, time.perf_counter()
    while True:
        daemon.check_alive()
        done = int(sql_scalar(work.db, _DONE))
        now = time.perf_counter()
        if done and first_at is None:
            first_at = now - began
        if done != last:
            last, last_change = done, now
        if done >= opts.rows or now - began > opts.max_s:
            return done, first_at, False, now - began
        if now - last_change > 30:
            return done, first_at, True, now - began
        time.sleep(0.2)
