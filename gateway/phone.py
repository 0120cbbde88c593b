"""Destination numbers to E.164, with a reason an operator can act on when it fails."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import (
    COUNTRY_CODE_TO_REGION_CODE,
    NumberParseException,
    PhoneMetadata,
    PhoneNumber,
    PhoneNumberFormat,
    ValidationResult,
)

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
    quick = _quick(digits, region)
    if quick is not None:
        return quick
    return _checked(digits, region)


def _checked(digits: str, region: str) -> str | _Rejected:
    """The verdict of phonenumbers itself on `digits` (lexically a number)."""
    try:
        number = phonenumbers.parse(digits, region)
    except NumberParseException as err:
        return _Rejected(_PARSE_REASONS.get(err.error_type, str(err)))
    problem = _validity_problem(number)
    if problem:
        return _Rejected(problem)
    return _e164(phonenumbers.format_number(number, PhoneNumberFormat.E164))


def _e164(e164: str) -> str | _Rejected:
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


# -- the quick path -------------------------------------------------------------
#
# A bulk import spends most of its time in phonenumbers.parse and
# is_valid_number, which are general (letters, extensions, RFC 3966, any
# Unicode digit) and look every regular expression up in re's cache on every
# call. Most destinations are plain: "+" and ASCII digits, or national digits.
# For those, `_quick` takes the same steps as phonenumbers with the region's
# metadata compiled once, and answers exactly what `_checked` answers (a
# property test compares them over every region); any other shape or branch
# (IDD prefixes, the country code typed without "+", NANPA-style codes shared
# by several regions, too short or too long) returns None and goes the
# general way.


# phonenumbers' bounds on a national significant number.
_MIN_NSN, _MAX_NSN = 2, 17


@dataclass(frozen=True, slots=True)
class _Plan:
    """One numbering plan's metadata, compiled for the quick path."""

    country_code: int
    where: str  # how reasons name it: "region UY", "country calling code +800"
    idd: re.Pattern[str] | None
    national_prefix: re.Pattern[str] | None
    transform: str
    general: re.Pattern[str] | None  # matched without the length check
    lengths: tuple[int, ...]
    local_lengths: tuple[int, ...]
    # What is_valid_number checks once the general description matched: any
    # type whose lengths allow the number's, as one pattern per length (None:
    # no type has that length). None: the plan alone does not decide (several
    # regions share the calling code).
    types_by_length: dict[int, re.Pattern[str] | None] | None


def _quick(digits: str, region: str) -> str | _Rejected | None:
    """`_checked(digits, region)` for plain input; None for anything else."""
    plus = digits[0] == "+"
    body = digits[1:] if plus else digits
    if not (3 <= len(body) <= 17 and body.isascii() and body.isdigit()):
        return None
    found = _quick_parse(body, region) if not plus else _quick_parse_international(body)
    if found is None:
        return None
    plan, nsn = found
    problem = _quick_validity(plan, nsn)
    if problem is None:
        return None
    if problem:
        return _Rejected(problem)
    return _e164(f"+{plan.country_code}{nsn}")


def _quick_parse_international(body: str) -> tuple[_Plan, str] | None:
    """phonenumbers.parse("+" + body): the calling code and what follows it."""
    if body[0] == "0":
        return None
    for size in (1, 2, 3):
        code = int(body[:size])
        if code in COUNTRY_CODE_TO_REGION_CODE:
            break
    else:
        return None  # phonenumbers retries without the "+": the general way
    plan = _calling_plan(code)
    return None if plan is None else _national(plan, body[size:])


def _quick_parse(body: str, region: str) -> tuple[_Plan, str] | None:
    """phonenumbers.parse(body, region) for digits without an international prefix."""
    plan = _region_plan(region)
    if plan is None or (plan.idd is not None and plan.idd.match(body)):
        return None
    if body.startswith(str(plan.country_code)):
        return None  # maybe the country code without "+": the general way
    return _national(plan, body)


def _national(plan: _Plan, number: str) -> tuple[_Plan, str] | None:
    """The national significant number, the national prefix (trunk 0) stripped
    as phonenumbers strips it: only when what remains still looks like a
    number of the plan, and is long enough for one."""
    if len(number) < _MIN_NSN:
        return None
    stripped = _strip_national_prefix(plan, number)
    if stripped is None:
        return None
    if stripped != number and _length(plan, stripped) not in (
            ValidationResult.TOO_SHORT, ValidationResult.IS_POSSIBLE_LOCAL_ONLY,
            ValidationResult.INVALID_LENGTH):
        number = stripped
    if not _MIN_NSN <= len(number) <= _MAX_NSN:
        return None
    return plan, number


def _strip_national_prefix(plan: _Plan, number: str) -> str | None:
    prefix = plan.national_prefix
    found = prefix.match(number) if prefix is not None else None
    if prefix is None or found is None:
        return number
    groups = found.groups()
    if plan.transform and not groups:
        return None  # phonenumbers would fail on this metadata: the general way
    if not plan.transform or groups[-1] is None:
        rest = number[found.end():]
    else:
        rest = prefix.sub(plan.transform, number, count=1)
    general = plan.general
    if general is not None and general.fullmatch(number) and not general.fullmatch(rest):
        return number
    return rest


def _length(plan: _Plan, nsn: str) -> int:
    """phonenumbers' length test (a ValidationResult) against the plan's general description."""
    size = len(nsn)
    if size in plan.local_lengths:
        return ValidationResult.IS_POSSIBLE_LOCAL_ONLY
    shortest = plan.lengths[0]
    if size == shortest:
        return ValidationResult.IS_POSSIBLE
    if size < shortest:
        return ValidationResult.TOO_SHORT
    if size > plan.lengths[-1]:
        return ValidationResult.TOO_LONG
    return (ValidationResult.IS_POSSIBLE if size in plan.lengths[1:]
            else ValidationResult.INVALID_LENGTH)


def _quick_validity(plan: _Plan, nsn: str) -> str | None:
    """`_validity_problem` for a number of the plan; None: ask phonenumbers."""
    length = _length(plan, nsn)
    if length in _LENGTH_REASONS:
        return f"{_LENGTH_REASONS[length]} for {plan.where}"
    types = plan.types_by_length
    if types is None:
        return None
    # The length test above passed: the general description's lengths allow it.
    if plan.general is not None and plan.general.fullmatch(nsn):
        pattern = types.get(len(nsn))
        if pattern is not None and pattern.fullmatch(nsn):
            return ""
    return f"not a valid number for {plan.where}"


@functools.cache  # one entry per region asked for: about 250 at most
def _region_plan(region: str) -> _Plan | None:
    metadata = PhoneMetadata.metadata_for_region(region, None)
    if metadata is None:
        return None
    # The plan of the region's calling code must be this same metadata, or
    # reasons would name another region.
    plan = _calling_plan(metadata.country_code)
    return plan if plan is not None and plan.where == f"region {region}" else None


@functools.cache  # one entry per calling code seen: about 250 at most
def _calling_plan(code: int) -> _Plan | None:
    region = phonenumbers.region_code_for_country_code(code)
    metadata = PhoneMetadata.metadata_for_region_or_calling_code(code, region)
    if metadata is None:
        return None
    general = metadata.general_desc
    if general is None or not general.possible_length:
        return None
    where = f"region {region}" if region.isalpha() else f"country calling code +{code}"
    return _Plan(
        country_code=code, where=where, idd=_compiled(metadata.international_prefix),
        national_prefix=_compiled(metadata.national_prefix_for_parsing),
        transform=metadata.national_prefix_transform_rule or "",
        general=_compiled(general.national_number_pattern),
        lengths=tuple(general.possible_length),
        local_lengths=tuple(general.possible_length_local_only or ()),
        types_by_length=_types_by_length(code, region, metadata))


def _types_by_length(code: int, region: str, metadata: PhoneMetadata
                     ) -> dict[int, re.Pattern[str] | None] | None:
    """The types is_valid_number tries after the general description (mobile
    only when its pattern differs from the fixed line's), joined per length:
    a full match of "(?:a)|(?:b)" is a full match of a or of b (no metadata
    pattern has a back-reference or an inline flag)."""
    if len(COUNTRY_CODE_TO_REGION_CODE[code]) != 1:
        return None  # the region depends on the number's leading digits
    if region != phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY and (
            phonenumbers.country_code_for_valid_region(region) != code):
        return None
    descs = [metadata.premium_rate, metadata.toll_free, metadata.shared_cost, metadata.voip,
             metadata.personal_number, metadata.pager, metadata.uan, metadata.voicemail,
             metadata.fixed_line]
    if not metadata.same_mobile_and_fixed_line_pattern:
        descs.append(metadata.mobile)
    types = [(d.national_number_pattern, d.possible_length) for d in descs
             if d is not None and d.national_number_pattern]
    joined: dict[tuple[str, ...], re.Pattern[str]] = {}
    by_length: dict[int, re.Pattern[str] | None] = {}
    for length in range(_MIN_NSN, _MAX_NSN + 1):
        patterns = tuple(pattern for pattern, lengths in types
                         if not lengths or length in lengths)
        if patterns and patterns not in joined:
            joined[patterns] = re.compile("|".join(f"(?:{p})" for p in patterns))
        by_length[length] = joined[patterns] if patterns else None
    return by_length


def _compiled(pattern: str | None) -> re.Pattern[str] | None:
    return re.compile(pattern) if pattern else None
