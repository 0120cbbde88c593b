"""The Cloud API's documented limits, checked before a message is sent.

Meta answers a broken limit with a generic (#131009) "Parameter value is
not valid"; checking first gives the operator the limit by name, and costs
no API call. Figures: Meta's "Interactive reply buttons / list / CTA URL
messages" pages, the WhatsApp Node SDK object reference, whatsapp-api-js
(see shared/reference/wire-formats.md §1.1-1.6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

TEXT_BODY = 4096
CAPTION = 1024
INTERACTIVE_BODY = 1024
HEADER_TEXT = 60
FOOTER_TEXT = 60
REPLY_BUTTONS = 3
REPLY_TITLE = 20
REPLY_ID = 256
LIST_BUTTON = 20
LIST_SECTIONS = 10
LIST_ROWS = 10  # over all sections together
SECTION_TITLE = 24
ROW_TITLE = 24
ROW_DESCRIPTION = 72
ROW_ID = 200
CTA_DISPLAY_TEXT = 20
TEMPLATE_BUTTONS = 10
TEMPLATE_QUICK_REPLIES = 10
TEMPLATE_URL_BUTTONS = 2
CALLBACK_DATA = 512

MEDIA_TYPES = ("image", "video", "document", "audio")
_HEADER_TYPES = {"button": {"text", *MEDIA_TYPES[:3]}, "list": {"text"},
                 "cta_url": {"text", *MEDIA_TYPES[:3]}}


class LimitError(ValueError):
    """A documented limit is broken; `where` is the path into the payload."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: {what}")
        self.where = where


def _length(where: str, value: Any, limit: int, *, required: bool = False) -> None:
    if value is None or value == "":
        if required:
            raise LimitError(where, "required")
        return
    if not isinstance(value, str):
        raise LimitError(where, f"expected text, got {type(value).__name__}")
    if len(value) > limit:
        raise LimitError(where, f"at most {limit} characters (got {len(value)})")


def _count(where: str, items: Any, most: int, noun: str, least: int = 1) -> Sequence[Any]:
    if not isinstance(items, list):
        raise LimitError(where, f"expected a list of {noun}")
    if not least <= len(items) <= most:
        raise LimitError(where, f"{least} to {most} {noun} (got {len(items)})")
    return items


def _unique(where: str, values: list[Any], what: str) -> None:
    if len(set(values)) != len(values):
        raise LimitError(where, f"{what} must be unique")


def check_text(body: str) -> None:
    _length("text.body", body, TEXT_BODY, required=True)


def check_media(kind: str, media: dict[str, Any]) -> None:
    if bool(media.get("id")) == bool(media.get("link")):
        raise LimitError(kind, "exactly one of id (uploaded media) or link")
    if kind == "audio" and media.get("caption"):
        raise LimitError("audio.caption", "audio messages take no caption")
    _length(f"{kind}.caption", media.get("caption"), CAPTION)


def check_interactive(ia: dict[str, Any]) -> None:
    kind = ia.get("type")
    if kind not in _HEADER_TYPES:
        raise LimitError("interactive.type", "button, list or cta_url")
    _header(kind, ia.get("header"))
    _length("interactive.body.text", (ia.get("body") or {}).get("text"), INTERACTIVE_BODY,
            required=True)
    _length("interactive.footer.text", (ia.get("footer") or {}).get("text"), FOOTER_TEXT)
    action = ia.get("action") or {}
    {"button": _reply_buttons, "list": _list, "cta_url": _cta}[kind](action)


def _header(kind: str, header: dict[str, Any] | None) -> None:
    if not header:
        return
    allowed = _HEADER_TYPES[kind]
    if header.get("type") not in allowed:
        raise LimitError("interactive.header.type",
                         f"a {kind} header is one of {', '.join(sorted(allowed))}")
    if header["type"] == "text":
        _length("interactive.header.text", header.get("text"), HEADER_TEXT, required=True)
    else:
        check_media(f"interactive.header.{header['type']}", header.get(header["type"]) or {})


def _reply_buttons(action: dict[str, Any]) -> None:
    where = "interactive.action.buttons"
    buttons = _count(where, action.get("buttons"), REPLY_BUTTONS, "reply buttons")
    for i, button in enumerate(buttons):
        reply = button.get("reply") or {}
        _length(f"{where}[{i}].reply.title", reply.get("title"), REPLY_TITLE, required=True)
        _length(f"{where}[{i}].reply.id", reply.get("id"), REPLY_ID, required=True)
    _unique(where, [b["reply"]["title"] for b in buttons], "button titles")
    _unique(where, [b["reply"]["id"] for b in buttons], "button ids")


def _list(action: dict[str, Any]) -> None:
    _length("interactive.action.button", action.get("button"), LIST_BUTTON, required=True)
    sections = _count("interactive.action.sections", action.get("sections"), LIST_SECTIONS,
                      "sections")
    rows = [row for s in sections for row in (s.get("rows") or [])]
    _count("interactive.action.sections[].rows", rows, LIST_ROWS, "rows over all sections")
    for i, section in enumerate(sections):
        where = f"interactive.action.sections[{i}]"
        # A title is how the user tells sections apart: required beyond one.
        _length(f"{where}.title", section.get("title"), SECTION_TITLE,
                required=len(sections) > 1)
        for j, row in enumerate(section.get("rows") or []):
            _length(f"{where}.rows[{j}].title", row.get("title"), ROW_TITLE, required=True)
            _length(f"{where}.rows[{j}].id", row.get("id"), ROW_ID, required=True)
            _length(f"{where}.rows[{j}].description", row.get("description"), ROW_DESCRIPTION)
    _unique("interactive.action.sections", [r["id"] for r in rows], "row ids")


def _cta(action: dict[str, Any]) -> None:
    if action.get("name") != "cta_url":
        raise LimitError("interactive.action.name", "must be cta_url")
    params = action.get("parameters") or {}
    if isinstance(params, list):
        raise LimitError("interactive.action.parameters", "exactly one URL button")
    _length("interactive.action.parameters.display_text", params.get("display_text"),
            CTA_DISPLAY_TEXT, required=True)
    url = params.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise LimitError("interactive.action.parameters.url", "an http(s) URL is required")


def check_template(template: dict[str, Any]) -> None:
    if not template.get("name"):
        raise LimitError("template.name", "required")
    if not (template.get("language") or {}).get("code"):
        raise LimitError("template.language.code", "required (e.g. en_US)")
    components = template.get("components") or []
    buttons = [c for c in components if c.get("type") == "button"]
    kinds = [b.get("sub_type") for b in buttons]
    if len(buttons) > TEMPLATE_BUTTONS:
        raise LimitError("template.components", f"at most {TEMPLATE_BUTTONS} buttons "
                         f"(got {len(buttons)})")
    for sub_type, most in (("quick_reply", TEMPLATE_QUICK_REPLIES),
                           ("url", TEMPLATE_URL_BUTTONS)):
        if kinds.count(sub_type) > most:
            raise LimitError("template.components", f"at most {most} {sub_type} buttons "
                             f"(got {kinds.count(sub_type)})")
    for i, button in enumerate(buttons):
        if button.get("index") is None or not button.get("sub_type"):
            raise LimitError(f"template.components[button {i}]", "sub_type and index required")
    for component in components:
        if component.get("type") == "header":
            for param in component.get("parameters") or []:
                if param.get("type") == "text":
                    _length("template.header.text", param.get("text"), HEADER_TEXT)


def check_callback_data(value: str) -> None:
    _length("biz_opaque_callback_data", value, CALLBACK_DATA)
