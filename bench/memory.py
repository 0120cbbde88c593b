"""Section 4: the daemon's resident memory with a large spool waiting.

The spool is the one section 3 filled (campaign stopped, every row in state
1). RSS is read from /proc after readiness, after idling, and after a burst
of API requests; the baseline is the same daemon on an empty spool.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from harness import Daemon, Figure, Workdir, log, rss_mb, spool_rows
from loadgen import describe, fixed_count

TARGET_MB = 150.0
# "Flat": what the burst and the idling may add on top of the ready daemon.
FLAT_MB = 20.0


@dataclass
class MemoryOptions:
    idle_s: float
    requests: int


def run(base: Path, work: Workdir, opts: MemoryOptions) -> list[Figure]:
    rows = spool_rows(work.db)
    log(f"memory: daemon over a spool of {rows:,} rows; idle {opts.idle_s:g}s, "
        f"{opts.requests:,} API requests")
    empty = Workdir.create(base, "memory-empty", work.synchronous)
    with Daemon(empty) as daemon:
        time.sleep(1.0)
        baseline = rss_mb(daemon.pid)[0]
    empty.remove()
    log(f"  baseline: daemon on an empty spool {baseline:.1f} MB")

    key = work.add_tenant("bench")
    work.campaigns("stop", ("default", "bench"))
    readings: list[tuple[str, float]] = []
    began = time.perf_counter()
    with Daemon(work, "memory-daemon") as daemon:
        ready_s = time.perf_counter() - began
        readings.append(("ready", rss_mb(daemon.pid)[0]))
        time.sleep(opts.idle_s)
        daemon.check_alive()
        readings.append((f"after {opts.idle_s:g}s idle", rss_mb(daemon.pid)[0]))
        load = fixed_count(work.url, key, opts.requests, connections=50,
                           timeout_s=max(30.0, opts.requests / 100))
        daemon.check_alive()
        readings.append((f"after {load.ok:,} requests", rss_mb(daemon.pid)[0]))
        time.sleep(2.0)
        rss, hwm = rss_mb(daemon.pid)
        readings.append(("2s later", rss))
    log(f"  requests: {describe(load)}")
    text = ", ".join(f"{name} {mb:.1f} MB" for name, mb in readings)
    log(f"  RSS {text}; peak (VmHWM) {hwm:.1f} MB; ready {ready_s:.1f}s after start")
    growth = readings[-1][1] - readings[0][1]
    flat = growth < FLAT_MB
    failed = None
    if load.ok != opts.requests:
        failed = f"{load.ok:,} of {opts.requests:,} requests got a 2xx"
    return [Figure(
        name=f"daemon RSS, {rows:,} rows waiting", unit="MB", value=hwm,
        baseline_name="empty spool", baseline=baseline, target=TARGET_MB,
        higher_is_better=False, extra_ok=flat, failed=failed,
        target_text=f"< {TARGET_MB:.0f} MB, flat (growth < {FLAT_MB:.0f} MB)",
        note=f"{text}; peak VmHWM {hwm:.1f} MB; growth {growth:+.1f} MB -> "
             f"{'flat' if flat else 'NOT flat'}")]
