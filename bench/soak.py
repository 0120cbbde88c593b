"""Soak: steady traffic for a long time, and the daemon's memory over it.

`.venv/bin/python bench/soak.py` sends `--rate` messages a second (500)
through `POST /api/v1/messages`, one per request, for `--duration-s` seconds
(600; `--quick`: 60) to one daemon whose two loopback channels send them and
report them delivered. Every `--sample-s` seconds (10) it reads the daemon's
RSS from /proc. It prints the series, the starting RSS and the slope of a
least-squares line through the samples after the warm-up (the first fifth of
the run, at least 20 s): "flat" means a slope under 1 MB/min.

Correctness alongside: every request must get 202 (a 429 or 503 is counted
and reported, anything else fails the run), and at the end every accepted
message must have been delivered. 127.0.0.1 only; bounded in time and count.
Exit status 1 when a check fails, 0 otherwise (a slope over the target
included: the table says MISSED).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchError,
    Daemon,
    Figure,
    Workdir,
    log,
    rss_mb,
    sql_scalar,
    table,
)

FLAT_MB_PER_MIN = 1.0
DELIVERED = 5


@dataclass
class Traffic:
    sent: int = 0
    accepted: int = 0
    refused: int = 0  # 429 / 503: documented back-pressure
    errors: list[str] = field(default_factory=list)


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="one minute instead of ten")
    p.add_argument("--duration-s", type=float, help="length of the traffic (600; quick 60)")
    p.add_argument("--rate", type=int, default=500, help="messages per second")
    p.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    p.add_argument("--connections", type=int, default=32, help="HTTP connections")
    p.add_argument("--tmp", default=None, help="where the work directory goes")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.duration_s = args.duration_s or (60.0 if args.quick else 600.0)
    return args


def configure(work: Workdir) -> None:
    """The harness config, with loopback channels that report delivery."""
    text = work.config.read_text()
    text = text.replace("delivery_reports = false",
                        "delivery_reports = true\nreport_delay_ms = 200.0")
    if "report_delay_ms" not in text:
        raise BenchError("the harness config changed: no loopback channel to adjust")
    work.config.write_text(text)


async def send_steadily(url: str, key: str, rate: int, duration_s: float,
                        connections: int) -> Traffic:
    """`rate` requests a second in 100 ms ticks, whatever the answers take."""
    import aiohttp

    traffic = Traffic()
    headers = {"X-Api-Key": key, "Content-Type": "application/json"}
    per_tick = max(1, rate // 10)
    gate = asyncio.Semaphore(connections * 4)
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=30)

    async def one(session: aiohttp.ClientSession, n: int) -> None:
        body = json.dumps({"destination": f"+59898{n % 1_000_000:06d}",
                           "message": f"Soak {n}: your code is {n % 1_000_000:06d}"})
        try:
            async with session.post(url + "/api/v1/messages", data=body,
                                    headers=headers) as r:
                await r.read()
                if r.status == 202:
                    traffic.accepted += 1
                elif r.status in (429, 503):
                    traffic.refused += 1
                else:
                    traffic.errors.append(f"HTTP {r.status}")
        except (aiohttp.ClientError, TimeoutError) as err:
            traffic.errors.append(repr(err))
        finally:
            gate.release()

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        began = time.monotonic()
        tasks: set[asyncio.Task[None]] = set()
        tick = 0
        while time.monotonic() - began < duration_s:
            for _ in range(per_tick):
                await gate.acquire()
                task = asyncio.create_task(one(session, traffic.sent))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                traffic.sent += 1
            tick += 1
            await asyncio.sleep(max(0.0, began + tick * 0.1 - time.monotonic()))
        await asyncio.gather(*tasks)
    return traffic


def rss_parts_mb(pid: int) -> dict[str, float]:
    """RssAnon (the heap: what a leak grows) and RssFile + RssShmem (mapped files,
    SQLite's WAL index among them), in MB."""
    parts = {"anon": 0.0, "file": 0.0}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, rest = line.partition(":")
            if key == "RssAnon":
                parts["anon"] += int(rest.split()[0]) / 1024
            elif key in ("RssFile", "RssShmem"):
                parts["file"] += int(rest.split()[0]) / 1024
    return parts


def sqlite_heap_mb(url: str) -> float | None:
    """The daemon's smsgw_sqlite_heap_bytes from /metrics (loopback needs no token)."""
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("smsgw_sqlite_heap_bytes "):
                return float(line.split()[1]) / 2**20
    return None


async def sample_rss(daemon: Daemon, every_s: float, stop: asyncio.Event, anon: list[float],
                     sqlite: list[float | None]) -> list[tuple[float, float]]:
    began = time.monotonic()
    series: list[tuple[float, float]] = []

    async def sample() -> None:
        heap = await asyncio.to_thread(sqlite_heap_mb, daemon.work.url)
        series.append((time.monotonic() - began, rss_mb(daemon.pid)[0]))
        anon.append(rss_parts_mb(daemon.pid)["anon"])
        sqlite.append(heap)

    while True:
        daemon.check_alive()
        await sample()
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            continue
        await sample()
        return series


def slope_mb_per_min(series: list[tuple[float, float]]) -> float:
    """Least-squares slope of RSS (MB) against time (minutes)."""
    xs = [t / 60 for t, _ in series]
    ys = [mb for _, mb in series]
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def wait_delivered(work: Workdir, accepted: int, timeout_s: float = 120.0) -> int:
    deadline = time.monotonic() + timeout_s
    while True:
        done = int(sql_scalar(work.db, "SELECT count(*) FROM sms_spool WHERE state = ?",
                              (DELIVERED,)))
        if done >= accepted or time.monotonic() > deadline:
            return done
        time.sleep(1.0)


async def soak(daemon: Daemon, key: str, args: argparse.Namespace, anon: list[float],
               sqlite: list[float | None]) -> tuple[Traffic, list[tuple[float, float]]]:
    stop = asyncio.Event()
    sampler = asyncio.create_task(sample_rss(daemon, args.sample_s, stop, anon, sqlite))
    try:
        traffic = await send_steadily(daemon.work.url, key, args.rate, args.duration_s,
                                      args.connections)
    finally:
        stop.set()
    return traffic, await sampler


def report(args: argparse.Namespace, traffic: Traffic, series: list[tuple[float, float]],
           anon: list[float], sqlite: list[float | None], delivered: int) -> Figure:
    warm_up_s = max(20.0, args.duration_s / 5)
    steady = [(t, mb) for t, mb in series if t >= warm_up_s] or series
    slope = slope_mb_per_min(steady)
    anon_steady = [(t, a) for (t, _), a in zip(series, anon, strict=True) if t >= warm_up_s]
    anon_slope = slope_mb_per_min(anon_steady or list(zip([t for t, _ in series], anon,
                                                              strict=True)))
    log("RSS series (s, MB): " + ", ".join(f"{t:.0f}:{mb:.1f}" for t, mb in series))
    log("of which anonymous (heap), MB: " + ", ".join(f"{a:.1f}" for a in anon))
    known = [mb for mb in sqlite if mb is not None]
    if known:
        log("of which SQLite's caches (bounded by cache_size), MB: "
            + ", ".join(f"{mb:.1f}" for mb in known))
    failed = None
    if traffic.errors:
        failed = f"{len(traffic.errors)} errors, first: {traffic.errors[0]}"
    elif delivered < traffic.accepted:
        failed = f"only {delivered:,} of {traffic.accepted:,} accepted messages delivered"
    rate = traffic.accepted / args.duration_s
    return Figure(
        name=f"soak RSS slope ({args.duration_s / 60:.1f} min at {args.rate}/s)",
        unit="MB/min", value=slope, baseline_name="RSS at start", baseline=series[0][1],
        baseline_unit="MB", target=FLAT_MB_PER_MIN, higher_is_better=False, failed=failed,
        target_text=f"< {FLAT_MB_PER_MIN} MB/min after {warm_up_s:.0f} s warm-up",
        note=(f"slope {slope:.2f} MB/min after the warm-up ({anon_slope:.2f} MB/min of "
              f"it anonymous memory); "
              f"{traffic.accepted:,} accepted ({rate:,.0f}/s), {traffic.refused} refused "
              f"with 429/503, {len(traffic.errors)} errors, {delivered:,} delivered; RSS "
              f"{series[0][1]:.1f} -> {series[-1][1]:.1f} MB, peak "
              f"{max(mb for _, mb in series):.1f} MB; slope over the whole run "
              f"{slope_mb_per_min(series):.2f} MB/min"
              + (f"; SQLite heap {known[0]:.1f} -> {known[-1]:.1f} MB" if known else "")))


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    base = Path(args.tmp) if args.tmp else Path(__import__("tempfile").gettempdir())
    work = Workdir.create(base, "soak", "full")
    configure(work)
    try:
        key = work.add_tenant("soak")
        with Daemon(work) as daemon:
            log(f"soak: {args.rate} msgs/s for {args.duration_s:.0f} s against {work.url}, "
                f"RSS every {args.sample_s:.0f} s")
            anon: list[float] = []
            sqlite: list[float | None] = []
            traffic, series = asyncio.run(soak(daemon, key, args, anon, sqlite))
            delivered = wait_delivered(work, traffic.accepted)
            daemon.check_alive()
        figure = report(args, traffic, series, anon, sqlite, delivered)
    except BenchError as err:
        log(f"soak could not run: {err}")
        return 1
    finally:
        if not args.keep:
            work.remove()
    print(table([figure]), flush=True)
    return 1 if figure.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
