"""A generic HTTP SMS provider as a channel, in the manner of Kannel's
generic HTTP SMSC: a request template out, a success matcher on the answer,
and delivery reports back at `/hooks/{name}/dlr` (GET or POST, form or
JSON). config/examples/http-*.toml configure real aggregators with it.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from drivers import webio
from drivers.base import (
    ChannelError,
    ChannelEvents,
    ChannelKind,
    OutgoingMessage,
    SendReceipt,
)
from drivers.http import dlr, request
from drivers.http.common import HttpChannelBase, fetch
from drivers.http.options import HttpOptions

log = structlog.get_logger("smsgw.http_driver")


class HttpChannel(HttpChannelBase):
    def __init__(self, name: str, options: HttpOptions, events: ChannelEvents) -> None:
        self._init_http(name)
        self.kind: ChannelKind = options.kind
        self.concurrency = options.concurrency
        self._opt = options
        self._events = events

    @property
    def hook_auth_missing(self) -> str | None:
        # Without `dlr` the hook only answers 404; with it, a report is
        # believed only with the shared secret.
        return "dlr_secret" if self._opt.dlr is not None and not self._opt.dlr_secret else None

    async def send(self, message: OutgoingMessage) -> SendReceipt:
        self._check_open()
        session = await self._http()
        req = request.build(self._opt, self.name, message)
        try:
            answer = await fetch(session, self.name, req.method, req.url,
                                 params=req.params or None, headers=req.headers,
                                 data=req.form, json=req.json)
            receipt = request.interpret(self._opt, answer, message)
        except ChannelError as err:
            self._last_error = str(err)
            raise
        self._last_error = None
        return receipt

    async def handle_hook(self, req: web.Request, subpath: str) -> web.StreamResponse:
        spec = self._opt.dlr
        if spec is None or subpath != "/dlr":
            raise web.HTTPNotFound(reason="this channel takes delivery reports at /dlr "
                                          "when `dlr` is configured")
        params = await _params(req)
        if not dlr.authorised(spec, self._opt.dlr_secret, params, req.headers):
            log.warning("http_driver.dlr_refused", channel=self.name)
            raise web.HTTPForbidden(reason="missing or wrong shared secret")
        # A JSON body is parsed only once the caller has shown the secret.
        doc = await webio.read_json(req) if _is_json(req) else None
        found = dlr.reports(self.name, spec, params, doc)
        if not found:
            log.info("http_driver.dlr_ignored", channel=self.name, params=sorted(params))
        for report in found:
            await self._events.report(report)
        return web.Response(text="OK")


def _is_json(req: web.Request) -> bool:
    return req.method in ("POST", "PUT") and req.content_type == "application/json"


async def _params(req: web.Request) -> dict[str, str]:
    """Query and form parameters together (a JSON body is not read here)."""
    params = {k: v for k, v in req.query.items()}
    if req.method in ("POST", "PUT") and not _is_json(req):
        form = await webio.read_form(req)
        params.update({k: str(v) for k, v in form.items()})
    return params


def build(name: str, options: HttpOptions, events: ChannelEvents) -> list[HttpChannel]:
    return [HttpChannel(name, options, events)]
