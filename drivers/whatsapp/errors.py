"""What a Graph API error means for the message, without I/O.

Meta says to branch on `error.code` (plus `error_data.details`), never on
titles. Classes follow shared/reference/wire-formats.md §1.8: rate limits
wait and retry; "this can never go out as it is" fails the message with the
code kept (131049, 131026, 131050... usually arrive later in a status
webhook, but a send can also be refused with them at once); account-level
trouble (token, payment, lock) is the channel's, not the message's: a
ChannelFault, so the circuit breaker rests the channel at once and the
queue waits uncharged.

An expired or revoked token is code 190 (or HTTP 401). Not `type:
OAuthException`: Meta gives that type to nearly every Graph error, a
recipient outside the test allow-list (131030) and rate limits (4) alike.
"""

from __future__ import annotations

import json
from typing import Any

from drivers.base import ChannelFault, PermanentError, TransientError
from drivers.http.common import Answer, retry_after_s

# code -> seconds to wait before the next try.
RATE_LIMITS: dict[int, float] = {
    130429: 2.0,  # Cloud API throughput (80 mps default) reached
    131056: 6.0,  # pair rate limit: about one message per 6 s to the same user
    80007: 60.0,  # WABA API-call rate limit
    4: 60.0,  # app API-call rate limit
    613: 60.0,  # calls to this API exceeded the rate limit
}
UNAVAILABLE = frozenset({1, 2, 131000, 131016, 131057, 133004})
ACCOUNT = frozenset({0, 3, 10, 190, 200, 368, 131031, 131042, 131044, 131045, 131064})
# The access token is refused (expired, revoked, password changed).
AUTH = frozenset({190})


def _is_account(code: int) -> bool:
    return code in ACCOUNT or 200 <= code <= 299


def classify(answer: Answer) -> ChannelFault | TransientError | PermanentError:
    """The exception for a non-2xx answer."""
    error = _error(answer)
    code = _int(error.get("code"))
    text = describe(error) or f"HTTP {answer.status}: {answer.text()[:200]}"
    text = f"WhatsApp: {text}"
    code_s = str(code) if code is not None else str(answer.status)
    hinted = retry_after_s(answer.headers)
    if code in RATE_LIMITS or answer.status == 429:
        wait = hinted or RATE_LIMITS.get(code or 0, 2.0)
        return TransientError(text, code=code_s, retry_after_s=wait)
    if code in UNAVAILABLE or (code is None and answer.status >= 500):
        return TransientError(text, code=code_s, retry_after_s=hinted)
    if code in AUTH or answer.status == 401:
        return ChannelFault.auth(text, code=code_s)
    if code is not None and _is_account(code):
        return ChannelFault(text, code=code_s, fault="account refused", retry_after_s=hinted)
    if answer.status >= 500:
        return TransientError(text, code=code_s, retry_after_s=hinted)
    return PermanentError(text, code=code_s)


def describe(error: dict[str, Any]) -> str:
    """`(#131049) title: details`, the shape Meta's own messages take."""
    code = error.get("code")
    message = str(error.get("message") or error.get("title") or "")
    if code is not None and not message.startswith("(#"):
        message = f"(#{code}) {message}".rstrip()
    data = error.get("error_data")
    details = str(data.get("details") or "") if isinstance(data, dict) else ""
    if details and details not in message:
        message = f"{message}: {details}" if message else details
    return message


def _error(answer: Answer) -> dict[str, Any]:
    try:
        doc = json.loads(answer.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return {}
    error = doc.get("error") if isinstance(doc, dict) else None
    return error if isinstance(error, dict) else {}


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
