"""NAME.errors.csv: every row of an import that will never be sent.

`line;state;reason;raw`: rows rejected outright (`REJECTED`: not a message
at all, so not stored), and rows stored but never to be sent (`BLOCKED`:
the destination is on the do-not-contact list; `INVALID`: a malformed
number, too many segments), so whoever dropped the file learns them
without asking the API. Rows are written in line order, one batch at a
time, just before the batch's progress is committed; on resume after a
crash, lines past the last commit are dropped and listed again when they
are read again: each row is listed once.

The file is created fresh without following links (`spool.safefiles`), and
no cell can start a spreadsheet formula (`spool.csvsafe`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from spool import safefiles
from spool.csvsafe import SafeWriter

HEADER = ("line", "state", "reason", "raw")
REJECTED = "REJECTED"


class ErrorReport:
    def __init__(self, path: Path, resume_after: int) -> None:
        self.path = path
        kept = _kept(path, resume_after) if resume_after else []
        self._fh = safefiles.create_text(path)
        self._out = SafeWriter(self._fh, delimiter=";")
        # Kept rows went through SafeWriter when first written.
        csv.writer(self._fh, delimiter=";").writerows([HEADER, *kept])
        self.count = len(kept)
        self._pending: list[tuple[int, str, str, str]] = []

    def add(self, line: int, state: str, reason: str, raw: str) -> None:
        """List a row; it reaches the file at the next `flush`."""
        self._pending.append((line, state, reason, raw.rstrip("\r\n")))

    def flush(self) -> None:
        """Write what was listed, in line order, to disk: before the progress
        that covers it is committed."""
        self._pending.sort(key=lambda row: row[0])
        self._out.writerows(self._pending)
        self.count += len(self._pending)
        self._pending.clear()
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()
        if self.count == 0:
            self.path.unlink(missing_ok=True)


def _kept(path: Path, resume_after: int) -> list[list[str]]:
    text = safefiles.read_text(path)
    if text is None:
        return []
    kept = []
    for row in csv.reader(io.StringIO(text, newline=""), delimiter=";"):
        if row and row[0].isdigit() and int(row[0]) <= resume_after:
            if len(row) == 3:  # written before the state column existed
                row.insert(1, REJECTED)
            kept.append(row)
    return kept
