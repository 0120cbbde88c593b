"""`smsgw tenant ...`: tenants, their API keys and webhooks.

A tenant may hold several keys, so a key is rotated without downtime: add
the new one, move the client over, revoke the old one. Revocations, disables
and removals are written with a bump of the store's auth generation, which a
running daemon reads at most once a second: it refuses the key within about
two seconds, without a restart.
"""

from __future__ import annotations

import argparse
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.auth import generate_key, hash_key
from gateway.cli.context import CliError, tenant_named
from gateway.services import Services
from gateway.webhooks import BadWebhookUrl, check_webhook_url
from spool.base import API_KEY_ID_CHARS, Conflict, NotFound, Tenant

OPERATOR_TENANT = 1  # the dashboard and key-less legacy calls act as it
_KEY_ACTIONS = ("add", "list", "revoke")
_KEY_ID = re.compile(r"^[0-9a-f]{6,64}$")


def add_parser(sub: Any) -> None:
    ten = sub.add_parser("tenant", help="tenants and API keys").add_subparsers(
        dest="action", required=True)
    ta = ten.add_parser("add", help="create a tenant; prints its API key once")
    ta.add_argument("name")
    ta.add_argument("--webhook-url")
    tw = ten.add_parser("webhook", help="set where a tenant's events go; prints a new secret")
    tw.add_argument("name")
    tw.add_argument("--url", help="HTTPS endpoint (omit to stop sending events)")
    tk = ten.add_parser(
        "key", help="API keys: key [add] NAME, key list NAME, key revoke NAME --id ID|--all",
        usage="smsgw tenant key [add] NAME [--label L] | key list NAME | "
              "key revoke NAME (--id ID | --key KEY | --all)")
    tk.add_argument("words", nargs="+", metavar="[add|list|revoke] NAME")
    tk.add_argument("--label", help="a note to tell keys apart (add)")
    which = tk.add_mutually_exclusive_group()
    which.add_argument("--id", help="the key's id, as `key list` shows it (revoke)")
    which.add_argument("--key", help="the key itself (revoke)")
    which.add_argument("--all", action="store_true", help="every key of the tenant (revoke)")
    for action, text in (("disable", "refuse the tenant's keys until enabled again"),
                         ("enable", "accept the tenant's keys again")):
        ten.add_parser(action, help=text).add_argument("name")
    tr = ten.add_parser("remove", help="delete a tenant's keys and webhook, keep its history")
    tr.add_argument("name")
    tr.add_argument("--force", action="store_true",
                    help="cancel its unfinished messages and journeys instead of refusing")
    ten.add_parser("list")


async def tenant_add(args: argparse.Namespace, s: Services) -> int:
    # Checked before anything is stored: a bad URL leaves no tenant behind.
    url = _webhook_url(args.webhook_url) if args.webhook_url else None
    key = generate_key()
    try:
        tenant = await s.store.create_tenant(args.name, hash_key(key))
    except Conflict as err:
        raise CliError(str(err)) from None
    print(f"tenant {tenant.name} (id {tenant.id}) created.")
    print(f"API key (shown once, store it now): {key}")
    if url:
        await _set_webhook(s, tenant.id, url)
    return 0


async def tenant_webhook(args: argparse.Namespace, s: Services) -> int:
    tenant = await tenant_named(s, args.name)
    if not args.url:
        await s.store.set_webhook(tenant.id, None, None)
        print(f"tenant {tenant.name}: events are no longer sent")
        return 0
    await _set_webhook(s, tenant.id, _webhook_url(args.url))
    return 0


def _webhook_url(url: str) -> str:
    try:
        return check_webhook_url(url)
    except BadWebhookUrl as err:
        raise CliError(str(err)) from None


async def _set_webhook(s: Services, tenant_id: int, url: str) -> None:
    secret = "whsec_" + secrets.token_urlsafe(32)
    await s.store.set_webhook(tenant_id, url, secret)
    print(f"webhook: {url}")
    print(f"signing secret (shown once): {secret}")


async def tenant_key(args: argparse.Namespace, s: Services) -> int:
    words = list(args.words)
    action = words.pop(0) if len(words) == 2 and words[0] in _KEY_ACTIONS else "add"
    if len(words) != 1:
        raise CliError("usage: smsgw tenant key [add|list|revoke] NAME")
    tenant = await _live_tenant(s, words[0])
    if action == "add":
        key = generate_key()
        await s.store.add_api_key(tenant.id, hash_key(key), args.label)
        print(f"API key for {tenant.name} (shown once): {key}")
        print(f"key id: {hash_key(key)[:API_KEY_ID_CHARS]}")
    elif action == "list":
        for k in await s.store.list_api_keys(tenant.id):
            made = time.strftime("%Y-%m-%d %H:%M", time.localtime(k.created_at))
            print(f"{k.id}  {made}  {k.label or '-'}")
    else:
        print(f"revoked {await _revoke(s, tenant, args)} key(s) of {tenant.name}")
    return 0


async def _revoke(s: Services, tenant: Tenant, args: argparse.Namespace) -> int:
    if args.all:
        prefix = None
    elif args.key:
        prefix = hash_key(args.key)
    elif args.id and _KEY_ID.match(args.id.lower()):
        prefix = args.id.lower()
    else:
        raise CliError("say which key: --id ID (6+ hex digits, from `smsgw tenant key list`), "
                       "--key KEY or --all")
    try:
        return await s.store.revoke_api_keys(tenant.id, prefix)
    except (NotFound, Conflict) as err:
        raise CliError(str(err)) from None


async def tenant_toggle(args: argparse.Namespace, s: Services) -> int:
    tenant = await _live_tenant(s, args.name)
    disable = args.action == "disable"
    if disable and tenant.id == OPERATOR_TENANT:
        raise CliError("the operator's tenant cannot be disabled (revoke its keys instead)")
    await s.store.set_tenant_disabled(tenant.id, disable)
    print(f"tenant {tenant.name}: {'disabled' if disable else 'enabled'}")
    return 0


async def tenant_remove(args: argparse.Namespace, s: Services) -> int:
    tenant = await _live_tenant(s, args.name)
    if tenant.id == OPERATOR_TENANT:
        raise CliError("the operator's tenant cannot be removed")
    try:
        cancelled = await s.store.remove_tenant(tenant.id, force=args.force)
    except Conflict as err:
        raise CliError(f"{err} (--force)") from None
    print(f"tenant {tenant.name} removed; {cancelled} unfinished message(s) cancelled")
    return 0


async def tenant_list(args: argparse.Namespace, s: Services) -> int:
    for t in await s.store.list_tenants():
        state = "removed" if t.removed else "disabled" if t.disabled else "active"
        print(f"{t.id:>3} {t.name:<24} {state:<8} webhook={t.webhook_url or '-'}")
    return 0


async def _live_tenant(s: Services, name: str) -> Tenant:
    tenant = await tenant_named(s, name)
    if tenant.removed:
        raise CliError(f"tenant {name!r} was removed")
    return tenant


HANDLERS: dict[tuple[str, str | None], Callable[..., Awaitable[int]]] = {
    ("tenant", "add"): tenant_add,
    ("tenant", "key"): tenant_key,
    ("tenant", "webhook"): tenant_webhook,
    ("tenant", "disable"): tenant_toggle,
    ("tenant", "enable"): tenant_toggle,
    ("tenant", "remove"): tenant_remove,
    ("tenant", "list"): tenant_list,
}
