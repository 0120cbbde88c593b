"""Terminal rendering for the CLI: tables, the import summary, a progress bar."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TextIO

from gateway.importer import ImportSummary
from spool.base import CampaignCounts, State

_COLUMNS = [State.TO_PROCESS, State.SENDING, State.SENT, State.DELIVERED, State.FAILED,
            State.BLOCKED, State.INVALID, State.CANCELLED, State.UNCONFIRMED, State.NONE]


def status_table(counts: list[CampaignCounts], names: dict[int, str],
                 per_channel: dict[str, int]) -> str:
    head = ["campaign", *[s.name for s in _COLUMNS], "cost"]
    rows = [[names.get(c.campaign, str(c.campaign)),
             *[str(c.by_state.get(int(s), 0)) for s in _COLUMNS], f"{c.cost:.2f}"]
            for c in counts]
    if not rows:
        rows = [["(no messages yet)", *[""] * (len(head) - 1)]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w)
                       for i, (cell, w) in enumerate(zip(r, widths, strict=True)))
             for r in [head, *rows]]
    lines.append("")
    lines.append("sent in the last 24 h per channel: " + (
        ", ".join(f"{k}={v}" for k, v in sorted(per_channel.items())) or "none"))
    return "\n".join(lines)


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
