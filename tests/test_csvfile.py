"""CSV imports: spreadsheet quirks, resumes, and no input bytes that can break the reader."""

from __future__ import annotations

import io
from itertools import islice

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spool.csvfile import (
    MAX_LINE_BYTES,
    BlacklistRow,
    CsvRow,
    CsvRowError,
    read_blacklist_rows,
    read_message_rows,
)


class Trickle(io.RawIOBase):
    """A stream that hands out at most `size` bytes per read, like a slow pipe."""

    def __init__(self, data: bytes, size: int) -> None:
        self._data = memoryview(data)
        self._size = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = min(self._size, len(buffer), len(self._data))
        buffer[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


class Endless(io.RawIOBase):
    """The same row forever: only a streaming reader can return from it."""

    row = b"promo;098344484;Hola;1\n"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        n = len(buffer) - len(buffer) % len(self.row)
        buffer[:n] = self.row * (n // len(self.row))
        return n


def messages(data: bytes, **kwargs: int) -> list[CsvRow | CsvRowError]:
    return list(read_message_rows(io.BytesIO(data), **kwargs))


def blacklist(data: bytes) -> list[BlacklistRow | CsvRowError]:
    return list(read_blacklist_rows(io.BytesIO(data)))


def reasons(results: list[CsvRow | CsvRowError]) -> dict[int, str]:
    return {r.line: r.reason for r in results if isinstance(r, CsvRowError)}


# -- message files --------------------------------------------------------


def test_semicolon_file_with_header() -> None:
    data = (
        b"campaign;destination;message;priority\n"
        b"promo;098344484;Hola, Juan: tu c\xc3\xb3digo es 1234;5\n"
        b"promo;+598 98 344 485;Sin prioridad;\n"
        b"avisos;098344486;Tres columnas\n"
    )
    assert messages(data) == [
        CsvRow(2, "promo", "098344484", "Hola, Juan: tu código es 1234", 5),
        CsvRow(3, "promo", "+598 98 344 485", "Sin prioridad", None),
        CsvRow(4, "avisos", "098344486", "Tres columnas", None),
    ]


@pytest.mark.parametrize(
    "header",
    [
        b"campign;destiny;menssage;priority",
        b" Campign ; DESTINY ; Menssage ; Priority ",
        b"campaign;destination;message",
        b"CAMPAIGN,DESTINATION,MESSAGE,PRIORITY",
    ],
)
def test_header_spellings_are_skipped(header: bytes) -> None:
    delimiter = b"," if b"," in header else b";"
    row = delimiter.join([b"promo", b"098344484", b"hola", b"1"])
    assert messages(header + b"\r\n" + row + b"\r\n") == [
        CsvRow(2, "promo", "098344484", "hola", 1)
    ]


def test_header_later_in_the_file_is_an_error() -> None:
    data = b"promo;098344484;hola\ncampaign;destination;message;priority\n"
    assert reasons(messages(data)) == {2: "priority must be an integer, got 'priority'"}


def test_comma_file_with_quoted_fields_spanning_lines() -> None:
    data = (
        b"promo,098344484,\"Hola, Juan; \"\"VIP\"\"\",2\r\n"
        b"promo,098344485,\"Primera linea\r\nsegunda, linea\r\ntercera\",3\r\n"
        b"promo,098344486,Fin\r\n"
    )
    assert messages(data) == [
        CsvRow(1, "promo", "098344484", 'Hola, Juan; "VIP"', 2),
        CsvRow(2, "promo", "098344485", "Primera linea\r\nsegunda, linea\r\ntercera", 3),
        CsvRow(5, "promo", "098344486", "Fin", None),
    ]


def test_commas_in_a_semicolon_file() -> None:
    data = b"promo;098344484;Hola, a, b, c, d\npromo;098344485;x,y\n"
    assert [r.message for r in messages(data) if isinstance(r, CsvRow)] == [
        "Hola, a, b, c, d",
        "x,y",
    ]


def test_semicolons_in_a_comma_file() -> None:
    data = b"promo,098344484,Hola; que tal\npromo,098344485,a;b;c\n"
    assert [r.message for r in messages(data) if isinstance(r, CsvRow)] == [
        "Hola; que tal",
        "a;b;c",
    ]


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_line_endings_and_bom(newline: bytes, bom: bytes) -> None:
    lines = [b"campaign;destination;message", b"promo;098344484;uno", b"", b"promo;098344485;dos"]
    data = bom + newline.join(lines) + newline
    assert messages(data) == [
        CsvRow(2, "promo", "098344484", "uno", None),
        CsvRow(4, "promo", "098344485", "dos", None),
    ]


def test_bom_only_and_empty_files() -> None:
    assert messages(b"") == []
    assert messages(b"\xef\xbb\xbf") == []
    assert messages(b"\n\r\n\n") == []


def test_blank_and_spreadsheet_empty_rows_are_skipped() -> None:
    data = b"promo;098344484;uno\n\n;;;\n  \n ; ; \npromo;098344485;dos"
    assert [r.line for r in messages(data)] == [1, 6]


def test_bad_rows_become_errors_and_the_rest_goes_on() -> None:
    data = (
        b"promo;098344484;ok;1\n"  # 1
        b"promo;;sin destino\n"  # 2
        b"promo;098344485;   \n"  # 3
        b"promo;098344486;ok;alta\n"  # 4
        b"promo;098344487;ok;1.5\n"  # 5
        b"promo;098344488;ok;1_0\n"  # 6
        b"promo;098344489\n"  # 7
        b"promo;098344490;a;1;extra\n"  # 8
        b"promo;098344491;caf\xe9;1\n"  # 9: Latin-1, not UTF-8
        b"p\x00r\x00o\x00;098344492;x\n"  # 10
        b"promo;098344493;ok;-2\n"  # 11
    )
    results = messages(data)
    assert reasons(results) == {
        2: "empty destination",
        3: "empty message",
        4: "priority must be an integer, got 'alta'",
        5: "priority must be an integer, got '1.5'",
        6: "priority must be an integer, got '1_0'",
        7: "expected 3 or 4 columns (campaign;destination;message;priority), got 2",
        8: "expected 3 or 4 columns (campaign;destination;message;priority), got 5",
        9: "not valid UTF-8",
        10: "contains NUL bytes (is the file UTF-16?)",
    }
    assert [r.priority for r in results if isinstance(r, CsvRow)] == [1, -2]
    latin1 = next(r for r in results if r.line == 9)
    assert isinstance(latin1, CsvRowError)
    assert latin1.raw == "promo;098344491;caf\\xe9;1\n"


def test_bad_utf8_inside_a_multiline_record_fails_that_record_only() -> None:
    data = b'promo;098344484;"uno\n\xff dos";1\npromo;098344485;tres\n'
    results = messages(data)
    assert reasons(results) == {1: "not valid UTF-8"}
    assert results[1] == CsvRow(3, "promo", "098344485", "tres", None)


def test_over_long_line_is_reported_and_skipped() -> None:
    data = b"promo;098344484;" + b"x" * (MAX_LINE_BYTES + 200_000) + b"\r\npromo;098344485;ok\r\n"
    results = list(read_message_rows(Trickle(data, 50_000)))  # type: ignore[arg-type]
    assert reasons(results) == {1: f"line longer than {MAX_LINE_BYTES} bytes"}
    assert results[1] == CsvRow(2, "promo", "098344485", "ok", None)


def test_huge_quoted_field_is_an_error_not_the_rest_of_the_file() -> None:
    data = b'promo;098344484;"' + b"x" * 200_000 + b"\npromo;098344485;ok\n"
    results = messages(data)
    assert results[0].line == 1 and isinstance(results[0], CsvRowError)
    assert "field larger than field limit" in results[0].reason
    assert results[1] == CsvRow(2, "promo", "098344485", "ok", None)


def test_start_line_resumes_after_a_restart() -> None:
    data = (
        b"campaign;destination;message\n"  # 1
        b"promo;098344484;uno\n"  # 2
        b'promo;098344485;"dos\n'  # 3
        b'sigue"\n'  # 4
        b"promo;098344486;tres\n"  # 5
        b"promo;;cuatro\n"  # 6
    )
    assert [r.line for r in messages(data)] == [2, 3, 5, 6]
    assert [r.line for r in messages(data, start_line=2)] == [3, 5, 6]
    # A record that starts before start_line is skipped even if it ends after.
    assert [r.line for r in messages(data, start_line=3)] == [5, 6]
    assert [r.line for r in messages(data, start_line=4)] == [5, 6]
    assert messages(data, start_line=6) == []


def test_reader_streams() -> None:
    rows = list(islice(read_message_rows(Endless()), 3))  # type: ignore[arg-type]
    assert [r.line for r in rows] == [1, 2, 3]


# -- blacklist files --------------------------------------------------------


def test_blacklist_formats() -> None:
    assert blacklist(b"phone;campaign\n098344484;\n098344485;promo\n 098344486 \n") == [
        BlacklistRow(2, "098344484", None),
        BlacklistRow(3, "098344485", "promo"),
        BlacklistRow(4, "098344486", None),
    ]
    assert blacklist(b"Destination,Campaign\r\n+59898344484,promo\r\n") == [
        BlacklistRow(2, "+59898344484", "promo")
    ]
    assert blacklist(b"098344484\n098 344 485\n") == [
        BlacklistRow(1, "098344484", None),
        BlacklistRow(2, "098 344 485", None),
    ]
    assert blacklist(b"098344484,  \n") == [BlacklistRow(1, "098344484", None)]


def test_blacklist_errors() -> None:
    results = blacklist(b"098344484;a;b\n;promo\n098344485;promo\n")
    assert reasons(results) == {  # type: ignore[arg-type]
        1: "expected 1 or 2 columns (phone;campaign), got 3",
        2: "empty phone",
    }
    assert results[-1] == BlacklistRow(3, "098344485", "promo")


# -- error reports ----------------------------------------------------------


# -- properties ---------------------------------------------------------------

field = st.sampled_from(
    ["promo", "098344484", "+598 98 344 485", "Hola, qué tal", "", " ", "7", "x;y", "\xff", "é"]
)
structured = st.builds(
    lambda rows, delimiter, newline, bom: bom
    + b"".join(delimiter.join(f.encode("utf-8", "surrogateescape") for f in row) + newline
               for row in rows),
    st.lists(st.lists(field, min_size=1, max_size=5), max_size=20),
    st.sampled_from([b";", b","]),
    st.sampled_from([b"\n", b"\r\n", b"\r"]),
    st.sampled_from([b"", b"\xef\xbb\xbf"]),
)
noise = st.binary(max_size=3000)


def lines_with(data: bytes, strip: str) -> set[int]:
    """Numbers of the lines holding something besides whitespace and `strip`."""
    found = set()
    for number, line in enumerate(data.removeprefix(b"\xef\xbb\xbf").splitlines(), 1):
        text = line.decode(errors="replace")
        if any(not char.isspace() and char not in strip for char in text):
            found.add(number)
    return found


@given(st.one_of(noise, structured))
def test_any_bytes_never_raise_and_lines_increase(data: bytes) -> None:
    results = messages(data)
    lines = [r.line for r in results]
    assert lines == sorted(set(lines))
    assert all(1 <= n <= len(data.splitlines()) for n in lines)
    assert all(isinstance(r, CsvRow | CsvRowError) for r in results)
    blacklist(data)


@given(st.one_of(noise, structured).map(lambda b: b.replace(b'"', b"")))
def test_without_quotes_every_line_is_accounted_for(data: bytes) -> None:
    for read in (read_message_rows, read_blacklist_rows):
        results = list(read(io.BytesIO(data)))  # type: ignore[operator]
        lines = {r.line for r in results}
        # Neither strategy can produce a header row, so nothing is skipped;
        # a lone "," in a ";" file is a value, hence the two bounds.
        assert lines_with(data, ";,") <= lines <= lines_with(data, "")


@settings(max_examples=50)
@given(structured, st.integers(1, 9))
def test_chunking_does_not_change_the_result(data: bytes, size: int) -> None:
    whole = messages(data)
    assert list(read_message_rows(Trickle(data, size))) == whole  # type: ignore[arg-type]


@given(structured, st.integers(0, 25))
def test_start_line_only_filters(data: bytes, start: int) -> None:
    assert messages(data, start_line=start) == [r for r in messages(data) if r.line > start]

