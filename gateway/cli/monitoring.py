"""`smsgw status` (the monitoring table) and `smsgw dashboard hash-password`.

`status` shows what the dashboard shows. It asks the running daemon
(`GET /api/v1/stats` on this host: the operator's view of every tenant);
when no daemon answers it builds the same view from the database alone,
without live channel health or rates.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from typing import Any

import aiohttp

from gateway import stats_view
from gateway.cli.context import CliError
from gateway.dashboard_auth import hash_password
from gateway.services import Services
from gateway.settings import Settings

COMMANDS = ("dashboard",)
_CAMPAIGN_COLUMNS = [
    ("campaign", "name"), ("tenant", "tenant"), ("status", "status"), ("sched", "on_schedule"),
    ("processed", "processed"), ("not_proc", "not_processed"), ("other", "other"),
    ("blocked", "blocked"), ("sent", "sent"), ("deliv", "delivered"), ("failed", "failed"),
    ("cancel", "cancelled"), ("clicked", "clicked"), ("cost", "cost"),
    ("/min", "send_rate_per_min"),
]
_CHANNEL_COLUMNS = [
    ("channel", "name"), ("status", "status"), ("signal", "signal_dbm"),
    ("sent/min", "sent_per_min"), ("err%", "error_rate"), ("in_flight", "in_flight"),
    ("today", "sent_today"), ("last error", "last_error"),
]


def add_parsers(sub: Any) -> None:
    dash = sub.add_parser("dashboard", help="dashboard logins").add_subparsers(
        dest="action", required=True)
    hp = dash.add_parser("hash-password", help="print a password hash for [dashboard] users")
    hp.add_argument("--stdin", action="store_true", help="read the password from stdin")


def run(args: argparse.Namespace) -> int:
    if args.stdin or not sys.stdin.isatty():
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            print("smsgw: the passwords differ", file=sys.stderr)
            return 1
    if len(password) < 8:
        print("smsgw: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


async def status(args: argparse.Namespace, s: Services) -> int:
    while True:
        view = await snapshot(s)
        text = json.dumps(view, indent=2) if args.json else table(view)
        if args.watch:
            sys.stdout.write("\x1b[H\x1b[2J")  # home + clear: redraw in place
        print(text, flush=True)
        if not args.watch:
            return 0
        await asyncio.sleep(args.watch)


async def snapshot(s: Services) -> dict[str, Any]:
    url = daemon_url(s.settings)
    problem = "the daemon listens on an ephemeral port" if url is None else None
    if url is not None:
        try:
            view = await _fetch(url, s.settings.server.metrics_token)
            view["source"] = f"daemon at {url}"
            return view
        except (aiohttp.ClientError, TimeoutError, CliError) as err:
            problem = str(err) or type(err).__name__
    names = {t.id: t.name for t in await s.store.list_tenants()}
    view = await stats_view.build(s.store, s.router, None, stats_view.Scope(None, names),
                                  live=False)
    view["source"] = f"database (daemon not reachable: {problem})"
    return view


def daemon_url(settings: Settings) -> str | None:
    host, port = settings.server.host, settings.server.port
    if port == 0:
        return None
    if host in ("", "0.0.0.0", "::"):  # listening everywhere: loopback is one of them
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


async def _fetch(url: str, token: str | None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=3)
    async with aiohttp.ClientSession(timeout=timeout) as session, \
            session.get(f"{url}/api/v1/stats", headers=headers) as response:
        if response.status != 200:
            raise CliError(f"{url} answered {response.status}")
        found: dict[str, Any] = await response.json()
        return found


def table(view: dict[str, Any]) -> str:
    lines = [f"smsgw status · {view['generated_at']} · {view.get('source', '')}", ""]
    rows = [[_cell(c[key], key) for _, key in _CAMPAIGN_COLUMNS] for c in view["campaigns"]]
    lines += _grid([h for h, _ in _CAMPAIGN_COLUMNS], rows) if rows else ["(no campaigns)"]
    for c in view["campaigns"]:
        states = " ".join(f"{k}={v}" for k, v in c["states"].items()) or "empty"
        lines.append(f"  {c['name']}: {states}")
        lines += [f"    ! {d['text']}" for d in c["diagnosis"]]
    lines.append("")
    rows = [[_cell(ch[key], key) for _, key in _CHANNEL_COLUMNS] for ch in view["channels"]]
    lines += _grid([h for h, _ in _CHANNEL_COLUMNS], rows) if rows else ["(no channels)"]
    return "\n".join(lines)


def _cell(value: Any, key: str) -> str:
    if value is None:
        return "-"
    if key == "on_schedule":
        return "yes" if value else "no"
    if key == "error_rate":
        return f"{value * 100:.0f}"
    if key == "cost":
        return f"{value:.2f}"
    return str(value)


def _grid(head: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    return ["  ".join(cell.ljust(w) if i < 3 or not cell[:1].isdigit() else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(r, widths, strict=True))).rstrip()
            for r in [head, *rows]]
