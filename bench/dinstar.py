"""Dinstar ports kept busy: `.venv/bin/python bench/dinstar.py [--quick] [--no-push]`.

The simulator (`python -m drivers.simulators.dinstar`) runs as its own
process with 8 ports that each take 1 s of "radio" per SMS; the daemon runs
as its own process with one Dinstar channel over ports 0-7. N messages go
in through the JSON API with the campaign running, and the clock stops when
every one is SENT.

Baseline: the ideal, N / 8 ports x 1 s (400 messages: 50 s), the time the
radios need if no port ever waits for the gateway. Port utilisation is the
radio time the simulator measured over 8 x the elapsed time; target >= 95%.
The gaps it counts are the gateway's own: noticing a port finished (push,
or the result poll), recording the result, handing the port its next SMS.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import (  # noqa: E402
    PYTHON,
    ROOT,
    BenchError,
    Daemon,
    Figure,
    Workdir,
    _toml,
    child_env,
    free_port,
    log,
    sql_scalar,
    table,
)

PORTS = 8
RADIO_S = 1.0
TARGET_UTILISATION = 0.95
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_SENT = "SELECT count(*) FROM sms_spool WHERE state IN (4, 5)"


@dataclass
class DinstarWorkdir(Workdir):
    """A spool and a config whose only channel is the simulated gateway."""

    push: bool = True
    sim_port: int = 0

    @property
    def sim_url(self) -> str:
        return f"http://127.0.0.1:{self.sim_port}"

    def write_config(self) -> None:
        super().write_config()
        text = self.config.read_text()
        # Only the Dinstar channel: drop the loopback ones the base config has.
        text = text[:text.index("[[channels]]")]
        channel: dict[str, Any] = {
            "name": "dinstar-a", "driver": "dinstar", "url": self.sim_url,
            "ports": f"0-{PORTS - 1}", "cost": 0.1, "status_poll_interval_s": 5.0,
            "hook_networks": ["127.0.0.1/32"]}  # the simulator pushes from loopback
        if self.push:  # the device tells us; the polls are only a safety net
            channel.update(dlr_poll_interval_s=30.0, inbound_poll_interval_s=30.0)
        text += "[[channels]]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in channel.items())
        self.config.write_text(text)


def _get_json(url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        "Content-Type": "application/json", **(headers or {})})
    with _OPENER.open(request, timeout=30) as resp:
        return json.loads(resp.read())


def _start_simulator(work: DinstarWorkdir) -> subprocess.Popen[bytes]:
    args = [PYTHON, "-m", "drivers.simulators.dinstar", "--port", str(work.sim_port),
            "--ports", str(PORTS), "--latency-ms", str(RADIO_S * 1000), "--dlr-delay-ms", "500"]
    if work.push:
        args += ["--push-url", f"{work.url}/hooks/dinstar-a"]
    with open(work.path / "simulator.log", "ab") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                env=child_env())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            _get_json(f"{work.sim_url}/_sim/stats")
            return proc
        except OSError:
            if proc.poll() is not None:
                raise BenchError(f"simulator exited {proc.returncode}") from None
            time.sleep(0.1)
    proc.kill()
    raise BenchError("simulator did not start within 30 s")


def _wait_sent(work: DinstarWorkdir, daemon: Daemon, n: int, began: float,
               limit_s: float) -> float:
    while True:
        daemon.check_alive()
        if int(sql_scalar(work.db, _SENT)) >= n:
            return time.perf_counter() - began
        if time.perf_counter() - began > limit_s:
            raise BenchError(f"not all {n} messages SENT within {limit_s:.0f}s")
        time.sleep(0.05)


def run(base: Path, n: int, push: bool) -> Figure:
    ideal = n / PORTS * RADIO_S
    mode = "push" if push else "polling only"
    figure = Figure(name=f"dinstar {PORTS} ports x {RADIO_S:g}s/SMS, {n} msgs, {mode}",
                    unit="s", value=None, baseline_name=f"ideal {n}/{PORTS} x {RADIO_S:g}s",
                    baseline=ideal, target=ideal / TARGET_UTILISATION, higher_is_better=False,
                    target_text=f"utilisation >= {TARGET_UTILISATION:.0%}")
    work = DinstarWorkdir.create(base, "dinstar", "normal")
    work.sim_port, work.push = free_port(), push
    work.write_config()
    key = work.add_tenant("bench")
    sim = _start_simulator(work)
    try:
        with Daemon(work) as daemon:
            batch = {"messages": [{"destination": f"+5989{i % 9 + 1}{i:06d}",
                                   "message": f"Bench {i}: your code is {i * 7919 % 10**6:06d}"}
                                  for i in range(n)]}
            began = time.perf_counter()
            _get_json(f"{work.url}/api/v1/messages", batch, {"X-Api-Key": key})
            elapsed = _wait_sent(work, daemon, n, began, ideal * 3 + 60)
            stats = _get_json(f"{work.sim_url}/_sim/stats")
    finally:
        sim.terminate()
        sim.wait(timeout=10)
    figure.value = elapsed
    _judge(figure, stats, n, elapsed)
    work.remove()
    return figure


def _judge(figure: Figure, stats: dict[str, Any], n: int, elapsed: float) -> None:
    ports = stats["ports"]
    busy = sum(p["busy_s"] for p in ports)
    utilisation = busy / (PORTS * elapsed)
    per_port = " ".join(f"{p['port']}:{p['busy_s'] / elapsed:.0%}/{p['sent']}" for p in ports)
    figure.extra_ok = utilisation >= TARGET_UTILISATION
    figure.note = (f"{n} SENT in {elapsed:.1f}s; port utilisation {utilisation:.1%} "
                   f"(radio {busy:.1f}s of {PORTS} x {elapsed:.1f}s); per port "
                   f"busy/sent {per_port}")
    sent = sum(p["sent"] for p in ports)
    if sent != n or any(p["failed"] for p in ports):
        figure.failed = f"the simulator sent {sent} of {n} (each exactly once expected)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="80 messages instead of 400")
    parser.add_argument("--messages", type=int, help="how many (400; quick 80)")
    parser.add_argument("--no-push", action="store_true",
                        help="the device pushes nothing: results come by polling alone")
    args = parser.parse_args(argv)
    n = args.messages or (80 if args.quick else 400)
    log(f"dinstar: {n} messages over {PORTS} simulated ports, {RADIO_S:g}s each")
    with tempfile.TemporaryDirectory(prefix="smsgw-bench-") as base:
        try:
            figure = run(Path(base), n, push=not args.no_push)
        except BenchError as err:
            log(f"dinstar: could not run: {err}")
            return 1
    print(table([figure]), flush=True)
    return 1 if figure.failed else 0


if __name__ == "__main__":
    sys.exit(main())
