"""Do-not-contact (DNCR) CSV imports: one set of rules for `smsgw blacklist
import` and `POST /api/v1/blacklist/import`.

Rows are `phone[;campaign]`; an empty campaign means the global list, which
only the operator may write. Numbers are normalised like every other door;
a row that cannot be used is reported with its line number and skipped.
Entries are written in batches, so a file of millions of numbers needs no
more memory than one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

from gateway.phone import InvalidNumber, normalize
from spool.base import Store
from spool.csvfile import BlacklistRow, CsvRowError, read_blacklist_rows

BATCH = 5000
KEEP_ERRORS = 100


@dataclass(slots=True)
class DncrSummary:
    valid: int = 0
    added: int = 0  # new entries (already listed numbers count as valid, not added)
    rejected: int = 0
    errors: list[tuple[int, str]] = field(default_factory=list)  # the first few

    def as_dict(self) -> dict[str, object]:
        return {"added": self.added, "valid": self.valid, "rejected": self.rejected,
                "errors": [{"line": line, "reason": r} for line, r in self.errors]}


class DncrImport:
    def __init__(self, store: Store, tenant: int, region: str, *, allow_global: bool,
                 note: str, on_error: Callable[[int, str], None] = lambda _l, _r: None) -> None:
        self._store = store
        self._tenant = tenant
        self._region = region
        self._allow_global = allow_global
        self._note = note
        self._on_error = on_error
        self._campaigns: dict[str, int | None] = {}

    async def run(self, stream: BinaryIO) -> DncrSummary:
        summary = DncrSummary()
        batch: list[tuple[str, int | None]] = []
        for row in read_blacklist_rows(stream):
            entry = await self._entry(row)
            if isinstance(entry, str):
                self._reject(summary, row.line, entry)
                continue
            batch.append(entry)
            if len(batch) >= BATCH:
                await self._add(summary, batch)
                batch = []
        await self._add(summary, batch)
        return summary

    async def _entry(self, row: BlacklistRow | CsvRowError) -> tuple[str, int | None] | str:
        if isinstance(row, CsvRowError):
            return row.reason
        scope = await self._scope(row.campaign)
        if isinstance(scope, str):
            return scope
        try:
            return normalize(row.destination, self._region), scope
        except InvalidNumber as err:
            return str(err)

    async def _scope(self, campaign: str | None) -> int | None | str:
        if not campaign:
            return None if self._allow_global else \
                "campaign is required: the global list is the operator's"
        if campaign not in self._campaigns:
            found = await self._store.campaign_by_name(self._tenant, campaign)
            self._campaigns[campaign] = found.id if found else None
        found_id = self._campaigns[campaign]
        return found_id if found_id is not None else f"unknown campaign {campaign!r}"

    def _reject(self, summary: DncrSummary, line: int, reason: str) -> None:
        summary.rejected += 1
        if len(summary.errors) < KEEP_ERRORS:
            summary.errors.append((line, reason))
        self._on_error(line, reason)

    async def _add(self, summary: DncrSummary, batch: list[tuple[str, int | None]]) -> None:
        if batch:
            summary.valid += len(batch)
            summary.added += await self._store.blacklist_add(batch, note=self._note)
