"""The contract between the gateway and every channel driver.

A driver knows how to hand one message to one channel (a modem port, a
gateway port, a provider account) and how to report what the channel says
later (delivery reports, inbound messages). It knows nothing of the spool:
ids it receives are opaque references to be echoed back.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from aiohttp import web

ChannelKind = Literal["sms", "whatsapp"]


class ChannelError(Exception):
    """Base of what `Channel.send` may raise; `code` is the channel's own."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientError(ChannelError):
    """Try again later, maybe on another channel; `retry_after_s` if the channel said."""

    def __init__(
        self, message: str, *, code: str | None = None, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, code=code)
        self.retry_after_s = retry_after_s


class PermanentError(ChannelError):
    """This message will never go out as it is: fail it."""


class ChannelFault(TransientError):
    """The channel itself is refused, whatever the message: credentials
    rejected (a rotated password, a revoked token), the account suspended.
    Rest the channel at once and keep the message queued without charging
    it an attempt: once the operator fixes the account everything goes out.
    `fault` is the short name the channel's state shows."""

    def __init__(self, message: str, *, code: str | None = None,
                 fault: str = "authentication failed",
                 retry_after_s: float | None = None) -> None:
        super().__init__(message, code=code, retry_after_s=retry_after_s)
        self.fault = fault

    @classmethod
    def auth(cls, provider_said: str, *, code: str | None = None) -> ChannelFault:
        return cls(f"authentication failed: {provider_said}", code=code)


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    id: int
    destination: str  # E.164 with the leading '+'
    text: str
    kind: ChannelKind = "sms"
    data: dict[str, Any] = field(default_factory=dict)
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class SendReceipt:
    provider_ref: str
    parts: int = 1
    # Channels that report delivery per part (GSM modems: one message
    # reference per PDU) list every part's reference; the message counts as
    # delivered when every part is.
    part_refs: tuple[str, ...] = ()
    # Drivers that learn the final fate at once (some HTTP aggregators) say so.
    delivered: bool = False


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What a channel says later about a send. `provider_ref` is the message's
    reference or one part's; references that wrap (a modem's 0-255 message
    reference) are matched with `destination` to the newest send."""

    channel: str
    provider_ref: str
    delivered: bool
    error: str | None = None
    at: float = field(default_factory=time.time)
    destination: str | None = None
    # False for an intermediate report ("still trying", "read"): nothing changes yet.
    final: bool = True
    # The provider's error code, kept apart so policies can act on it
    # (WhatsApp 131049 "not delivered to maintain healthy ecosystem").
    error_code: str | None = None
    # Anything else the provider said (pricing, conversation, status name).
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class InboundMessage:
    """A message from a customer. `provider_ref` must identify it uniquely on
    its channel (a provider's id, or a digest of a modem's PDU): the same
    message read twice (a modem reset, a provider's retry) is stored once."""

    channel: str
    sender: str
    recipient: str
    text: str
    provider_ref: str | None = None
    at: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SenderStop:
    """The provider refuses to message `destination` from this channel's
    sender because the customer unsubscribed there (Twilio 21610): nothing
    more should go to it through this channel."""

    channel: str
    destination: str
    detail: str
    at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Health:
    up: bool
    last_error: str | None = None
    signal_dbm: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


OnDeliveryReport = Callable[[DeliveryReport], Awaitable[None]]
OnInbound = Callable[[InboundMessage], Awaitable[object]]
OnSenderStop = Callable[[SenderStop], Awaitable[object]]
# (channel kind, customer number E.164) -> unix time of their last inbound message
LastInbound = Callable[[str, str, str | None], Awaitable[float | None]]


@dataclass(slots=True)
class ChannelEvents:
    """Where a channel reports what arrives later, and what it may ask the
    gateway; the gateway fills these in."""

    on_report: OnDeliveryReport | None = None
    on_inbound: OnInbound | None = None
    last_inbound: LastInbound | None = None
    on_sender_stop: OnSenderStop | None = None

    async def last_inbound_at(self, kind: str, number: str,
                              channel: str | None = None) -> float | None:
        """When `number` last wrote to us on a channel of `kind`, or on
        `channel` alone (WhatsApp's 24-hour customer-service window is per
        business number: writing to one opens nothing on another)."""
        if self.last_inbound is None:
            return None
        return await self.last_inbound(kind, number, channel)

    async def report(self, report: DeliveryReport) -> None:
        if self.on_report is not None:
            await self.on_report(report)

    async def sender_stop(self, stop: SenderStop) -> None:
        if self.on_sender_stop is not None:
            await self.on_sender_stop(stop)

    async def inbound(self, message: InboundMessage) -> object:
        """Hand over an inbound message; returns what the gateway stored (its id)."""
        if self.on_inbound is not None:
            return await self.on_inbound(message)
        return None


@runtime_checkable
class Channel(Protocol):
    name: str
    kind: ChannelKind
    # How many sends this channel takes at once (1 for a modem port).
    concurrency: int

    async def start(self) -> None: ...

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        """Hand one message over; raise TransientError or PermanentError."""
        ...

    async def close(self) -> None: ...

    def health(self) -> Health: ...


@runtime_checkable
class WebhookChannel(Protocol):
    """A channel that receives HTTP callbacks (delivery reports, inbound).

    The gateway serves `/hooks/{hook_name}` and everything below it and hands
    each request to `handle_hook` with the rest of the path ("" or "/status").
    The channel verifies the caller (signatures, shared secrets) itself.

    `hook_auth_missing` says whether it can: None when every request must
    prove it comes from the provider (Twilio's and Meta's signatures, a
    configured shared secret), else the option that would make it prove
    it ("push_token"). The gateway serves a hook that anyone could call
    only where the configuration says so explicitly.
    """

    hook_name: str
    hook_auth_missing: str | None

    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse: ...


@runtime_checkable
class SharedHook(Protocol):
    """A webhook channel whose provider sends the callbacks of several
    channels to one URL (Meta: every phone number of an app). Once every
    channel is built, the gateway shows each such channel all of them; its
    `handle_hook` then hands each callback to the channel it concerns."""

    def meet(self, channels: Sequence[Channel]) -> None: ...
