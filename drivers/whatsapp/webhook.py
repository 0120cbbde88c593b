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
FIELDS = ("messages", "user_preferences")


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


# The changes of one POST, by the phone_number_id they name (None: no metadata).
Changes = dict[str | None, list[dict[str, Any]]]


def split(doc: Any) -> tuple[Changes, list[str]]:
    """One webhook POST's changes grouped by the number they concern, and why
    anything else was left out. Meta sends every number of an app to one
    callback URL, so one POST may concern several of our channels."""
    groups: Changes = {}
    if not isinstance(doc, dict) or doc.get("object") != "whatsapp_business_account":
        return groups, ["not a whatsapp_business_account webhook"]
    ignored = []
    for change in _changes(doc):
        if change.get("field") not in FIELDS:
            ignored.append(f"field {change.get('field')!r}")
            continue
        number = ((change.get("value") or {}).get("metadata") or {}).get("phone_number_id")
        groups.setdefault(None if number is None else str(number), []).append(change)
    return groups, ignored


def events(channel: str, changes: list[dict[str, Any]], into: Events | None = None) -> Events:
    """What `changes`, all about `channel`'s number, say (added to `into`)."""
    found = Events() if into is None else into
    for change in changes:
        _change(channel, change, found)
    return found


def parse(channel: str, doc: Any, phone_number_id: str) -> Events:
    """Everything in one webhook POST that concerns `phone_number_id`."""
    groups, ignored = split(doc)
    found = Events(ignored=ignored)
    for number, changes in groups.items():
        if number in (None, phone_number_id):
            events(channel, changes, found)
        else:
            found.ignored.append(f"phone_number_id {number}")
    return found


def _changes(doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = [e for e in doc.get("entry") or [] if isinstance(e, dict)]
    return [c for e in entries for c in e.get("changes") or [] if isinstance(c, dict)]


def _change(channel: str, change: dict[str, Any], found: Events) -> None:
    value = change.get("value") or {}
    if change["field"] == "user_preferences":
        for item in value.get("user_preferences") or []:
            pref = preference(channel, item)
            if isinstance(pref, str):
                found.ignored.append(pref)
            else:
                found.preferences.append(pref)
        return
    for error in value.get("errors") or []:
        found.ignored.append(f"webhook error {describe(error)}")
    for status in value.get("statuses") or []:
        found.reports.append(status_report(channel, status))
    names = {c.get("wa_id"): (c.get("profile") or {}).get("name")
             for c in value.get("contacts") or []}
    ours = _plus((value.get("metadata") or {}).get("display_phone_number", ""))
    for message in value.get("messages") or []:
        found.inbound.append(inbound_message(channel, message, ours, names))


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
