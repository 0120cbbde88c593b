"""Smart messaging figures: `.venv/bin/python bench/smart.py [--quick]`.

1. Redirect req/s and p50/p99 for a warm short code with click recording on,
   at concurrency 50, beside a bare aiohttp handler answering 302 (same run,
   same load generator). Target: >= 80% of the bare handler, p99 < 10 ms.
2. Escalation: N journeys (100,000) come due at once; time until every one
   has been advanced (its reminder SMS written) — target 60 s — beside raw
   SQLite doing the same writes (insert N rows, update N rows, batches of
   1,000, same durability).
3. Daemon RSS with 1,000,000 pending journeys in the database, beside the
   RSS with none: the scheduler keeps no per-journey state.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import PYTHON, Daemon, Figure, Workdir, free_port, rss_mb, table  # noqa: E402
from loadgen import find_wrk  # noqa: E402

POLICY = {"track_links": True, "wait": "4h", "sms_attempts": 2,
          "retry_templates": ["Reminder: {link}"]}

BARE_302 = """
import sys
from aiohttp import web
async def go(request):
    return web.Response(status=302, headers={"Location": "https://shop.example/x",
                                             "Cache-Control": "no-store"})
async def ready(request):
    return web.Response(text="ok")
app = web.Application()
app.router.add_get("/r/{code}", go)
app.router.add_get("/readyz", ready)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def wrk_get(wrk: str, url: str, seconds: float, connections: int) -> tuple[float, float, float]:
    """(req/s, p50 ms, p99 ms) for GETs of one URL."""
    done = subprocess.run([wrk, "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                           "--latency", url], capture_output=True, text=True,
                          timeout=seconds + 60)
    out = done.stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    return rate, _pct(out, "50%"), _pct(out, "99%")


def _pct(out: str, label: str) -> float:
    value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def redirect_figures(base: Path, seconds: float, wrk: str) -> list[Figure]:
    port = free_port()
    bare = subprocess.Popen([PYTHON, "-c", BARE_302, str(port)])
    try:
        _wait_http(f"http://127.0.0.1:{port}/readyz")
        b_rate, b_p50, b_p99 = wrk_get(wrk, f"http://127.0.0.1:{port}/r/x", seconds, 50)
    finally:
        bare.terminate()
        bare.wait(10)
    work = Workdir.create(base, "redirect", "full")
    key = work.add_tenant("bench")
    with Daemon(work):
        code = _tracked_code(work, key)
        rate, p50, p99 = wrk_get(wrk, f"{work.url}/r/{code}", seconds, 50)
        time.sleep(1.0)  # the last clicks' flush
        clicks = _scalar(work.db, "SELECT count(*) FROM clicks")
    return [Figure("redirect (warm code, clicks recorded)", "req/s", rate, "bare aiohttp 302",
                   b_rate, 0.8 * b_rate, target_text=">= 80% of bare", extra_ok=p99 < 10,
                   note=f"redirect p50 {p50:.2f} ms p99 {p99:.2f} ms (bare p50 {b_p50:.2f} "
                        f"p99 {b_p99:.2f}); {clicks:,} clicks recorded durably")]


def _tracked_code(work: Workdir, key: str) -> str:
    import urllib.request

    body = json.dumps({"destination": "+59898344484", "message": "see https://shop.example/x",
                       "smart": POLICY}).encode()
    req = urllib.request.Request(f"{work.url}/api/v1/messages", data=body, headers={
        "X-Api-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        mid = json.loads(r.read())["id"]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        code = _scalar(work.db, "SELECT l.code FROM links l JOIN sms_spool s "
                                "ON s.journey_id = l.journey WHERE s.id = ?", (mid,))
        if code:
            return str(code)
        time.sleep(0.05)
    raise RuntimeError("no short code was created")


def _wait_http(url: str) -> None:
    import urllib.request

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer")


def _scalar(db: Path, sql: str, args: tuple = ()) -> object:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30) as conn:
        row = conn.execute(sql, args).fetchone()
    return row[0] if row else None


def seed_journeys(db: Path, count: int, next_at: float) -> None:
    """`count` ACTIVE journeys with a link each, due at `next_at` (plain SQL)."""
    policy = json.dumps(POLICY)
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA synchronous=OFF")
        first = (conn.execute("SELECT coalesce(max(id), 0) FROM journeys").fetchone()[0]) + 1
        for start in range(0, count, 50_000):
            n = min(50_000, count - start)
            ids = range(first + start, first + start + n)
            conn.executemany(
                "INSERT INTO journeys (id, tenant, campaign, destination, state, policy, "
                "wait_s, step, next_at, created_at, updated_at) "
                "VALUES (?, 1, 1, ?, 'ACTIVE', ?, 14400, 1, ?, 0, 0)",
                [(i, f"+5989{i % 10_000_000:07d}", policy, next_at) for i in ids])
            conn.executemany("INSERT INTO links (code, journey, url, created_at) "
                             "VALUES (?, ?, 'https://shop.example/x', 0)",
                             [(f"c{i:010d}", i) for i in ids])


async def _advance_all(db: Path, count: int) -> float:
    from gateway.journeys import JourneyScheduler, Planner
    from spool.sqlite import SqliteStore

    store = SqliteStore(db, synchronous="full")
    await store.open()
    try:
        scheduler = JourneyScheduler(store, Planner("https://go.example", 10), batch=1000)
        began = time.perf_counter()
        while await scheduler.tick():
            pass
        took = time.perf_counter() - began
    finally:
        await store.close()
    advanced = _scalar(db, "SELECT count(*) FROM journeys WHERE step = 2")
    if advanced != count:
        raise RuntimeError(f"advanced {advanced} of {count} journeys")
    return took


def raw_baseline(db: Path, count: int) -> float:
    """Seconds for the bare writes of an advance: N inserts + N updates, 1,000 a commit."""
    with sqlite3.connect(db, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("CREATE TABLE m (id INTEGER PRIMARY KEY, j INT, dest TEXT, body TEXT)")
        conn.execute("CREATE TABLE j (id INTEGER PRIMARY KEY, step INT, next_at REAL)")
        conn.executemany("INSERT INTO j VALUES (?, 1, 0)", [(i,) for i in range(count)])
        began = time.perf_counter()
        for start in range(0, count, 1000):
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany("INSERT INTO m (j, dest, body) VALUES (?, '+59898344484', "
                             "'Reminder: https://go.example/r/c0000000001')",
                             [(i,) for i in range(start, start + 1000)])
            conn.executemany("UPDATE j SET step = 2, next_at = NULL WHERE id = ?",
                             [(i,) for i in range(start, start + 1000)])
            conn.execute("COMMIT")
        return time.perf_counter() - began


def escalation_figure(base: Path, count: int) -> Figure:
    work = Workdir.create(base, "escalate", "full")
    work.add_tenant("bench")  # migrates the schema
    seed_journeys(work.db, count, next_at=time.time() - 1)
    took = asyncio.run(_advance_all(work.db, count))
    base_s = raw_baseline(work.path / "raw.db", count)
    return Figure(f"escalation: {count:,} journeys due at once", "s", took,
                  "raw SQLite same writes", base_s, 60.0, higher_is_better=False,
                  target_text="< 60 s", note=f"{count / took:,.0f} journeys/s advanced")


def memory_figure(base: Path, count: int) -> Figure:
    empty = Workdir.create(base, "mem-empty", "full")
    empty.add_tenant("bench")
    with Daemon(empty) as d:
        time.sleep(3)
        base_rss = rss_mb(d.pid)[0]
    full = Workdir.create(base, "mem-journeys", "full")
    full.add_tenant("bench")
    seed_journeys(full.db, count, next_at=time.time() + 86400)
    with Daemon(full) as d:
        time.sleep(3)
        first = rss_mb(d.pid)[0]
        time.sleep(7)
        later = rss_mb(d.pid)[0]
    return Figure(f"daemon RSS, {count:,} pending journeys", "MB", later, "no journeys",
                  base_rss, 150, higher_is_better=False, extra_ok=later - first < 10,
                  target_text="< 150 MB, flat",
                  note=f"RSS {first:.1f} MB after start, {later:.1f} MB 7 s later")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--journeys", type=int)
    args = p.parse_args()
    count = args.journeys or (10_000 if args.quick else 100_000)
    wrk = find_wrk(allow_install=True)
    figures = []
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-smart-") as tmp:
        base = Path(tmp)
        if wrk:
            figures += redirect_figures(base, 3 if args.quick else 10, wrk)
        else:
            print("wrk is not available: redirect figure skipped", flush=True)
        figures.append(escalation_figure(base, count))
        figures.append(memory_figure(base, 100_000 if args.quick else 1_000_000))
    print(table(figures))


if __name__ == "__main__":
    main()
