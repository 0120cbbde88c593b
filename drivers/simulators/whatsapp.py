"""A WhatsApp Business Cloud API simulator: a real aiohttp server on
loopback that speaks Meta's documented wire format.

- `POST /{version}/{phone_number_id}/messages` with `Authorization: Bearer`;
  200 `{messaging_product, contacts[{input, wa_id}], messages[{id, message_status}]}`;
  Graph errors `{"error": {message, type, code, error_data.details, fbtrace_id}}`:
  190 (token), 100 (bad request), 131009 (a documented limit broken, checked
  here on its own, not with the driver's code).
- Status webhooks to `webhook_url`, signed `X-Hub-Signature-256` with the app
  secret: `sent` with `biz_opaque_callback_data`, conversation and PMP pricing,
  then the outcome set per recipient (`delivered`, `read`, or `failed` with a
  code such as 131049). A session message to someone whose 24-hour window is
  closed fails with 131047, as Meta does.
- Inbound text, template quick-reply (`type: "button"`) and interactive
  `button_reply`/`list_reply` messages; the GET subscription challenge.
- Marketing preferences: `user_preferences` webhooks (a customer stops or
  resumes marketing messages), and a template named in
  `marketing_templates` (what Meta's template manager files as MARKETING)
  to a customer who stopped fails with 131050, as Meta does.
- Scripted faults: 500s, 429 with Retry-After, hangs, specific error codes.
- Several phone numbers in one app (`add_number`): each sends from its own
  `phone_number_id`, and the webhooks of all of them go to the one
  `webhook_url`, each change with its number's `metadata`, as Meta does.
  `entry()` and `post()` build and sign a POST that carries several numbers.

Swapping it for Meta changes only `base_url` and credentials. Standalone:
`python -m drivers.simulators.whatsapp --port 8082 --webhook-url
http://127.0.0.1:8080/hooks/whatsapp`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from drivers.http.simkit import (
    Caller,
    Delivery,
    Fault,
    FaultScript,
    LoopbackServer,
    SimulatorServer,
    dumps,
)

SIGNATURE_HEADER = "X-Hub-Signature-256"

ERROR_TITLES = {
    131026: ("Message undeliverable", "Unable to deliver message."),
    131047: ("Re-engagement message", "Message failed to send because more than 24 hours "
             "have passed since the customer last replied to this number."),
    131049: ("This message was not delivered to maintain healthy ecosystem engagement.",
             "This message was not delivered to maintain healthy ecosystem engagement."),
    131050: ("Unable to deliver the message. This recipient has chosen to stop receiving "
             "marketing messages on WhatsApp from your business.", "User stopped marketing"),
    131000: ("Something went wrong", "Message failed to send due to an unknown error."),
}
WINDOW_S = 24 * 3600


@dataclass
class Received:
    path: str
    token: str | None
    body: Any
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Outcome:
    status: str = "delivered"  # delivered | read (skips delivered) | failed
    error_code: int | None = None
    read: bool = False  # after delivered, also read


class WhatsAppSimulator(SimulatorServer):
    def __init__(self, *, access_token: str = "sim-token", app_secret: str = "sim-secret",
                 phone_number_id: str = "100000000000001",
                 display_phone_number: str = "15550000001", waba_id: str = "200000000000001",
                 webhook_url: str | None = None, status_delay_s: float = 0.02,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.access_token = access_token
        self.app_secret = app_secret
        self.phone_number_id = phone_number_id  # the default number of every call
        self.display_phone_number = display_phone_number
        # phone_number_id -> display_phone_number: every number of the app.
        self.numbers: dict[str, str] = {phone_number_id: display_phone_number}
        self.waba_id = waba_id
        self.webhook_url = webhook_url
        self.status_delay_s = status_delay_s
        self.enforce_window = True
        self.faults = FaultScript()
        self.caller = Caller()
        self.received: list[Received] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, Outcome] = {}
        # (phone_number_id, wa_id) -> when they last wrote to that number: the
        # customer-service window is per business number.
        self.last_inbound: dict[tuple[str, str], float] = {}
        self.marketing_templates: set[str] = set()  # names Meta files as MARKETING
        self.marketing_stopped: set[str] = set()  # wa_ids that stopped marketing messages
        app = web.Application()
        app.router.add_post("/{version}/{number}/messages", self._send)
        app.add_routes(control_routes(self))
        self.server = LoopbackServer(app, host=host, port=port)

    # scripting ------------------------------------------------------------
    def add_number(self, phone_number_id: str, display_phone_number: str) -> None:
        """Another phone number of the same app (same token, secret and callback URL)."""
        self.numbers[phone_number_id] = display_phone_number

    def outcome(self, to: str, status: str = "delivered", error_code: int | None = None,
                read: bool = False) -> None:
        self.outcomes[to.lstrip("+")] = Outcome(status, error_code, read)

    def fail(self, times: int = 1, status: int = 500) -> None:
        self.faults.add(Fault(status, graph_error(131000, "Something went wrong",
                                                  "Unknown error")), times)

    def rate_limit(self, times: int = 1, retry_after_s: float | None = None,
                   code: int = 130429) -> None:
        headers = {"Retry-After": f"{retry_after_s:g}"} if retry_after_s is not None else {}
        body = graph_error(code, "Rate limit hit", "Message failed to send because there were "
                           "too many messages sent from this phone number in a short period")
        self.faults.add(Fault(429, body, headers), times)

    def hang(self, times: int = 1, seconds: float = 30) -> None:
        self.faults.add(Fault(None, hang_s=seconds), times)

    def reject(self, code: int, message: str, details: str = "", status: int = 400,
               times: int = 1) -> None:
        self.faults.add(Fault(status, graph_error(code, message, details or message)), times)

    # the Graph API ----------------------------------------------------------
    async def _send(self, request: web.Request) -> web.Response:
        token = _bearer(request)
        try:
            body = await request.json()
        except ValueError:
            body = None
        self.received.append(Received(request.path, token, body))
        scripted = await self.faults.apply()
        if scripted is not None:
            return scripted
        if token != self.access_token:
            return web.json_response(graph_error(190, "Invalid OAuth access token - Cannot "
                                                 "parse access token", None), status=401)
        number = request.match_info["number"]
        if number not in self.numbers:
            return _bad(100, f"Unsupported post request. Object with ID "
                        f"'{number}' does not exist")
        problem = _invalid(body)
        if problem:
            return _bad(*problem)
        return web.json_response(self._accept(number, body))

    def _accept(self, number: str, body: dict[str, Any]) -> dict[str, Any]:
        to = body.get("to") or body.get("recipient")
        wamid = "wamid." + secrets.token_urlsafe(24)
        self.messages[wamid] = {"to": to, "body": body, "from": number}
        self.caller.spawn(self._lifecycle(wamid), f"whatsapp-sim:{wamid}")
        message: dict[str, Any] = {"id": wamid}
        if body["type"] == "template":
            message["message_status"] = "accepted"
        return {"messaging_product": "whatsapp", "contacts": [{"input": to, "wa_id": to}],
                "messages": [message]}

    async def _lifecycle(self, wamid: str) -> None:
        if not self.webhook_url:
            return
        sent = self.messages[wamid]
        await asyncio.sleep(self.status_delay_s)
        if self._window_closed(sent):
            await self.status(wamid, "failed", 131047)
            return
        if self._marketing_refused(sent):
            await self.status(wamid, "failed", 131050)
            return
        outcome = self.outcomes.get(sent["to"], Outcome())
        if outcome.status != "read":
            await self.status(wamid, "sent")
            await asyncio.sleep(self.status_delay_s)
        await self.status(wamid, outcome.status, outcome.error_code)
        if outcome.read and outcome.status == "delivered":
            await asyncio.sleep(self.status_delay_s)
            await self.status(wamid, "read")

    def _window_closed(self, sent: dict[str, Any]) -> bool:
        if not self.enforce_window or sent["body"]["type"] == "template":
            return False
        return time.time() - self.last_inbound.get((sent["from"], sent["to"]), 0.0) > WINDOW_S

    def _marketing_refused(self, sent: dict[str, Any]) -> bool:
        template = sent["body"].get("template") or {}
        return (sent["body"]["type"] == "template" and sent["to"] in self.marketing_stopped
                and template.get("name") in self.marketing_templates)

    # webhooks ---------------------------------------------------------------
    def sign(self, body: bytes) -> str:
        digest = hmac.new(self.app_secret.encode(), body, hashlib.sha256).hexdigest()
        return f"sha256={digest}"

    async def status(self, wamid: str, status: str, error_code: int | None = None) -> Delivery:
        """POST one status webhook for `wamid`, signed, from the number that sent it."""
        return await self.post_value(self.status_value(wamid, status, error_code),
                                     number=self.messages[wamid]["from"])

    def status_value(self, wamid: str, status: str,
                     error_code: int | None = None) -> dict[str, Any]:
        """The `value` of a status change for `wamid` (see `entry`)."""
        sent = self.messages[wamid]
        element: dict[str, Any] = {
            "id": wamid, "status": status, "timestamp": str(int(time.time())),
            "recipient_id": sent["to"]}
        if sent["body"].get("biz_opaque_callback_data"):
            element["biz_opaque_callback_data"] = sent["body"]["biz_opaque_callback_data"]
        if status == "failed":
            title, details = ERROR_TITLES.get(error_code or 0, ("Failed", "Failed"))
            element["errors"] = [{
                "code": error_code, "title": title, "message": title,
                "error_data": {"details": details},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/"
                        "error-codes/"}]
        else:
            category = "marketing" if sent["body"]["type"] == "template" else "service"
            element["pricing"] = {"billable": status == "sent" or category != "service",
                                  "pricing_model": "PMP", "type": "regular",
                                  "category": category}
        return {"statuses": [element]}

    async def inbound(self, sender: str, message: dict[str, Any], *,
                      name: str = "Cliente", wamid: str | None = None,
                      to: str | None = None) -> Delivery:
        """POST an incoming message of any shape to number `to` (a phone_number_id,
        by default `phone_number_id`); the same `wamid` replays a retry."""
        return await self.post_value(self.inbound_value(sender, message, name=name, wamid=wamid,
                                                        to=to), number=to)

    def inbound_value(self, sender: str, message: dict[str, Any], *, name: str = "Cliente",
                      wamid: str | None = None, to: str | None = None) -> dict[str, Any]:
        """The `value` of an incoming message's change (see `entry`); opens the window."""
        wa_id = sender.lstrip("+")
        self.last_inbound[(to or self.phone_number_id, wa_id)] = time.time()
        full = {"from": wa_id, "id": wamid or "wamid." + secrets.token_urlsafe(24),
                "timestamp": str(int(time.time())), **message}
        contact = {"profile": {"name": name}, "wa_id": wa_id}
        return {"contacts": [contact], "messages": [full]}

    async def inbound_text(self, sender: str, text: str, **kw: Any) -> Delivery:
        return await self.inbound(sender, {"type": "text", "text": {"body": text}}, **kw)

    async def inbound_button(self, sender: str, payload: str, text: str,
                             context_id: str | None = None, **kw: Any) -> Delivery:
        """A quick-reply tap on a template (`context` may be missing, as at Meta)."""
        message: dict[str, Any] = {"type": "button",
                                   "button": {"payload": payload, "text": text}}
        if context_id:
            message["context"] = {"from": self._display(kw.get("to")), "id": context_id}
        return await self.inbound(sender, message, **kw)

    async def inbound_reply(self, sender: str, kind: str, reply_id: str, title: str,
                            context_id: str | None = None, **kw: Any) -> Delivery:
        """An interactive `button_reply` or `list_reply`."""
        message: dict[str, Any] = {"type": "interactive", "interactive": {
            "type": kind, kind: {"id": reply_id, "title": title}}}
        if context_id:
            message["context"] = {"from": self._display(kw.get("to")), "id": context_id}
        return await self.inbound(sender, message, **kw)

    def set_marketing(self, customer: str, value: str) -> None:
        """The customer stops ("stop") or resumes ("resume") marketing messages
        in WhatsApp, and no webhook tells the business (one lost on the way)."""
        wa_id = customer.lstrip("+")
        if value == "stop":
            self.marketing_stopped.add(wa_id)
        else:
            self.marketing_stopped.discard(wa_id)

    async def user_preferences(self, customer: str, value: str, *,
                               timestamp: int | None = None, name: str = "Cliente",
                               to: str | None = None) -> Delivery:
        """The customer stops or resumes marketing messages, and Meta tells the
        business with a `user_preferences` webhook."""
        self.set_marketing(customer, value)
        wa_id = customer.lstrip("+")
        item = {"wa_id": wa_id, "detail": f"User requested to {value} marketing messages",
                "category": "marketing_messages", "value": value,
                "timestamp": int(time.time()) if timestamp is None else timestamp}
        return await self.post_value({"contacts": [{"profile": {"name": name}, "wa_id": wa_id}],
                                      "user_preferences": [item]}, field="user_preferences",
                                     number=to)

    async def post_value(self, value: dict[str, Any], field: str = "messages",
                         number: str | None = None) -> Delivery:
        return await self.post(self.envelope(value, field, number))

    async def post(self, doc: dict[str, Any]) -> Delivery:
        """Sign any webhook body with the app secret and POST it to `webhook_url`."""
        if not self.webhook_url:
            raise ValueError("no webhook_url configured")
        raw = dumps(doc)
        return await self.caller.post(self.webhook_url, body=raw, headers={
            "Content-Type": "application/json", SIGNATURE_HEADER: self.sign(raw)})

    def envelope(self, value: dict[str, Any], field: str = "messages",
                 number: str | None = None) -> dict[str, Any]:
        return {"object": "whatsapp_business_account",
                "entry": [self.entry(value, field, number)]}

    def entry(self, value: dict[str, Any], field: str = "messages",
              number: str | None = None) -> dict[str, Any]:
        """One `entry[]` item: a change about `number` (default `phone_number_id`)."""
        number = number or self.phone_number_id
        metadata = {"display_phone_number": self._display(number), "phone_number_id": number}
        return {"id": self.waba_id, "changes": [
            {"field": field, "value": {"messaging_product": "whatsapp",
                                       "metadata": metadata, **value}}]}

    def _display(self, number: str | None) -> str:
        return self.numbers.get(number or self.phone_number_id, self.display_phone_number)

    async def verify(self, verify_token: str, challenge: str = "1158201444") -> Delivery:
        """Meta's GET subscription check."""
        assert self.webhook_url
        return await self.caller.get(f"{self.webhook_url}?hub.mode=subscribe&hub.challenge="
                                     f"{challenge}&hub.verify_token={verify_token}")


def graph_error(code: int, message: str, details: str | None) -> dict[str, Any]:
    error: dict[str, Any] = {"message": f"(#{code}) {message}", "type": "OAuthException",
                             "code": code, "fbtrace_id": secrets.token_urlsafe(12)}
    if details:
        error["error_data"] = {"messaging_product": "whatsapp", "details": details}
    return {"error": error}


def _bad(code: int, message: str, details: str | None = None) -> web.Response:
    return web.json_response(graph_error(code, message, details), status=400)


def _bearer(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


def _invalid(body: Any) -> tuple[int, str, str | None] | None:
    if not isinstance(body, dict) or body.get("messaging_product") != "whatsapp":
        return 100, "The parameter messaging_product is required.", None
    if not (body.get("to") or body.get("recipient")):
        return 100, "The parameter to is required.", None
    kind = body.get("type", "text")
    if not isinstance(body.get(kind), dict):
        return 100, f"The parameter {kind} is required.", None
    broken = _limit(kind, body[kind])
    return (131009, "Parameter value is not valid", broken) if broken else None


def _limit(kind: str, content: dict[str, Any]) -> str | None:
    """Meta's documented limits, the ones a driver most often trips on."""
    if kind == "text" and not 0 < len(content.get("body", "")) <= 4096:
        return "text.body must be 1-4096 characters"
    if kind in ("image", "video", "document") and len(content.get("caption") or "") > 1024:
        return "caption is longer than 1024 characters"
    if kind != "interactive":
        return None
    action = content.get("action") or {}
    if len((content.get("body") or {}).get("text", "")) > 1024:
        return "interactive body text is longer than 1024 characters"
    if content.get("type") == "button":
        buttons = action.get("buttons") or []
        titles = [(b.get("reply") or {}).get("title") or "" for b in buttons]
        if not 1 <= len(buttons) <= 3 or any(len(t) > 20 for t in titles):
            return "reply buttons: 1-3, titles at most 20 characters"
    if content.get("type") == "list":
        rows = [r for s in action.get("sections") or [] for r in s.get("rows") or []]
        if not 1 <= len(rows) <= 10 or any(len(r.get("title") or "") > 24 for r in rows):
            return "list: 1-10 rows in total, titles at most 24 characters"
    if content.get("type") == "cta_url" and len(
            (action.get("parameters") or {}).get("display_text", "")) > 20:
        return "cta_url display_text is longer than 20 characters"
    return None


def control_routes(sim: WhatsAppSimulator) -> list[web.RouteDef]:
    """`/_sim/...`: drive the simulator by hand (not part of Meta's API)."""

    async def inbound(request: web.Request) -> web.Response:
        spec = await request.json()
        sender, to = str(spec["from"]), spec.get("to")  # to: a phone_number_id
        if spec.get("payload"):
            got = await sim.inbound_button(sender, spec["payload"], spec.get("text", ""), to=to)
        elif spec.get("reply_id"):
            got = await sim.inbound_reply(sender, spec.get("kind", "button_reply"),
                                          spec["reply_id"], spec.get("title", ""), to=to)
        else:
            got = await sim.inbound_text(sender, spec.get("text", ""), to=to)
        return web.json_response({"gateway_status": got.status, "body": got.body})

    async def preferences(request: web.Request) -> web.Response:
        spec = await request.json()
        got = await sim.user_preferences(str(spec["from"]), str(spec.get("value", "stop")),
                                         to=spec.get("to"))
        return web.json_response({"gateway_status": got.status, "body": got.body})

    async def received(_: web.Request) -> web.Response:
        return web.json_response([{"path": r.path, "body": r.body, "at": r.at}
                                  for r in sim.received])

    async def outcome(request: web.Request) -> web.Response:
        spec = await request.json()
        sim.outcome(spec["to"], spec.get("status", "delivered"), spec.get("error_code"),
                    bool(spec.get("read")))
        return web.json_response(spec)

    async def fault(request: web.Request) -> web.Response:
        spec = await request.json()
        kind, times = spec.get("kind"), int(spec.get("times", 1))
        if kind == "fail":
            sim.fail(times, int(spec.get("status", 500)))
        elif kind == "rate_limit":
            sim.rate_limit(times, spec.get("retry_after_s"), int(spec.get("code", 130429)))
        elif kind == "hang":
            sim.hang(times, float(spec.get("seconds", 30)))
        elif kind == "reject":
            sim.reject(int(spec["code"]), str(spec.get("message", "rejected")), times=times)
        else:
            raise web.HTTPBadRequest(reason="kind: fail | rate_limit | hang | reject")
        return web.json_response({"queued_faults": len(sim.faults)})

    return [web.post("/_sim/inbound", inbound), web.post("/_sim/preferences", preferences),
            web.get("/_sim/requests", received),
            web.post("/_sim/outcomes", outcome), web.post("/_sim/faults", fault)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--access-token", default="sim-token")
    parser.add_argument("--app-secret", default="sim-secret")
    parser.add_argument("--phone-number-id", default="100000000000001")
    parser.add_argument("--number", action="append", default=[], metavar="ID:DISPLAY",
                        help="another phone number of the app (repeatable)")
    parser.add_argument("--webhook-url", default="http://127.0.0.1:8080/hooks/whatsapp")
    parser.add_argument("--status-delay-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    sim = WhatsAppSimulator(
        access_token=args.access_token, app_secret=args.app_secret,
        phone_number_id=args.phone_number_id, webhook_url=args.webhook_url,
        status_delay_s=args.status_delay_s, host=args.host, port=args.port)
    for spec in args.number:
        number_id, _, display = spec.partition(":")
        sim.add_number(number_id, display or number_id)
    asyncio.run(_serve(sim))


async def _serve(sim: WhatsAppSimulator) -> None:
    url = await sim.start()
    print(f"WhatsApp Cloud API simulator on {url} (phone_number_id "
          f"{', '.join(sim.numbers)})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()


if __name__ == "__main__":
    main()
