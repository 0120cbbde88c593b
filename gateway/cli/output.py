"""Terminal rendering for the CLI: the import summary and a progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from gateway.importer import ImportSummary


def import_summary(s: ImportSummary, *, dry_run: bool, errors_path: Path | None) -> str:
    verb = "would import" if dry_run else "imported"
    lines = [f"{s.file}: {verb} {s.imported}, blocked {s.blocked}, invalid {s.invalid}, "
             f"rejected {s.rejected}",
             f"segments {s.segments}, estimated cost {s.estimated_cost:.2f}"]
    if s.resumed_from_line:
        lines.append(f"(resumed after line {s.resumed_from_line})")
    for e in s.errors[:10]:
        lines.append(f"  line {e.line}: {e.reason}")
    if s.rejected and errors_path is not None:
        lines.append(f"rejected rows: {errors_path}")
    return "\n".join(lines)


class ProgressBar:
    def __init__(self, total: int, *, enabled: bool, stream: TextIO = sys.stderr) -> None:
        self._total = max(total, 1)
        self._enabled = enabled
        self._stream = stream
        self._last = 0.0

    def update(self, position: int) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < 0.1:
            return
        self._last = now
        frac = min(position / self._total, 1.0)
        filled = int(frac * 30)
        self._stream.write(f"\r[{'#' * filled}{'.' * (30 - filled)}] {frac:6.1%}")
        self._stream.flush()

    def done(self) -> None:
        if self._enabled:
            self._stream.write(f"\r[{'#' * 30}] 100.0%\n")
            self._stream.flush()
