"""One port of a Dinstar gateway as a channel: `{name}:{port}`.

A GSM port sends one SMS at a time, so each port is a channel of
concurrency 1 and the router's round-robin spreads the load; the gateway's
own spreading (several ports per request) is not used, so the spool always
knows which SIM sent what.
"""

from __future__ import annotations

from aiohttp import web

from drivers.base import ChannelEvents, ChannelKind, Health, OutgoingMessage, SendReceipt
from drivers.dinstar.device import DinstarDevice
from drivers.dinstar.options import DinstarOptions


class DinstarPortChannel:
    kind: ChannelKind = "sms"
    concurrency = 1

    def __init__(self, device: DinstarDevice, port: int) -> None:
        self.device = device
        self.port = port
        self.name = f"{device.name}:{port}"
        # Every port answers at the device's hook; the gateway keeps the first.
        self.hook_name = device.name
        self._started = False

    async def start(self) -> None:
        if not self._started:
            self._started = True
            await self.device.acquire()

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        return await self.device.send(self.port, message)

    async def close(self) -> None:
        if self._started:
            self._started = False
            await self.device.release()

    @property
    def hook_auth_missing(self) -> str | None:
        return self.device.hook_auth_missing

    def health(self) -> Health:
        return self.device.state.health(self.port)

    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        return await self.device.handle_hook(request, subpath)


def build(name: str, options: DinstarOptions, events: ChannelEvents) -> list[DinstarPortChannel]:
    device = DinstarDevice(name, options, events)
    return [DinstarPortChannel(device, port) for port in options.port_list]
