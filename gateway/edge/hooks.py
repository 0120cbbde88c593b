"""Which channel hooks the gateway serves, and to whom.

A hook whose driver cannot tell the provider from anyone else (a Dinstar
push without `push_token`, an HTTP DLR without `dlr_secret`) would let
whoever reaches the port forge a "STOP" onto the do-not-contact list, make
the gateway text its opt-out reply to a number of their choosing, or settle
delivery reports. Such a hook is served only when its channel's
configuration says so: `hook_networks` (callers limited to those CIDRs,
anyone else gets 403) or `allow_unauthenticated_hooks = true` (a warning at
every start). Without either the daemon refuses to start.

The rule reads `WebhookChannel.hook_auth_missing`, so it holds for every
driver with a hook, present or future.
"""

from __future__ import annotations

from collections.abc import Iterable

import structlog
from aiohttp import web

from drivers.base import Channel, WebhookChannel
from gateway.api.http import client_address, forwarded, problem
from gateway.auth import OpenNetworks
from gateway.settings import ChannelSettings, ConfigError

log = structlog.get_logger("smsgw.hooks")

_ESCAPES = "allow_unauthenticated_hooks = true or hook_networks is set"


class NetworkGate:
    """A hook that only callers from `networks` reach; the rest get 403."""

    def __init__(self, inner: WebhookChannel, networks: Iterable[str]) -> None:
        self.inner = inner
        self.hook_name = inner.hook_name
        self.hook_auth_missing = inner.hook_auth_missing
        self._networks = OpenNetworks(tuple(networks))

    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        address = client_address(request)  # behind a trusted proxy, the real client
        # Named through a proxy we do not trust, the caller is unknown.
        if forwarded(request) or address not in self._networks:
            log.warning("hook.refused_network", hook=self.hook_name, client=address)
            return problem(403, "this hook does not take calls from your address")
        return await self.inner.handle_hook(request, subpath)


def served_hooks(channels: Iterable[tuple[Channel, int]],
                 configs: tuple[ChannelSettings, ...]) -> dict[str, WebhookChannel]:
    """The hook of each channel by name, each as its configuration allows.

    Several channels may share one hook (a gateway's ports): the first one
    wins and dispatches for its siblings. Raises ConfigError naming the
    option that would authenticate a hook nobody said may stay open.
    """
    found: dict[str, WebhookChannel] = {}
    for channel, index in channels:
        if not isinstance(channel, WebhookChannel) or channel.hook_name in found:
            continue
        found[channel.hook_name] = _door(channel, index, configs[index])
    return found


def _door(channel: WebhookChannel, index: int, cfg: ChannelSettings) -> WebhookChannel:
    if cfg.hook_networks:  # also narrows a hook that checks signatures
        return NetworkGate(channel, cfg.hook_networks)
    missing = channel.hook_auth_missing
    if missing is None:
        return channel
    if cfg.allow_unauthenticated_hooks:
        log.warning("hook.unauthenticated", channel=cfg.name, hook=channel.hook_name,
                    missing=missing)
        return channel
    raise ConfigError(f"channels[{index}].{missing}", f"required unless {_ESCAPES}")
