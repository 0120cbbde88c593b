"""The Messages resource of Twilio's REST API, without I/O: the form to
POST and what the answer means.

`POST /2010-04-01/Accounts/{AccountSid}/Messages.json`, form-encoded, HTTP
Basic (AccountSid or an API key SID : auth token or key secret); 201 with
the message resource (`sid`, `status`, `num_segments`). Errors carry a JSON
body with Twilio's `code` (legacy `{code, message, more_info, status}` or
RFC 9457 `{type, title, status, code, detail}`: both are read).
"""

from __future__ import annotations

import json
from typing import Any

from drivers.base import ChannelFault, PermanentError, SendReceipt, TransientError
from drivers.http.common import Answer, retry_after_s

# Twilio's own "too many requests" (REST API concurrency limit).
RATE_LIMITED = "20429"
# "Authenticate": the account SID, API key or secret is refused.
AUTHENTICATE = "20003"
# "Attempt to send to unsubscribed recipient": the number answered STOP to
# this sender (number or Messaging Service); Twilio refuses every message
# from it until the customer sends START.
UNSUBSCRIBED = "21610"
# Without a Retry-After, a 429 waits at least this long.
DEFAULT_RATE_LIMIT_WAIT_S = 1.0


def messages_path(account_sid: str) -> str:
    return f"/2010-04-01/Accounts/{account_sid}/Messages.json"


def message_form(*, to: str, body: str, sender: str | None, service_sid: str | None,
                 status_callback: str | None) -> list[tuple[str, str]]:
    form = [("To", to), ("Body", body)]
    # With a Messaging Service Twilio picks the sender from its pool; a From
    # given as well wins over the pool.
    if service_sid:
        form.append(("MessagingServiceSid", service_sid))
    if sender:
        form.append(("From", sender))
    if status_callback:
        form.append(("StatusCallback", status_callback))
    return form


def receipt(answer: Answer) -> SendReceipt:
    """A 2xx answer's receipt, or the error the caller must raise."""
    if 200 <= answer.status < 300:
        doc = _json(answer)
        sid = doc.get("sid") if isinstance(doc, dict) else None
        if not sid:
            raise TransientError("Twilio accepted the request but returned no sid",
                                 code="no_sid")
        return SendReceipt(provider_ref=str(sid), parts=max(1, _int(doc.get("num_segments"))))
    raise error(answer)


def error(answer: Answer) -> ChannelFault | TransientError | PermanentError:
    doc = _json(answer)
    code = str(doc.get("code")) if isinstance(doc, dict) and doc.get("code") else None
    message = _message(doc) or answer.text()[:200] or f"HTTP {answer.status}"
    text = f"Twilio HTTP {answer.status}: {message}"
    if answer.status == 429 or code == RATE_LIMITED:
        wait = retry_after_s(answer.headers) or DEFAULT_RATE_LIMIT_WAIT_S
        return TransientError(text, code=code or "429", retry_after_s=wait)
    if answer.status >= 500:
        return TransientError(text, code=code or str(answer.status),
                              retry_after_s=retry_after_s(answer.headers))
    if answer.status in (401, 403) or code == AUTHENTICATE:
        # Wrong or revoked credentials fail every message alike: a channel
        # fault, not this message's. The channel rests and the queue waits,
        # uncharged, for an operator to fix the secret.
        return ChannelFault.auth(text, code=code or str(answer.status))
    return PermanentError(text, code=code or str(answer.status))


def _message(doc: Any) -> str | None:
    if not isinstance(doc, dict):
        return None
    parts = [str(doc[k]) for k in ("message", "title", "detail") if doc.get(k)]
    return "; ".join(dict.fromkeys(parts)) or None


def _json(answer: Answer) -> Any:
    try:
        return json.loads(answer.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return None


def _int(raw: Any) -> int:
    try:
        return int(raw)
    except (TypeError, ValueError):
        return 0
