"""Section 1: HTTP intake, requests per second at a fixed concurrency.

Each figure is one timed load against the real daemon, next to the same
load against a bare aiohttp process measured just before it. The default
campaigns are stopped so messages wait in the spool and the figure is
intake alone; one extra run starts them so dispatch competes for the CPU
and the database.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import (
    PYTHON,
    BenchError,
    Daemon,
    Figure,
    Workdir,
    child_env,
    cpu_seconds,
    free_port,
    http_status,
    log,
    rss_mb,
    settled_rows,
    sql_scalar,
)
from loadgen import LoadGen, LoadResult, describe

TARGET_RPS = 5_000
KINDS = {"json": "ingest json", "form": "ingest form"}
_SENT = "SELECT coalesce(sum(n), 0) FROM spool_counts WHERE state IN (4, 5)"


@dataclass
class IngestOptions:
    duration_s: float
    sync_modes: tuple[str, ...]
    with_dispatch: bool


class BareServer:
    """bench/bare_server.py as a child for the whole section.

    Each daemon figure gets its own baseline, measured just before it: on a
    shared machine the load from others comes and goes within a minute.
    """

    def __init__(self, load: LoadGen, duration_s: float) -> None:
        self.load = load
        self.duration_s = duration_s
        self.url = ""
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> BareServer:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [PYTHON, str(Path(__file__).with_name("bare_server.py")), str(port)],
            env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"bare aiohttp server exited {self.proc.returncode}")
            try:
                if http_status(self.url + "/readyz") == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.__exit__()
                raise BenchError("bare aiohttp server did not start")
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)

    def measure(self, kind: str) -> LoadResult:
        r = self.load.run(self.url, kind, "unused-key" if kind == "json" else None,
                          self.duration_s)
        log(f"  baseline bare aiohttp {kind}: {describe(r)}")
        return r


def _check_rows(db: Path, before: int, r: LoadResult) -> tuple[str, bool]:
    """Every 2xx is a row, and nothing else is (bar requests cut off in flight)."""
    after = settled_rows(db)
    stored = after - before
    if r.cut_off:
        ok = r.ok <= stored <= r.ok + r.cut_off
        text = (f"spool rows +{stored:,} vs 2xx {r.ok:,} (+ {r.cut_off} requests in flight "
                f"when the load tool stopped, whose answers it did not read)")
    else:
        ok = stored == r.ok
        text = f"spool rows +{stored:,} vs 2xx {r.ok:,}"
    return text + (" -> OK" if ok else " -> MISMATCH"), ok


def _measure(load: LoadGen, work: Workdir, daemon: Daemon, kind: str, key: str,
             duration_s: float, offset: int, label: str
             ) -> tuple[LoadResult, str | None, str]:
    before = sql_scalar(work.db, "SELECT count(*) FROM sms_spool")
    cpu0 = cpu_seconds(daemon.pid)
    r = load.run(work.url, kind, key if kind == "json" else None, duration_s, offset=offset)
    daemon.check_alive()
    # CPU per request moves far less than req/s when others load the machine:
    # the figure to compare when hunting a regression.
    cpu_us = (cpu_seconds(daemon.pid) - cpu0) / max(r.responses, 1) * 1e6
    check, ok = _check_rows(work.db, before, r)
    check = f"daemon CPU {cpu_us:,.0f} us/request; {check}"
    log(f"  {label}: {describe(r)}")
    log(f"    {check}")
    failed = None if ok else "spool rows != 2xx responses"
    if r.ok == 0:
        failed = "no 2xx response"
    return r, failed, check


def run(base: Path, load: LoadGen, opts: IngestOptions) -> tuple[list[Figure], dict[str, float]]:
    log(f"ingest: load tool {load.name}, concurrency {load.connections}, "
        f"{opts.duration_s:g}s per run, each after a baseline run of "
        f"{_baseline_s(opts):g}s")
    with BareServer(load, _baseline_s(opts)) as bare:
        return _run(base, load, bare, opts)


def _baseline_s(opts: IngestOptions) -> float:
    return max(2.0, round(opts.duration_s / 2))


def _run(base: Path, load: LoadGen, bare: BareServer,
         opts: IngestOptions) -> tuple[list[Figure], dict[str, float]]:
    figures: list[Figure] = []
    facts: dict[str, float] = {}
    offset = 0
    for sync in opts.sync_modes:
        work = Workdir.create(base, f"ingest-{sync}", sync)
        key = work.add_tenant("bench")
        # Intake alone: nothing may leave the spool while we count.
        work.campaigns("stop", ("default", "bench"))
        with Daemon(work) as daemon:
            facts["empty_daemon_rss_mb"] = rss_mb(daemon.pid)[0]
            for kind, title in KINDS.items():
                baseline = bare.measure(kind)
                r, failed, check = _measure(load, work, daemon, kind, key, opts.duration_s,
                                            offset, f"{title} (sync={sync})")
                offset += 100_000
                figures.append(_figure(f"{title} (sync={sync})", r, baseline, failed, check))
            if opts.with_dispatch and sync == opts.sync_modes[0]:
                # The spool holds the rows of the runs above: dispatch has a
                # backlog and runs flat out during the whole load.
                # Baseline first: once started, our own dispatch would load it too.
                baseline = bare.measure("json")
                work.campaigns("start", ("default", "bench"))
                _wait_dispatching(work, daemon)
                sent_before = sql_scalar(work.db, _SENT)
                r, failed, check = _measure(load, work, daemon, "json", key, opts.duration_s,
                                            offset, f"ingest json (sync={sync}, dispatch on)")
                offset += 100_000
                sent = sql_scalar(work.db, _SENT) - sent_before
                log(f"    dispatched meanwhile: {sent:,} ({sent / r.duration_s:,.0f} msgs/s)")
                figures.append(_figure(
                    f"ingest json (sync={sync}, dispatch on)", r, baseline, failed,
                    f"{check}; dispatched meanwhile {sent:,} ({sent / r.duration_s:,.0f} "
                    f"msgs/s)"))
        work.remove()
    return figures, facts


def _wait_dispatching(work: Workdir, daemon: Daemon, timeout_s: float = 15.0) -> None:
    # The daemon re-reads campaigns every second; wait until it sends.
    deadline = time.monotonic() + timeout_s
    while sql_scalar(work.db, _SENT) == 0:
        daemon.check_alive()
        if time.monotonic() > deadline:
            raise BenchError("campaign started but nothing was dispatched")
        time.sleep(0.1)


def _figure(name: str, r: LoadResult, base: LoadResult, failed: str | None,
            check: str) -> Figure:
    lat = (f"p50 {r.p50_ms:.1f} ms, p99 {r.p99_ms:.1f} ms (baseline p50 {base.p50_ms:.1f}, "
           f"p99 {base.p99_ms:.1f})" if r.p50_ms is not None and base.p50_ms is not None
           else "no latency data")
    note = (f"{lat}; 2xx {r.ok:,}, non-2xx {r.non_2xx:,}, socket errors {r.socket_errors:,}; "
            f"{check}")
    return Figure(name=name, unit="req/s", value=r.ok_per_s, baseline_name="bare aiohttp",
                  baseline=base.ok_per_s, target=TARGET_RPS, failed=failed, note=note)
