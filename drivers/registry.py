"""The one explicit list of drivers that `driver = "..."` may name."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from drivers import loopback
from drivers.base import Channel, ChannelEvents

Build = Callable[[str, Any, ChannelEvents], Sequence[Channel]]


@dataclass(frozen=True)
class DriverSpec:
    options: type[BaseModel]
    # One configured channel may expand to several (a gateway's port range).
    build: Build


DRIVERS: dict[str, DriverSpec] = {
    "loopback": DriverSpec(loopback.LoopbackOptions, loopback.build),
}
