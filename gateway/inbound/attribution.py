"""Whose is a customer's reply: the rule, and the channel bindings it rests on.

A customer answers whoever wrote to them on the number they are answering,
so a reply is attributed through the channel it came in on (the business
number, modem port, DID or WhatsApp number the customer wrote to), never
through other channels: one tenant texting a customer must not draw the
replies that customer sends to another tenant's number.

1. A channel bound to one tenant (`tenants = ["acme"]`): that tenant.
2. Otherwise the tenant of the last message that went out to the sender
   on that channel (among the channel's tenants, if it is bound to several).
3. Nobody wrote to the sender there: the operator's tenant, never a guess.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from gateway.settings import ChannelSettings, ConfigError
from spool.base import Message, Store

OPERATOR_TENANT = 1  # the "default" tenant every spool starts with


@dataclass(frozen=True, slots=True)
class Answered:
    """A reply's owner, and the message it answers (None: none on that channel)."""

    tenant: int
    message: Message | None


async def attribute(store: Store, sender: str, channel: str,
                    bound: frozenset[int]) -> Answered:
    last = await store.last_sent_on(sender, channel, sorted(bound))
    if last is not None:
        return Answered(last.tenant, last)
    if len(bound) == 1:
        return Answered(next(iter(bound)), None)
    return Answered(OPERATOR_TENANT, None)


async def resolve_bindings(store: Store, channels: Iterable[ChannelSettings]
                           ) -> dict[int, frozenset[int]]:
    """Tenant ids of each bound channel, by its index in `channels`.

    Tenants live in the database, so names are checked here, at start: an
    unknown name is a ConfigError naming `channels[N].tenants` (a typo would
    otherwise leave the channel's replies with the operator)."""
    ids: dict[str, int] = {t.name: t.id for t in await store.list_tenants()}
    bound: dict[int, frozenset[int]] = {}
    for index, channel in enumerate(channels):
        unknown = [name for name in channel.tenants if name not in ids]
        if unknown:
            raise ConfigError(f"channels[{index}].tenants",
                              f"no tenant named {unknown[0]!r} (add it with `smsgw tenant add`)")
        if channel.tenants:
            bound[index] = frozenset(ids[name] for name in channel.tenants)
    return bound


def bindings_by_name(built: Iterable[tuple[str, int]],
                     bound: Mapping[int, frozenset[int]]) -> dict[str, frozenset[int]]:
    """Per channel name: a Dinstar's port channels ("gw:0", "gw:1") share
    their gateway's binding."""
    return {name: bound[index] for name, index in built if index in bound}
