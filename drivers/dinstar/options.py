"""What `driver = "dinstar"` takes in the configuration."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# The API addresses ports 0..31 on every model of the family (UC2000, DWG2000).
MAX_PORT = 31

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def parse_ports(spec: str) -> tuple[int, ...]:
    """`"0-3"` -> (0, 1, 2, 3); `"0,2,5-7"` -> (0, 2, 5, 6, 7). Raises ValueError."""
    ports: list[int] = []
    for item in spec.replace(" ", "").split(","):
        found = _RANGE.match(item)
        if not found:
            raise ValueError(f"expected ports like '0-3' or '0,2,5-7', got {spec!r}")
        first = int(found.group(1))
        last = int(found.group(2)) if found.group(2) is not None else first
        if last < first:
            raise ValueError(f"port range {item!r} runs backwards")
        if last > MAX_PORT:
            raise ValueError(f"port {last} out of range (0-{MAX_PORT})")
        ports += range(first, last + 1)
    if len(set(ports)) != len(ports):
        raise ValueError(f"port listed twice in {spec!r}")
    return tuple(sorted(ports))


class DinstarOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(pattern=r"^https?://[^/\s]+/?$")
    username: str = "admin"
    password: SecretStr = SecretStr("admin")
    ports: str = "0"
    # Gateways ship a self-signed certificate; the LAN is the trust boundary.
    verify_tls: bool = False
    request_timeout_s: float = Field(10.0, gt=0)
    # How long send() waits for the port to report SENT_OK / FAILED.
    result_timeout_s: float = Field(30.0, gt=0)
    result_poll_interval_ms: int = Field(100, ge=10)
    # 0 turns a poller off (when the device pushes those events).
    dlr_poll_interval_s: float = Field(15.0, ge=0)
    inbound_poll_interval_s: float = Field(10.0, ge=0)
    status_poll_interval_s: float = Field(30.0, gt=0)
    reconnect_max_s: float = Field(60.0, gt=0)
    delivery_reports: bool = True
    encoding: Literal["auto", "unicode", "gsm-7bit"] = "auto"
    # What replaces the "+" of an E.164 destination on the wire ("+", "00", "").
    number_prefix: str = Field("+", pattern=r"^(\+|\d{0,4})$")
    # When set, pushes must come to /hooks/{name}/{push_token} (or ?token=).
    push_token: SecretStr | None = None
    # Inbox messages older than this are not imported on the first poll.
    inbound_backlog_s: float = Field(3600.0, ge=0)
    # How long a sent message waits in memory for its delivery report.
    dlr_window_s: float = Field(6 * 3600.0, gt=0)
    # How far back a delivery-status poll looks: the device filters on the
    # send time, so each poll returns every report of that span again.
    dlr_poll_lookback_s: float = Field(900.0, gt=0)
    # Consecutive failed sends after which a port rests (port_rest_s).
    port_fail_limit: int = Field(3, ge=1)
    port_rest_s: float = Field(30.0, ge=0)

    @field_validator("ports")
    @classmethod
    def _ports(cls, value: str) -> str:
        parse_ports(value)
        return value

    @property
    def port_list(self) -> tuple[int, ...]:
        return parse_ports(self.ports)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")
