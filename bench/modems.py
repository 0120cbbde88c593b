"""Modems in parallel: N simulated GSM modems, each taking `--cmgs-s` seconds to
answer AT+CMGS, behind the real daemon (`python -m gateway run`, a child
process) on real pseudo-terminals.

    .venv/bin/python bench/modems.py            # 400 messages, 4 modems, 1 s each
    .venv/bin/python bench/modems.py --quick    # 40 messages

The figure is the time from the first AT+CMGS until the last message is
SENT (durably recorded); the wall time from `campaign start` is printed too.
The baseline is the ideal, computed in the same run: messages / modems x
seconds per AT+CMGS, every port busy all the time. Channel utilisation is
ideal / measured (target >= 95%: the gateway's own work between two sends
of a port, claim, start mark, durable result, must stay small beside the
modem's second).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dispatch import prefill  # noqa: E402
from harness import BenchError, Daemon, Workdir, log, sql_scalar  # noqa: E402

from drivers.simulators.modem import ModemSimulator  # noqa: E402

_SENT = "SELECT count(*) FROM sms_spool WHERE state IN (4, 5)"
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--quick", action="store_true", help="40 messages instead of 400")
    p.add_argument("--messages", type=int, help="messages to send (400; quick 40)")
    p.add_argument("--modems", type=int, default=4)
    p.add_argument("--cmgs-s", type=float, default=1.0, help="seconds per AT+CMGS")
    p.add_argument("--sync", default="full", choices=("full", "normal"))
    p.add_argument("--target", type=float, default=0.95, help="utilisation target")
    p.add_argument("--tmp", help="where the work directory goes (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    args = p.parse_args(argv)
    args.messages = args.messages or (40 if args.quick else 400)
    return args


def write_config(work: Workdir, links: list[Path]) -> None:
    lines = [
        "[server]", 'host = "127.0.0.1"', f"port = {work.port}",
        f'public_base_url = "{work.url}"',
        "[storage]", f'url = "sqlite:///{work.db}"', f'synchronous = "{work.synchronous}"',
        "[dispatcher]", 'node_name = "bench"', "max_attempts = 5", "shutdown_grace_s = 5",
        "[spool_folder]", f'path = "{work.path / "incoming"}"',
        "[logging]", 'level = "warning"',
    ]
    for i, link in enumerate(links, start=1):
        lines += ["[[channels]]", f'name = "modem{i}"', 'driver = "serial"',
                  f'device = "{link}"', "cost = 0.15", "cmgs_timeout_s = 30",
                  "poll_interval_s = 30"]
    work.config.write_text("\n".join(lines) + "\n")


def channels_up(work: Workdir) -> list[str]:
    try:
        with _OPENER.open(work.url + "/readyz", timeout=2) as resp:
            return list(json.loads(resp.read())["channels_up"])
    except OSError as err:
        if hasattr(err, "read"):  # 503 still carries the JSON
            return list(json.loads(err.read())["channels_up"])
        return []


async def run(args: argparse.Namespace) -> int:
    base = Path(tempfile.mkdtemp(prefix="smsgw-modems-", dir=args.tmp))
    sims: list[ModemSimulator] = []
    try:
        work = Workdir.create(base, "modems", args.sync)
        links = [work.path / f"ttySIM{i}" for i in range(1, args.modems + 1)]
        for link in links:
            sims.append(await ModemSimulator(link, cmgs_delay_s=args.cmgs_s,
                                             report_delay_s=0.2).start())
        write_config(work, links)
        await asyncio.to_thread(work.cli, "db", "migrate")
        await asyncio.to_thread(work.campaigns, "stop")
        await asyncio.to_thread(prefill, work.db, args.messages)
        log(f"modems: {args.messages} messages, {args.modems} simulated modems, "
            f"{args.cmgs_s:g} s per AT+CMGS, storage.synchronous={args.sync}")
        return await _measure(args, work, sims)
    finally:
        for sim in sims:
            await sim.close()
        if args.keep:
            log(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)


async def _measure(args: argparse.Namespace, work: Workdir, sims: list[ModemSimulator]) -> int:
    daemon = Daemon(work)
    await asyncio.to_thread(daemon.start)
    try:
        deadline = time.monotonic() + 60
        while len(await asyncio.to_thread(channels_up, work)) < args.modems:
            if time.monotonic() > deadline:
                raise BenchError(f"not every modem came up; log: {daemon.log_tail()}")
            await asyncio.sleep(0.1)
        await asyncio.to_thread(work.campaigns, "start")
        began = time.perf_counter()
        ideal = args.messages / args.modems * args.cmgs_s
        limit = ideal * 3 + 30
        done = 0
        while done < args.messages and time.perf_counter() - began < limit:
            await asyncio.sleep(0.1)
            daemon.check_alive()
            done = int(await asyncio.to_thread(sql_scalar, work.db, _SENT))
        wall = time.perf_counter() - began
        last_sent = float(await asyncio.to_thread(
            sql_scalar, work.db, "SELECT max(sent_at) FROM sms_spool") or 0)
    finally:
        await asyncio.to_thread(daemon.stop)
    # From the first AT+CMGS any modem saw to the last result made durable:
    # the daemon notices `campaign start` on its next campaign refresh (up
    # to a second), which is start-up, not parallelism; the wall time from
    # `campaign start` is printed beside it.
    first_cmgs = min((s.at for sim in sims for s in sim.sent), default=0.0) - args.cmgs_s
    elapsed = last_sent - first_cmgs if first_cmgs > 0 and last_sent else wall
    return _report(args, sims, done, elapsed, ideal, wall)


def _report(args: argparse.Namespace, sims: list[ModemSimulator], done: int, elapsed: float,
            ideal: float, wall: float) -> int:
    per_modem = [len(sim.sent) for sim in sims]
    destinations = Counter(s.destination for sim in sims for s in sim.sent)
    utilisation = ideal / elapsed
    print()
    print(f"modems in parallel ({args.modems} modems, {args.cmgs_s:g} s per AT+CMGS, "
          f"{args.messages} messages)")
    print(f"  measured  {elapsed:8.1f} s   first AT+CMGS to last SENT ({done} SENT; "
          f"per modem {per_modem}); {wall:.1f} s from `campaign start`")
    print(f"  baseline  {ideal:8.1f} s   ideal: {args.messages}/{args.modems} x "
          f"{args.cmgs_s:g} s, every port always busy")
    print(f"  ratio     {elapsed / ideal:8.3f}     channel utilisation {utilisation:.1%} "
          f"(target >= {args.target:.0%}, i.e. <= {ideal / args.target:.1f} s)")
    problems = []
    if done < args.messages:
        problems.append(f"only {done} of {args.messages} SENT")
    if sum(destinations.values()) != args.messages:
        problems.append(f"the modems saw {sum(destinations.values())} sends")
    verdict = "FAILED: " + "; ".join(problems) if problems else (
        "OK" if utilisation >= args.target else "MISSED")
    print(f"  verdict   {verdict}")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    try:
        return asyncio.run(run(args))
    except BenchError as err:
        print(f"modems: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
