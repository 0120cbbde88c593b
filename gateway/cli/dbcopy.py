"""`smsgw db copy --from sqlite:///... --to postgresql://...`: move a spool.

Every table is streamed into a new PostgreSQL spool in one transaction and
its row count checked against the source before it commits. Stop the
daemons that write to the source first, or the copy is the spool as it was
when the copy started (it reads one snapshot).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from gateway.cli.context import CliError
from spool.postgres.copy import Copied, copy_sqlite_to_postgres


def add_parser(db: Any) -> None:
    p = db.add_parser("copy", help="copy a SQLite spool into a new PostgreSQL database")
    p.add_argument("--from", dest="source", required=True, metavar="URL",
                   help="the SQLite spool: sqlite:///relative.db or sqlite:////absolute.db")
    p.add_argument("--to", dest="target", required=True, metavar="URL",
                   help="an empty (or freshly migrated) PostgreSQL database: postgresql://...")
    p.add_argument("--batch-rows", type=int, default=5000, help="rows per COPY batch")


async def run(args: argparse.Namespace) -> int:
    if not args.source.startswith("sqlite:///"):
        raise CliError("--from: expected sqlite:///PATH")
    if not args.target.startswith(("postgresql://", "postgres://")):
        raise CliError("--to: expected postgresql://...")
    if args.batch_rows < 1:
        raise CliError("--batch-rows: expected a positive number")
    began = time.monotonic()
    copied = await copy_sqlite_to_postgres(args.source.removeprefix("sqlite:///"), args.target,
                                           batch_rows=args.batch_rows, progress=_show)
    rows = sum(c.rows for c in copied)
    print(f"copied {len(copied)} tables, {rows:,} rows in {time.monotonic() - began:.1f}s; "
          f"row counts verified")
    return 0


def _show(copied: Copied) -> None:
    print(f"  {copied.table:<20} {copied.rows:>12,} rows  {copied.seconds:6.1f}s", flush=True)
    sys.stdout.flush()
