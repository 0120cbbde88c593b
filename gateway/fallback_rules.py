"""The session message(s) that carry a marketing template once the customer
has answered the utility template and the 24-hour window is open.

A pure function of the template as the customer would have seen it
(`rendered`: header, body, footer, buttons), following DESIGN.md:

| media | quick replies | CTA buttons | session message                          |
| no    | 0             | 0 or 2      | text (body, footer, CTA links as text)   |
| no    | 0             | 1           | interactive cta_url                      |
| no    | 1-3           | any         | interactive reply `button`               |
| no    | 4-10          | any         | interactive `list`                       |
| yes   | 0             | 0 or 2      | media message with caption               |
| yes   | 0             | 1           | interactive cta_url with media header    |
| yes   | 1-3           | any         | interactive `button` with media header   |
| yes   | 4-10          | any         | media message, then interactive `list`   |

Interactive messages cannot carry what does not fit them, so CTA links that
a reply-button or list message cannot hold are written into the body, and
a phone-number CTA (cta_url takes only URLs) is always written as text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MEDIA = ("image", "video", "document")
MAX_QUICK_REPLIES = 10
BUTTON_TITLE = 20  # reply button and cta display_text limit
ROW_TITLE = 24
BODY_LIMIT = 1024  # interactive body; a caption has the same limit
TEXT_LIMIT = 4096
LIST_BUTTON = "Options"


class FallbackError(ValueError):
    """The template cannot be carried as session messages; says why."""


def session_messages(rendered: Mapping[str, Any], *, list_button: str = LIST_BUTTON
                     ) -> list[dict[str, Any]]:
    """WhatsApp payloads (`{"type": ..., <type>: {...}}`) in sending order."""
    body = str(rendered.get("body") or "").strip()
    footer = str(rendered.get("footer") or "").strip() or None
    media = _media(rendered.get("header"))
    buttons = list(rendered.get("buttons") or [])
    replies = [b for b in buttons if b.get("type") == "quick_reply"]
    ctas = [b for b in buttons if b.get("type") in ("url", "phone_number")]
    if len(replies) > MAX_QUICK_REPLIES:
        raise FallbackError(f"{len(replies)} quick replies: a template has at most "
                            f"{MAX_QUICK_REPLIES}")
    if not body and media is None:
        raise FallbackError("the template has neither body nor media to carry")
    url_ctas = [c for c in ctas if c.get("type") == "url"]
    if not replies:
        if len(ctas) == 1 and len(url_ctas) == 1 and len(body) <= BODY_LIMIT:
            return [_cta_url(body, footer, media, url_ctas[0])]
        text = _with_links(body, ctas)
        return _media_message(media, text, footer) if media else [_text(text, footer)]
    text = _with_links(body, ctas)
    if len(replies) <= 3:
        return [_reply_buttons(text, footer, media, replies)]
    if media:
        # A list's header is text only: the media goes first, with the body.
        return [*_media_message(media, text, None), _list(list_button, footer, replies,
                                                          list_button)]
    return [_list(text, footer, replies, list_button)]


def _media(header: Any) -> dict[str, Any] | None:
    # A media header without a link or id cannot be sent: carry the rest.
    if not isinstance(header, Mapping) or header.get("type") not in MEDIA:
        return None
    source = {k: header[k] for k in ("link", "id") if header.get(k)}
    if not source:
        return None
    return {"type": header["type"], **source,
            **({"filename": header["filename"]} if header.get("filename") else {})}


def _with_links(body: str, ctas: list[Mapping[str, Any]]) -> str:
    lines = [body] if body else []
    for cta in ctas:
        label = str(cta.get("text") or "").strip()
        target = cta.get("url") if cta.get("type") == "url" else cta.get("phone_number")
        lines.append(f"{label}: {target}" if label else str(target))
    return "\n".join(lines)


def _text(text: str, footer: str | None) -> dict[str, Any]:
    full = f"{text}\n\n{footer}" if footer else text
    return {"type": "text", "text": {"body": full[:TEXT_LIMIT], "preview_url": "http" in full}}


def _media_message(media: dict[str, Any], caption: str | None, footer: str | None
                   ) -> list[dict[str, Any]]:
    kind = media["type"]
    payload = {k: v for k, v in media.items() if k != "type"}
    text = "\n\n".join(p for p in (caption, footer) if p)
    if len(text) > BODY_LIMIT:  # too long for a caption: media, then the text
        return [{"type": kind, kind: payload}, _text(text, None)]
    if text:
        payload["caption"] = text
    return [{"type": kind, kind: payload}]


def _header(media: dict[str, Any] | None) -> dict[str, Any]:
    if media is None:
        return {}
    kind = media["type"]
    return {"header": {"type": kind, kind: {k: v for k, v in media.items() if k != "type"}}}


def _footer(footer: str | None) -> dict[str, Any]:
    return {"footer": {"text": footer[:60]}} if footer else {}


def _cta_url(body: str, footer: str | None, media: dict[str, Any] | None,
             cta: Mapping[str, Any]) -> dict[str, Any]:
    interactive = {"type": "cta_url", **_header(media),
                   "body": {"text": (body or str(cta.get("text") or ""))[:BODY_LIMIT]},
                   **_footer(footer),
                   "action": {"name": "cta_url", "parameters": {
                       "display_text": _fit(str(cta.get("text") or "Open"), BUTTON_TITLE),
                       "url": cta["url"]}}}
    return {"type": "interactive", "interactive": interactive}


def _reply_buttons(text: str, footer: str | None, media: dict[str, Any] | None,
                   replies: list[Mapping[str, Any]]) -> dict[str, Any]:
    buttons = [{"type": "reply", "reply": {"id": _reply_id(r, i),
                                           "title": _fit(str(r.get("text", "")), BUTTON_TITLE)}}
               for i, r in enumerate(replies)]
    interactive = {"type": "button", **_header(media), "body": {"text": text[:BODY_LIMIT]},
                   **_footer(footer), "action": {"buttons": buttons}}
    return {"type": "interactive", "interactive": interactive}


def _list(text: str, footer: str | None, replies: list[Mapping[str, Any]], button: str
          ) -> dict[str, Any]:
    rows = [{"id": _reply_id(r, i), "title": _fit(str(r.get("text", "")), ROW_TITLE)}
            for i, r in enumerate(replies)]
    interactive = {"type": "list", "body": {"text": text[:BODY_LIMIT] or button},
                   **_footer(footer),
                   "action": {"button": _fit(button, BUTTON_TITLE), "sections": [{"rows": rows}]}}
    return {"type": "interactive", "interactive": interactive}


def _reply_id(reply: Mapping[str, Any], index: int) -> str:
    return str(reply.get("payload") or f"qr_{index}")[:200]


def _fit(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"
