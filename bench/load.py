"""Load: 1,000 concurrent API clients against one daemon, and its p99 latency.

`.venv/bin/python bench/load.py [--quick]` opens `--connections` (1,000)
keep-alive connections with wrk (2 threads) and has each post one message
after another to `POST /api/v1/messages` for `--duration-s` seconds (60;
`--quick`: 10), every message to a different number, the campaign running
so dispatch competes. The same load against bench/bare_server.py (aiohttp
answering a constant, same event loop) just before is the baseline: what the
machine and the framework give at that concurrency, right now.

Checks: every answer is 202, or 429/503 (the documented back-pressure, counted
apart); no socket errors; every acknowledged message is in the spool.
Exit status 1 when a check fails (or the load could not run), else 0.
127.0.0.1 only; bounded in time and count.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    BenchError,
    Daemon,
    Figure,
    Workdir,
    log,
    settled_rows,
    spool_rows,
    table,
)
from ingest import BareServer  # noqa: E402
from loadgen import JSON_PATH, LUA_THREADS, LoadGen, find_wrk  # noqa: E402

P99_TARGET_MS = 1000.0

# Bodies as bench/loadgen.py builds them (a counter per thread, so every
# number differs); answers counted by status class.
_LUA = LUA_THREADS + r"""

function init(args)
  counter = tid * STRIDE
  sent, ok, busy, full, other, first_other = 0, 0, 0, 0, 0, 0
end

function request()
  counter = counter + 1
  sent = sent + 1
  local n = counter % 1000000
  local body = string.format(
    '{"destination": "+59898%06d", "message": "Load %d: your code is %06d"}', n, counter, n)
  return wrk.format("POST", PATH, HEADERS, body)
end

function response(status, headers, body)
  if status >= 200 and status < 300 then ok = ok + 1
  elseif status == 429 then busy = busy + 1
  elseif status == 503 then full = full + 1
  else
    other = other + 1
    if first_other == 0 then first_other = status end
  end
end

function done(summary, latency, requests)
  local t = {sent = 0, ok = 0, busy = 0, full = 0, other = 0, first_other = 0}
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do
      local v = th:get(k)
      if k == "first_other" then
        if v ~= 0 then t[k] = v end
      else
        t[k] = t[k] + v
      end
    end
  end
  local e = summary.errors
  io.write(string.format(
    'LOADRESULT {"duration_us": %d, "responses": %d, "connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "sent": %d, "ok": %d, "busy": %d, "full": %d, "other": %d, ' ..
    '"first_other": %d}\n',
    summary.duration, summary.requests, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50.0), latency:percentile(90.0), latency:percentile(99.0),
    latency.max, t.sent, t.ok, t.busy, t.full, t.other, t.first_other))
end
"""


@dataclass
class Load:
    duration_s: float
    responses: int
    ok: int
    busy: int  # 429
    full: int  # 503
    other: int
    first_other: int
    socket_errors: int
    cut_off: int  # written, unanswered at the deadline
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float

    @property
    def ok_per_s(self) -> float:
        return self.ok / self.duration_s if self.duration_s else 0.0

    def describe(self) -> str:
        return (f"{self.ok_per_s:,.0f} 2xx/s; p50 {self.p50_ms:.0f} ms, p90 "
                f"{self.p90_ms:.0f} ms, p99 {self.p99_ms:.0f} ms, max {self.max_ms:.0f} ms; "
                f"2xx {self.ok:,}, 429 {self.busy:,}, 503 {self.full:,}, other "
                f"{self.other:,}, socket errors {self.socket_errors:,}")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="10 s loads instead of 60 s")
    p.add_argument("--duration-s", type=float, help="seconds of load (60; quick 10)")
    p.add_argument("--connections", type=int, default=1000, help="concurrent clients")
    p.add_argument("--threads", type=int, default=2, help="wrk threads")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--tmp", default=None, help="where the work directory goes")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.duration_s = args.duration_s or (10.0 if args.quick else 60.0)
    return args


def raise_fd_limit(connections: int) -> int:
    """Room for every client socket in wrk and every server socket in the daemon
    (children inherit the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, connections * 2 + 1024)
    if hard != resource.RLIM_INFINITY:
        want = min(want, hard)
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < connections + 256:
        raise BenchError(f"open-file limit {want} is too low for {connections} clients "
                         f"(hard limit {hard})")
    return want


def run_wrk(wrk: str, url: str, key: str, args: argparse.Namespace) -> Load:
    headers = {"Content-Type": "application/json", "X-Api-Key": key}
    lua_headers = "{" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}"
                                  for k, v in headers.items()) + "}"
    stride = 1_000_000 // max(args.threads, 1)
    prelude = f"PATH = {json.dumps(JSON_PATH)}\nHEADERS = {lua_headers}\nSTRIDE = {stride}\n"
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as fh:
        fh.write(prelude + _LUA)
        script = fh.name
    try:
        done = subprocess.run(
            [wrk, f"-t{args.threads}", f"-c{args.connections}",
             f"-d{max(1, round(args.duration_s))}s", "--timeout", "10s", "-s", script,
             url + JSON_PATH],
            capture_output=True, text=True, timeout=args.duration_s + 120)
    finally:
        os.unlink(script)
    line = next((x for x in done.stdout.splitlines() if x.startswith("LOADRESULT ")), None)
    if done.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({done.returncode}): {done.stderr.strip()[-500:]} "
                         f"{done.stdout.strip()[-500:]}")
    r = json.loads(line.removeprefix("LOADRESULT "))
    return Load(duration_s=r["duration_us"] / 1e6, responses=r["responses"], ok=r["ok"],
                busy=r["busy"], full=r["full"], other=r["other"],
                first_other=r["first_other"],
                socket_errors=r["connect"] + r["read"] + r["write"] + r["timeout"],
                cut_off=max(0, r["sent"] - r["responses"]), p50_ms=r["p50_us"] / 1000,
                p90_ms=r["p90_us"] / 1000, p99_ms=r["p99_us"] / 1000,
                max_ms=r["max_us"] / 1000)


def problems(r: Load, stored: int) -> str | None:
    if r.other:
        return f"{r.other:,} answers other than 2xx/429/503 (first: HTTP {r.first_other})"
    if r.socket_errors:
        return f"{r.socket_errors:,} socket errors (connect, read, write or timeout)"
    # wrk leaves unanswered what it has in flight at its deadline (at most one
    # per connection); the daemon may still have stored those.
    if not r.ok <= stored <= r.ok + r.cut_off:
        return (f"{stored:,} rows stored for {r.ok:,} acknowledged "
                f"(+{r.cut_off:,} cut off at the deadline)")
    return None


def measure(wrk: str, args: argparse.Namespace, base: Path) -> list[Figure]:
    load = LoadGen(wrk, args.connections)
    with BareServer(load, args.duration_s) as bare:
        log(f"baseline: bare aiohttp, {args.connections} clients, {args.duration_s:.0f} s")
        baseline = run_wrk(wrk, bare.url, "unused", args)
        log(f"  {baseline.describe()}")
    work = Workdir.create(base, "load", "full")
    try:
        key = work.add_tenant("load")
        with Daemon(work) as daemon:
            before = spool_rows(work.db)
            log(f"smsgw: {args.connections} clients, {args.duration_s:.0f} s")
            r = run_wrk(wrk, work.url, key, args)
            log(f"  {r.describe()}")
            daemon.check_alive()
            stored = settled_rows(work.db) - before
    finally:
        if not args.keep:
            work.remove()
    failed = problems(r, stored)
    label = f"{args.connections:,} clients, JSON API"
    return [
        Figure(name=f"p99 latency ({label})", unit="ms", value=r.p99_ms,
               baseline_name="bare aiohttp", baseline=baseline.p99_ms,
               target=P99_TARGET_MS, higher_is_better=False, failed=failed,
               note=f"{r.describe()}; {stored:,} rows stored; baseline: {baseline.describe()}"),
        Figure(name=f"throughput ({label})", unit="req/s", value=r.ok_per_s,
               baseline_name="bare aiohttp", baseline=baseline.ok_per_s, target=2000,
               failed=failed),
    ]


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    base = Path(args.tmp) if args.tmp else Path(tempfile.gettempdir())
    try:
        limit = raise_fd_limit(args.connections)
        wrk = find_wrk(allow_install=not args.no_install)
        if wrk is None:
            raise BenchError("wrk is needed for 1,000 connections (apt-get install wrk)")
        log(f"open-file limit {limit}; load generator {wrk}")
        figures = measure(wrk, args, base)
    except BenchError as err:
        log(f"load could not run: {err}")
        return 1
    load_avg = os.getloadavg()[0]
    print(f"\n1-minute load average after the run: {load_avg:.2f}")
    print(table(figures), flush=True)
    return 1 if any(f.failed for f in figures) else 0


if __name__ == "__main__":
    raise SystemExit(main())
