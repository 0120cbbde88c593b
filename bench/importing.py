"""Section 3: `smsgw import` of a large CSV, rows/s and peak RSS of the process.

The baseline is Python's csv.reader alone over the same file, in its own
process: the floor under any importer written in Python on this machine.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import PYTHON, SMSGW, BenchError, Figure, Workdir, child_env, log, spool_rows

TARGET_ROWS = 30_000
TARGET_RSS_MB = 150.0

_NAMES = ("Ana", "Bruno", "Carla", "Diego", "Elena", "Facundo", "Gabriela", "Hugo",
          "Ines", "Joaquin", "Lucia", "Martin", "Natalia", "Pablo", "Rosario", "Santiago")

_CSV_BASELINE = r"""
import csv, sys
rows = 0
with open(sys.argv[1], newline="", encoding="utf-8") as fh:
    for _ in csv.reader(fh, delimiter=";"):
        rows += 1
print(rows)
"""


@dataclass
class ImportOptions:
    rows: int
    synchronous: str
    timeout_s: float


def generate_csv(path: Path, rows: int, seed: int = 11) -> None:
    """campaign;destination;message;priority with valid Uruguayan mobiles (09X XXX XXX)."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        fh.write("campaign;destination;message;priority\n")
        chunk = []
        for i in range(rows):
            # About 60 characters of GSM-7 text, different on every row.
            chunk.append(f"default;09{rng.randint(1, 9)}{rng.randrange(10**6):06d};"
                         f"Hola {rng.choice(_NAMES)}, su codigo es {rng.randrange(10**6):06d}. "
                         f"Valido 10 min.;{i % 3}\n")
            if len(chunk) == 10_000:
                fh.writelines(chunk)
                chunk.clear()
        fh.writelines(chunk)


def run_measured(cmd: list[str], cwd: Path, timeout_s: float
                 ) -> tuple[float, float, str, int, float]:
    """(wall seconds, peak RSS MB, stdout, exit code, CPU seconds) of one child process.

    os.wait4 gives the resource usage of that child alone (RUSAGE_CHILDREN
    would mix in every process this run has waited for).
    """
    out_path = cwd / f"out-{time.monotonic_ns()}.txt"
    with open(out_path, "w+") as out:
        began = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=cwd,
                                env=child_env())
        deadline = began + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise BenchError(f"{' '.join(cmd[-3:])} did not finish in {timeout_s:g}s")
            time.sleep(0.05)
        wall = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        text = out.read()
    out_path.unlink()
    return wall, usage.ru_maxrss / 1024, text, proc.returncode, usage.ru_utime + usage.ru_stime


def run(base: Path, opts: ImportOptions) -> tuple[list[Figure], Workdir]:
    """The figures, and the work directory whose spool now holds the rows."""
    log(f"import: {opts.rows:,} rows, sync={opts.synchronous}")
    work = Workdir.create(base, "import", opts.synchronous)
    csv_path = work.path / "bench-import.csv"
    t0 = time.perf_counter()
    generate_csv(csv_path, opts.rows)
    size_mb = csv_path.stat().st_size / 1e6
    log(f"  generated {csv_path.name}: {size_mb:,.1f} MB in {time.perf_counter() - t0:.1f}s")

    wall, base_rss, out, code, _ = run_measured([PYTHON, "-c", _CSV_BASELINE, str(csv_path)],
                                             work.path, opts.timeout_s)
    if code != 0 or int(out.split()[-1]) != opts.rows + 1:
        raise BenchError(f"csv.reader baseline failed: {out[-300:]}")
    baseline = opts.rows / wall
    log(f"  baseline csv.reader: {baseline:,.0f} rows/s ({wall:.1f}s, peak RSS "
        f"{base_rss:.0f} MB)")

    # Migrate first and keep the campaign stopped: section 4 needs these rows in state 1.
    work.campaigns("stop")
    wall, rss, out, code, cpu = run_measured([*SMSGW, "-c", str(work.config), "import",
                                         str(csv_path)], work.path, opts.timeout_s)
    if code != 0:
        raise BenchError(f"smsgw import exited {code}: {out[-800:]}")
    summary = re.search(r"imported (\d+), blocked (\d+), invalid (\d+), rejected (\d+)", out)
    if not summary:
        raise BenchError(f"no summary in the output of smsgw import: {out[-800:]}")
    imported, blocked, invalid, rejected = map(int, summary.groups())
    rows_in_db = spool_rows(work.db)
    rate = opts.rows / wall
    log(f"  smsgw import: {rate:,.0f} rows/s ({wall:.1f}s), peak RSS {rss:.0f} MB; summary "
        f"imported {imported:,}, blocked {blocked}, invalid {invalid}, rejected {rejected}; "
        f"spool rows {rows_in_db:,}")
    failed = None
    if imported != opts.rows or rows_in_db != opts.rows:
        failed = f"imported {imported:,}, spool {rows_in_db:,}, expected {opts.rows:,}"
    check = (f"summary imported {imported:,} (blocked {blocked}, invalid {invalid}, rejected "
             f"{rejected}), spool count(*) {rows_in_db:,}, expected {opts.rows:,} -> "
             f"{'OK' if failed is None else 'MISMATCH'}")
    csv_path.unlink()
    return [
        Figure(name="import csv", unit="rows/s", value=rate, baseline_name="csv.reader",
               baseline=baseline, target=TARGET_ROWS, failed=failed,
               note=f"{opts.rows:,} rows ({size_mb:,.0f} MB) in {wall:.1f}s, CPU {cpu:.1f}s "
                    f"({cpu / opts.rows * 1e6:.0f} us/row, all threads); {check}"),
        Figure(name="import peak RSS", unit="MB", value=rss, baseline_name="csv.reader",
               baseline=base_rss, target=TARGET_RSS_MB, higher_is_better=False,
               failed=failed, target_text=f"< {TARGET_RSS_MB:.0f} MB"),
    ], work
