"""`smsgw simulate modem` and `smsgw modem probe`: hardware at the command line.

Neither needs the configuration: the simulator stands in for a modem, and a
probe looks at a device before it goes into the configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import time
from pathlib import Path
from typing import Any

from drivers.serial.probe import ProbeError, probe
from drivers.simulators.modem import ModemSimulator

COMMANDS = frozenset({"simulate", "modem"})


def add_parsers(sub: Any) -> None:
    simulate = sub.add_parser("simulate", help="simulated hardware").add_subparsers(
        dest="action", required=True)
    _simulator_arguments(simulate.add_parser(
        "modem", help="a GSM modem on a pseudo-terminal (AT commands, PDU and text mode)"))
    modem = sub.add_parser("modem", help="GSM modems").add_subparsers(
        dest="action", required=True)
    p = modem.add_parser("probe", help="what is on a serial port, and can it send SMS")
    p.add_argument("device", help="e.g. /dev/ttyUSB2 or /dev/serial/by-id/...")
    p.add_argument("--baudrate", type=int, default=115200)
    p.add_argument("--pin", help="unlock the SIM with this PIN (never tried otherwise)")
    p.add_argument("--timeout-s", type=float, default=3.0, help="per AT command")


def _simulator_arguments(m: argparse.ArgumentParser) -> None:
    m.add_argument("--link", required=True, help="symlink to create, e.g. /tmp/ttySIM0")
    m.add_argument("--pin", help="the SIM asks for this PIN")
    m.add_argument("--cmgs-delay-s", type=float, default=0.0, help="seconds per AT+CMGS")
    m.add_argument("--no-echo", action="store_true", help="start with echo off (ATE0)")
    m.add_argument("--sticky-echo", action="store_true", help="keep echoing after ATE0")
    m.add_argument("--text-only", action="store_true", help="refuse PDU mode (AT+CMGF=0)")
    m.add_argument("--no-reports", action="store_true", help="never send status reports")
    m.add_argument("--report-delay-s", type=float, default=0.5)
    m.add_argument("--report-status", type=lambda v: int(v, 0), default=0,
                   help="TP-Status of the reports (0 delivered, 0x45 failed, 0x21 trying)")
    m.add_argument("--fail", nargs=2, action="append", default=[],
                   metavar=("COMMAND", "ANSWER"),
                   help='e.g. --fail AT+CMGS "+CMS ERROR: 38" (repeat the flag for more)')
    m.add_argument("--fail-times", type=int, default=1_000_000,
                   help="how many times each --fail answers (default: always)")
    m.add_argument("--verbose-errors", action="store_true", help="+CME ERROR: SIM busy")
    m.add_argument("--chatter", action="store_true", help="^RSSI and RING inside answers")
    m.add_argument("--hang-after-sends", type=int, help="go mute at the next AT+CMGS after N")
    m.add_argument("--vanish-after-sends", type=int, help="unplug after N parts")
    m.add_argument("--vanish-for-s", type=float, default=5.0, help="then come back")
    m.add_argument("--inbound", action="append", default=[], metavar="SENDER:TEXT",
                   help="a message that arrives --inbound-delay-s after start")
    m.add_argument("--inbound-delay-s", type=float, default=2.0)


def run(args: argparse.Namespace) -> int:
    if args.command == "modem":
        return asyncio.run(_probe(args))
    try:
        return asyncio.run(_simulate(args))
    except KeyboardInterrupt:
        return 130


async def _probe(args: argparse.Namespace) -> int:
    try:
        result = await probe(args.device, baudrate=args.baudrate, pin=args.pin,
                             timeout_s=args.timeout_s)
    except ProbeError as err:
        print(f"smsgw: modem probe: {err}", file=sys.stderr)
        return 1
    print(result.render())
    return 0


def _say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


async def _simulate(args: argparse.Namespace) -> int:
    sim = ModemSimulator(
        Path(args.link), pin=args.pin, echo=not args.no_echo, sticky_echo=args.sticky_echo,
        pdu_mode=not args.text_only, cmgs_delay_s=args.cmgs_delay_s,
        auto_reports=not args.no_reports, report_delay_s=args.report_delay_s,
        report_status=args.report_status, verbose_errors=args.verbose_errors,
        chatter=args.chatter, vanish_after_sends=args.vanish_after_sends, on_event=_say)
    for command, answer in args.fail:
        sim.fail(command, answer, args.fail_times)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await sim.start()
    _say(f"modem simulator on {args.link} -> {sim.link.resolve()}; Ctrl-C to stop")
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(_inbound(sim, args)), tg.create_task(_misbehave(sim, args))]
        await stop.wait()
        for task in tasks:
            task.cancel()
    await sim.close()
    return 0


async def _inbound(sim: ModemSimulator, args: argparse.Namespace) -> None:
    if not args.inbound:
        return
    await asyncio.sleep(args.inbound_delay_s)
    for item in args.inbound:
        sender, _, text = item.partition(":")
        sim.inject_sms(sender, text)


async def _misbehave(sim: ModemSimulator, args: argparse.Namespace) -> None:
    """Hang after N sends; come back `--vanish-for-s` after each unplug."""
    armed = args.hang_after_sends is not None
    while True:
        await asyncio.sleep(0.1)
        if armed and len(sim.sent) >= args.hang_after_sends:
            sim.hang_on_cmgs, armed = True, False
        if args.vanish_after_sends is not None and not sim.link.is_symlink():
            await asyncio.sleep(args.vanish_for_s)
            with contextlib.suppress(OSError):
                await sim.come_back()
