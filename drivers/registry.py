"""The one explicit list of drivers that `driver = "..."` may name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from drivers import dinstar, loopback, serial
from drivers.base import Channel, ChannelEvents
from drivers.http import channel as http
from drivers.twilio import channel as twilio
from drivers.whatsapp import channel as whatsapp

Build = Callable[[str, Any, ChannelEvents], Sequence[Channel]]


@dataclass(frozen=True)
class DriverSpec:
    options: type[BaseModel]
    # One configured channel may expand to several (a gateway's port range).
    build: Build


DRIVERS: dict[str, DriverSpec] = {
    "loopback": DriverSpec(loopback.LoopbackOptions, loopback.build),
    "serial": DriverSpec(serial.SerialOptions, serial.build),
    "dinstar": DriverSpec(dinstar.DinstarOptions, dinstar.build),
    "http": DriverSpec(http.HttpOptions, http.build),
    "twilio": DriverSpec(twilio.TwilioOptions, twilio.build),
    "whatsapp": DriverSpec(whatsapp.WhatsAppOptions, whatsapp.build),
}
