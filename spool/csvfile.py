"""Streaming readers for spool-folder CSV imports: messages and blacklist (DNCR).

Every record comes back as a row or as a `CsvRowError` that names the line
it starts on, so an import can account for each one; no input bytes make a
reader raise. Files come from spreadsheets: `;` or `,` separated, UTF-8 with
or without a BOM, any line ending (including the lone CR of old Mac Excel),
with or without a header row.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import BinaryIO, TypeVar

# Lines longer than this (about; the check runs per read chunk) are reported
# and skipped instead of buffered: a missing newline must not eat the heap.
MAX_LINE_BYTES = 1 << 20
_CHUNK_BYTES = 1 << 16
_BOM = b"\xef\xbb\xbf"

MESSAGE_HEADERS = frozenset(
    {
        ("campaign", "destination", "message", "priority"),
        ("campaign", "destination", "message"),
        # The legacy system's export, misspellings and all.
        ("campign", "destiny", "menssage", "priority"),
        ("campign", "destiny", "menssage"),
    }
)
BLACKLIST_HEADERS = frozenset(
    {("phone", "campaign"), ("destination", "campaign"), ("phone",), ("destination",)}
)


@dataclass(frozen=True, slots=True)
class CsvRow:
    """A message row; `campaign` may be "" (the intake's default campaign)."""

    line: int
    campaign: str
    destination: str
    message: str
    priority: int | None


@dataclass(frozen=True, slots=True)
class BlacklistRow:
    line: int
    destination: str
    campaign: str | None  # None: the global list


@dataclass(frozen=True, slots=True)
class CsvRowError:
    """A record that cannot be imported; `raw` is its text as found."""

    line: int
    raw: str
    reason: str


Row = TypeVar("Row", CsvRow, BlacklistRow)
# A converter answers with the row, or with the reason it is not one.
Convert = Callable[[int, list[str]], Row | str]


@dataclass(frozen=True, slots=True)
class _Format:
    columns: tuple[int, ...]
    phone_column: int
    headers: frozenset[tuple[str, ...]]


_MESSAGES = _Format(columns=(3, 4), phone_column=1, headers=MESSAGE_HEADERS)
_BLACKLIST = _Format(columns=(1, 2), phone_column=0, headers=BLACKLIST_HEADERS)


def read_message_rows(stream: BinaryIO, *, start_line: int = 0) -> Iterator[CsvRow | CsvRowError]:
    """Rows of `campaign;destination;message[;priority]`.

    Records starting at or before `start_line` are still parsed (a quoted
    field may carry a record across lines, so there is no way to seek to a
    line) but not yielded: that is how an import resumes after a restart.
    """
    return _read(stream, _MESSAGES, _message_row, start_line)


def read_blacklist_rows(
    stream: BinaryIO, *, start_line: int = 0
) -> Iterator[BlacklistRow | CsvRowError]:
    """Rows of `phone[;campaign]`; `start_line` as in `read_message_rows`."""
    return _read(stream, _BLACKLIST, _blacklist_row, start_line)


def errors_path(path: Path) -> Path:
    """Where the error report for the import `path` goes: NAME.errors.csv."""
    return path.with_name(f"{path.stem}.errors.csv")


def _message_row(line: int, fields: list[str]) -> CsvRow | str:
    if len(fields) == 4:
        campaign, destination, message, priority_text = fields
    elif len(fields) == 3:
        (campaign, destination, message), priority_text = fields, ""
    else:
        return f"expected 3 or 4 columns (campaign;destination;message;priority), got {len(fields)}"
    destination = destination.strip()
    if not destination:
        return "empty destination"
    if not message.strip():
        return "empty message"
    priority_text = priority_text.strip()
    if not priority_text:
        return CsvRow(line, campaign.strip(), destination, message, None)
    # int() alone would also take "1_000" and non-ASCII digits.
    if not (priority_text.isascii() and priority_text.lstrip("+-").isdigit()):
        return f"priority must be an integer, got {priority_text!r}"
    return CsvRow(line, campaign.strip(), destination, message, int(priority_text))


def _blacklist_row(line: int, fields: list[str]) -> BlacklistRow | str:
    if len(fields) == 1:
        phone, campaign = fields[0], ""
    elif len(fields) == 2:
        phone, campaign = fields
    else:
        return f"expected 1 or 2 columns (phone;campaign), got {len(fields)}"
    phone = phone.strip()
    if not phone:
        return "empty phone"
    return BlacklistRow(line, phone, campaign.strip() or None)


# -- reading ------------------------------------------------------------------


def _read(
    stream: BinaryIO, fmt: _Format, convert: Convert[Row], start_line: int
) -> Iterator[Row | CsvRowError]:
    results = _converted(stream, fmt, convert)
    for fields, result in results:
        # Only the first record may be a header.
        if not _is_header(fields, fmt) and result.line > start_line:
            yield result
        break
    for _, result in results:
        if result.line > start_line:
            yield result


def _converted(
    stream: BinaryIO, fmt: _Format, convert: Convert[Row]
) -> Iterator[tuple[list[str], Row | CsvRowError]]:
    """Every record that is not blank, with the fields it was read from."""
    lines = _physical_lines(stream)
    head = _until_content(lines)
    delimiter = _detect_delimiter(head[-1].decode(errors="replace") if head else "", fmt)
    raw: list[str] = []
    flags: dict[int, str] = {}
    reader = csv.reader(_decoded(chain(head, lines), raw, flags), delimiter=delimiter)
    end = 0
    while (record := _next_record(reader)) is not None:
        fields, problem = record
        line, end = end + 1, reader.line_num
        if flags:
            problem = _take_flag(flags, line, end) or problem
        result = _result(line, fields, problem, raw, convert)
        raw.clear()
        if result is not None:
            yield fields, result


def _result(
    line: int, fields: list[str], problem: str, raw: list[str], convert: Convert[Row]
) -> Row | CsvRowError | None:
    """The record as a row or an error; None for a blank record."""
    if not problem:
        if not fields:
            return None
        converted = convert(line, fields)
        if not isinstance(converted, str):
            return converted
        if _blank(fields):
            return None
        problem = converted
    return CsvRowError(line, "".join(raw), problem)


def _next_record(reader: Iterator[list[str]]) -> tuple[list[str], str] | None:
    """(fields, "") or ([], why it is malformed); None at the end."""
    try:
        return next(reader), ""
    except StopIteration:
        return None
    except csv.Error as err:
        return [], f"malformed CSV: {err}"


def _physical_lines(stream: BinaryIO) -> Iterator[bytes]:
    """Lines ending in LF, CRLF or a lone CR, as a text editor counts them.

    An over-long line comes out as b"" (a real line is never empty) and the
    rest of it is dropped.
    """
    carry = b""
    skipping = False
    while chunk := stream.read(_CHUNK_BYTES):
        lines = (carry + chunk).splitlines(keepends=True)
        if skipping:
            first = lines[0]
            if not (first.endswith(b"\n") or (first.endswith(b"\r") and len(lines) > 1)):
                # Keep a trailing CR: with an LF in the next chunk it is one break.
                carry = b"\r" if first.endswith(b"\r") else b""
                continue
            skipping = False
            del lines[0]
            if not lines:
                carry = b""
                continue
        carry = b"" if lines[-1].endswith(b"\n") else lines.pop()
        yield from lines
        if len(carry) > MAX_LINE_BYTES:
            yield b""
            skipping, carry = True, (b"\r" if carry.endswith(b"\r") else b"")
    if carry and not skipping:
        yield carry


def _until_content(lines: Iterator[bytes]) -> list[bytes]:
    """Lines up to the first with content (BOM removed), to detect the delimiter."""
    head: list[bytes] = []
    for data in lines:
        if not head and data.startswith(_BOM):
            data = data.removeprefix(_BOM)
            if not data:
                break  # the whole file is a BOM; b"" would read as an over-long line
        head.append(data)
        if data.strip():
            break
    return head


def _decoded(lines: Iterable[bytes], raw: list[str], flags: dict[int, str]) -> Iterator[str]:
    """Text for csv.reader, remembering each line in `raw` and problems in `flags`."""
    number = 0
    for data in lines:
        number += 1
        try:
            text = data.decode()
        except UnicodeDecodeError:
            # Keep the bytes visible (\xff) in the error report.
            text = data.decode(errors="backslashreplace")
            flags[number] = "not valid UTF-8"
        else:
            if not data:
                flags[number] = f"line longer than {MAX_LINE_BYTES} bytes"
                raw.append("")
                yield "\n"
                continue
            if "\x00" in text:
                flags[number] = "contains NUL bytes (is the file UTF-16?)"
        raw.append(text)
        yield text


def _take_flag(flags: dict[int, str], first: int, last: int) -> str:
    """The first problem on lines first..last, forgetting them all."""
    found = [flags.pop(n) for n in range(first, last + 1) if n in flags]
    return found[0] if found else ""


def _blank(fields: list[str]) -> bool:
    # Spreadsheets export trailing empty rows as ";;;".
    return not "".join(fields).strip()


def _is_header(fields: list[str], fmt: _Format) -> bool:
    return tuple(f.strip().lower() for f in fields) in fmt.headers


def _detect_delimiter(line: str, fmt: _Format) -> str:
    """`;` or `,`, whichever splits the first line into the expected shape.

    Shape means the right number of columns and a phone-like value (or the
    header) where the destination goes, so a message with commas in a `;`
    file, or with a semicolon in a `,` file, does not fool it.
    """
    for delimiter in ";,":
        fields = _parse_line(line, delimiter)
        if len(fields) in fmt.columns and (
            _is_header(fields, fmt) or _phone_like(fields[fmt.phone_column])
        ):
            return delimiter
    return "," if "," in line and ";" not in line else ";"


def _parse_line(line: str, delimiter: str) -> list[str]:
    try:
        return next(csv.reader([line], delimiter=delimiter), [])
    except csv.Error:
        return []


def _phone_like(text: str) -> bool:
    text = text.strip()
    return any(c.isdigit() for c in text) and all(c.isdigit() or c in "+-(). " for c in text)
