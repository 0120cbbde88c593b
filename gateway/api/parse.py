"""Request field checks: each failure names the field (400)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from gateway.intake import IntakeError, Submission
from gateway.journeys import parse_policy
from spool.base import State

MAX_KEY_LEN = 200
# ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
_INTEGER = re.compile(r"\s*-?[0-9]+\s*")


def text(body: Mapping[str, Any], name: str, where: str = "", *, required: bool = False,
         max_len: int | None = None) -> str | None:
    value = body.get(name)
    if value is None or value == "":
        if required:
            raise IntakeError(f"{name} is required", field=where + name)
        return None
    if isinstance(value, int | float) and not isinstance(value, bool) and name == "destination":
        value = str(value)  # legacy callers send numbers as JSON numbers
    if not isinstance(value, str):
        raise IntakeError(f"{name} must be a string", field=where + name)
    if max_len is not None and len(value) > max_len:
        raise IntakeError(f"{name} is longer than {max_len} characters", field=where + name)
    return value


def integer(body: Mapping[str, Any], name: str, where: str = "", *,
            lo: int = -1_000_000, hi: int = 1_000_000) -> int | None:
    value = body.get(name)
    if value is None or value == "":
        return None
    if isinstance(value, str) and _INTEGER.fullmatch(value):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON has one number type: 7.0 is the integer 7
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise IntakeError(f"{name} must be an integer from {lo} to {hi}", field=where + name)
    return value


RESERVED = "_smsgw"
# What a JSON submission may hold; anything else is a typo to report, not to
# ignore ("campain" would otherwise send under the default campaign).
SUBMISSION_FIELDS = frozenset({"destination", "message", "campaign", "priority", "agent",
                               "data", "idempotency_key", "smart", "kind", "whatsapp"})


def known_fields(body: Any, allowed: frozenset[str], where: str = "") -> None:
    """400 naming the first field of `body` (an object) not in `allowed`."""
    if isinstance(body, Mapping):
        unknown = sorted(str(k) for k in body if k not in allowed)
        if unknown:
            raise IntakeError(f"unknown field {unknown[0]!r}", field=where + unknown[0])


def submission(body: Any, where: str = "") -> Submission:
    if not isinstance(body, Mapping):
        raise IntakeError("expected a JSON object", field=where.rstrip(".") or "body")
    data = body.get("data")
    if data is not None and not isinstance(data, dict):
        raise IntakeError("data must be an object", field=where + "data")
    if data is not None and RESERVED in data:
        # smsgw's own annotations (a pinned channel, a journey's price, leave
        # to pass the blacklist) are set by smsgw, never by a client.
        raise IntakeError("data._smsgw is reserved for smsgw", field=where + "data._smsgw")
    smart = body.get("smart")
    if smart is not None:
        try:
            parse_policy(smart, where=f"{where}smart")
        except ValueError as err:
            field, _, message = str(err).partition(": ")
            raise IntakeError(message, field=field) from None
    kind = body.get("kind", "sms")
    if kind not in ("sms", "whatsapp"):
        raise IntakeError("kind must be 'sms' or 'whatsapp'", field=where + "kind")
    whatsapp = body.get("whatsapp")
    if kind == "whatsapp":
        if not isinstance(whatsapp, dict) or not isinstance(whatsapp.get("type"), str):
            raise IntakeError("a WhatsApp message needs a whatsapp object with a type",
                              field=where + "whatsapp")
        data = {**(data or {}), "whatsapp": whatsapp}
    return Submission(
        destination=text(body, "destination", where, required=True, max_len=64) or "",
        # A WhatsApp template has no text of its own.
        message=text(body, "message", where, required=kind == "sms", max_len=10_000) or "",
        kind=kind,
        campaign=text(body, "campaign", where, max_len=200),
        priority=integer(body, "priority", where),
        agent=text(body, "agent", where, max_len=200),
        data=data,
        idempotency_key=text(body, "idempotency_key", where, max_len=MAX_KEY_LEN),
        smart=smart,
    )


def state(value: str | None) -> State | None:
    if not value:
        return None
    try:
        return State(int(value)) if value.isdigit() else State[value.upper()]
    except (KeyError, ValueError):
        names = ", ".join(f"{s.value}/{s.name}" for s in State)
        raise IntakeError(f"unknown state {value!r} ({names})", field="state") from None


# 1970 to 2999: wide enough for any real query, narrow enough that every
# date and time conversion downstream works.
_EARLIEST, _LATEST = 0.0, 32_503_680_000.0


def timestamp(value: str | None, name: str) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = _iso_seconds(value, name)
    if not _EARLIEST <= seconds <= _LATEST:  # also refuses nan and inf
        raise IntakeError(f"{name} must be between 1970 and 2999", field=name)
    return seconds


def _iso_seconds(value: str, name: str) -> float:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise IntakeError(f"{name} must be ISO-8601 or unix seconds", field=name) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    try:
        return parsed.timestamp()
    except (OverflowError, ValueError):
        raise IntakeError(f"{name} must be between 1970 and 2999", field=name) from None
