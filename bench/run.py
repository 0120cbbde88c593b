"""smsgw benchmarks: `make bench` (about 6 minutes) or `make bench BENCH_ARGS=--quick`.

Every figure is printed next to a baseline measured in the same run, with
the ratio and the target: the machine is shared, so an absolute number
alone says little. All traffic goes to 127.0.0.1; every load is bounded in
time and count. Exit status: 0 when the benchmarks ran (targets missed
included), 1 when one could not run or a correctness check failed.

See bench/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import dispatch  # noqa: E402
import importing  # noqa: E402
import ingest  # noqa: E402
import memory  # noqa: E402
from harness import Figure, log, table  # noqa: E402
from loadgen import LoadGen  # noqa: E402

SECTIONS = ("ingest", "dispatch", "import", "memory")


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke run of about a minute: short loads, small spools")
    p.add_argument("--only", default=",".join(SECTIONS),
                   help=f"comma-separated sections to run, of: {', '.join(SECTIONS)}")
    p.add_argument("--duration", type=float, help="seconds per HTTP load (10; quick 3)")
    p.add_argument("--connections", type=int, default=50, help="HTTP concurrency")
    p.add_argument("--sync", default="full,normal",
                   help="storage.synchronous modes for the ingest runs")
    p.add_argument("--no-dispatch-ingest", action="store_true",
                   help="skip the ingest run with the campaign running")
    p.add_argument("--loadgen", choices=("auto", "wrk", "python"), default="auto",
                   help="auto: wrk if present (installed with apt-get when root), "
                        "else the aiohttp client")
    p.add_argument("--no-install", action="store_true", help="never apt-get install wrk")
    p.add_argument("--dispatch-rows", type=int, help="rows to dispatch (200000; quick 20000)")
    p.add_argument("--dispatch-sync", default="full", choices=("full", "normal"))
    p.add_argument("--dispatch-max-s", type=float, default=150.0,
                   help="stop waiting for the dispatch after this many seconds")
    p.add_argument("--import-rows", type=int, help="CSV rows (1000000; quick 100000)")
    p.add_argument("--import-sync", default="full", choices=("full", "normal"))
    p.add_argument("--import-timeout-s", type=float, default=300.0)
    p.add_argument("--idle", type=float, help="memory: seconds of idling (10; quick 3)")
    p.add_argument("--mem-requests", type=int, help="memory: API requests (5000; quick 1000)")
    p.add_argument("--tmp", help="where work directories go (default: a new one in $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work directories")
    args = p.parse_args(argv)
    quick = args.quick
    args.duration = args.duration or (3.0 if quick else 10.0)
    args.dispatch_rows = args.dispatch_rows or (20_000 if quick else 200_000)
    args.import_rows = args.import_rows or (100_000 if quick else 1_000_000)
    args.idle = args.idle if args.idle is not None else (3.0 if quick else 10.0)
    args.mem_requests = args.mem_requests or (1_000 if quick else 5_000)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    args.sync_modes = tuple(s.strip() for s in args.sync.split(",") if s.strip())
    if not set(args.sync_modes) <= {"full", "normal"}:
        p.error("--sync takes full and/or normal")
    return args


class Sections:
    """Runs the chosen sections; one that breaks is reported and the rest still run."""

    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.base = base
        self.figures: list[Figure] = []
        self.errors: list[str] = []

    def _guarded(self, name: str, fn: Callable[..., Any], *a: Any) -> Any:
        try:
            return fn(*a)
        except Exception as err:
            traceback.print_exc()
            self.errors.append(f"{name}: {err}")
            self.figures.append(Figure(name=name, unit="", value=None, baseline_name="-",
                                       baseline=None, target=0, failed=str(err)[:120]))
            return None

    def run(self) -> None:
        a, wanted = self.args, self.args.sections
        if "ingest" in wanted:
            load = LoadGen.pick(a.loadgen, not a.no_install, a.connections)
            got = self._guarded("ingest", ingest.run, self.base, load, ingest.IngestOptions(
                a.duration, a.sync_modes, not a.no_dispatch_ingest))
            self.figures += got[0] if got else []
        if "dispatch" in wanted:
            got = self._guarded("dispatch", dispatch.run, self.base, dispatch.DispatchOptions(
                a.dispatch_rows, a.dispatch_sync, a.dispatch_max_s, 2.0 if a.quick else 5.0))
            self.figures += got[0] if got else []
        if "import" not in wanted and "memory" not in wanted:
            return
        # The memory section needs the spool the import fills.
        got = self._guarded("import", importing.run, self.base, importing.ImportOptions(
            a.import_rows, a.import_sync, a.import_timeout_s))
        if got is None:
            return
        if "import" in wanted:
            self.figures += got[0]
        if "memory" in wanted:
            self.figures += self._guarded("memory", memory.run, self.base, got[1],
                                          memory.MemoryOptions(a.idle, a.mem_requests)) or []


def _load() -> str:
    # Other work on the machine shows up here: figures from a loaded run are
    # worth less, even next to their baselines.
    try:
        with open("/proc/loadavg") as fh:
            return fh.read().split()[0]
    except OSError:
        return "?"


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    load_before = _load()
    base = Path(args.tmp) if args.tmp else Path(tempfile.mkdtemp(prefix="smsgw-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    log(f"smsgw bench{' (quick)' if args.quick else ''}: sections {', '.join(args.sections)}; "
        f"work in {base}")
    sections = Sections(args, base)
    try:
        sections.run()
    finally:
        if args.keep:
            log(f"work directories kept in {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)

    figures = sections.figures
    print()
    print(f"smsgw bench results ({'quick, ' if args.quick else ''}"
          f"{time.perf_counter() - began:.0f}s, concurrency {args.connections}; "
          f"1-min load average {load_before} before, {_load()} after, "
          f"{os.cpu_count()} CPUs)")
    print(table(figures))
    failed = [f for f in figures if f.verdict == "FAILED"]
    missed = [f for f in figures if f.verdict == "MISSED"]
    print()
    print(f"{len(figures) - len(failed) - len(missed)} OK, {len(missed)} MISSED, "
          f"{len(failed)} FAILED")
    for e in sections.errors:
        print(f"error: {e}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
