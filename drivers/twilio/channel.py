"""A Twilio Programmable Messaging account as one SMS channel.

Sends through the REST API and receives Twilio's webhooks on the gateway's
own server: status callbacks at `/hooks/{name}/status`, incoming messages
at `/hooks/{name}/inbound` (configure that URL on the number or Messaging
Service). Both are checked against `X-Twilio-Signature`, computed over the
public URL Twilio called, so `public_base_url` must be exactly the address
configured at Twilio (scheme, host, port, path prefix), whatever proxy sits
in front of the gateway.
"""

from __future__ import annotations

import structlog
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, model_validator

from drivers.base import (
    ChannelError,
    ChannelEvents,
    ChannelKind,
    OutgoingMessage,
    SenderStop,
    SendReceipt,
)
from drivers.http.common import HttpChannelBase, basic_auth, fetch, public_hook_url
from drivers.twilio import api, callbacks, signature
from drivers.webio import read_form

log = structlog.get_logger("smsgw.twilio")


class TwilioOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    account_sid: str = Field(min_length=2)
    # Signs webhooks; also the password unless an API key is configured.
    auth_token: str = Field(min_length=1)
    # The secret of the SharedKey a Webhook Setting signs with instead of
    # the auth token: used for callbacks that carry
    # X-Twilio-Webhooks-Signature-Settings. `webhook_signing_keys` maps
    # SharedKey ids to secrets while a Rule splits traffic between two
    # Settings (rotation); an id it does not list uses `webhook_signing_key`.
    webhook_signing_key: str | None = Field(None, min_length=1)
    webhook_signing_keys: dict[str, str] = {}
    api_key_sid: str | None = None
    api_key_secret: str | None = None
    from_number: str | None = None
    messaging_service_sid: str | None = None
    # What Twilio calls: status callbacks and signatures are built on it.
    public_base_url: str = Field(pattern=r"^https?://")
    base_url: str = "https://api.twilio.com"
    status_callbacks: bool = True
    request_timeout_s: float = Field(30.0, gt=0)
    concurrency: int = Field(8, ge=1)

    @model_validator(mode="after")
    def _sender(self) -> TwilioOptions:
        if not (self.from_number or self.messaging_service_sid):
            raise ValueError("from_number or messaging_service_sid is required")
        if bool(self.api_key_sid) != bool(self.api_key_secret):
            raise ValueError("api_key_sid and api_key_secret go together")
        return self


class TwilioChannel(HttpChannelBase):
    kind: ChannelKind = "sms"
    hook_auth_missing: str | None = None  # every callback's signature is checked
    # Says so when a number unsubscribed from our sender (21610): see gateway/sender_stops.
    reports_sender_stops = True

    def __init__(self, name: str, options: TwilioOptions, events: ChannelEvents) -> None:
        self._init_http(name)
        self.concurrency = options.concurrency
        self._opt = options
        self._events = events
        self._url = options.base_url.rstrip("/") + api.messages_path(options.account_sid)
        user = options.api_key_sid or options.account_sid
        password = options.api_key_secret or options.auth_token
        self._auth = basic_auth(user, password)

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        self._check_open()
        session = await self._http()
        form = api.message_form(
            to=message.destination, body=message.text, sender=self._opt.from_number,
            service_sid=self._opt.messaging_service_sid,
            status_callback=self._hook_url("/status") if self._opt.status_callbacks else None)
        try:
            answer = await fetch(session, "Twilio", "POST", self._url, data=form,
                                 headers=self._auth)
            got = api.receipt(answer)
        except ChannelError as err:
            self._last_error = str(err)
            if err.code == api.UNSUBSCRIBED:
                await self._events.sender_stop(SenderStop(self.name, message.destination,
                                                          str(err)))
            raise
        self._last_error = None
        return got

    def _hook_url(self, sub: str) -> str:
        return public_hook_url(self._opt.public_base_url, self.hook_name, sub)

    # webhooks -------------------------------------------------------------
    async def handle_hook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        if subpath not in ("/status", "/inbound"):
            raise web.HTTPNotFound(reason="Twilio hooks are /status and /inbound")
        if request.method != "POST":
            raise web.HTTPMethodNotAllowed(request.method, ["POST"])
        form = await read_form(request)
        pairs = [(k, str(v)) for k, v in form.items()]
        if not self._signed(request, subpath, pairs):
            log.warning("twilio.bad_signature", channel=self.name, path=subpath)
            raise web.HTTPForbidden(reason="missing or wrong X-Twilio-Signature")
        fields = {k: v for k, v in pairs}
        if subpath == "/status":
            return await self._status(fields)
        return await self._inbound(fields)

    def _signed(self, request: web.Request, subpath: str, pairs: list[tuple[str, str]]) -> bool:
        url = self._hook_url(subpath)
        # Twilio signs the query exactly as configured, percent-escapes included.
        if request.rel_url.raw_query_string:
            url += "?" + request.rel_url.raw_query_string
        settings = request.headers.get(signature.SETTINGS_HEADER)
        secret = self._signing_secret(settings)
        if secret is None:
            return False
        return signature.valid(secret, url, pairs, request.headers.get(signature.HEADER),
                               signature.algorithm_of(settings))

    def _signing_secret(self, settings: str | None) -> str | None:
        """The auth token, or the SharedKey's secret when Twilio says it signed with one."""
        if settings is None:
            return self._opt.auth_token
        key_id = signature.key_id_of(settings)
        secret = self._opt.webhook_signing_keys.get(key_id or "") or self._opt.webhook_signing_key
        if secret is None:
            # Never the auth token here: a Setting signs with its SharedKey only.
            log.warning("twilio.signing_key_missing", channel=self.name, key=key_id,
                        fix="set webhook_signing_key (or webhook_signing_keys) on the channel")
        return secret

    async def _status(self, fields: dict[str, str]) -> web.Response:
        try:
            report = callbacks.status_report(self.name, fields)
        except callbacks.Ignored as why:
            log.info("twilio.status_ignored", channel=self.name, reason=str(why))
            return web.Response()
        # A Messaging Service accepts first and says 21610 in the callback.
        if report.error_code == api.UNSUBSCRIBED and report.destination:
            await self._events.sender_stop(SenderStop(self.name, report.destination,
                                                      report.error or api.UNSUBSCRIBED))
        await self._events.report(report)
        return web.Response()

    async def _inbound(self, fields: dict[str, str]) -> web.Response:
        try:
            message = callbacks.inbound_message(self.name, fields)
        except callbacks.Ignored as why:
            log.info("twilio.inbound_ignored", channel=self.name, reason=str(why))
        else:
            # Stored before the answer: a failure here is a 5xx and Twilio retries.
            await self._events.inbound(message)
        return web.Response(text=callbacks.TWIML_EMPTY, content_type="text/xml")


def build(name: str, options: TwilioOptions, events: ChannelEvents) -> list[TwilioChannel]:
    return [TwilioChannel(name, options, events)]
