"""SMS segmentation against the 3GPP limits and an independent encoder (smspdudecoder)."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.sms.segments import Segmented, count_segments, is_gsm7, split


def _smspdudecoder_gsm() -> Any:
    try:
        return importlib.import_module("smspdudecoder.codecs").GSM
    except ImportError:  # smspdudecoder 2.2 imports bitstring.BitStream, gone in bitstring 5
        return None


GSM = _smspdudecoder_gsm()
needs_smspdudecoder = pytest.mark.skipif(GSM is None, reason="smspdudecoder does not import")

# 3GPP TS 23.038 default alphabet (ESC left out) and its extension table.
BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
EXTENSION = "^{}\\[~]|€\f"


def decode(segmented: Segmented) -> str:
    codec = "gsm03.38" if segmented.encoding == "gsm7" else "utf-16-be"
    return "".join(part.decode(codec) for part in segmented.parts)


def part_lengths(text: str) -> list[int]:
    return [len(part) for part in split(text).parts]


def pack_septets(septets: bytes) -> str:
    """Pack septets LSB-first into octets, as they travel in a PDU."""
    out = bytearray()
    bits = used = 0
    for septet in septets:
        bits |= septet << used
        used += 7
        while used >= 8:
            out.append(bits & 0xFF)
            bits >>= 8
            used -= 8
    if used:
        out.append(bits)
    return out.hex().upper()


# -- alphabet -------------------------------------------------------------


def test_extension_characters_count_two_septets() -> None:
    seg = split("€[]{}")
    assert seg.encoding == "gsm7"
    assert seg.parts == (b"\x1be\x1b<\x1b>\x1b(\x1b)",)
    assert len(seg.parts[0]) == 10


@pytest.mark.parametrize("char", list(EXTENSION))
def test_every_extension_character_is_an_escape_pair(char: str) -> None:
    (part,) = split(char).parts
    assert len(part) == 2 and part[0] == 0x1B


def test_alphabet_is_exactly_the_spec_table() -> None:
    bmp = (chr(c) for c in range(0x10000))
    assert {c for c in bmp if is_gsm7(c)} == set(BASIC + EXTENSION)
    assert [len(split(c).parts[0]) for c in BASIC] == [1] * len(BASIC)


@pytest.mark.parametrize(
    ("text", "pdu"),
    [  # user-data vectors from smspdudecoder's GSM codec doctests
        ("How are you?", "C8F71D14969741F977FD07"),
        ("2 € par mois", "32D0A60C8287E5A0F63B3D07"),
        ("hellohello", "E8329BFD4697D9EC37"),
    ],
)
def test_septets_pack_to_known_pdus(text: str, pdu: str) -> None:
    assert pack_septets(split(text).parts[0]) == pdu


def test_spanish_accents_split_the_table() -> None:
    # The basic table has é, ñ, Ñ, É, ¿ and ¡ but no á, í, ó, ú: one á turns
    # the whole message into UCS-2 and halves what fits.
    assert is_gsm7("¿Qué tal, Ñandú? ¡Señor!") is False  # ú
    assert is_gsm7("¿Qué, señor? ¡Él, Ñoño!") is True
    for char in "áíóúÁÍÓÚç":
        assert not is_gsm7(char), char
    for char in "éñÑÉ¿¡Ç":
        assert is_gsm7(char), char
    assert count_segments("é" * 160) == ("gsm7", 1)
    assert count_segments("á" * 71) == ("ucs2", 2)


def test_spec_deviations_of_other_tables() -> None:
    assert is_gsm7("§") and not is_gsm7("`")
    # U+001B would act as the escape switch on the handset; it is not text.
    assert not is_gsm7("\x1b")
    assert split("a\x1bb").encoding == "ucs2"


def test_hindi_is_ucs2() -> None:
    text = "नमस्ते, आपका कोड 4821 है"
    seg = split(text)
    assert seg.encoding == "ucs2"
    assert seg.parts == (text.encode("utf-16-be"),)
    assert count_segments("नमस्ते " * 12) == ("ucs2", 2)  # 84 units


def test_empty_text_is_one_empty_part() -> None:
    assert split("") == Segmented("gsm7", (b"",))
    assert split("").count == 1
    assert count_segments("") == ("gsm7", 1)


# -- GSM-7 boundaries -----------------------------------------------------


def test_gsm7_single_part_holds_160() -> None:
    assert part_lengths("x" * 160) == [160]
    assert count_segments("x" * 160) == ("gsm7", 1)


def test_gsm7_161_goes_multipart_at_153() -> None:
    assert part_lengths("x" * 161) == [153, 8]
    assert count_segments("x" * 161) == ("gsm7", 2)
    assert part_lengths("x" * 306) == [153, 153]
    assert part_lengths("x" * 307) == [153, 153, 1]


def test_extension_characters_fill_a_single_part() -> None:
    assert count_segments("€" * 80) == ("gsm7", 1)
    assert count_segments("€" * 80 + "x") == ("gsm7", 2)


def test_escape_pair_straddling_153_moves_whole() -> None:
    text = "a" * 152 + "€" + "b" * 10
    seg = split(text)
    assert [len(p) for p in seg.parts] == [152, 12]
    assert seg.parts[1].startswith(b"\x1be")
    assert count_segments(text) == ("gsm7", 2)


def test_escape_pair_ending_exactly_at_153_stays() -> None:
    text = "a" * 151 + "€" + "b" * 10
    assert part_lengths(text) == [153, 10]


def test_straddling_escape_can_add_a_part() -> None:
    # 306 septets would be 2 parts of 153, but the pair at 152-153 is pushed
    # out, so the last septet spills into a third part.
    text = "a" * 152 + "€" + "b" * 152
    assert sum(part_lengths(text)) == 306
    assert part_lengths(text) == [152, 153, 1]
    assert count_segments(text) == ("gsm7", 3)


# -- UCS-2 boundaries -----------------------------------------------------


def test_ucs2_single_part_holds_70() -> None:
    assert part_lengths("ç" * 70) == [140]
    assert count_segments("ç" * 70) == ("ucs2", 1)


def test_ucs2_71_goes_multipart_at_67() -> None:
    assert part_lengths("ç" * 71) == [134, 8]
    assert count_segments("ç" * 71) == ("ucs2", 2)


def test_emoji_take_two_units() -> None:
    assert count_segments("😀" * 35) == ("ucs2", 1)
    assert part_lengths("😀" * 36) == [132, 12]  # 33 + 3 emoji, no pair split


def test_surrogate_pair_straddling_67_moves_whole() -> None:
    text = "ç" * 66 + "😀" + "ç" * 10
    seg = split(text)
    assert [len(p) for p in seg.parts] == [132, 24]
    assert seg.parts[1][:4] == "😀".encode("utf-16-be")
    assert count_segments(text) == ("ucs2", 2)


def test_lone_surrogates_go_out_as_question_marks() -> None:
    # JSON can carry "\ud83d" alone; a split pair is two lone halves.
    assert split("a\ud800b") == Segmented("ucs2", ("a?b".encode("utf-16-be"),))
    text = "ç" * 66 + "\ud83d\ude00" + "ç" * 10
    assert part_lengths(text) == [134, 22]
    assert count_segments(text) == ("ucs2", 2)


@given(st.text(st.characters(codec=None, categories=["Cs", "Ll", "So"]), max_size=200))
def test_lone_surrogates_never_raise(text: str) -> None:
    seg = split(text)
    assert count_segments(text) == (seg.encoding, seg.count)


# -- properties -----------------------------------------------------------

gsm_alphabet = st.sampled_from(BASIC + EXTENSION)
gsm_text = st.text(gsm_alphabet, max_size=700)
# Mostly GSM with a sprinkle of accents, CJK and emoji, to hit boundaries.
mixed_text = st.text(
    st.one_of(gsm_alphabet, st.sampled_from("áç😀👍🏽中ह\u200b")), max_size=400
)
any_text = st.one_of(gsm_text, mixed_text, st.text(max_size=400))


@given(any_text)
def test_count_agrees_with_split(text: str) -> None:
    seg = split(text)
    assert count_segments(text) == (seg.encoding, seg.count)
    assert is_gsm7(text) == (seg.encoding == "gsm7")


@given(any_text)
def test_round_trip(text: str) -> None:
    assert decode(split(text)) == text


@given(any_text)
def test_parts_respect_limits_and_boundaries(text: str) -> None:
    seg = split(text)
    if seg.encoding == "gsm7":
        single, each = 160, 153
        boundary_ok = [not p.endswith(b"\x1b") for p in seg.parts]
    else:
        single, each = 140, 134
        boundary_ok = [not (len(p) >= 2 and 0xD8 <= p[-2] <= 0xDB) for p in seg.parts]
    assert all(boundary_ok)
    if seg.count == 1:
        assert len(seg.parts[0]) <= single
    else:
        assert all(0 < len(p) <= each for p in seg.parts)
        # Greedy: a part only gives up the one unit that would split a pair.
        step = 1 if seg.encoding == "gsm7" else 2
        assert all(len(p) >= each - step for p in seg.parts[:-1])


@given(gsm_text)
def test_septets_match_the_gsm0338_codec(text: str) -> None:
    assert b"".join(split(text).parts) == text.encode("gsm03.38")


@needs_smspdudecoder
@given(gsm_text)
def test_parts_pack_like_smspdudecoder(text: str) -> None:
    for part in split(text).parts:
        assert GSM.encode(part.decode("gsm03.38")) == pack_septets(part)


@needs_smspdudecoder
def test_alphabet_matches_smspdudecoder() -> None:
    basic = GSM.ALPHABET.replace("\x1b", "")
    extension = "".join(GSM.ALPHABET_EXT.values())
    assert is_gsm7(basic + extension)
    assert len(split(basic).parts[0]) == len(basic)
    assert len(split(extension).parts[0]) == 2 * len(extension)
