"""Split SMS text into the parts a handset will reassemble (3GPP TS 23.038, 23.040).

A part carries 140 octets of user data. GSM-7 text packs 160 septets into
them, or 153 once a concatenation header (UDH) takes its 6 octets; UCS-2
carries 70 UTF-16 code units, or 67 with the header. The GSM-7 alphabet is
taken from the `gsm0338` codec rather than copied, because the tables other
libraries ship stray from the spec (python-gsmmodem has a backtick where the
spec has a section sign).
"""

from __future__ import annotations

import codecs
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import gsm0338  # noqa: F401  -- importing it registers the "gsm03.38" codec

Encoding = Literal["gsm7", "ucs2"]

GSM7_SINGLE_SEPTETS = 160
GSM7_PART_SEPTETS = 153
UCS2_SINGLE_UNITS = 70
UCS2_PART_UNITS = 67

_ESC = 0x1B


@dataclass(frozen=True, slots=True)
class Segmented:
    """Text cut into parts; gsm7 parts are unpacked septets, ucs2 parts UTF-16-BE."""

    encoding: Encoding
    parts: tuple[bytes, ...]

    @property
    def count(self) -> int:
        return len(self.parts)


def _septet_table() -> dict[int, bytes]:
    """Code point -> septets, read back out of the gsm0338 codec."""
    table: dict[int, bytes] = {}
    for code in range(128):
        # A bare ESC is the extension-table switch, not a character: sending
        # U+001B as 0x1B would swallow the character after it on the handset.
        if code != _ESC:
            table[ord(bytes([code]).decode("gsm03.38"))] = bytes([code])
    for code in range(128):
        try:
            char = bytes([_ESC, code]).decode("gsm03.38")
        except UnicodeDecodeError:
            continue
        table.setdefault(ord(char), bytes([_ESC, code]))
    return table


_SEPTETS = _septet_table()
_ASCII_BASIC = bytes(c for c, s in _SEPTETS.items() if c < 128 and len(s) == 1)
_ASCII_EXTENDED = bytes(c for c, s in _SEPTETS.items() if c < 128 and len(s) == 2)


def _encode_gsm7(text: str) -> bytes:
    """Unpacked septets; raises UnicodeEncodeError for text outside GSM-7.

    Same output as `text.encode("gsm03.38")` minus a bare ESC, but the codec
    grows a bytes object one character at a time, far too slow per message.
    """
    return codecs.charmap_encode(text, "strict", _SEPTETS)[0]


def _ascii_septets(text: str) -> int:
    """Septets for ASCII text, or -1 when some character forces UCS-2."""
    data = text.encode("ascii")
    rest = data.translate(None, _ASCII_BASIC)
    if not rest:
        return len(data)
    if rest.translate(None, _ASCII_EXTENDED):
        return -1
    return len(data) + len(rest)


def _septet_count(text: str) -> int:
    """Septets for any text, or -1 when it needs UCS-2."""
    try:
        return len(_encode_gsm7(text))
    except UnicodeEncodeError:
        return -1


def is_gsm7(text: str) -> bool:
    """True when every character is in the GSM-7 basic or extension table."""
    if text.isascii():
        return _ascii_septets(text) >= 0
    try:
        _encode_gsm7(text)
    except UnicodeEncodeError:
        return False
    return True


def _cut(data: bytes, size: int, unit: int, is_lead: Callable[[int], bool]) -> tuple[bytes, ...]:
    """Greedy parts of at most `size` bytes that never end on a lead byte.

    `data[end - unit]` is the first byte of the last unit in the part: an ESC
    (GSM-7) or a high surrogate's high byte (UTF-16-BE). Either one belongs
    with the unit after it, so it moves to the next part.
    """
    parts: list[bytes] = []
    start = 0
    while len(data) - start > size:
        end = start + size
        if is_lead(data[end - unit]):
            end -= unit
        parts.append(data[start:end])
        start = end
    parts.append(data[start:])
    return tuple(parts)


def _is_escape(byte: int) -> bool:
    return byte == _ESC


def _is_high_surrogate(byte: int) -> bool:
    return 0xD8 <= byte <= 0xDB


def _split_gsm7(septets: bytes) -> tuple[bytes, ...]:
    if len(septets) <= GSM7_SINGLE_SEPTETS:
        return (septets,)
    return _cut(septets, GSM7_PART_SEPTETS, 1, _is_escape)


def _split_ucs2(data: bytes) -> tuple[bytes, ...]:
    if len(data) <= 2 * UCS2_SINGLE_UNITS:
        return (data,)
    return _cut(data, 2 * UCS2_PART_UNITS, 2, _is_high_surrogate)


def _encode_ucs2(text: str) -> bytes:
    # JSON allows a lone surrogate ("\ud800"), which no handset can show.
    # It goes out as "?" (one unit, like the counting assumes) rather than
    # raising on the intake hot path.
    return text.encode("utf-16-be", "replace")


def count_segments(text: str) -> tuple[Encoding, int]:
    """(encoding, parts) without building the parts.

    Only text whose escapes or surrogate pairs could land on a part boundary
    needs the real cut; everything else is a division.
    """
    septets = _ascii_septets(text) if text.isascii() else _septet_count(text)
    if septets >= 0:
        if septets <= GSM7_SINGLE_SEPTETS:
            return "gsm7", 1
        if septets == len(text):
            return "gsm7", -(-septets // GSM7_PART_SEPTETS)
        return "gsm7", len(_split_gsm7(_encode_gsm7(text)))
    data = _encode_ucs2(text)
    units = len(data) // 2
    if units <= UCS2_SINGLE_UNITS:
        return "ucs2", 1
    if units == len(text):
        return "ucs2", -(-units // UCS2_PART_UNITS)
    return "ucs2", len(_split_ucs2(data))


def split(text: str) -> Segmented:
    """Cut `text` into parts; empty text is one empty part."""
    try:
        septets = _encode_gsm7(text)
    except UnicodeEncodeError:
        return Segmented("ucs2", _split_ucs2(_encode_ucs2(text)))
    return Segmented("gsm7", _split_gsm7(septets))
