"""Twilio's webhooks as events, without I/O: a status callback becomes a
DeliveryReport, an incoming message an InboundMessage.

Twilio adds fields without notice and may deliver callbacks out of order;
only the documented ones are read and the rest kept in `detail`/`data`.
"""

from __future__ import annotations

from collections.abc import Mapping

from drivers.base import DeliveryReport, InboundMessage

# Still on its way: nothing changes in the spool yet.
INTERIM = frozenset({"accepted", "scheduled", "queued", "sending", "sent", "read",
                     "partially_delivered"})
FAILED = frozenset({"undelivered", "failed", "canceled"})

# The common ErrorCodes on undelivered/failed (twilio.com/docs/errors/<code>).
ERROR_NAMES = {
    "30001": "queue overflow",
    "30002": "account suspended",
    "30003": "unreachable destination handset",
    "30004": "message blocked",
    "30005": "unknown destination handset",
    "30006": "landline or unreachable carrier",
    "30007": "message filtered by the carrier",
    "30008": "unknown error",
    "21610": "recipient unsubscribed (replied STOP)",
}

TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


class Ignored(ValueError):
    """A callback that carries nothing for us (no MessageSid, an inbound status)."""


def status_report(channel: str, form: Mapping[str, str]) -> DeliveryReport:
    sid = form.get("MessageSid") or form.get("SmsSid")
    status = (form.get("MessageStatus") or form.get("SmsStatus") or "").lower()
    if not sid or not status:
        raise Ignored("status callback without MessageSid/MessageStatus")
    detail = {"status": status}
    for key, name in (("RawDlrDoneDate", "raw_dlr_done_date"),
                      ("ChannelStatusMessage", "channel_status_message"),
                      ("MessagingServiceSid", "messaging_service_sid")):
        if form.get(key):
            detail[name] = form[key]
    destination = form.get("To") or None
    if status == "delivered":
        return DeliveryReport(channel, sid, True, destination=destination, detail=detail)
    if status in FAILED:
        code = form.get("ErrorCode") or None
        return DeliveryReport(channel, sid, False, error=_error_text(status, code),
                              destination=destination, error_code=code, detail=detail)
    if status in INTERIM:
        return DeliveryReport(channel, sid, status == "read", destination=destination,
                              final=False, detail=detail)
    raise Ignored(f"status {status!r} is not about an outgoing message")


def _error_text(status: str, code: str | None) -> str:
    if not code:
        return f"Twilio: {status}"
    name = ERROR_NAMES.get(code)
    return f"Twilio: {status}, error {code}" + (f" ({name})" if name else "")


def inbound_message(channel: str, form: Mapping[str, str]) -> InboundMessage:
    sid = form.get("MessageSid") or form.get("SmsSid")
    sender = form.get("From")
    if not sid or not sender:
        raise Ignored("incoming message without MessageSid/From")
    media = []
    for i in range(_int(form.get("NumMedia"))):
        if form.get(f"MediaUrl{i}"):
            media.append({"url": form[f"MediaUrl{i}"],
                          "content_type": form.get(f"MediaContentType{i}", "")})
    data: dict[str, object] = {"type": "sms"}
    if media:
        data["media"] = media
    if form.get("NumSegments"):
        data["segments"] = _int(form.get("NumSegments"))
    return InboundMessage(channel, sender, form.get("To", ""), form.get("Body", ""),
                          provider_ref=sid, data=data)


def _int(raw: str | None) -> int:
    try:
        return max(0, int(raw or 0))
    except ValueError:
        return 0
