"""No configured secret reaches the log, whatever the daemon goes through.

The daemon runs as a process (its whole stdout and stderr are the log) at
debug level, with a secret of every kind: a Twilio auth token (from the
environment, as systemd credentials get in), a WhatsApp access token, app
secret and verify token, Dinstar passwords (one right, one the device
refuses), a dashboard user's password and its hash, the session secret, the
metrics token, a tenant's webhook signing secret and API key. Traffic goes
through the real providers' simulators, including what fails: forged
signatures, provider errors, a closed WhatsApp window, refused credentials,
wrong keys and passwords, a tenant webhook that is down and retried. Then
the log is searched for every secret, also base64-encoded (HTTP basic auth).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from twilio.request_validator import RequestValidator

from drivers.simulators.dinstar import DinstarSimulator
from drivers.simulators.twilio import TwilioSimulator
from drivers.simulators.whatsapp import WhatsAppSimulator
from gateway.dashboard_auth import hash_password
from tests.proc import Daemon, free_port, smsgw, write_config

PUBLIC = "https://smsgw.example.test"
TW_SID = "AC" + "7" * 32
TW_TOKEN = "tw-auth-0f3c9a51d2e84b76"
WA_TOKEN = "EAAwa-access-5d1e8c2b9f"
WA_SECRET = "wa-app-secret-8e2d4c6a"
WA_VERIFY = "wa-verify-3b7f1e9d"
WA_NUMBER_ID = "106540352242922"
DN_USER = "smsgw-ops"
DN_PASSWORD = "dn-Pa55-c4e8a1f0"
DN_WRONG_PASSWORD = "dn-wrong-7a9c2e4b"
DASH_PASSWORD = "dash-pw-2c6e8a0b4d"
SESSION_SECRET = "session-secret-9d3f7b1a5c"
METRICS_TOKEN = "metrics-token-4a8c2e6f0b"
CUSTOMER = "+59898344484"
TEMPLATE = {"type": "template", "template": {"name": "order_shipped",
                                             "language": {"code": "es"}}}


class TenantHook:
    """The tenant's webhook endpoint: down (500) for its first calls."""

    def __init__(self, down_for: int) -> None:
        self.down_for = down_for
        self.calls = 0
        self.events: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        body = await request.read()
        if self.calls <= self.down_for:
            return web.Response(status=500, text="receiver down")
        self.events.append(json.loads(body))
        return web.Response(status=204)


async def _serve(hook: TenantHook) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", hook.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, f"http://127.0.0.1:{port}/hook"


def _config(tmp: Path, port: int, tw: TwilioSimulator, wa: WhatsAppSimulator,
            dn: DinstarSimulator, dn_bad: DinstarSimulator, password_hash: str) -> Path:
    dinstar = {"driver": "dinstar", "username": DN_USER, "ports": "0-1", "cost": 0.1,
               "result_poll_interval_ms": 20, "dlr_poll_interval_s": 0.1,
               "inbound_poll_interval_s": 0.1, "status_poll_interval_s": 0.2,
               "reconnect_max_s": 0.4, "request_timeout_s": 1, "result_timeout_s": 3,
               "hook_networks": ["127.0.0.1/32"]}
    path = write_config(tmp / "smsgw.toml", {
        "server": {"host": "127.0.0.1", "port": port, "public_base_url": PUBLIC,
                   "metrics_token": METRICS_TOKEN},
        "storage": {"url": f"sqlite:///{tmp / 'spool.db'}", "synchronous": "normal"},
        "dispatcher": {"node_name": "secrets", "poll_interval_ms": 20, "retry_base_s": 0.05,
                       "retry_max_s": 0.2, "max_attempts": 4},
        "webhooks": {"retry_base_s": 0.1, "retry_max_s": 0.3, "timeout_s": 2},
        "spool_folder": {"path": str(tmp / "spool")},
        "logging": {"format": "json", "level": "debug"},
        "dashboard": {"session_secret": SESSION_SECRET},
        "channels": [
            # The auth token comes from the environment (SMSGW_CHANNELS__TWILIO__AUTH_TOKEN).
            {"name": "twilio", "driver": "twilio", "account_sid": TW_SID,
             "from_number": "+15005550006", "public_base_url": PUBLIC, "base_url": tw.url,
             "cost": 0.0075, "request_timeout_s": 2, "block_after": 100},
            {"name": "whatsapp", "driver": "whatsapp", "phone_number_id": WA_NUMBER_ID,
             "access_token": WA_TOKEN, "app_secret": WA_SECRET, "verify_token": WA_VERIFY,
             "base_url": wa.url, "cost": 0.5, "request_timeout_s": 2, "block_after": 100},
            {"name": "dinstar", "url": dn.url, "password": DN_PASSWORD, **dinstar},
            {"name": "dinstar-bad", "url": dn_bad.url, "password": DN_WRONG_PASSWORD,
             **dinstar},
        ],
    })
    with path.open("a") as fh:
        fh.write(f'[[dashboard.users]]\nname = "ops"\npassword_hash = "{password_hash}"\n')
    return path


def _forms(secret: str) -> list[str]:
    """A secret as it could show up: plain, or inside HTTP basic auth."""
    forms = [secret]
    for user in (DN_USER, "admin"):
        forms.append(base64.b64encode(f"{user}:{secret}".encode()).decode())
    return forms


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20.0
                 ) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
async def simulators():
    tw = TwilioSimulator(account_sid=TW_SID, auth_token=TW_TOKEN,
                         inbound_url=f"{PUBLIC}/hooks/twilio/inbound")
    wa = WhatsAppSimulator(access_token=WA_TOKEN, app_secret=WA_SECRET,
                           phone_number_id=WA_NUMBER_ID, webhook_url=f"{PUBLIC}/hooks/whatsapp")
    dn = DinstarSimulator(2, username=DN_USER, password=DN_PASSWORD, latency_s=0.02,
                          dlr_delay_s=0.05)
    dn_bad = DinstarSimulator(2, username=DN_USER, password=DN_PASSWORD, latency_s=0.02)
    for sim in (tw, wa, dn, dn_bad):
        await sim.start()
    yield tw, wa, dn, dn_bad
    for sim in (tw, wa, dn, dn_bad):
        await sim.close()


async def test_no_secret_reaches_the_log(tmp_path: Path, simulators: Any,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    tw, wa, dn, dn_bad = simulators
    hook = TenantHook(down_for=3)
    runner, hook_url = await _serve(hook)
    password_hash = hash_password(DASH_PASSWORD)
    port = free_port()
    config = _config(tmp_path, port, tw, wa, dn, dn_bad, password_hash)
    # The CLI and the daemon read it from their environment, as under systemd.
    monkeypatch.setenv("SMSGW_CHANNELS__TWILIO__AUTH_TOKEN", TW_TOKEN)
    smsgw(config, "db", "migrate")
    api_key = re.search(r"sgw_\S+", smsgw(config, "tenant", "add", "acme").stdout)
    hook_secret = re.search(r"whsec_\S+",
                            smsgw(config, "tenant", "webhook", "acme", "--url", hook_url).stdout)
    assert api_key and hook_secret, "the CLI no longer prints the key or the secret"
    key = api_key.group(0)
    signing = hook_secret.group(0)
    daemon = Daemon(config, port, tmp_path / "daemon.log")
    await asyncio.to_thread(daemon.start)
    try:
        tw.caller.route(PUBLIC, daemon.url)
        wa.caller.route(PUBLIC, daemon.url)
        dn.push_url = f"{daemon.url}/hooks/dinstar"
        async with aiohttp.ClientSession() as http:
            await _traffic(http, daemon.url, key, tw, wa, dn, hook)
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            await asyncio.to_thread(daemon.kill, signal.SIGTERM)
        await runner.cleanup()

    log = daemon.log.read_text(errors="replace")
    # Not vacuous: the failures happened, and were logged.
    for event in ("twilio.bad_signature", "whatsapp.bad_signature", "dinstar.refused",
                  "webhook.failed", "Twilio HTTP 500", "window"):
        assert event in log, f"no {event} in the log:\n{log[-3000:]}"
    secrets = {"twilio auth token": TW_TOKEN, "whatsapp access token": WA_TOKEN,
               "whatsapp app secret": WA_SECRET, "whatsapp verify token": WA_VERIFY,
               "dinstar password": DN_PASSWORD, "refused dinstar password": DN_WRONG_PASSWORD,
               "dashboard password": DASH_PASSWORD, "dashboard password hash": password_hash,
               "session secret": SESSION_SECRET, "metrics token": METRICS_TOKEN,
               "tenant API key": key, "tenant webhook secret": signing}
    leaked = [f"{name} ({form[:6]}...)" for name, secret in secrets.items()
              for form in _forms(secret) if form in log]
    assert not leaked, f"secrets in the log: {', '.join(leaked)}"


async def _traffic(http: aiohttp.ClientSession, url: str, key: str, tw: TwilioSimulator,
                   wa: WhatsAppSimulator, dn: DinstarSimulator, hook: TenantHook) -> None:
    api = {"X-Api-Key": key}
    for name, channels in (("tw", ["twilio"]), ("wa", ["whatsapp"]),
                           ("dn", ["dinstar"]), ("bad", ["dinstar-bad"])):
        async with http.post(f"{url}/api/v1/campaigns", headers=api,
                             json={"name": name, "channels": channels}) as r:
            assert r.status == 201, await r.text()

    async def send(campaign: str, destination: str = CUSTOMER, **extra: Any) -> int:
        body = {"destination": destination, "message": "hola", "campaign": campaign, **extra}
        async with http.post(f"{url}/api/v1/messages", headers=api, json=body) as r:
            assert r.status == 202, await r.text()
            return int((await r.json())["id"])

    async def state(mid: int) -> str:
        async with http.get(f"{url}/api/v1/messages/{mid}", headers=api) as r:
            return str((await r.json())["state_name"])

    # Twilio: a 500 then a retry, a permanent refusal, and a forged callback.
    tw.fail(1, status=500)
    ids = [await send("tw")]
    tw.reject(21211, "The 'To' number is not a valid phone number.")
    ids.append(await send("tw", "+59898344485"))
    await _until(lambda: _all_final(state, ids), "twilio messages settled")
    forged = RequestValidator("not-the-token").compute_signature(
        f"{PUBLIC}/hooks/twilio/status", {"MessageSid": "SM1", "MessageStatus": "delivered"})
    async with http.post(f"{url}/hooks/twilio/status", headers={"X-Twilio-Signature": forged},
                         data={"MessageSid": "SM1", "MessageStatus": "delivered"}) as r:
        assert r.status == 403
    assert (await tw.inbound(CUSTOMER, "quiero saber mas", sid="SM" + "a" * 32)).status == 200

    # WhatsApp: a provider error, a template, a session message outside the
    # 24-hour window, forged and right webhooks, a wrong and a right verify token.
    wa.fail(1, status=500)
    template = await send("wa", kind="whatsapp", whatsapp=TEMPLATE)
    closed = await send("wa", "+59898344486", kind="whatsapp",
                        whatsapp={"type": "text", "text": {"body": "hola"}})
    await _until(lambda: _all_final(state, [template, closed]), "whatsapp messages settled")
    body = json.dumps(wa.envelope({"messages": []})).encode()
    wrong = "sha256=" + hmac.new(b"wrong", body, hashlib.sha256).hexdigest()
    async with http.post(f"{url}/hooks/whatsapp", data=body, headers={
            "X-Hub-Signature-256": wrong, "Content-Type": "application/json"}) as r:
        assert r.status in (401, 403)
    assert (await wa.verify("not-the-verify-token")).status == 403
    assert (await wa.verify(WA_VERIFY)).status == 200
    assert (await wa.inbound_text(CUSTOMER, "hola")).status == 200

    # Dinstar: one device takes the password, the other refuses it.
    on_dinstar = [await send("dn", f"+5989834449{i}") for i in range(2)]
    await _until(lambda: _all_final(state, on_dinstar), "dinstar messages delivered")
    await send("bad", "+59898344499")

    # Wrong and right credentials at every door that takes one.
    async with http.get(f"{url}/api/v1/messages", headers={"X-Api-Key": "sgw_" + "x" * 43}) as r:
        assert r.status == 401
    for password, status in (("not-the-password", 401), (DASH_PASSWORD, 200)):
        async with http.post(f"{url}/dashboard/login", json={"user": "ops", "password": password},
                             headers={"Origin": url}) as r:
            assert r.status == status, await r.text()
    for token, status in (("wrong", 401), (METRICS_TOKEN, 200)):
        async with http.get(f"{url}/metrics", headers={
                "Authorization": f"Bearer {token}", "X-Forwarded-For": "10.0.0.1"}) as r:
            assert r.status == status

    # The tenant's webhook was down for its first calls; the events got through.
    async def delivered_hooks() -> bool:
        return hook.calls > hook.down_for and len(hook.events) >= 3
    await _until(delivered_hooks, "tenant webhook retried and delivered")


async def _all_final(state: Callable[[int], Awaitable[str]], ids: list[int]) -> bool:
    final = {"DELIVERED", "FAILED", "SENT"}
    return all([await state(i) in final for i in ids])
