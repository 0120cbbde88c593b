"""Files in a folder other people can write to, opened without following links.

The spool folder is shared with whoever drops CSV files, and the daemon may
run as a user that can write its own database. A symbolic link planted where
the daemon writes (`incoming/.NAME.errors.part`, `processed/`) would make it
overwrite whatever the link points at. So the daemon never writes through a
link there: files are created fresh (`O_CREAT | O_EXCL | O_NOFOLLOW`, after
unlinking a leftover, which removes a link rather than its target), read
with `O_NOFOLLOW`, and moved into directories opened with `O_NOFOLLOW`.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, BinaryIO

FILE_MODE = 0o640
_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC


def create_text(path: Path) -> IO[str]:
    """A new, empty text file at `path` for writing; whatever was there
    (a leftover from a crash, a planted link) is removed first, not followed.
    Raises FileExistsError if something appears there in between."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, FILE_MODE)
    return os.fdopen(fd, "w", newline="", encoding="utf-8")


def read_text(path: Path) -> str | None:
    """The text of the regular file at `path`; None if there is none (or a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    except OSError:  # missing, or a link (ELOOP)
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return fh.read().decode("utf-8", errors="replace")


def open_binary(path: Path) -> BinaryIO:
    """`path` for reading, refusing a link (OSError ELOOP) or anything not a file."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | os.O_NONBLOCK)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(f"{path}: not a regular file")
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def directory(path: Path) -> Iterator[int]:
    """A descriptor of the directory `path` itself: OSError if it is a link."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | _NOFOLLOW)
    try:
        yield fd
    finally:
        os.close(fd)


def is_real_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def taken(name: str, dir_fd: int) -> bool:
    """Whether anything, a dangling link included, has `name` in the directory."""
    try:
        os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    return True
