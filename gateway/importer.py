"""CSV imports: the spool folder and `smsgw import` share this code.

Rows are committed in batches together with the import's progress (the
last line committed), so a restart resumes a file where it stopped:
nothing lost, nothing twice. Every row ends up imported (state 1),
blocked (3), invalid (7, stored with its reason), or rejected in the
error report (a row that is not a message at all: bad columns, unknown
campaign), with its line number.
"""

from __future__ import annotations

import asyncio
import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import structlog

from gateway.intake import Submission
from gateway.services import Services
from spool.base import Conflict, ImportProgress, NewMessage, State
from spool.csvfile import CsvRow, CsvRowError, read_message_rows
from spool.folder import SpoolFolder

log = structlog.get_logger("smsgw.import")

Progress = Callable[[int], None]


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
    def __init__(self, services: Services, tenant: int, *, batch_rows: int = 2000) -> None:
        self._s = services
        self._tenant = tenant
        self._batch_rows = batch_rows
        self._default = services.settings.intake.default_campaign

    async def run(self, path: Path, key: str, *, errors_to: Path | None, dry_run: bool = False,
                  progress: Progress | None = None) -> ImportSummary:
        done = None if dry_run else await self._s.store.import_progress(key)
        summary = ImportSummary(file=path.name)
        start = 0
        if done is not None:
            start = summary.resumed_from_line = done.line
            summary.imported, summary.blocked, summary.invalid = (
                done.imported, done.blocked, done.invalid)
            if done.done:
                return summary
        errors = _ErrorReport(errors_to, start) if errors_to and not dry_run else None
        try:
            with open(path, "rb") as fh:
                await self._rows(fh, key, start, summary, errors, dry_run, progress)
        finally:
            if errors is not None:
                errors.close()
        if not dry_run:
            await self._s.store.finish_import(self._progress(key, summary, done=True))
        return summary

    async def _rows(self, fh: BinaryIO, key: str, start: int, summary: ImportSummary,
                    errors: _ErrorReport | None, dry_run: bool, progress: Progress | None) -> None:
        batch: list[NewMessage] = []
        last_line = start
        # The next batch is parsed while the previous one is written (the
        # database works outside the GIL); batches still commit in order.
        writing: asyncio.Task[None] | None = None
        try:
            for item in read_message_rows(fh, start_line=start):
                last_line = item.line
                row = await self._classify(item)
                if isinstance(row, CsvRowError):
                    summary.rejected += 1
                    if len(summary.errors) < 20:
                        summary.errors.append(row)
                    if errors is not None:
                        errors.add(row)
                else:
                    batch.append(row)
                if len(batch) >= self._batch_rows:
                    if writing is not None:
                        await writing
                    writing = asyncio.create_task(
                        self._commit(batch, key, last_line, summary, errors, dry_run))
                    batch = []
                    if progress is not None:
                        progress(fh.tell())
                    await asyncio.sleep(0)  # let the daemon breathe during a big file
            if writing is not None:
                await writing
            await self._commit(batch, key, last_line, summary, errors, dry_run)
        finally:
            if writing is not None and not writing.done():
                writing.cancel()
                await asyncio.gather(writing, return_exceptions=True)
        if progress is not None:
            progress(fh.tell())

    async def _classify(self, item: CsvRow | CsvRowError) -> NewMessage | CsvRowError:
        if isinstance(item, CsvRowError):
            return item
        name = item.campaign or self._default
        campaign = await self._s.campaigns.by_name(self._tenant, name)
        if campaign is None:
            raw = ";".join([item.campaign, item.destination, item.message,
                            "" if item.priority is None else str(item.priority)])
            return CsvRowError(item.line, raw, f"unknown campaign {name!r}")
        return self._s.intake.classify_row(
            self._tenant, campaign,
            Submission(destination=item.destination, message=item.message, campaign=name,
                       priority=item.priority))

    async def _commit(self, batch: list[NewMessage], key: str, line: int,
                      summary: ImportSummary, errors: _ErrorReport | None, dry_run: bool) -> None:
        batch = await self._s.intake.block_listed(batch)
        fresh = sum(1 for row in batch if row.state == State.TO_PROCESS)
        for row in batch:
            if row.state == State.TO_PROCESS:
                summary.imported += 1
                summary.segments += row.segments
                summary.estimated_cost += row.segments * self._unit_cost(row.campaign)
            elif row.state == State.BLOCKED:
                summary.blocked += 1
            else:
                summary.invalid += 1
        if dry_run:
            return
        if errors is not None:
            errors.flush()  # the report is on disk before the progress that covers it
        await self._s.store.insert_messages(batch, import_progress=self._progress(
            key, summary, line=line))
        self._s.intake.accepted(fresh)

    def _progress(self, key: str, summary: ImportSummary, *, line: int | None = None,
                  done: bool = False) -> ImportProgress:
        return ImportProgress(key=key, line=line or 0, done=done, imported=summary.imported,
                              blocked=summary.blocked, invalid=summary.invalid)

    def _unit_cost(self, campaign_id: int) -> float:
        campaign = self._s.campaigns.by_id(campaign_id)
        pool = self._s.router.pool(campaign.channels if campaign else (), "sms")
        return sum(r.cost for r in pool) / len(pool) if pool else 0.0


class _ErrorReport:
    """NAME.errors.csv: line;reason;raw. On resume, lines past the last commit are dropped."""

    def __init__(self, path: Path, resume_after: int) -> None:
        self.path = path
        kept: list[list[str]] = []
        if path.exists() and resume_after:
            with open(path, newline="", encoding="utf-8") as old:
                kept = [r for r in csv.reader(old, delimiter=";")
                        if r and r[0].isdigit() and int(r[0]) <= resume_after]
        self._fh = open(path, "w", newline="", encoding="utf-8")  # noqa: SIM115
        self._out = csv.writer(self._fh, delimiter=";")
        self._out.writerow(["line", "reason", "raw"])
        self._out.writerows(kept)
        self.count = len(kept)

    def add(self, error: CsvRowError) -> None:
        self._out.writerow([error.line, error.reason, error.raw.rstrip("\r\n")])
        self.count += 1

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        if self.count == 0:
            self._fh.close()
            self.path.unlink(missing_ok=True)
            return
        self._fh.close()


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
            summary = await importer.run(path, key, errors_to=self.folder.errors_part(path))
        except Conflict as err:
            # Another daemon watching the same folder owns this file's lines.
            log.info("import.owned_elsewhere", file=path.name, reason=str(err))
            return
        except (OSError, UnicodeError, ValueError) as err:
            # A file we cannot read at all: after three tries it goes to failed/.
            count = self._failures[key] = self._failures.get(key, 0) + 1
            log.error("import.failed", file=path.name, error=str(err), attempt=count)
            if count >= 3:
                self.folder.finish(path, usable=False)
            return
        usable = summary.imported + summary.blocked + summary.invalid > 0
        moved = self.folder.finish(path, usable=usable)
        log.info("import.finished", moved_to=str(moved), **summary.as_dict())
