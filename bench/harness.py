"""What every benchmark section shares: work directories and their config,
the daemon as a child process, the CLI, SQLite checks, memory readings and
the result table."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = ROOT / ".venv" / "bin"
PYTHON = str(VENV_BIN / "python") if (VENV_BIN / "python").exists() else sys.executable
SMSGW = [str(VENV_BIN / "smsgw")] if (VENV_BIN / "smsgw").exists() else [
    PYTHON, "-m", "gateway"]

# Loopback only, and no proxy from the environment may see the traffic.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BenchError(Exception):
    """The benchmark itself could not run (as opposed to a missed target)."""


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    # SMSGW_* variables would override the config under test; NOTIFY_SOCKET
    # would make the child talk to our own service manager.
    return {k: v for k, v in os.environ.items()
            if not k.startswith("SMSGW_") and k != "NOTIFY_SOCKET"}


# -- work directories ---------------------------------------------------------


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def loopback_channel(name: str) -> dict[str, Any]:
    # Zero latency and no delivery reports: the figure is the gateway's own
    # cost per message, not a simulated network's.
    return {"name": name, "driver": "loopback", "cost": 0.15, "latency_ms": 0,
            "delivery_reports": False, "concurrency": 64}


@dataclass
class Workdir:
    """A temporary directory holding one spool, its config and the daemon log."""

    path: Path
    synchronous: str
    port: int = field(default_factory=free_port)

    @classmethod
    def create(cls, base: Path, label: str, synchronous: str) -> Workdir:
        path = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=base))
        work = cls(path, synchronous)
        work.write_config()
        return work

    @property
    def config(self) -> Path:
        return self.path / "smsgw.toml"

    @property
    def db(self) -> Path:
        return self.path / "spool.db"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_config(self) -> None:
        raw: dict[str, Any] = {
            "server": {"host": "127.0.0.1", "port": self.port,
                       "public_base_url": self.url,
                       "legacy_open_networks": ["127.0.0.1/32", "::1/128"]},
            # Four slashes: an absolute path.
            "storage": {"url": f"sqlite:///{self.db}", "synchronous": self.synchronous},
            "dispatcher": {"batch_size": 50, "max_attempts": 5, "node_name": "bench",
                           "shutdown_grace_s": 2},
            "intake": {"max_segments": 10},
            # Not "spool": `python -m gateway` puts its working directory first on
            # sys.path, where a directory of that name shadows the package.
            "spool_folder": {"path": str(self.path / "incoming")},
            "phone": {"default_region": "UY"},
            "logging": {"level": "warning"},
        }
        lines = []
        for section, values in raw.items():
            lines.append(f"[{section}]")
            lines += [f"{k} = {_toml(v)}" for k, v in values.items()]
            lines.append("")
        for channel in (loopback_channel("loop-a"), loopback_channel("loop-b")):
            lines.append("[[channels]]")
            lines += [f"{k} = {_toml(v)}" for k, v in channel.items()]
            lines.append("")
        self.config.write_text("\n".join(lines))

    def cli(self, *args: str, timeout: float = 120) -> str:
        done = subprocess.run([*SMSGW, "-c", str(self.config), *args], capture_output=True,
                              text=True, cwd=self.path, env=child_env(), timeout=timeout)
        if done.returncode != 0:
            raise BenchError(f"smsgw {' '.join(args)} exited {done.returncode}: "
                             f"{(done.stderr or done.stdout).strip()[-800:]}")
        return done.stdout

    def add_tenant(self, name: str) -> str:
        out = self.cli("tenant", "add", name)
        found = re.search(r"API key \(shown once, store it now\): (\S+)", out)
        if not found:
            raise BenchError(f"no API key in the output of `tenant add`: {out!r}")
        return found.group(1)

    def campaigns(self, action: str, tenants: tuple[str, ...] = ("default",)) -> None:
        """Start or stop the `default` campaign of each tenant."""
        for tenant in tenants:
            self.cli("campaign", action, "default", "--tenant", tenant)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# -- SQLite -------------------------------------------------------------------


def sql_scalar(db: Path, query: str, args: tuple[Any, ...] = ()) -> Any:
    # A fresh read-only connection each time: never holds a read snapshot
    # (which would keep the daemon's WAL from checkpointing) between calls.
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=30)
    try:
        return conn.execute(query, args).fetchone()[0]
    finally:
        conn.close()


def spool_rows(db: Path) -> int:
    return int(sql_scalar(db, "SELECT count(*) FROM sms_spool"))


def settled_rows(db: Path, timeout_s: float = 15.0) -> int:
    """Row count once it stops moving: the last group commit may still be in flight."""
    deadline = time.monotonic() + timeout_s
    last = spool_rows(db)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = spool_rows(db)
        if now == last:
            return now
        last = now
    return last


# -- the daemon -----------------------------------------------------------------


def rss_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of a live process, in MB."""
    values = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, kb = line.split()[:2]
                values[key] = int(kb) / 1024
    return values.get("VmRSS:", 0.0), values.get("VmHWM:", 0.0)


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based) of the whole line.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def http_status(url: str, timeout: float = 2.0) -> int:
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


class Daemon:
    """`python -m gateway -c CFG run` as a child, ready once /readyz says 200."""

    def __init__(self, work: Workdir, label: str = "daemon") -> None:
        self.work = work
        self.log_path = work.path / f"{label}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout_s: float = 120.0) -> Daemon:
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [PYTHON, "-m", "gateway", "-c", str(self.work.config), "run"],
                stdout=logf, stderr=subprocess.STDOUT, cwd=self.work.path, env=child_env())
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                if http_status(self.work.url + "/readyz") == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise BenchError(f"daemon not ready within {timeout_s:.0f}s; log: {self.log_tail()}")

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"daemon exited with {self.proc.returncode}; "
                             f"log: {self.log_tail()}")

    def log_tail(self, chars: int = 1500) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:] or "(empty)"
        except OSError:
            return "(no log)"

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# -- results --------------------------------------------------------------------


@dataclass
class Figure:
    """One line of the final table: a figure, its same-run baseline, its target."""

    name: str
    unit: str
    value: float | None
    baseline_name: str
    baseline: float | None
    target: float
    higher_is_better: bool = True
    # A failed correctness check (or a failed run) makes the figure meaningless.
    failed: str | None = None
    extra_ok: bool = True  # a second condition of the target (e.g. "flat")
    target_text: str = ""
    note: str = ""  # latency, checks: printed under the table
    baseline_unit: str = ""  # when the baseline counts something else (rows, not messages)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline:
            return None
        return self.value / self.baseline

    @property
    def verdict(self) -> str:
        if self.failed is not None or self.value is None:
            return "FAILED"
        met = self.value >= self.target if self.higher_is_better else self.value < self.target
        return "OK" if met and self.extra_ok else "MISSED"


def _num(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB":
        return f"{value:,.1f} {unit}"
    return f"{value:,.0f} {unit}"


def table(figures: list[Figure]) -> str:
    rows = []
    for f in figures:
        target = f.target_text or (f"{'>=' if f.higher_is_better else '<'} "
                                   f"{_num(f.target, f.unit)}")
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}"
        rows.append([f.name, _num(f.value, f.unit), f"baseline {f.baseline_name}",
                     _num(f.baseline, f.baseline_unit or f.unit), f"ratio {ratio}",
                     f"target {target}", f.verdict + (f" ({f.failed})" if f.failed else "")])
    if not rows:
        return "(no figures)"
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    right = {1, 3}
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r[:-1], widths, strict=True))]
        out.append("  ".join(cells) + "  " + r[-1])
    notes = [f"  {f.name}: {f.note}" for f in figures if f.note]
    if notes:
        out += ["", "details:", *notes]
    return "\n".join(out)
