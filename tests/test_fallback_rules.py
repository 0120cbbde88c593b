"""The eight session-message rules of the WhatsApp utility fallback, and edges."""

from __future__ import annotations

import pytest

from gateway.fallback_rules import FallbackError, session_messages

IMAGE = {"type": "image", "link": "https://cdn.example/p.jpg"}
URL = {"type": "url", "text": "Shop now", "url": "https://shop.example/x"}
URL2 = {"type": "url", "text": "Terms", "url": "https://shop.example/t"}
PHONE = {"type": "phone_number", "text": "Call us", "phone_number": "+59829000000"}


def qr(n: int) -> list[dict]:
    return [{"type": "quick_reply", "text": f"Option {i}", "payload": f"opt{i}"}
            for i in range(n)]


def kinds(messages: list[dict]) -> list[str]:
    return [m["type"] if m["type"] != "interactive" else f"interactive:{m['interactive']['type']}"
            for m in messages]


@pytest.mark.parametrize("media,replies,ctas,expected", [
    (None, 0, [], ["text"]),
    (None, 0, [URL, URL2], ["text"]),
    (None, 0, [URL], ["interactive:cta_url"]),
    (None, 2, [URL], ["interactive:button"]),
    (None, 7, [URL, URL2], ["interactive:list"]),
    (IMAGE, 0, [], ["image"]),
    (IMAGE, 0, [URL, URL2], ["image"]),
    (IMAGE, 0, [URL], ["interactive:cta_url"]),
    (IMAGE, 3, [], ["interactive:button"]),
    (IMAGE, 10, [URL], ["image", "interactive:list"]),
])
def test_the_eight_rules(media, replies, ctas, expected) -> None:
    rendered = {"header": media, "body": "Winter sale: 30% off", "footer": "Reply STOP to opt out",
                "buttons": qr(replies) + ctas}
    assert kinds(session_messages(rendered)) == expected


def test_text_carries_body_footer_and_links() -> None:
    [msg] = session_messages({"body": "Sale", "footer": "Bye", "buttons": [URL, URL2]})
    assert msg["text"]["body"] == ("Sale\nShop now: https://shop.example/x\n"
                                   "Terms: https://shop.example/t\n\nBye")


def test_cta_url_with_media_header() -> None:
    [msg] = session_messages({"header": IMAGE, "body": "New in", "buttons": [URL]})
    interactive = msg["interactive"]
    assert interactive["header"] == {"type": "image", "image": {"link": IMAGE["link"]}}
    assert interactive["action"] == {"name": "cta_url", "parameters": {
        "display_text": "Shop now", "url": "https://shop.example/x"}}


def test_reply_buttons_keep_payloads_and_put_ctas_in_the_body() -> None:
    [msg] = session_messages({"header": IMAGE, "body": "Pick one", "buttons": qr(2) + [URL]})
    action = msg["interactive"]["action"]
    assert [b["reply"]["id"] for b in action["buttons"]] == ["opt0", "opt1"]
    assert "Shop now: https://shop.example/x" in msg["interactive"]["body"]["text"]
    assert msg["interactive"]["header"]["type"] == "image"


def test_media_then_list_for_many_replies() -> None:
    image, lst = session_messages({"header": IMAGE, "body": "Pick", "buttons": qr(5)},
                                  list_button="Opciones")
    assert image == {"type": "image", "image": {"link": IMAGE["link"], "caption": "Pick"}}
    assert lst["interactive"]["action"]["button"] == "Opciones"
    rows = lst["interactive"]["action"]["sections"][0]["rows"]
    assert [r["title"] for r in rows] == [f"Option {i}" for i in range(5)]


def test_eleven_quick_replies_are_refused() -> None:
    with pytest.raises(FallbackError, match="11 quick replies"):
        session_messages({"body": "x", "buttons": qr(11)})


def test_a_phone_cta_is_written_as_text() -> None:
    [msg] = session_messages({"body": "Questions?", "buttons": [PHONE]})
    assert msg["type"] == "text" and "Call us: +59829000000" in msg["text"]["body"]


def test_missing_media_link_falls_back_to_the_text_rules() -> None:
    [msg] = session_messages({"header": {"type": "image"}, "body": "Sale", "buttons": [URL]})
    assert msg["interactive"]["type"] == "cta_url" and "header" not in msg["interactive"]


def test_long_titles_are_fitted_to_the_limits() -> None:
    long = [{"type": "quick_reply", "text": "A very long option title indeed", "payload": "p"}]
    [msg] = session_messages({"body": "x", "buttons": long})
    title = msg["interactive"]["action"]["buttons"][0]["reply"]["title"]
    assert len(title) == 20 and title.endswith("…")


def test_nothing_to_carry_is_an_error() -> None:
    with pytest.raises(FallbackError):
        session_messages({"buttons": qr(2)})


def test_text_previews_links_and_long_bodies_degrade() -> None:
    [msg] = session_messages({"body": "See https://a.example"})
    assert msg["text"]["preview_url"] is True
    long = "x" * 1500
    [msg] = session_messages({"body": long, "buttons": [URL]})
    assert msg["type"] == "text" and msg["text"]["body"].endswith("https://shop.example/x")
    image, text = session_messages({"header": IMAGE, "body": long})
    assert "caption" not in image["image"] and text["text"]["body"] == long
