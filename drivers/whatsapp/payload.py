"""From an OutgoingMessage to the Cloud API's `/messages` body, without I/O.

The message's `data["whatsapp"]` says what to send (docs/providers.md has
the full shape); `message.text` is the body of a `text`, and of an
interactive message whose spec has none. No spec at all means a plain text.
Media captions come only from the spec: the gateway stores labels such as
"[session 1/2 of message 7]" as the text of messages it composes, and a
label must never reach the customer. A template may say what Meta's
template manager files it under (`category`: marketing, utility or
authentication); it is not sent, but a marketing one is held back from a
customer who stopped marketing messages.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drivers.base import OutgoingMessage, PermanentError
from drivers.whatsapp import limits

TYPES = ("text", "template", "interactive", *limits.MEDIA_TYPES)
CATEGORIES = ("marketing", "utility", "authentication")
_DIGITS = re.compile(r"^\+?(\d{6,15})$")


@dataclass(frozen=True, slots=True)
class Prepared:
    body: dict[str, Any]
    type: str

    @property
    def needs_open_window(self) -> bool:
        # Only templates may open a conversation; everything else is a
        # "service" message and needs the customer to have written in 24 h.
        return self.type != "template"


def prepare(message: OutgoingMessage) -> Prepared:
    """The request body, or PermanentError naming what is wrong with the spec."""
    spec = (message.data or {}).get("whatsapp") or {"type": "text"}
    if not isinstance(spec, dict):
        raise PermanentError("data.whatsapp must be an object", code="whatsapp_payload")
    kind = spec.get("type", "text")
    if kind not in TYPES:
        raise PermanentError(f"data.whatsapp.type {kind!r} is not one of {', '.join(TYPES)}",
                             code="whatsapp_payload")
    if "category" in spec and str(spec["category"]).lower() not in CATEGORIES:
        # A misspelt "marketing" would slip past the customer's marketing stop.
        raise PermanentError(f"data.whatsapp.category {spec['category']!r} is not one of "
                             f"{', '.join(CATEGORIES)}", code="whatsapp_payload")
    body = _envelope(message.destination, kind, str(message.id))
    # The JSON API stores "[<type>]" when a WhatsApp message comes without
    # text: a label for listings, not content.
    text = "" if message.text == f"[{kind}]" else message.text
    try:
        body[kind] = _content(kind, spec, text)
        limits.check_callback_data(body["biz_opaque_callback_data"])
    except limits.LimitError as err:
        raise PermanentError(f"WhatsApp limit: {err}", code="whatsapp_limit") from err
    context = spec.get("context") or ({"message_id": spec["reply_to"]}
                                      if spec.get("reply_to") else None)
    if context:
        body["context"] = context
    return Prepared(body, kind)


def template_category(data: Mapping[str, Any] | None, default: str | None = None
                      ) -> str | None:
    """The category of a template message (`data.whatsapp.category`, any case),
    else `default`; None for anything but a template."""
    spec = (data or {}).get("whatsapp")
    if not isinstance(spec, dict) or spec.get("type") != "template":
        return None
    declared = spec.get("category")
    return str(declared).lower() if declared else default


def _envelope(destination: str, kind: str, callback_data: str) -> dict[str, Any]:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "recipient_type": "individual"}
    digits = _DIGITS.match(destination)
    if digits:
        body["to"] = digits.group(1)
    else:
        # A business-scoped user id ("US.1349...") where there is no number.
        body["recipient"] = destination
    body["type"] = kind
    # Echoed in every status webhook: matches a status to our row even when
    # the wamid from the answer was lost (a crash between send and record).
    body["biz_opaque_callback_data"] = callback_data
    return body


def _content(kind: str, spec: dict[str, Any], text: str) -> dict[str, Any]:
    given = copy.deepcopy(spec.get(kind) or {})
    if not isinstance(given, dict):
        raise limits.LimitError(f"data.whatsapp.{kind}", "expected an object")
    if kind == "text":
        given["body"] = given.get("body") or text
        limits.check_text(given["body"])
    elif kind == "template":
        language = given.get("language")
        if isinstance(language, str):
            given["language"] = {"code": language}
        limits.check_template(given)
    elif kind == "interactive":
        given.setdefault("body", {})
        if not given["body"].get("text") and text:
            given["body"]["text"] = text
        limits.check_interactive(given)
    else:
        limits.check_media(kind, given)
    return given
