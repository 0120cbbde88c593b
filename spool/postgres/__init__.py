"""The shared backend: one PostgreSQL database for several daemons (asyncpg)."""

from spool.postgres.store import PostgresStore

__all__ = ["PostgresStore"]
