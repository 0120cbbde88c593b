"""The WhatsApp driver's sans-I/O parts: payloads, documented limits,
webhook signatures and parsing, error classes. Figures and examples are
those of shared/reference/wire-formats.md §1."""

from __future__ import annotations

import copy
import hashlib
import hmac
from typing import Any

import pytest
from multidict import CIMultiDict

from drivers.base import ChannelFault, OutgoingMessage, PermanentError, TransientError
from drivers.http.common import Answer
from drivers.whatsapp import errors, payload, webhook

BUTTONS = {"type": "button",
           "header": {"type": "image", "image": {"link": "https://cdn.example/p.jpg"}},
           "body": {"text": "Your order is ready. Pick a delivery slot."},
           "footer": {"text": "Reply STOP to opt out"},
           "action": {"buttons": [
               {"type": "reply", "reply": {"id": "slot_am", "title": "Morning"}},
               {"type": "reply", "reply": {"id": "slot_pm", "title": "Afternoon"}},
               {"type": "reply", "reply": {"id": "slot_ev", "title": "Evening"}}]}}
LIST = {"type": "list", "header": {"type": "text", "text": "Winter sale"},
        "body": {"text": "Choose a category"}, "footer": {"text": "Offer ends Sunday"},
        "action": {"button": "See options", "sections": [
            {"title": "Clothing", "rows": [{"id": "c1", "title": "Jackets",
                                            "description": "From $49"},
                                           {"id": "c2", "title": "Boots"}]},
            {"title": "Home", "rows": [{"id": "h1", "title": "Blankets"}]}]}}
CTA = {"type": "cta_url",
       "header": {"type": "image", "image": {"link": "https://cdn.example/banner.png"}},
       "body": {"text": "Tap below to see available dates."},
       "action": {"name": "cta_url", "parameters": {"display_text": "See Dates",
                                                    "url": "https://s.example/aB3x"}}}
TEMPLATE = {"name": "order_shipped", "language": {"code": "en_US"}, "components": [
    {"type": "header", "parameters": [{"type": "image",
                                       "image": {"link": "https://cdn.example/p.jpg"}}]},
    {"type": "body", "parameters": [{"type": "text", "text": "Jessica"}]},
    {"type": "button", "sub_type": "url", "index": "0",
     "parameters": [{"type": "text", "text": "aB3x"}]},
    {"type": "button", "sub_type": "quick_reply", "index": "1",
     "parameters": [{"type": "payload", "payload": "STOP_PROMO"}]}]}


def message(spec: dict[str, Any] | None, text: str = "hola") -> OutgoingMessage:
    return OutgoingMessage(id=42, destination="+59898344484", text=text, kind="whatsapp",
                           data={"whatsapp": spec} if spec is not None else {})


def limit_error_for(outgoing: OutgoingMessage) -> str:
    with pytest.raises(PermanentError) as caught:
        payload.prepare(outgoing)
    assert caught.value.code == "whatsapp_limit"
    return str(caught.value)


def limit_error(spec: dict[str, Any]) -> str:
    return limit_error_for(message(spec))


def test_plain_text_uses_the_message_text_and_our_id() -> None:
    got = payload.prepare(message(None, "Your order shipped"))
    assert got.body == {"messaging_product": "whatsapp", "recipient_type": "individual",
                        "to": "59898344484", "type": "text",
                        "biz_opaque_callback_data": "42",
                        "text": {"body": "Your order shipped"}}
    assert got.needs_open_window


def test_template_keeps_components_and_accepts_a_language_string() -> None:
    spec = {"type": "template", "template": {**copy.deepcopy(TEMPLATE), "language": "en_US"}}
    got = payload.prepare(message(spec))
    assert got.body["template"]["language"] == {"code": "en_US"}
    assert got.body["template"]["components"] == TEMPLATE["components"]
    assert not got.needs_open_window


@pytest.mark.parametrize("interactive", [BUTTONS, LIST, CTA])
def test_documented_interactive_examples_pass(interactive: dict[str, Any]) -> None:
    got = payload.prepare(message({"type": "interactive", "interactive": interactive}))
    assert got.body["interactive"] == interactive


def test_media_caption_comes_only_from_the_spec_and_context_quotes() -> None:
    spec = {"type": "image", "image": {"link": "https://cdn.example/p.jpg",
                                       "caption": "The best succulent ever?"},
            "reply_to": "wamid.abc"}
    got = payload.prepare(message(spec, "[session 1/2 of message 7]"))
    assert got.body["image"] == {"link": "https://cdn.example/p.jpg",
                                 "caption": "The best succulent ever?"}
    assert got.body["context"] == {"message_id": "wamid.abc"}
    bare = payload.prepare(message({"type": "video", "video": {"id": "MEDIA1"}}, "label"))
    assert bare.body["video"] == {"id": "MEDIA1"}


def test_the_api_placeholder_text_is_never_sent() -> None:
    # POST /api/v1/messages without "message" stores "[text]" / "[interactive]".
    assert "text.body: required" in limit_error_for(message({"type": "text"}, "[text]"))
    spec = {"type": "text", "text": {"body": "Hola"}}
    assert payload.prepare(message(spec, "[text]")).body["text"]["body"] == "Hola"
    ia = copy.deepcopy(BUTTONS)
    del ia["body"]
    assert "body.text: required" in limit_error_for(
        message({"type": "interactive", "interactive": ia}, "[interactive]"))


def _buttons(n: int, title: str = "Option") -> dict[str, Any]:
    ia = copy.deepcopy(BUTTONS)
    ia["action"]["buttons"] = [{"type": "reply", "reply": {"id": f"b{i}", "title": f"{title}{i}"}}
                               for i in range(n)]
    return {"type": "interactive", "interactive": ia}


def _rows(n: int) -> dict[str, Any]:
    ia = copy.deepcopy(LIST)
    ia["action"]["sections"] = [{"title": "All", "rows": [{"id": f"r{i}", "title": f"Row {i}"}
                                                          for i in range(n)]}]
    return {"type": "interactive", "interactive": ia}


def _edit(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    ia = copy.deepcopy(base)
    node = ia
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[int(key)] if key.isdigit() else node[key]
    node[keys[-1]] = value
    return {"type": "interactive", "interactive": ia}


@pytest.mark.parametrize(("spec", "expected"), [
    (_buttons(4), "interactive.action.buttons: 1 to 3 reply buttons (got 4)"),
    (_buttons(0), "1 to 3 reply buttons (got 0)"),
    (_buttons(2, title="x" * 20), "reply.title: at most 20 characters (got 21)"),
    (_edit(BUTTONS, "action.buttons.1.reply.id", "slot_am"), "button ids must be unique"),
    (_edit(BUTTONS, "body.text", "x" * 1025), "body.text: at most 1024 characters"),
    (_edit(BUTTONS, "footer.text", "x" * 61), "footer.text: at most 60 characters"),
    (_rows(11), "1 to 10 rows over all sections (got 11)"),
    (_edit(LIST, "action.sections.1.title", ""), "sections[1].title: required"),
    (_edit(LIST, "action.sections.0.rows.0.title", "x" * 25), "title: at most 24 characters"),
    (_edit(LIST, "action.sections.0.rows.0.description", "x" * 73), "at most 72 characters"),
    (_edit(LIST, "action.button", "x" * 21), "action.button: at most 20 characters"),
    (_edit(LIST, "header", {"type": "image", "image": {"link": "https://x/y.png"}}),
     "a list header is one of text"),
    (_edit(CTA, "action.parameters.display_text", "x" * 21), "display_text: at most 20"),
    (_edit(CTA, "action.parameters", [{"display_text": "a", "url": "https://a"}] * 2),
     "exactly one URL button"),
    ({"type": "image", "image": {"id": "1", "link": "https://x/y.png"}}, "exactly one of id"),
    ({"type": "image", "image": {"link": "https://x/y.png", "caption": "x" * 1025}},
     "image.caption: at most 1024"),
    ({"type": "text", "text": {"body": "x" * 4097}}, "text.body: at most 4096"),
    ({"type": "template", "template": {"name": "t", "language": "es", "components": [
        {"type": "button", "sub_type": "url", "index": str(i)} for i in range(3)]}},
     "at most 2 url buttons (got 3)"),
])
def test_documented_limits_are_named(spec: dict[str, Any], expected: str) -> None:
    assert expected in limit_error(spec)


def test_unknown_type_is_a_clear_payload_error() -> None:
    with pytest.raises(PermanentError, match="data.whatsapp.type 'sticker'") as caught:
        payload.prepare(message({"type": "sticker"}))
    assert caught.value.code == "whatsapp_payload"


# webhooks ---------------------------------------------------------------------

def test_signature_matches_the_documented_vector() -> None:
    expected = "0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
    assert webhook.signature("secret", b"test") == f"sha256={expected}"
    assert webhook.signed("secret", b"test", f"sha256={expected}")
    assert not webhook.signed("secret", b"test ", f"sha256={expected}")
    assert not webhook.signed("secret", b"test", None)
    ours = hmac.new(b"app-secret", b'{"a":1}', hashlib.sha256).hexdigest()
    assert webhook.signed("app-secret", b'{"a":1}', "sha256=" + ours)


def test_subscription_challenge() -> None:
    query = {"hub.mode": "subscribe", "hub.verify_token": "tok", "hub.challenge": "1158201444"}
    assert webhook.challenge(query, "tok") == "1158201444"
    assert webhook.challenge(query, "other") is None
    assert webhook.challenge({**query, "hub.mode": "unsubscribe"}, "tok") is None


def envelope(value: dict[str, Any], number_id: str = "123") -> dict[str, Any]:
    return {"object": "whatsapp_business_account", "entry": [{"id": "WABA", "changes": [
        {"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550000001", "phone_number_id": number_id},
            **value}}]}]}


def test_statuses_map_to_reports() -> None:
    statuses = [
        {"id": "wamid.1", "status": "sent", "timestamp": "1698266945", "recipient_id": "5989",
         "biz_opaque_callback_data": "42",
         "pricing": {"billable": True, "pricing_model": "PMP", "category": "utility"}},
        {"id": "wamid.1", "status": "delivered", "timestamp": "1698266946"},
        {"id": "wamid.1", "status": "read", "timestamp": "1698266947"},
        {"id": "wamid.2", "status": "failed", "timestamp": "1698266948", "errors": [
            {"code": 131049, "title": "This message was not delivered to maintain healthy "
             "ecosystem engagement.", "error_data": {"details": "Healthy ecosystem"}}]}]
    got = webhook.parse("wa", envelope({"statuses": statuses}), "123").reports
    sent, delivered, read, failed = got
    assert (sent.final, sent.detail["biz_opaque_callback_data"]) == (False, "42")
    assert sent.detail["pricing"]["category"] == "utility" and sent.at == 1698266945.0
    assert sent.destination == "+5989"
    assert (delivered.final, delivered.delivered) == (True, True)
    assert (read.final, read.detail["status"]) == (False, "read")
    assert (failed.final, failed.delivered, failed.error_code) == (True, False, "131049")
    assert "(#131049)" in failed.error and "Healthy ecosystem" in failed.error


def test_inbound_shapes_become_messages_with_reply_data() -> None:
    messages = [
        {"from": "59898344484", "id": "wamid.t", "timestamp": "1", "type": "text",
         "text": {"body": "Hola"}},
        {"from": "59898344484", "id": "wamid.b", "timestamp": "2", "type": "button",
         "context": {"from": "15550000001", "id": "wamid.tpl"},
         "button": {"payload": "YES_SEND_OFFER", "text": "Yes, send it"}},
        {"from": "59898344484", "id": "wamid.r", "timestamp": "3", "type": "interactive",
         "interactive": {"type": "button_reply",
                         "button_reply": {"id": "slot_am", "title": "Morning"}}},
        {"from": "59898344484", "id": "wamid.l", "timestamp": "4", "type": "interactive",
         "interactive": {"type": "list_reply", "list_reply": {"id": "c1", "title": "Jackets"}}},
        {"from": "59898344484", "id": "wamid.i", "timestamp": "5", "type": "image",
         "image": {"mime_type": "image/jpeg", "id": "MEDIA1", "caption": "look"}}]
    contacts = [{"profile": {"name": "Ana"}, "wa_id": "59898344484"}]
    got = webhook.parse("wa", envelope({"contacts": contacts, "messages": messages}), "123")
    text, button, reply, listed, image = got.inbound
    assert (text.sender, text.recipient, text.text, text.provider_ref) == (
        "+59898344484", "+15550000001", "Hola", "wamid.t")
    assert text.data["profile_name"] == "Ana"
    assert button.data.items() >= {"type": "button", "payload": "YES_SEND_OFFER",
                                   "title": "Yes, send it"}.items()
    assert button.data["context"]["id"] == "wamid.tpl" and button.text == "Yes, send it"
    assert reply.data.items() >= {"type": "button_reply", "id": "slot_am",
                                  "title": "Morning"}.items()
    assert listed.data.items() >= {"type": "list_reply", "id": "c1", "title": "Jackets"}.items()
    assert (image.text, image.data["media_id"]) == ("look", "MEDIA1")


def test_other_numbers_and_fields_are_ignored() -> None:
    got = webhook.parse("wa", envelope({"statuses": [{"id": "x", "status": "sent"}]}, "999"),
                        "123")
    assert not got.reports and "phone_number_id 999" in got.ignored[0]
    assert webhook.parse("wa", {"object": "page"}, "123").ignored


# errors -------------------------------------------------------------------------

def answer(status: int, code: int | None, headers: dict[str, str] | None = None) -> Answer:
    body = b"" if code is None else (
        b'{"error":{"message":"(#%d) x","type":"OAuthException","code":%d}}' % (code, code))
    return Answer(status, CIMultiDict(headers or {}), body)


def test_error_classes() -> None:
    limited = errors.classify(answer(429, 130429))
    assert isinstance(limited, TransientError) and limited.retry_after_s == 2.0
    hinted = errors.classify(answer(429, 130429, {"Retry-After": "7"}))
    assert isinstance(hinted, TransientError) and hinted.retry_after_s == 7.0
    pair = errors.classify(answer(400, 131056))
    assert isinstance(pair, TransientError) and pair.retry_after_s == 6.0
    for code in (131049, 131026, 131050, 131009):
        err = errors.classify(answer(400, code))
        assert isinstance(err, PermanentError) and err.code == str(code)
        assert f"(#{code})" in str(err)
    # A refused token or a locked account is the channel's fault, not the
    # message's; `type: OAuthException` alone (every code above has it) is not.
    for status, code in ((401, 190), (400, 190), (401, None)):
        token = errors.classify(answer(status, code))
        assert isinstance(token, ChannelFault) and token.fault == "authentication failed"
    locked = errors.classify(answer(403, 131031))
    assert isinstance(locked, ChannelFault) and locked.fault == "account refused"
    assert isinstance(errors.classify(answer(502, None)), TransientError)
