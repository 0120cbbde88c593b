"""Link rewriting, codes, bot detection and journey policies (pure code)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.journeys import Planner, duration_s, parse_policy
from gateway.links import BotDetector, find_urls, new_code, rewrite
from spool.base import Journey


def test_urls_lose_trailing_punctuation_but_keep_their_own_brackets() -> None:
    text = "Ver https://a.example/x. Y (https://b.example/q?a=1) y https://w.example/F_(b)!"
    assert [text[a:b] for a, b in find_urls(text)] == [
        "https://a.example/x", "https://b.example/q?a=1", "https://w.example/F_(b)"]


def test_rewrite_replaces_each_url_once_and_reuses_codes_for_repeats() -> None:
    calls = []

    def short(url: str) -> str:
        calls.append(url)
        return f"<{len(calls)}>"
    text, pairs = rewrite("a http://x.example b https://y.example c http://x.example", short)
    assert text == "a <1> b <2> c <1>"
    assert pairs == [("http://x.example", "<1>"), ("https://y.example", "<2>")]
    assert calls == ["http://x.example", "https://y.example"]


@given(st.lists(st.one_of(
    st.text(alphabet=st.characters(blacklist_characters="h:/§"), max_size=20),
    st.sampled_from(["https://a.example/p", "http://b.example/q?x=1", "https://c.example"])),
    max_size=8))
def test_text_outside_urls_is_unchanged(pieces: list[str]) -> None:
    text = " ".join(pieces)
    out, pairs = rewrite(text, lambda url: "§")
    assert out.replace("§", "") == "".join(
        text[i] for i in range(len(text))
        if not any(a <= i < b for a, b in find_urls(text)))
    assert out.count("§") == len(find_urls(text))


def test_codes_are_unguessable() -> None:
    codes = {new_code() for _ in range(10_000)}
    assert len(codes) == 10_000
    assert all(len(c) == 8 for c in codes)  # 6 random bytes: 48 bits


@pytest.mark.parametrize("ua,method,bot", [
    ("WhatsApp/2.23.20.0 A", "GET", True),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_11_1) AppleWebKit/601.2.4 (KHTML, like Gecko)"
     " Version/9.0.1 Safari/601.2.4 facebookexternalhit/1.1 Facebot Twitterbot/1.0", "GET", True),
    ("Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)", "GET", True),
    ("TelegramBot (like TwitterBot)", "GET", True),
    ("Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)", "GET", True),
    ("LinkedInBot/1.0 (compatible; Mozilla/5.0; Apache-HttpClient)", "GET", True),
    ("Mozilla/5.0 (Windows NT 6.1; WOW64) SkypeUriPreview Preview/0.5", "GET", True),
    ("Mozilla/5.0 (X11) Chrome/120.0 Safari/537.36 Google-PageRenderer", "GET", True),
    ("GoogleMessages", "GET", True),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "GET", True),
    ("", "GET", True),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.0 Mobile/15E148 Safari/604.1", "GET", False),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/120.0.0.0 Mobile Safari/537.36", "GET", False),
    ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/120 Mobile", "HEAD",
     True),
])
def test_bot_detection(ua: str, method: str, bot: bool) -> None:
    assert BotDetector().is_bot(ua, method) is bot


@pytest.mark.parametrize("value,seconds", [("4h", 14400), ("90m", 5400), ("2s", 2),
                                           ("1.5d", 129600), (30, 30), ("250ms", 0.25)])
def test_durations(value, seconds) -> None:
    assert duration_s(value, "wait") == seconds


@pytest.mark.parametrize("policy,field", [
    ({"wait": "soon"}, "smart.wait"), ({"sms_attempts": 0}, "smart.sms_attempts"),
    ({"retry_templates": "x"}, "smart.retry_templates"), ({"whatsapp": {"lang": "x"}},
                                                          "smart.whatsapp.template"),
    ({"tracklinks": True}, "smart.tracklinks")])
def test_policy_errors_name_the_field(policy, field) -> None:
    with pytest.raises(ValueError, match=f"^{field}:"):
        parse_policy(policy)


def journey(step: int, state: str = "ACTIVE", **policy) -> Journey:
    return Journey(id=7, tenant=1, campaign=2, destination="+59898344484", state=state,
                   policy=policy, wait_s=60, step=step, next_at=0, note=None, created_at=0,
                   updated_at=0, clicked_at=None, links=(("AbCdEfGh", "https://x.example"),))


def test_planner_walks_sms_then_whatsapp_then_ends() -> None:
    planner = Planner("https://go.example/", 10)
    policy = {"sms_attempts": 3, "retry_templates": ["2nd {link}", "3rd {link}"],
              "whatsapp": {"template": "t", "language": "es", "params": ["{link}"],
                           "link_button": True}}
    second = planner.next_step(journey(1, **policy))
    assert second.state == "ACTIVE" and second.message.message == "2nd https://go.example/r/AbCdEfGh"
    third = planner.next_step(journey(2, **policy))
    assert third.message.message == "3rd https://go.example/r/AbCdEfGh"
    wa = planner.next_step(journey(3, **policy))
    assert wa.state == "ESCALATED" and wa.message.kind == "whatsapp"
    template = wa.message.data["whatsapp"]["template"]
    assert template["components"] == [
        {"type": "body", "parameters": [{"type": "text", "text": "https://go.example/r/AbCdEfGh"}]},
        {"type": "button", "sub_type": "url", "index": "0",
         "parameters": [{"type": "text", "text": "AbCdEfGh"}]}]
    assert planner.next_step(journey(4, state="ESCALATED", **policy)).state == "EXHAUSTED"
    assert planner.next_step(journey(1, sms_attempts=1)).state == "EXHAUSTED"
