"""Destination normalisation with real numbers from the regions we send to."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import phone
from gateway.phone import InvalidNumber, normalize


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        # Uruguay: mobile in national, international and IDD form; a landline
        ("098344484", "UY", "+59898344484"),
        ("098 344 484", "UY", "+59898344484"),
        ("098-344-484", "UY", "+59898344484"),
        ("(098) 344.484", "UY", "+59898344484"),
        ("+598 98 344 484", "UY", "+59898344484"),
        ("0059898344484", "UY", "+59898344484"),
        ("2400 1234", "UY", "+59824001234"),
        # Argentina: the national "0 11 15" mobile form becomes +54 9 11
        ("011 15-2345-6789", "AR", "+5491123456789"),
        ("+54 9 11 2345-6789", "AR", "+5491123456789"),
        ("011 4321-1234", "AR", "+541143211234"),
        # United States, including its 011 international prefix
        ("(201) 555-0123", "US", "+12015550123"),
        ("+1 650-253-0000", "US", "+16502530000"),
        ("011 598 98 344 484", "US", "+59898344484"),
        # Spain: mobile and Madrid landline, 00 prefix
        ("612 34 56 78", "ES", "+34612345678"),
        ("0034 612 345 678", "ES", "+34612345678"),
        ("91 234 5678", "ES", "+34912345678"),
        # India: with and without the trunk 0
        ("98765 43210", "IN", "+919876543210"),
        ("098765 43210", "IN", "+919876543210"),
        # A +country number ignores the default region
        ("+91 98765 43210", "UY", "+919876543210"),
        ("+598 98 344 484", "US", "+59898344484"),
        # Region is case-insensitive; tabs and NBSP are whitespace too
        ("098\t344\u00a0484", "uy", "+59898344484"),
    ],
)
def test_valid_numbers_become_e164(raw: str, region: str, e164: str) -> None:
    assert normalize(raw, region) == e164


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", "UY", "empty number"),
        ("  - ( ) . ", "UY", "empty number"),
        ("+", "UY", "empty number"),
        ("09834448a", "UY", "contains letters"),
        ("1-800-FLOWERS", "US", "contains letters"),
        ("+598 98 344 484 ext 12", "UY", "contains letters"),
        ("098#344484", "UY", "unexpected character '#'"),
        ("+598+98344484", "UY", "unexpected character '+'"),
        ("12", "UY", "too short for region UY"),
        ("0983444841234567", "UY", "too long for region UY"),
        ("0912345678", "ES", "too long for region ES"),
        ("1" * 300, "UY", "too long"),
        ("1234567", "UY", "not a valid number for region UY"),
        ("+5981234", "US", "not a valid number for region UY"),
        ("15 2345-6789", "AR", "not a valid number for region AR"),
        ("4321 1234", "AR", "missing area code for region AR"),
        ("+999 1234567", "UY", "unknown country calling code"),
        ("00", "UY", "too short after the international prefix"),
    ],
)
def test_invalid_numbers_say_why(raw: str, region: str, reason: str) -> None:
    with pytest.raises(InvalidNumber) as info:
        normalize(raw, region)
    assert str(info.value) == reason


def test_invalid_number_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        normalize("abc", "UY")


def test_unknown_region_is_not_an_invalid_number() -> None:
    with pytest.raises(ValueError, match="unknown region 'XX'") as info:
        normalize("098344484", "XX")
    assert not isinstance(info.value, InvalidNumber)


def test_cache_is_bounded_and_remembers_rejections() -> None:
    assert phone._classify.cache_info().maxsize == 4096
    phone._classify.cache_clear()
    for _ in range(3):
        with pytest.raises(InvalidNumber):
            normalize("1234567", "UY")
        normalize("098344484", "UY")
    info = phone._classify.cache_info()
    assert (info.hits, info.misses) == (4, 2)


@given(st.from_regex(r"9[1-9][0-9]{6}", fullmatch=True))
def test_uruguayan_mobiles_in_every_spelling(subscriber: str) -> None:
    e164 = "+598" + subscriber
    spaced = f"0{subscriber[:2]} {subscriber[2:5]} {subscriber[5:]}"
    assert normalize("0" + subscriber, "UY") == e164
    assert normalize(spaced, "UY") == e164
    assert normalize("00598" + subscriber, "UY") == e164
    assert normalize(e164, "ES") == e164


@given(st.text(max_size=40), st.sampled_from(["UY", "AR", "US", "ES", "IN"]))
def test_any_text_gives_e164_or_invalid_number(raw: str, region: str) -> None:
    try:
        e164 = normalize(raw, region)
    except InvalidNumber as err:
        assert str(err)
    else:
        assert e164.startswith("+") and e164[1:].isdigit() and e164.isascii()
        assert normalize(e164, region) == e164
