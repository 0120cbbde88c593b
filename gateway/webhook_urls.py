"""What a tenant's webhook URL may be: http(s) to a host, nothing else."""

from __future__ import annotations

from urllib.parse import urlsplit


class BadWebhookUrl(ValueError):
    """The URL cannot be a webhook target; nothing should be stored."""


def check_webhook_url(url: str) -> str:
    """`url` unchanged when it is usable; else BadWebhookUrl saying why."""
    if len(url) > 2000 or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise BadWebhookUrl("webhook url must be one line under 2000 characters, no spaces")
    try:
        parts = urlsplit(url)
        host, _ = parts.hostname, parts.port  # port: ValueError when not a number
    except ValueError as err:
        raise BadWebhookUrl(f"webhook url is malformed: {err}") from None
    if parts.scheme not in ("http", "https"):
        raise BadWebhookUrl(f"webhook url must be http(s), not {parts.scheme!r}")
    if not host:
        raise BadWebhookUrl("webhook url needs a host")
    return url
