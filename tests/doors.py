"""A daemon with every door the HTTP server has: the API, the legacy form,
the dashboard, `/metrics`, and one hook of each kind (generic HTTP DLR,
Twilio, WhatsApp, Dinstar push, loopback inbound), each with its secret."""

from __future__ import annotations

import hashlib
import hmac
from base64 import b64encode
from collections.abc import Callable
from typing import Any

from gateway.dashboard_auth import hash_password
from tests.conftest import Running, loopback_channel

DLR_SECRET = "dlr-s3cret"
TWILIO_TOKEN = "twilio-test-token"
WA_SECRET = "wa-app-secret"
WA_VERIFY = "wa-verify-token"
WA_NUMBER = "106540352242922"
PUSH_TOKEN = "push-t0ken"
METRICS_TOKEN = "metrics-t0ken"
PASSWORD = "correct horse battery"
NOWHERE = "http://127.0.0.1:9"  # nothing is sent in these tests; the discard port


def channels(dinstar_url: str) -> list[dict[str, Any]]:
    return [
        loopback_channel("loop-a"),
        # Infobip's report shape (config/examples/http-infobip.toml), JSON or form.
        {"name": "infobip", "driver": "http", "url": f"{NOWHERE}/sms", "id_from": "ours",
         "dlr_secret": DLR_SECRET, "public_base_url": NOWHERE, "dlr": {
             "items_path": "results", "id_field": "messageId", "status_field": "status.name",
             "delivered_values": ["DELIVERED_TO_HANDSET"], "failed_field": "status.groupName",
             "failed_values": ["UNDELIVERABLE", "EXPIRED", "REJECTED"],
             "error_field": "error.name", "destination_field": "to", "secret_param": "token"}},
        {"name": "twilio", "driver": "twilio", "account_sid": "AC" + "1" * 32,
         "auth_token": TWILIO_TOKEN, "from_number": "+15005550006",
         "public_base_url": NOWHERE, "base_url": NOWHERE},
        {"name": "whatsapp", "driver": "whatsapp", "phone_number_id": WA_NUMBER,
         "access_token": "t", "app_secret": WA_SECRET, "verify_token": WA_VERIFY,
         "base_url": NOWHERE},
        {"name": "dinstar-a", "driver": "dinstar", "url": dinstar_url, "ports": "0-1",
         "push_token": PUSH_TOKEN, "dlr_poll_interval_s": 0, "inbound_poll_interval_s": 0,
         "status_poll_interval_s": 30, "request_timeout_s": 1},
    ]


async def every_door(make_gateway: Callable[..., Any], dinstar_url: str) -> Running:
    return await make_gateway(
        channels=channels(dinstar_url),
        server={"metrics_token": METRICS_TOKEN},
        dashboard={"users": [{"name": "admin", "password_hash": hash_password(PASSWORD)}]})


def meta_signature(body: bytes) -> str:
    return "sha256=" + hmac.new(WA_SECRET.encode(), body, hashlib.sha256).hexdigest()


def twilio_signature(url: str, params: list[tuple[str, str]]) -> str:
    signed = url + "".join(k + v for k, v in sorted(params))
    return b64encode(hmac.new(TWILIO_TOKEN.encode(), signed.encode(), hashlib.sha1).digest()
                     ).decode()
