"""`smsgw`: the command line. Each subcommand takes -c/--config or SMSGW_CONFIG.

Exit codes: 0 done, 1 a failure the message explains, 2 bad usage,
78 (EX_CONFIG) a configuration the daemon cannot use.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from gateway.cli import commands, dbcopy, hardware, monitoring, tenants
from gateway.cli.context import CliError
from gateway.settings import ConfigError, default_config_path, load_settings
from spool.base import StoreError

EX_CONFIG = 78


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="smsgw", description="SMS and WhatsApp gateway")
    p.add_argument("-c", "--config", help="TOML config (default: $SMSGW_CONFIG, "
                   "./config/smsgw.toml, /etc/smsgw/smsgw.toml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run the daemon")

    send = sub.add_parser("send", help="queue one message")
    send.add_argument("--to", required=True)
    send.add_argument("--text", required=True)
    send.add_argument("--campaign")
    send.add_argument("--priority", type=int)
    send.add_argument("--tenant", default="default")

    imp = sub.add_parser("import", help="import a CSV (campaign;destination;message;priority)")
    imp.add_argument("file")
    imp.add_argument("--dry-run", action="store_true", help="check and count; write nothing")
    imp.add_argument("--tenant", default="default")
    imp.add_argument("--errors", help="write rejected rows here (default: FILE.errors.csv)")

    status = sub.add_parser("status", help="campaigns and channels, as on the dashboard")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                        help="redraw every SECONDS (default 2) until Ctrl-C")
    status.add_argument("--message", type=int, help="one message with its history")

    bl = sub.add_parser("blacklist", help="the do-not-contact list").add_subparsers(
        dest="action", required=True)
    for action in ("add", "remove"):
        a = bl.add_parser(action)
        a.add_argument("numbers", nargs="+")
        a.add_argument("--campaign", help="campaign list (default: the global list)")
        a.add_argument("--tenant", default="default")
    lst = bl.add_parser("list")
    lst.add_argument("--campaign")
    lst.add_argument("--tenant", default="default")
    bli = bl.add_parser("import", help="CSV of phone;campaign (empty campaign: global)")
    bli.add_argument("file")
    bli.add_argument("--tenant", default="default")

    camp = sub.add_parser("campaign", help="campaigns").add_subparsers(
        dest="action", required=True)
    create = camp.add_parser("create")
    create.add_argument("name")
    create.add_argument("--channels", help="comma-separated channel names (default: all SMS)")
    create.add_argument("--priority", type=int, default=0)
    create.add_argument("--in-doubt", choices=("resend", "hold"), default="resend")
    create.add_argument("--no-dncr", action="store_true", help="skip the blacklist check")
    create.add_argument("--stopped", action="store_true", help="create it stopped")
    create.add_argument("--tenant", default="default")
    for action in ("start", "stop"):
        a = camp.add_parser(action)
        a.add_argument("name")
        a.add_argument("--tenant", default="default")
    cl = camp.add_parser("list")
    cl.add_argument("--tenant")

    tenants.add_parser(sub)

    db = sub.add_parser("db", help="database").add_subparsers(dest="action", required=True)
    db.add_parser("migrate", help="apply pending schema migrations")
    dbcopy.add_parser(db)
    hardware.add_parsers(sub)
    monitoring.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command in hardware.COMMANDS:
        return hardware.run(args)
    if args.command in monitoring.COMMANDS:
        return monitoring.run(args)
    try:
        settings = load_settings(args.config or default_config_path())
    except ConfigError as err:
        print(f"smsgw: config error: {err}", file=sys.stderr)
        return EX_CONFIG
    try:
        if args.command == "run":
            return commands.run_daemon(settings)
        return asyncio.run(commands.dispatch(args, settings))
    except ConfigError as err:  # found at assembly: e.g. a hook left open unsaid
        print(f"smsgw: config error: {err}", file=sys.stderr)
        return EX_CONFIG
    except CliError as err:
        print(f"smsgw: {err}", file=sys.stderr)
        return 1
    except StoreError as err:
        print(f"smsgw: storage: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
