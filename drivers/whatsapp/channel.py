"""One WhatsApp Business phone number on Meta's Cloud API as a channel.

Sends with `POST /{version}/{phone_number_id}/messages` (Bearer token) and
receives Meta's webhooks on the gateway's server at `/hooks/{name}`: the
GET subscription check (`verify_token`) and POSTs signed with the app
secret (`X-Hub-Signature-256`). A Meta app has one callback URL for all its
numbers, so any channel's hook takes the changes of every channel of the
same app and hands each to the channel of its number (`numbers`). Anything
but a template needs the
customer-service window open: the customer wrote in the last 24 hours.
A customer's marketing stop or resume (the `user_preferences` webhook, or a
send refused with 131050) goes to the gateway as a `MarketingPreference`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from drivers import webio
from drivers.base import (
    Channel,
    ChannelError,
    ChannelEvents,
    ChannelKind,
    OutgoingMessage,
    PermanentError,
    SendReceipt,
    TransientError,
)
from drivers.http.common import HttpChannelBase, fetch
from drivers.whatsapp import errors, numbers, payload, webhook
from drivers.whatsapp.preferences import STOPPED_CODE, MarketingPreference

log = structlog.get_logger("smsgw.whatsapp")

WINDOW_S = 24 * 3600


class WhatsAppOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    phone_number_id: str = Field(min_length=1)
    access_token: str = Field(min_length=1)
    # Signs Meta's webhook POSTs (App Dashboard > App settings > Basic).
    app_secret: str = Field(min_length=1)
    # Our half of the GET subscription check, as typed into the App Dashboard.
    verify_token: str = Field(min_length=1)
    api_version: str = Field("v25.0", pattern=r"^v\d+\.\d+$")
    base_url: str = "https://graph.facebook.com"
    request_timeout_s: float = Field(30.0, gt=0)
    concurrency: int = Field(16, ge=1)


class WhatsAppChannel(HttpChannelBase):
    kind: ChannelKind = "whatsapp"
    hook_auth_missing: str | None = None  # every callback's signature is checked

    def __init__(self, name: str, options: WhatsAppOptions, events: ChannelEvents, *,
                 clock: Callable[[], float] = time.time) -> None:
        self._init_http(name)
        self.concurrency = options.concurrency
        self._opt = options
        self._events = events
        self._clock = clock
        self._url = (f"{options.base_url.rstrip('/')}/{options.api_version}/"
                     f"{options.phone_number_id}/messages")
        self._headers = {"Authorization": f"Bearer {options.access_token}"}
        # Until the gateway shows us the other channels: our own number only.
        self._numbers = numbers.Numbers(self._line())

    def _line(self) -> numbers.Line[WhatsAppChannel]:
        return numbers.Line(self, self.name, self._opt.phone_number_id, self._opt.app_secret)

    def meet(self, channels: Sequence[Channel]) -> None:
        """Every channel the gateway runs: which numbers our hook also takes."""
        others = [c._line() for c in channels if isinstance(c, WhatsAppChannel) and c is not self]
        self._numbers = numbers.Numbers(self._line(), others)
        for number, kept, left in self._numbers.clashes:
            log.warning("whatsapp.number_configured_twice", channel=self.name,
                        phone_number_id=number, takes_its_webhooks=kept, left_out=left)

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        self._check_open()
        prepared = payload.prepare(message)
        if prepared.needs_open_window:
            await self._require_window(message.destination)
        session = await self._http()
        try:
            answer = await fetch(session, "WhatsApp", "POST", self._url,
                                 json=prepared.body, headers=self._headers)
            if not 200 <= answer.status < 300:
                raise errors.classify(answer)
            receipt = _receipt(answer.body)
        except ChannelError as err:
            self._last_error = str(err)
            if err.code == STOPPED_CODE:  # refused at once rather than in a status webhook
                await self._events.inbound(MarketingPreference(
                    self.name, message.destination, "stop", self._clock(), str(err)).as_inbound())
            raise
        self._last_error = None
        return receipt

    async def _require_window(self, destination: str) -> None:
        last = await self._events.last_inbound_at("whatsapp", destination, self.name)
        if last is None or self._clock() - last > WINDOW_S:
            raise PermanentError("outside the 24-hour customer-service window; send a template",
                                 code="window_closed")

    # webhooks -------------------------------------------------------------
    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        if subpath not in ("", "/"):
            raise web.HTTPNotFound(reason="the WhatsApp hook is /hooks/{name}")
        if request.method == "GET":
            answer = webhook.challenge(request.query, self._opt.verify_token)
            if answer is None:
                raise web.HTTPForbidden(reason="hub.verify_token does not match")
            return web.Response(text=answer)
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "POST"])
        await self._route(await self._signed_json(request))
        return web.Response(text="EVENT_RECEIVED")

    async def _signed_json(self, request: web.Request) -> Any:
        raw = await request.read()
        if not webhook.signed(self._opt.app_secret, raw,
                              request.headers.get(webhook.SIGNATURE_HEADER)):
            log.warning("whatsapp.bad_signature", channel=self.name)
            raise web.HTTPForbidden(reason="missing or wrong X-Hub-Signature-256")
        # Signed but unreadable: Meta would send it again unchanged, so say
        # 400 (its retries show on the app's webhook dashboard) and log it.
        try:
            return webio.loads(raw)
        except webio.BadBody as err:
            log.warning("whatsapp.webhook_unreadable", channel=self.name, error=str(err))
            raise

    async def _route(self, doc: Any) -> None:
        groups, ignored = webhook.split(doc)
        for why in ignored:
            log.info("whatsapp.webhook_ignored", channel=self.name, reason=why)
        for number, changes in groups.items():
            target = self._numbers.take(number)
            if isinstance(target, str):
                # Lost replies and reports unless the operator adds the number.
                log.warning("whatsapp.webhook_unrouted", channel=self.name,
                            phone_number_id=number, changes=len(changes), reason=target)
                continue
            await target.receive(webhook.events(target.name, changes))

    async def receive(self, events: webhook.Events) -> None:
        """Hand over what Meta said about this channel's number, whichever
        hook it came in by. Stored before the 200: a failure is a 5xx and
        Meta delivers the whole POST again (every event is idempotent)."""
        for message in events.inbound:
            await self._events.inbound(message)
        for preference in events.preferences:
            await self._events.inbound(preference.as_inbound())
        for report in events.reports:
            await self._events.report(report)
        for why in events.ignored:
            log.info("whatsapp.webhook_ignored", channel=self.name, reason=why)


def _receipt(body: bytes) -> SendReceipt:
    try:
        doc = json.loads(body)
        wamid = doc["messages"][0]["id"]
    except (ValueError, UnicodeDecodeError, KeyError, IndexError, TypeError):
        raise TransientError("WhatsApp accepted the request but returned no message id",
                             code="no_id") from None
    status = doc["messages"][0].get("message_status")
    if status and status != "accepted":
        # Template pacing ("held_for_quality_assessment"): it may go out later, or not.
        log.info("whatsapp.message_status", wamid=wamid, status=status)
    return SendReceipt(provider_ref=str(wamid))


def build(name: str, options: WhatsAppOptions, events: ChannelEvents) -> list[WhatsAppChannel]:
    return [WhatsAppChannel(name, options, events)]
