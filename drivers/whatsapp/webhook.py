"""Meta's webhooks for the Cloud API, without I/O: the GET challenge, the
`X-Hub-Signature-256` check, the `messages` field turned into delivery
reports and inbound messages, and the `user_preferences` field (a customer
stops or resumes marketing messages) into marketing preferences.

Meta retries a webhook for days and sends duplicates and out-of-order
statuses (`read` without `delivered`, `delivered` after `failed`): every
event here is idempotent by (wamid, status) downstream.

A signed POST is Meta's, yet its parts may not have the shape documented
(a `value` that is a list, a status that is a number): each such part is
left out with its reason in `ignored` (logged) and the rest is read. The
hook still answers 200: a retry would bring the same bytes again, for days,
and hold back nothing but the parts already understood.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.base import DeliveryReport, InboundMessage
from drivers.webio import same_secret
from drivers.whatsapp.errors import describe
from drivers.whatsapp.preferences import MarketingPreference

SIGNATURE_HEADER = "X-Hub-Signature-256"
FIELDS = ("messages", "user_preferences")


def signature(app_secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def signed(app_secret: str, body: bytes, header: str | None) -> bool:
    """Over the raw bytes, before any JSON parsing; constant-time."""
    return bool(header) and same_secret(header, signature(app_secret, body))


def challenge(query: Mapping[str, str], verify_token: str) -> str | None:
    """The `hub.challenge` to echo when Meta's subscription check is ours, else None."""
    if query.get("hub.mode") != "subscribe" or not query.get("hub.challenge"):
        return None
    given = query.get("hub.verify_token", "")
    return query["hub.challenge"] if same_secret(given, verify_token) else None


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
    ignored: list[str] = []
    for change in _changes(doc, ignored):
        if change.get("field") not in FIELDS:
            ignored.append(f"field {change.get('field')!r}")
            continue
        value = change.get("value")
        if not isinstance(value, dict):
            ignored.append(f"{change['field']} change whose value is not an object")
            continue
        metadata = value.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            ignored.append("metadata is not an object")
        number = _dict(metadata).get("phone_number_id")
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


def _changes(doc: dict[str, Any], ignored: list[str]) -> list[dict[str, Any]]:
    entries = _objects(doc.get("entry"), "entry", ignored)
    return [c for e in entries for c in _objects(e.get("changes"), "changes", ignored)]


def _change(channel: str, change: dict[str, Any], found: Events) -> None:
    value = _dict(change.get("value"))
    if change.get("field") == "user_preferences":
        for item in _objects(value.get("user_preferences"), "user_preferences", found.ignored):
            pref = preference(channel, item)
            if isinstance(pref, str):
                found.ignored.append(pref)
            else:
                found.preferences.append(pref)
        return
    for error in _objects(value.get("errors"), "errors", found.ignored):
        found.ignored.append(f"webhook error {describe(error)}")
    for status in _objects(value.get("statuses"), "statuses", found.ignored):
        found.reports.append(status_report(channel, status))
    names = {_text(c.get("wa_id")): _dict(c.get("profile")).get("name")
             for c in _objects(value.get("contacts"), "contacts", found.ignored)}
    ours = _plus(_text(_dict(value.get("metadata")).get("display_phone_number")))
    for message in _objects(value.get("messages"), "messages", found.ignored):
        found.inbound.append(inbound_message(channel, message, ours, names))


def preference(channel: str, item: dict[str, Any]) -> MarketingPreference | str:
    """A customer's marketing stop/resume, or why it is not one we act on."""
    category, value = item.get("category"), item.get("value")
    if category != "marketing_messages" or value not in ("stop", "resume"):
        return f"user_preferences {category!r} {value!r}"
    if not _text(item.get("wa_id")):
        return "user_preferences without wa_id"
    return MarketingPreference(channel, _plus(_text(item["wa_id"])),
                               "stop" if value == "stop" else "resume",
                               _float(item.get("timestamp")), str(item.get("detail") or ""))


def status_report(channel: str, status: dict[str, Any]) -> DeliveryReport:
    state = _text(status.get("status"))
    detail: dict[str, Any] = {"status": state}
    for key in ("biz_opaque_callback_data", "pricing", "conversation", "recipient_id"):
        if status.get(key) is not None:
            detail[key] = status[key]
    at = _float(status.get("timestamp"))
    ref = _text(status.get("id"))
    destination = _plus(_text(status.get("recipient_id"))) or None
    common: dict[str, Any] = {"at": at, "destination": destination, "detail": detail}
    if state == "delivered":
        return DeliveryReport(channel, ref, True, **common)
    if state == "failed":
        error: dict[str, Any] = next(iter(_objects(status.get("errors"), "errors", [])), {})
        code = error.get("code")
        return DeliveryReport(channel, ref, False, error=f"WhatsApp: {describe(error)}"
                              if error else "WhatsApp: failed",
                              error_code=str(code) if code is not None else None, **common)
    # sent: on its way; read/played: already delivered, nothing left to settle.
    return DeliveryReport(channel, ref, state in ("read", "played"), final=False, **common)


def inbound_message(channel: str, message: dict[str, Any], recipient: str,
                    names: Mapping[str, str | None]) -> InboundMessage:
    sender = _text(message.get("from")) or _text(message.get("from_user_id"))
    text, data = content(message)
    if names.get(sender):
        data["profile_name"] = names[sender]
    for key in ("from_user_id", "context"):
        if message.get(key):
            data[key] = message[key]
    return InboundMessage(channel, _plus(sender), recipient, text,
                          provider_ref=_text(message.get("id")) or None,
                          at=_float(message.get("timestamp")),
                          data=data)


def content(message: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(text, data): what the customer wrote or tapped, and its kind."""
    kind = _text(message.get("type")) or "unknown"
    body = _dict(message.get(kind))
    if kind == "text":
        return _text(body.get("body")), {"type": "text"}
    if kind == "button":  # a quick-reply tap on a template
        title = _text(body.get("text"))
        return title, {"type": "button", "payload": body.get("payload"), "title": title}
    if kind == "interactive":
        reply_kind = _text(body.get("type"))
        reply = _dict(body.get(reply_kind))
        data = {"type": reply_kind, "id": reply.get("id"), "title": reply.get("title")}
        if reply.get("description"):
            data["description"] = reply["description"]
        return _text(reply.get("title")), data
    if kind in ("image", "video", "document", "audio", "sticker"):
        data = {"type": kind, "media_id": body.get("id"), "mime_type": body.get("mime_type")}
        if body.get("filename"):
            data["filename"] = body["filename"]
        return _text(body.get("caption")), data
    # location, contacts, reaction, unsupported...: kept whole for the tenant.
    return "", {"type": kind, kind: body, **({"errors": message["errors"]}
                                               if message.get("errors") else {})}


def _plus(number: str) -> str:
    return f"+{number}" if number.isdigit() else number


def _float(raw: Any) -> float:
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        return time.time()
    return value if math.isfinite(value) else time.time()


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _objects(value: Any, name: str, ignored: list[str]) -> list[dict[str, Any]]:
    """The objects of a list that should hold objects; what is not one is noted."""
    if value is None:
        return []
    if not isinstance(value, list):
        ignored.append(f"{name} is not a list")
        return []
    found = [item for item in value if isinstance(item, dict)]
    if len(found) < len(value):
        ignored.append(f"{len(value) - len(found)} {name} item(s) that are not objects")
    return found


def _text(value: Any) -> str:
    """A field that should be text (Meta sends some ids as numbers)."""
    if isinstance(value, str):
        return value
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else ""
