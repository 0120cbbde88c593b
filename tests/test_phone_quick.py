"""The quick path of number normalisation answers exactly what phonenumbers answers.

`phone._quick` handles plain input ("+" and ASCII digits, national digits)
with compiled metadata; `phone._checked` is the general way through
phonenumbers.parse and is_valid_number. For every input the quick path
takes, both must give the same E.164 or the same reason, in every region.
"""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from phonenumbers import PhoneNumberType

from gateway import phone

REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)
CODES = sorted(phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_TYPES = (PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE, PhoneNumberType.TOLL_FREE,
          PhoneNumberType.PREMIUM_RATE, PhoneNumberType.VOIP, PhoneNumberType.UAN,
          PhoneNumberType.PAGER, PhoneNumberType.PERSONAL_NUMBER,
          PhoneNumberType.SHARED_COST, PhoneNumberType.VOICEMAIL)


def _examples() -> list[tuple[str, int | None, str]]:
    """(region or "001", calling code, national significant number) of every example."""
    found = []
    for region in REGIONS:
        for kind in _TYPES:
            number = phonenumbers.example_number_for_type(region, kind)
            if number is not None:
                found.append((region, number.country_code,
                              phonenumbers.national_significant_number(number)))
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        number = phonenumbers.example_number_for_non_geo_entity(code)
        if number is not None:
            found.append(("001", code, phonenumbers.national_significant_number(number)))
    return found


EXAMPLES = _examples()


def _prefixes(region: str) -> list[str]:
    """What may stand before a national number: nothing, "+", trunk and IDD prefixes."""
    metadata = phonenumbers.PhoneMetadata.metadata_for_region(region)
    assert metadata is not None
    national = metadata.national_prefix or ""
    return ["", "+", "0", "00", "011", "8", "1", "15", "+0", national, national + "0",
            str(metadata.country_code), "+" + str(metadata.country_code)]


def _same(digits: str, region: str) -> None:
    quick = phone._quick(digits, region)
    if quick is not None:
        assert quick == phone._checked(digits, region), (digits, region)


@st.composite
def plain_inputs(draw: st.DrawFn) -> tuple[str, str]:
    """(digits, region): an example number, perhaps with a digit changed, added
    or dropped, or random digits, behind one of the prefixes people type."""
    region = draw(st.sampled_from(REGIONS))
    if draw(st.booleans()):
        _, _, nsn = draw(st.sampled_from(EXAMPLES))
        chars = list(nsn)
        for _ in range(draw(st.integers(0, 2))):
            at = draw(st.integers(0, len(chars)))
            digit = draw(st.sampled_from("0123456789"))
            edit = draw(st.sampled_from(["change", "insert", "delete"]))
            if edit == "insert" or not chars:
                chars.insert(at, digit)
            elif edit == "change":
                chars[min(at, len(chars) - 1)] = digit
            else:
                del chars[min(at, len(chars) - 1)]
        body = "".join(chars)
    else:
        body = draw(st.text(alphabet="0123456789", min_size=1, max_size=19))
    prefix = draw(st.one_of(st.sampled_from(_prefixes(region)),
                            st.sampled_from(CODES).map(lambda c: f"+{c}")))
    return prefix + body, region


@settings(max_examples=3000, deadline=None)
@given(plain_inputs())
def test_quick_path_gives_what_phonenumbers_gives(case: tuple[str, str]) -> None:
    digits, region = case
    if digits and not phone._lexical_problem(digits):
        _same(digits, region)


@settings(max_examples=500, deadline=None)
@given(st.text(alphabet="0123456789+-() \u0660\u0661\uff11", max_size=22),
       st.sampled_from(REGIONS))
def test_normalize_answers_as_before_for_any_spelling(raw: str, region: str) -> None:
    """The whole classification, quick path or not, equals the general way's."""
    digits = "".join(raw.split()).translate(phone._SEPARATORS)
    problem = phone._lexical_problem(digits)
    expected = phone._Rejected(problem) if problem else phone._checked(digits, region)
    assert phone._classify.__wrapped__(raw, region) == expected


@pytest.mark.parametrize("region", REGIONS)
def test_the_regions_examples_in_every_spelling(region: str) -> None:
    code = phonenumbers.country_code_for_region(region)
    for _, _, nsn in [e for e in EXAMPLES if e[1] == code]:
        for prefix in _prefixes(region):
            _same(prefix + nsn, region)


def test_every_example_in_international_form() -> None:
    for _, code, nsn in EXAMPLES:
        for region in ("UY", "US", "GB"):
            _same(f"+{code}{nsn}", region)


@pytest.mark.parametrize(("digits", "region"), [
    ("098344484", "UY"), ("+59898344484", "UY"), ("+59898344484", "AR"),
    ("612345678", "ES"), ("+34612345678", "UY"), ("09876543210", "IN"),
    ("1234567", "UY"), ("+5981234", "UY"), ("0983444841234", "UY"),
])
def test_plain_numbers_take_the_quick_path(digits: str, region: str) -> None:
    # Not vacuous: the shapes of a bulk file are answered without phonenumbers.parse.
    assert phone._quick(digits, region) is not None
    _same(digits, region)
