"""CSV imports: the spool folder and `smsgw import` share this code.

Rows are committed in batches together with the import's progress (the
last line committed), so a restart resumes a file where it stopped:
nothing lost, nothing twice. Every row ends up imported (state 1),
blocked (3), invalid (7, stored with its reason), or rejected (a row
that is not a message at all: bad columns, unknown campaign); the error
report lists every row but the imported ones, by line number.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, cast

import structlog

from gateway.edge import fdlimit
from gateway.services import Services
from spool import safefiles
from spool.base import Campaign, Conflict, ImportProgress, NewMessage, State
from spool.csvfile import CsvRow, CsvRowError, read_message_rows
from spool.error_report import REJECTED, ErrorReport
from spool.folder import SpoolFolder

log = structlog.get_logger("smsgw.import")

Progress = Callable[[int], None]
# Rows parsed between two yields to the event loop (a few milliseconds' work).
_YIELD_ROWS = 256
# A batch's transaction on the database thread needs the GIL back after each
# statement (BEGIN, the inserts, the progress, COMMIT) while this thread parses
# the next batch without a pause; at CPython's default switch interval (5 ms)
# each of those waits lasted the whole interval: a quarter of a 1M-row import.
_SWITCH_INTERVAL_S = 0.0005
_importing = 0  # imports running in this process
_saved_switch_interval_s = 0.0


@dataclass(slots=True)
class ImportSummary:
    file: str
    imported: int = 0
    blocked: int = 0
    invalid: int = 0
    rejected: int = 0
    segments: int = 0
    estimated_cost: float = 0.0
    resumed_from_line: int = 0
    errors: list[CsvRowError] = field(default_factory=list)  # the first few, for display

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "imported": self.imported, "blocked": self.blocked,
                "invalid": self.invalid, "rejected": self.rejected, "segments": self.segments,
                "estimated_cost": round(self.estimated_cost, 4),
                "resumed_from_line": self.resumed_from_line}


class FileImporter:
    # 5,000 rows a transaction rewrite fewer pages of the destination index per
    # row than 2,000 (1M rows: 25 s instead of 27) and hold the write lock
    # about 0.1 s; 10,000 gained 1.5 s more for twice the hold.
    def __init__(self, services: Services, tenant: int, *, batch_rows: int = 5000) -> None:
        self._s = services
        self._tenant = tenant
        self._batch_rows = batch_rows
        self._default = services.settings.intake.default_campaign

    async def run(self, path: Path, key: str, *, errors_to: Path | None, dry_run: bool = False,
                  progress: Progress | None = None, follow_links: bool = True
                  ) -> ImportSummary:
        """Import `path`; the spool folder passes `follow_links=False`, since
        anyone may have put a link there where the file was."""
        done = None if dry_run else await self._s.store.import_progress(key)
        summary = ImportSummary(file=path.name)
        start = 0
        if done is not None:
            start = summary.resumed_from_line = done.line
            summary.imported, summary.blocked, summary.invalid = (
                done.imported, done.blocked, done.invalid)
            if done.done:
                return summary
        errors = ErrorReport(errors_to, start) if errors_to and not dry_run else None
        opened = open(path, "rb") if follow_links else safefiles.open_binary(path)  # noqa: SIM115
        try:
            with _short_gil_turns(), opened as fh:
                await self._rows(fh, key, start, summary, errors, dry_run, progress)
        finally:
            if errors is not None:
                errors.close()
        if not dry_run:
            await self._s.store.finish_import(self._progress(key, summary, done=True))
        return summary

    async def _rows(self, fh: BinaryIO, key: str, start: int, summary: ImportSummary,
                    errors: ErrorReport | None, dry_run: bool, progress: Progress | None) -> None:
        batch: list[NewMessage] = []
        sources: list[CsvRow] = []  # batch[i] was read from sources[i]
        campaigns: dict[str, Campaign | None] = {}  # looked up once per name and batch
        last_line = start
        # The next batch is parsed while the previous one is written (SQLite
        # works outside the GIL); batches still commit in order.
        writing: asyncio.Task[None] | None = None
        try:
            for seen, item in enumerate(read_message_rows(fh, start_line=start), start=1):
                last_line = item.line
                if isinstance(item, CsvRow):
                    name = item.campaign or self._default
                    if name not in campaigns:
                        campaigns[name] = await self._s.campaigns.by_name(self._tenant, name)
                    row = self._classify(item, name, campaigns[name])
                else:
                    row = item
                if isinstance(row, CsvRowError):
                    self._reject(row, summary, errors)
                else:
                    batch.append(row)
                    sources.append(cast(CsvRow, item))  # only a CsvRow makes a message
                if len(batch) >= self._batch_rows:
                    writing = await self._hand_off(batch, sources, key, last_line, summary,
                                                   errors, dry_run, writing)
                    batch, sources = [], []
                    campaigns.clear()
                    if progress is not None:
                        progress(fh.tell())
                elif seen % _YIELD_ROWS == 0:
                    # Let the daemon (and the write in flight) breathe during a big file.
                    await asyncio.sleep(0)
            writing = await self._hand_off(batch, sources, key, last_line, summary, errors,
                                           dry_run, writing)
            if writing is not None:
                await writing
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
        if progress is not None:
            progress(fh.tell())

    def _classify(self, item: CsvRow, name: str, campaign: Campaign | None
                  ) -> NewMessage | CsvRowError:
        if campaign is None:
            return CsvRowError(item.line, _raw(item), f"unknown campaign {name!r}")
        return self._s.intake.classify_fields(self._tenant, campaign, item.destination,
                                              item.message, item.priority)

    @staticmethod
    def _reject(error: CsvRowError, summary: ImportSummary, errors: ErrorReport | None) -> None:
        summary.rejected += 1
        if len(summary.errors) < 20:
            summary.errors.append(error)
        if errors is not None:
            errors.add(error.line, REJECTED, error.reason, error.raw)

    async def _hand_off(self, batch: list[NewMessage], sources: list[CsvRow], key: str,
                        line: int, summary: ImportSummary, errors: ErrorReport | None,
                        dry_run: bool, previous: asyncio.Task[None] | None
                        ) -> asyncio.Task[None] | None:
        """Count the batch and start writing it once the previous batch is in.

        The blacklist is read here, not in the write task: a task that still
        had to come back to the event loop between its steps would wait for
        the whole next batch to be parsed, and the writes would not overlap.
        """
        batch = await self._s.intake.block_listed(batch)
        fresh = self._count(batch, summary)
        if errors is not None and fresh < len(batch):
            for row, source in zip(batch, sources, strict=True):
                if row.state != State.TO_PROCESS:  # stored, but never to be sent
                    errors.add(source.line, row.state.name, row.error or "", _raw(source))
        if previous is not None:
            await previous
        if dry_run:
            return None
        if errors is not None:
            errors.flush()  # the report is on disk before the progress that covers it
        task = asyncio.create_task(self._write(batch, self._progress(key, summary, line=line),
                                               fresh))
        await asyncio.sleep(0)  # the task hands the batch to the database thread now
        return task

    def _count(self, batch: list[NewMessage], summary: ImportSummary) -> int:
        """Add the batch to the summary; the rows it makes sendable."""
        costs: dict[int, float] = {}
        fresh = 0
        for row in batch:
            if row.state == State.TO_PROCESS:
                fresh += 1
                summary.segments += row.segments
                cost = costs.get(row.campaign)
                if cost is None:
                    cost = costs[row.campaign] = self._unit_cost(row.campaign)
                summary.estimated_cost += row.segments * cost
            elif row.state == State.BLOCKED:
                summary.blocked += 1
            else:
                summary.invalid += 1
        summary.imported += fresh
        return fresh

    async def _write(self, batch: list[NewMessage], progress: ImportProgress,
                     fresh: int) -> None:
        await self._s.store.insert_messages(batch, import_progress=progress)
        self._s.intake.accepted(fresh)

    def _progress(self, key: str, summary: ImportSummary, *, line: int | None = None,
                  done: bool = False) -> ImportProgress:
        return ImportProgress(key=key, line=line or 0, done=done, imported=summary.imported,
                              blocked=summary.blocked, invalid=summary.invalid)

    def _unit_cost(self, campaign_id: int) -> float:
        campaign = self._s.campaigns.by_id(campaign_id)
        pool = self._s.router.pool(campaign.channels if campaign else (), "sms",
                                    campaign.tenant if campaign else None)
        return sum(r.cost for r in pool) / len(pool) if pool else 0.0


@contextlib.contextmanager
def _short_gil_turns() -> Iterator[None]:
    """A thread waiting for the GIL gets it within 0.5 ms while files import."""
    global _importing, _saved_switch_interval_s
    if _importing == 0:
        _saved_switch_interval_s = sys.getswitchinterval()
        sys.setswitchinterval(min(_saved_switch_interval_s, _SWITCH_INTERVAL_S))
    _importing += 1
    try:
        yield
    finally:
        _importing -= 1
        if _importing == 0:
            sys.setswitchinterval(_saved_switch_interval_s)


def _raw(item: CsvRow) -> str:
    """The row as the file had it, near enough for a person to find it."""
    return ";".join([item.campaign, item.destination, item.message,
                     "" if item.priority is None else str(item.priority)])


class SpoolFolderImporter:
    """The daemon's watcher: polls incoming/, imports ready files, files them away."""

    def __init__(self, services: Services, *, clock: Callable[[], float] = time.time) -> None:
        cfg = services.settings.spool_folder
        self._s = services
        self._clock = clock
        self.folder = SpoolFolder(cfg.path, stable_s=cfg.stable_s)
        self._interval = cfg.poll_interval_s
        self._failures: dict[str, int] = {}

    async def run(self) -> None:
        self.folder.ensure()
        tenant = await self._s.store.tenant_by_name(self._s.settings.spool_folder.tenant)
        if tenant is None:
            raise RuntimeError(f"spool_folder.tenant: no tenant named "
                               f"{self._s.settings.spool_folder.tenant!r}")
        importer = FileImporter(self._s, tenant.id,
                                batch_rows=self._s.settings.spool_folder.batch_rows)
        while True:
            for ready in self.folder.ready_files(self._clock()):
                await self._one(importer, ready.path, ready.key)
            await asyncio.sleep(self._interval)

    async def _one(self, importer: FileImporter, path: Path, key: str) -> None:
        log.info("import.started", file=path.name, key=key)
        try:
            summary = await importer.run(path, key, errors_to=self.folder.errors_part(path),
                                         follow_links=False)
        except Conflict as err:
            # Another daemon watching the same folder owns this file's lines.
            log.info("import.owned_elsewhere", file=path.name, reason=str(err))
            return
        except (OSError, UnicodeError, ValueError) as err:
            if fdlimit.out_of_files(err):
                raise  # the process, not the file: the supervisor retries it shortly
            # A file we cannot read at all: after three tries it goes to failed/.
            count = self._failures[key] = self._failures.get(key, 0) + 1
            log.error("import.failed", file=path.name, error=str(err), attempt=count)
            if count >= 3:
                self.folder.finish(path, usable=False)
            return
        usable = summary.imported + summary.blocked + summary.invalid > 0
        moved = self.folder.finish(path, usable=usable)
        log.info("import.finished", moved_to=str(moved) if moved else "kept in incoming/",
                 **summary.as_dict())
