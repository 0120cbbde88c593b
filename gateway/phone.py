"""Destination numbers to E.164, with a reason an operator can act on when it fails."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult

# Separators people type or spreadsheets keep; anything else is suspicious.
_SEPARATORS = str.maketrans("", "", "-.()")

_PARSE_REASONS = {
    NumberParseException.INVALID_COUNTRY_CODE: "unknown country calling code",
    NumberParseException.NOT_A_NUMBER: "not a phone number",
    NumberParseException.TOO_SHORT_AFTER_IDD: "too short after the international prefix",
    NumberParseException.TOO_SHORT_NSN: "too short",
    NumberParseException.TOO_LONG: "too long",
}

_LENGTH_REASONS = {
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "wrong number of digits",
    # e.g. an Argentinian number dialled without its area code
    ValidationResult.IS_POSSIBLE_LOCAL_ONLY: "missing area code",
}


class InvalidNumber(ValueError):
    """The destination cannot be sent to; `str(e)` says why."""


@dataclass(frozen=True, slots=True)
class _Rejected:
    reason: str


def normalize(raw: str, default_region: str) -> str:
    """E.164 ("+59898344484") from what a user typed.

    `default_region` (ISO 3166, e.g. "UY") reads national numbers and the
    country's international prefix ("00..."). Raises InvalidNumber with the
    reason, or ValueError for a region phonenumbers does not know, which is a
    configuration error rather than a bad number.
    """
    region = default_region.upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown region {default_region!r}")
    outcome = _classify(raw, region)
    if isinstance(outcome, _Rejected):
        raise InvalidNumber(outcome.reason)
    return outcome


# Rejections are cached too: a bad number in a bulk import repeats as often
# as a good one, and an exception cannot be cached by lru_cache. An entry
# costs about 350 bytes; 4,096 of them catch the repeats of a file or a
# burst and fill within seconds, where a bigger cache kept growing the heap
# for minutes of steady traffic to new numbers (~23 MB at 65,536).
@functools.lru_cache(maxsize=4096)
def _classify(raw: str, region: str) -> str | _Rejected:
    digits = "".join(raw.split()).translate(_SEPARATORS)
    problem = _lexical_problem(digits)
    if problem:
        return _Rejected(problem)
    try:
        number = phonenumbers.parse(digits, region)
    except NumberParseException as err:
        return _Rejected(_PARSE_REASONS.get(err.error_type, str(err)))
    problem = _validity_problem(number)
    if problem:
        return _Rejected(problem)
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    if len(e164) > 16:  # "+" and at most 15 digits (ITU-T E.164)
        return _Rejected("too long for an international (E.164) number")
    return e164


def _lexical_problem(digits: str) -> str:
    """Why `digits` (separators removed) is not a number, or "" when it may be."""
    if not digits:
        return "empty number"
    body = digits[1:] if digits[0] == "+" else digits
    if not body:
        return "empty number"
    if body.isdecimal():
        return ""
    # phonenumbers would read letters as a keypad (1-800-FLOWERS); a CSV
    # column shifted by one is the likelier story.
    if any(char.isalpha() for char in body):
        return "contains letters"
    odd = next(char for char in body if not char.isdecimal())
    return f"unexpected character {odd!r}"


def _validity_problem(number: PhoneNumber) -> str:
    """Why a parsed number cannot be reached, or "" when it is valid."""
    code = number.country_code or 0
    region = phonenumbers.region_code_for_country_code(code)
    if region == phonenumbers.UNKNOWN_REGION:
        return f"unknown country calling code +{code}"
    # Non-geographic codes (+800, +882...) report the pseudo-region "001".
    where = f"region {region}" if region.isalpha() else f"country calling code +{code}"
    length = phonenumbers.is_possible_number_with_reason(number)
    if length in _LENGTH_REASONS:
        return f"{_LENGTH_REASONS[length]} for {where}"
    if not phonenumbers.is_valid_number(number):
        return f"not a valid number for {where}"
    return ""
