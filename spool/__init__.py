"""Storage: the `Store` protocol and its backends, CSV parsing, the spool folder."""

from __future__ import annotations

from spool.base import Store


def open_store(url: str, **options: object) -> Store:
    """Pick the backend from the URL scheme; the caller awaits `open()`."""
    if url.startswith("sqlite:///"):
        from spool.sqlite import SqliteStore

        return SqliteStore(url.removeprefix("sqlite:///"), **options)  # type: ignore[arg-type]
    if url.startswith(("postgresql://", "postgres://")):
        from spool.postgres import PostgresStore

        return PostgresStore(url, **options)  # type: ignore[arg-type]
    raise ValueError(f"storage.url: unsupported scheme in {url!r}")
