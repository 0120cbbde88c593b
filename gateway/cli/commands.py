"""The subcommands behind `smsgw`."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.api import render
from gateway.app import App
from gateway.cli import dbcopy, monitoring, output, tenants
from gateway.cli.context import CliError, opened_store, services, tenant_named
from gateway.dncr import DncrImport
from gateway.importer import FileImporter
from gateway.intake import IntakeError, Submission
from gateway.logging import configure_logging, register_settings_secrets
from gateway.phone import InvalidNumber, normalize
from gateway.services import Services
from gateway.settings import Settings
from spool.base import Campaign, Conflict
from spool.csvfile import errors_path


def run_daemon(settings: Settings) -> int:
    configure_logging(settings.logging.level, settings.logging.format)
    register_settings_secrets(settings)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    return asyncio.run(_run(settings))


async def _run(settings: Settings) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await App(settings).run(stop)
    return 0


async def dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "db":
        if args.action == "copy":
            return await dbcopy.run(args)
        return await db_migrate(settings)
    async with services(settings) as s:
        handler = _HANDLERS[(args.command, getattr(args, "action", None))]
        return await handler(args, s)


async def db_migrate(settings: Settings) -> int:
    async with opened_store(settings) as store:
        before = await store.schema_version()
        after = await store.migrate()
    print(f"schema version {after}" + (f" (was {before})" if before != after else ", up to date"))
    return 0


async def send(args: argparse.Namespace, s: Services) -> int:
    tenant = await tenant_named(s, args.tenant)
    try:
        row = await s.intake.classify(tenant.id, Submission(
            destination=args.to, message=args.text, campaign=args.campaign,
            priority=args.priority))
    except IntakeError as err:
        raise CliError(f"{err.field}: {err}") from None
    [row] = await s.intake.block_listed([row])
    [inserted] = await s.store.insert_messages([row])
    print(json.dumps({"id": inserted.id, "state": int(inserted.state),
                      "state_name": inserted.state.name, "destination": row.destination,
                      "segments": row.segments, "error": row.error}))
    return 0


async def import_csv(args: argparse.Namespace, s: Services) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise CliError(f"no such file: {path}")
    tenant = await tenant_named(s, args.tenant)
    stat = path.stat()
    errors_to = Path(args.errors) if args.errors else errors_path(path)
    bar = output.ProgressBar(stat.st_size, enabled=sys.stderr.isatty())
    summary = await FileImporter(s, tenant.id).run(
        path, f"cli:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}",
        errors_to=None if args.dry_run else errors_to, dry_run=args.dry_run,
        progress=bar.update)
    bar.done()
    print(output.import_summary(summary, dry_run=args.dry_run,
                                errors_path=None if args.dry_run else errors_to))
    return 0


async def status(args: argparse.Namespace, s: Services) -> int:
    if args.message is not None:
        return await _one_message(args, s)
    return await monitoring.status(args, s)


async def _one_message(args: argparse.Namespace, s: Services) -> int:
    m = await s.store.get_message(None, args.message)
    body = render.message(m, getattr(s.campaigns.by_id(m.campaign), "name", None))
    body["history"] = [render.event(e) for e in await s.store.message_events(m.id)]
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return 0


async def _campaign_named(s: Services, tenant_name: str, name: str | None) -> int | None:
    if not name:
        return None
    tenant = await tenant_named(s, tenant_name)
    found = await s.store.campaign_by_name(tenant.id, name)
    if found is None:
        raise CliError(f"no campaign {name!r} for tenant {tenant_name!r}")
    return found.id


def _numbers(raw: list[str], region: str) -> list[str]:
    try:
        return [normalize(n, region) for n in raw]
    except InvalidNumber as err:
        raise CliError(str(err)) from None


async def blacklist_change(args: argparse.Namespace, s: Services) -> int:
    scope = await _campaign_named(s, args.tenant, args.campaign)
    entries = [(n, scope) for n in _numbers(args.numbers, s.settings.phone.default_region)]
    if args.action == "add":
        print(f"added {await s.store.blacklist_add(entries, note='cli')}")
    else:
        print(f"removed {await s.store.blacklist_remove(entries)}")
    return 0


async def blacklist_list(args: argparse.Namespace, s: Services) -> int:
    scope = await _campaign_named(s, args.tenant, args.campaign)
    after = ""
    while page := await s.store.blacklist_list(scope, after=after):
        for number, _ in page:
            print(number)
        after = page[-1][0]
    return 0


async def blacklist_import(args: argparse.Namespace, s: Services) -> int:
    tenant = await tenant_named(s, args.tenant)
    with open(args.file, "rb") as fh:
        summary = await DncrImport(
            s.store, tenant.id, s.settings.phone.default_region, allow_global=True,
            note=f"import {os.path.basename(args.file)}",
            on_error=lambda line, why: print(f"line {line}: {why}", file=sys.stderr)).run(fh)
    print(f"added {summary.added} (of {summary.valid} valid rows; {summary.rejected} rejected)")
    return 0


async def campaign_create(args: argparse.Namespace, s: Services) -> int:
    tenant = await tenant_named(s, args.tenant)
    channels = tuple(c.strip() for c in args.channels.split(",") if c.strip()) \
        if args.channels else ()
    known = s.router.nameable()
    unknown = [c for c in channels if c not in known]
    if unknown:
        raise CliError(f"unknown channel(s): {', '.join(unknown)} "
                       f"(configured: {', '.join(sorted(known))})")
    try:
        created = await s.store.create_campaign(Campaign(
            id=0, tenant=tenant.id, name=args.name, enabled=not args.stopped, channels=channels,
            priority=args.priority, in_doubt=args.in_doubt, dncr_check=not args.no_dncr))
    except Conflict as err:
        raise CliError(str(err)) from None
    print(json.dumps(render.campaign(created)))
    return 0


async def campaign_toggle(args: argparse.Namespace, s: Services) -> int:
    campaign_id = await _campaign_named(s, args.tenant, args.name)
    assert campaign_id is not None
    updated = await s.store.update_campaign(campaign_id, enabled=args.action == "start")
    print(f"campaign {updated.name}: {'started' if updated.enabled else 'stopped'}")
    return 0


async def campaign_list(args: argparse.Namespace, s: Services) -> int:
    tenant = await tenant_named(s, args.tenant) if args.tenant else None
    for c in await s.store.list_campaigns(tenant.id if tenant else None):
        state = "running" if c.enabled else "stopped"
        pool = ",".join(c.channels) or "(all sms)"
        print(f"{c.tenant:>3} {c.name:<24} {state:<8} channels={pool} in_doubt={c.in_doubt}")
    return 0


_HANDLERS: dict[tuple[str, str | None], Callable[..., Awaitable[int]]] = {
    ("send", None): send,
    ("import", None): import_csv,
    ("status", None): status,
    ("blacklist", "add"): blacklist_change,
    ("blacklist", "remove"): blacklist_change,
    ("blacklist", "list"): blacklist_list,
    ("blacklist", "import"): blacklist_import,
    ("campaign", "create"): campaign_create,
    ("campaign", "start"): campaign_toggle,
    ("campaign", "stop"): campaign_toggle,
    ("campaign", "list"): campaign_list,
    **tenants.HANDLERS,
}
