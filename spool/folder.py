"""The spool folder: CSV files dropped into `incoming/` are imported once.

A file is read only when complete: its size and mtime must stay unchanged
for `stable_s` seconds. Names starting with '.' or ending in `.tmp` or
`.part` are ignored, so a writer may also write `NAME.tmp` and rename it
(an atomic rename is complete the moment it appears). Symbolic links and
anything that is not a regular file are never followed: a link could point
the daemon at a file its users should not read, or make it overwrite one
(`spool.safefiles`). When `processed/` or `failed/` is not a real directory
(a link, say) a finished file stays in `incoming/`, set aside with one log
line, until the folder is made right.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import structlog

from spool import safefiles
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
        # Finished files that could not be filed away: name -> the folder.
        self._parked: dict[str, Path] = {}

    def ensure(self) -> None:
        for folder in (self.incoming, self.processed, self.failed):
            with contextlib.suppress(FileExistsError):  # a link there: finish() refuses it
                folder.mkdir(parents=True)

    def ready_files(self, now: float) -> list[ReadyFile]:
        ready, current = [], {}
        for entry in sorted(os.scandir(self.incoming), key=lambda e: e.name):
            if entry.name.startswith(".") or entry.name.endswith(IGNORED_SUFFIXES):
                continue
            if entry.name in self._parked and not safefiles.is_real_dir(
                    self._parked[entry.name]):
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

    def finish(self, path: Path, *, usable: bool) -> Path | None:
        """Move the file (and its error report) to processed/ or failed/;
        None when that folder is not a real directory (the file stays)."""
        target_dir = self.processed if usable else self.failed
        try:
            with safefiles.directory(target_dir) as dir_fd:
                name = _free_name(path.name, dir_fd)
                self._move(path, name, dir_fd)
        except OSError as err:
            if not safefiles.is_real_dir(target_dir):
                self._park(path, target_dir, err)
                return None
            raise
        self._seen.pop(path.name, None)
        self._parked.pop(path.name, None)
        return target_dir / name

    def _move(self, path: Path, name: str, dir_fd: int) -> None:
        part = self.errors_part(path)
        # The report moves first: a crash between the two moves leaves the
        # file in incoming/, where its finished import is simply moved again.
        # A rename never follows a link at either end.
        with contextlib.suppress(FileNotFoundError):
            info = os.lstat(part)
            if stat.S_ISREG(info.st_mode) and info.st_size > 0:
                os.replace(part, errors_path(Path(name)).name, dst_dir_fd=dir_fd)
            else:
                os.unlink(part)
        os.replace(path, name, dst_dir_fd=dir_fd)

    def _park(self, path: Path, folder: Path, err: OSError) -> None:
        if path.name not in self._parked:
            log.error("spool_folder.file_parked", file=path.name, folder=str(folder),
                      reason=f"{folder.name}/ is not a real directory (a link?): "
                             "files are not moved through it", error=str(err),
                      fix=f"make {folder} a directory; the file is then filed away")
        self._parked[path.name] = folder


def _free_name(name: str, dir_fd: int) -> str:
    # The same name dropped twice must not overwrite the first file's record,
    # nor its report land on something already there (a planted link).
    path = Path(name)
    for n in range(10_000):
        candidate = path.name if n == 0 else f"{path.stem}.{n}{path.suffix}"
        report = errors_path(Path(candidate)).name
        if not (safefiles.taken(candidate, dir_fd) or safefiles.taken(report, dir_fd)):
            return candidate
    raise FileExistsError(name)
