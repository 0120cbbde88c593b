"""The embedded default backend: one SQLite file in WAL mode."""

from spool.sqlite.store import SqliteStore

__all__ = ["SqliteStore"]
