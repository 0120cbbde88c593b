"""A Twilio Programmable Messaging simulator: a real aiohttp server on
loopback that speaks the documented wire format.

- `POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP
  Basic; 201 with the message resource (`queued`, or `accepted` with a
  Messaging Service); documented error bodies `{code, message, more_info,
  status}` for a missing To/From/Body (21604/21603/21602), an invalid To
  (21211), a body over 1,600 characters (21617), bad credentials (20003), a
  recipient that texted STOP to the sender (21610, `unsubscribed`).
- Status callbacks to the message's `StatusCallback` (`sent`, then the
  outcome set per destination: `delivered`, or `undelivered`/`failed` with
  an ErrorCode), incoming messages to `inbound_url`; all signed with
  `X-Twilio-Signature` over the URL it calls: with the auth token and
  HMAC-SHA1, or, once `use_shared_key` is called (a Webhook Setting with a
  SharedKey), with that key's secret and algorithm, saying so in
  `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=<alg>`.
- Scripted faults: 500s, 429 with Retry-After, hangs, specific error codes.

Swapping it for the real service changes only `base_url` and credentials.
Standalone: `python -m drivers.simulators.twilio --port 8081 --auth-token T
--inbound-url http://127.0.0.1:8080/hooks/twilio/inbound`; `/_sim/...` lets a
person drive it (see `control_routes`).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from drivers.http.common import basic_credentials
from drivers.http.simkit import (
    Caller,
    Delivery,
    Fault,
    FaultScript,
    LoopbackServer,
    SimulatorServer,
)
from drivers.sms.segments import count_segments
from drivers.twilio import signature

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


@dataclass
class Received:
    path: str
    user: str | None
    form: list[tuple[str, str]]
    at: float = field(default_factory=time.time)

    def get(self, name: str) -> str | None:
        return next((v for k, v in self.form if k == name), None)


class TwilioSimulator(SimulatorServer):
    def __init__(self, *, account_sid: str = "AC" + "0" * 32, auth_token: str = "sim-token",
                 inbound_url: str | None = None, status_delay_s: float = 0.02,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.inbound_url = inbound_url
        self.status_delay_s = status_delay_s
        # False: no callbacks of its own; a test sends them with status().
        self.auto_status = True
        self.faults = FaultScript()
        self.caller = Caller()
        self.received: list[Received] = []
        self.messages: dict[str, dict[str, Any]] = {}
        self.outcomes: dict[str, tuple[str, str | None]] = {}
        self.unsubscribed: set[str] = set()  # numbers that texted STOP to our senders
        self.shared_key: tuple[str, str, str] | None = None  # (id, secret, algorithm)
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{sid}/Messages.json", self._create)
        app.add_routes(control_routes(self))
        self.server = LoopbackServer(app, host=host, port=port)

    # scripting ------------------------------------------------------------
    def outcome(self, to: str, status: str = "delivered", error_code: str | None = None) -> None:
        """The final status callback for messages to `to`."""
        self.outcomes[to] = (status, error_code)

    def use_shared_key(self, key_id: str, secret: str, algorithm: str = "HMAC_SHA256") -> None:
        """Sign callbacks as a Webhook Setting with this SharedKey would."""
        self.shared_key = (key_id, secret, algorithm)

    def fail(self, times: int = 1, status: int = 500) -> None:
        self.faults.add(Fault(status, _error_body(20500, "Internal Server Error", status)), times)

    def rate_limit(self, times: int = 1, retry_after_s: float = 1) -> None:
        self.faults.add(Fault(429, _error_body(20429, "Too Many Requests", 429),
                              {"Retry-After": f"{retry_after_s:g}"}), times)

    def hang(self, times: int = 1, seconds: float = 30) -> None:
        self.faults.add(Fault(None, hang_s=seconds), times)

    def reject(self, code: int, message: str, status: int = 400, times: int = 1) -> None:
        self.faults.add(Fault(status, _error_body(code, message, status)), times)

    # the REST API -----------------------------------------------------------
    async def _create(self, request: web.Request) -> web.Response:
        form = [(k, str(v)) for k, v in (await request.post()).items()]
        user = basic_credentials(request.headers.get("Authorization"))
        self.received.append(Received(request.path, user[0] if user else None, form))
        scripted = await self.faults.apply()
        if scripted is not None:
            return scripted
        if user != (self.account_sid, self.auth_token):
            return _error(20003, "Authenticate", 401)
        if request.match_info["sid"] != self.account_sid:
            return _error(20404, "The requested resource was not found", 404)
        fields = dict(form)
        problem = _invalid(fields) or (
            (21610, "Attempt to send to unsubscribed recipient", 400)
            if fields.get("To") in self.unsubscribed else None)
        if problem:
            return _error(*problem)
        resource = self._resource(fields)
        self.messages[resource["sid"]] = {**resource, "status_callback":
                                          fields.get("StatusCallback")}
        if fields.get("StatusCallback") and self.auto_status:
            self.caller.spawn(self._lifecycle(resource["sid"]), f"twilio-sim:{resource['sid']}")
        return web.json_response(resource, status=201)

    def _resource(self, fields: dict[str, str]) -> dict[str, Any]:
        sid = "SM" + secrets.token_hex(16)
        service = fields.get("MessagingServiceSid")
        now = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime())
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}"
        return {
            "account_sid": self.account_sid, "api_version": "2010-04-01",
            "body": fields.get("Body", ""), "date_created": now, "date_sent": None,
            "date_updated": now, "direction": "outbound-api", "error_code": None,
            "error_message": None, "from": fields.get("From"),
            "messaging_service_sid": service, "num_media": "0",
            "num_segments": "0" if service else str(count_segments(fields.get("Body", ""))[1]),
            "price": None, "price_unit": None, "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": fields["To"], "uri": f"{base}.json"}

    async def _lifecycle(self, sid: str) -> None:
        message = self.messages[sid]
        await asyncio.sleep(self.status_delay_s)
        await self.status(sid, "sent")
        final, code = self.outcomes.get(message["to"], ("delivered", None))
        await asyncio.sleep(self.status_delay_s)
        await self.status(sid, final, code)

    # callbacks ------------------------------------------------------------
    def sign(self, url: str, params: list[tuple[str, str]]) -> dict[str, str]:
        """The signature headers of a callback to `url`."""
        if self.shared_key is None:
            return {signature.HEADER: signature.compute(self.auth_token, url, params)}
        key_id, secret, algorithm = self.shared_key
        return {signature.HEADER: signature.compute(secret, url, params, algorithm),
                signature.SETTINGS_HEADER: f"key={key_id},algorithm={algorithm}"}

    async def status(self, sid: str, status: str, error_code: str | None = None) -> Delivery:
        """POST one status callback for message `sid`, signed."""
        message = self.messages[sid]
        params = [("AccountSid", self.account_sid), ("ApiVersion", "2010-04-01"),
                  ("MessageSid", sid), ("MessageStatus", status), ("SmsSid", sid),
                  ("SmsStatus", status), ("To", message["to"]),
                  ("From", message["from"] or "+15005550006")]
        if message.get("messaging_service_sid"):
            params.append(("MessagingServiceSid", message["messaging_service_sid"]))
        if status in ("failed", "undelivered") and error_code:
            params.append(("ErrorCode", error_code))
        if status in ("delivered", "undelivered"):
            params.append(("RawDlrDoneDate", time.strftime("%y%m%d%H%M", time.gmtime())))
        return await self._call(message["status_callback"], params)

    async def inbound(self, sender: str, body: str, *, to: str = "+15005550006",
                      sid: str | None = None, url: str | None = None) -> Delivery:
        """POST an incoming message, signed; pass the same `sid` to replay a retry."""
        target = url or self.inbound_url
        if not target:
            raise ValueError("no inbound_url configured")
        sid = sid or "SM" + secrets.token_hex(16)
        if body.strip().upper() in ("START", "UNSTOP", "YES"):
            self.unsubscribed.discard(sender)  # Twilio's default opt-in words lift its block
        params = [("ToCountry", "US"), ("SmsMessageSid", sid), ("NumMedia", "0"),
                  ("SmsSid", sid), ("SmsStatus", "received"), ("Body", body), ("To", to),
                  ("NumSegments", "1"), ("MessageSid", sid), ("AccountSid", self.account_sid),
                  ("From", sender), ("ApiVersion", "2010-04-01")]
        return await self._call(target, params)

    async def _call(self, url: str, params: list[tuple[str, str]]) -> Delivery:
        return await self.caller.post(url, data=params, headers=self.sign(url, params))


def _invalid(fields: dict[str, str]) -> tuple[int, str, int] | None:
    if not fields.get("To"):
        return 21604, "A 'To' phone number is required.", 400
    if not (fields.get("From") or fields.get("MessagingServiceSid")):
        return 21603, "A 'From' or 'MessagingServiceSid' parameter is required.", 400
    if not fields.get("Body") and not fields.get("MediaUrl"):
        return 21602, "Message body is required.", 400
    if len(fields.get("Body", "")) > 1600:
        return 21617, "The concatenated message body exceeds the 1600 character limit.", 400
    if not _E164.match(fields["To"]):
        return 21211, f"The 'To' number {fields['To']} is not a valid phone number.", 400
    return None


def _error_body(code: int, message: str, status: int) -> dict[str, Any]:
    return {"code": code, "message": message, "status": status,
            "more_info": f"https://www.twilio.com/docs/errors/{code}"}


def _error(code: int, message: str, status: int) -> web.Response:
    return web.json_response(_error_body(code, message, status), status=status)


def control_routes(sim: TwilioSimulator) -> list[web.RouteDef]:
    """`/_sim/...`: drive the simulator by hand (not part of Twilio's API)."""

    async def inbound(request: web.Request) -> web.Response:
        form = await request.post()
        got = await sim.inbound(str(form["From"]), str(form.get("Body", "")),
                                to=str(form.get("To", "+15005550006")))
        return web.json_response({"gateway_status": got.status, "body": got.body})

    async def received(_: web.Request) -> web.Response:
        return web.json_response([{"path": r.path, "user": r.user, "form": r.form, "at": r.at}
                                  for r in sim.received])

    async def fault(request: web.Request) -> web.Response:
        spec = await request.json()
        kind, times = spec.get("kind"), int(spec.get("times", 1))
        if kind == "fail":
            sim.fail(times, int(spec.get("status", 500)))
        elif kind == "rate_limit":
            sim.rate_limit(times, float(spec.get("retry_after_s", 1)))
        elif kind == "hang":
            sim.hang(times, float(spec.get("seconds", 30)))
        elif kind == "reject":
            sim.reject(int(spec["code"]), str(spec.get("message", "rejected")), times=times)
        else:
            raise web.HTTPBadRequest(reason="kind: fail | rate_limit | hang | reject")
        return web.json_response({"queued_faults": len(sim.faults)})

    async def outcome(request: web.Request) -> web.Response:
        spec = await request.json()
        sim.outcome(spec["to"], spec.get("status", "delivered"), spec.get("error_code"))
        return web.json_response(spec)

    return [web.post("/_sim/inbound", inbound), web.get("/_sim/requests", received),
            web.post("/_sim/faults", fault), web.post("/_sim/outcomes", outcome)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--account-sid", default="AC" + "0" * 32)
    parser.add_argument("--auth-token", default="sim-token")
    parser.add_argument("--inbound-url", default="http://127.0.0.1:8080/hooks/twilio/inbound")
    parser.add_argument("--status-delay-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    asyncio.run(_serve(TwilioSimulator(
        account_sid=args.account_sid, auth_token=args.auth_token, inbound_url=args.inbound_url,
        status_delay_s=args.status_delay_s, host=args.host, port=args.port)))


async def _serve(sim: TwilioSimulator) -> None:
    url = await sim.start()
    print(f"Twilio simulator on {url} (account {sim.account_sid})", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await sim.close()


if __name__ == "__main__":
    main()
