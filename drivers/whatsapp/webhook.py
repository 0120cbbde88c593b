"""Meta's webhooks for the Cloud API, without I/O: the GET challenge, the
`X-Hub-Signature-256` check, the `messages` field turned into delivery
reports and inbound messages, and the `user_preferences` field (a customer
stops or resumes marketing messages) into marketing preferences.

Meta retries a webhook for days and sends duplicates and out-of-order
statuses (`read` without `delivered`, `delivered` after `failed`): every
event here is idempotent by (wamid, status) downstream.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DeliveryReport, InboundMessage
from drivers.whatsapp.errors import describe
from drivers.whatsapp.preferences import MarketingPreference

SIGNATURE_HEADER = "X-Hub-Signature-256"


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signed(app_secret: str, body: bytes, header: str | None) -> bool:
    """Over the raw bytes, before any JSON parsing; constant-time."""
    return bool(header) and hmac.compare_digest(signature(app_secret, body), header or "")


def challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The `hub.challenge` to echo when Meta's subscription check is ours, else None."""
    if query.get("hub.mode") != "subscribe" or not query.get("hub.challenge"):
        return None
    given = query.get("hub.verify_token", "")
    return query["hub.challenge"] if hmac.compare_digest(given, verify_token) else None


@dataclass
class Events:
    reports: list[DeliveryReport] = field(default_factory=list)
    inbound: list[InboundMessage] = field(default_factory=list)
    preferences: list[MarketingPreference] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # why, for the log


def parse(channel: str, doc: Any, phone_number_id: str) -> Events:
    """Everything in one webhook POST that concerns `phone_number_id`."""
    events = Events()
    if not isinstance(doc, dict) or doc.get("object") != "whatsapp_business_account":
        events.ignored.append("not a whatsapp_business_account webhook")
        return events
    for entry in doc.get("entry") or []:
        for change in entry.get("changes") or []:
            _change(channel, change, phone_number_id, events)
    return events


def _change(channel: str, change: dict[str, Any], number_id: str, events: Events) -> None:
    value = change.get("value") or {}
    if change.get("field") not in ("messages", "user_preferences"):
        events.ignored.append(f"field {change.get('field')!r}")
        return
    metadata = value.get("metadata") or {}
    if metadata.get("phone_number_id") not in (None, number_id):
        # Meta sends every number of the app to one callback URL.
        events.ignored.append(f"phone_number_id {metadata.get('phone_number_id')}")
        return
    if change["field"] == "user_preferences":
        for item in value.get("user_preferences") or []:
            found = preference(channel, item)
            if isinstance(found, str):
                events.ignored.append(found)
            else:
                events.preferences.append(found)
        return
    for error in value.get("errors") or []:
        events.ignored.append(f"webhook error {describe(error)}")
    for status in value.get("statuses") or []:
        events.reports.append(status_report(channel, status))
    names = {c.get("wa_id"): (c.get("profile") or {}).get("name")
             for c in value.get("contacts") or []}
    ours = _plus(metadata.get("display_phone_number", ""))
    for message in value.get("messages") or []:
        events.inbound.append(inbound_message(channel, message, ours, names))


def preference(channel: str, item: dict[str, Any]) -> MarketingPreference | str:
    """A customer's marketing stop/resume, or why it is not one we act on."""
    category, value = item.get("category"), item.get("value")
    if category != "marketing_messages" or value not in ("stop", "resume"):
        return f"user_preferences {category!r} {value!r}"
    if not item.get("wa_id"):
        return "user_preferences without wa_id"
    return MarketingPreference(channel, _plus(str(item["wa_id"])),
                               "stop" if value == "stop" else "resume",
                               _float(item.get("timestamp")), str(item.get("detail") or ""))


def status_report(channel: str, status: dict[str, Any]) -> DeliveryReport:
    state = status.get("status", "")
    detail: dict[str, Any] = {"status": state}
    for key in ("biz_opaque_callback_data", "pricing", "conversation", "recipient_id"):
        if status.get(key) is not None:
            detail[key] = status[key]
    at = _float(status.get("timestamp"))
    ref = str(status.get("id", ""))
    destination = _plus(status.get("recipient_id", "")) or None
    common: dict[str, Any] = {"at": at, "destination": destination, "detail": detail}
    if state == "delivered":
        return DeliveryReport(channel, ref, True, **common)
    if state == "failed":
        error: dict[str, Any] = next(iter(status.get("errors") or []), {})
        code = error.get("code")
        return DeliveryReport(channel, ref, False, error=f"WhatsApp: {describe(error)}"
                              if error else "WhatsApp: failed",
                              error_code=str(code) if code is not None else None, **common)
    # sent: on its way; read/played: already delivered, nothing left to settle.
    return DeliveryReport(channel, ref, state in ("read", "played"), final=False, **common)


def inbound_message(channel: str, message: dict[str, Any], recipient: str,
                    names: Mapping[str, str | None]) -> InboundMessage:
    sender = message.get("from") or message.get("from_user_id") or ""
    text, data = content(message)
    if names.get(sender):
        data["profile_name"] = names[sender]
    for key in ("from_user_id", "context"):
        if message.get(key):
            data[key] = message[key]
    return InboundMessage(channel, _plus(sender), recipient, text,
                          provider_ref=message.get("id"), at=_float(message.get("timestamp")),
                          data=data)


def content(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, data): what the customer wrote or tapped, and its kind."""
    kind = message.get("type", "unknown")
    body = message.get(kind) or {}
    if kind == "text":
        return body.get("body", ""), {"type": "text"}
    if kind == "button":  # a quick-reply tap on a template
        title = body.get("text", "")
        return title, {"type": "button", "payload": body.get("payload"), "title": title}
    if kind == "interactive":
        reply_kind = body.get("type", "")
        reply = body.get(reply_kind) or {}
        data = {"type": reply_kind, "id": reply.get("id"), "title": reply.get("title")}
        if reply.get("description"):
            data["description"] = reply["description"]
        return reply.get("title", ""), data
    if kind in ("image", "video", "document", "audio", "sticker"):
        data = {"type": kind, "media_id": body.get("id"), "mime_type": body.get("mime_type")}
        if body.get("filename"):
            data["filename"] = body["filename"]
        return body.get("caption", ""), data
    # location, contacts, reaction, unsupported...: kept whole for the tenant.
    return "", {"type": kind, kind: body, **({"errors": message["errors"]}
                                               if message.get("errors") else {})}


def _plus(number: str) -> str:
    return f"+{number}" if number.isdigit() else number


def _float(raw: Any) -> float:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return time.time()
