"""Dinstar UC/DWG GSM gateways over their HTTP API ("new version" API).

One configured channel is one device; `ports = "0-3"` makes one channel per
port (`{name}:0` ... `{name}:3`). Results, delivery reports and inbound SMS
come by push to `/hooks/{name}` and by polling, whichever arrives first.
See docs/dinstar.md.
"""

from drivers.dinstar.channel import DinstarPortChannel, build
from drivers.dinstar.device import DinstarDevice
from drivers.dinstar.options import DinstarOptions, parse_ports

__all__ = ["DinstarDevice", "DinstarOptions", "DinstarPortChannel", "build", "parse_ports"]
