"""The spool folder: CSV files dropped into `incoming/` are imported once.

A file is read only when complete: its size and mtime must stay unchanged
for `stable_s` seconds. Names starting with '.' or ending in `.tmp` or
`.part` are ignored, so a writer may also write `NAME.tmp` and rename it
(an atomic rename is complete the moment it appears). Symbolic links and
anything that is not a regular file are never followed: a link could point
the daemon at a file its users should not read.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from spool.csvfile import errors_path

log = structlog.get_logger("smsgw.spool_folder")

IGNORED_SUFFIXES = (".tmp", ".part", ".errors.csv")


@dataclass(frozen=True, slots=True)
class ReadyFile:
    path: Path
    # Same file, same key across restarts; a new drop of the same name differs.
    key: str
    size: int


class SpoolFolder:
    def __init__(self, root: Path, *, stable_s: float = 1.0) -> None:
        self.root = root
        self.incoming = root / "incoming"
        self.processed = root / "processed"
        self.failed = root / "failed"
        self._stable_s = stable_s
        self._seen: dict[str, tuple[int, int, float]] = {}
        self._warned: set[str] = set()

    def ensure(self) -> None:
        for folder in (self.incoming, self.processed, self.failed):
            folder.mkdir(parents=True, exist_ok=True)

    def ready_files(self, now: float) -> list[ReadyFile]:
        ready, current = [], {}
        for entry in sorted(os.scandir(self.incoming), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name.endswith(IGNORED_SUFFIXES):
                continue
            info = entry.stat(follow_symlinks=False)
            if not stat.S_ISREG(info.st_mode):
                self._warn_once(entry.name, "not a regular file (links are not followed)")
                continue
            sig = (info.st_size, info.st_mtime_ns)
            prev = self._seen.get(entry.name)
            since = prev[2] if prev and prev[:2] == sig else now
            current[entry.name] = (*sig, since)
            if now - since >= self._stable_s:
                key = f"{entry.name}:{info.st_size}:{info.st_mtime_ns}"
                ready.append(ReadyFile(Path(entry.path), key, info.st_size))
        self._seen = current
        return ready

    def _warn_once(self, name: str, why: str) -> None:
        if name not in self._warned:
            self._warned.add(name)
            log.warning("spool_folder.skipped", file=name, reason=why)

    def errors_part(self, path: Path) -> Path:
        """Where a file's rejected rows are collected while it is imported."""
        return self.incoming / f".{path.name}.errors.part"

    def finish(self, path: Path, *, usable: bool) -> Path:
        """Move the file (and its error report) to processed/ or failed/."""
        target_dir = self.processed if usable else self.failed
        target = _free_name(target_dir / path.name)
        part = self.errors_part(path)
        # The report moves first: a crash between the two moves leaves the
        # file in incoming/, where its finished import is simply moved again.
        if part.exists():
            if part.stat().st_size > 0:
                os.replace(part, errors_path(target))
            else:
                part.unlink()
        os.replace(path, target)
        self._seen.pop(path.name, None)
        return target


def _free_name(target: Path) -> Path:
    # The same name dropped twice must not overwrite the first file's record.
    if not target.exists():
        return target
    for n in range(1, 10_000):
        candidate = target.with_name(f"{target.stem}.{n}{target.suffix}")
        if not candidate.exists():
            return candidate
    raise FileExistsError(target)
