"""Engine and session factory built from a URL and pool settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from db import connections, prepared


@dataclass(frozen=True, slots=True)
class PoolSettings:
    size: int = 10
    max_overflow: int = 10
    timeout: float = 10.0
    statement_timeout_ms: int = 15_000
    # False behind a pooler that lends a server connection per transaction (PgBouncer's
    # pool_mode=transaction): see `without_statement_cache`.
    statement_cache: bool = True


def _unnamed() -> str:
    return ""


def without_statement_cache() -> dict[str, Any]:
    """Connect arguments that keep no prepared statement on a server connection.

    By default asyncpg (`Connection.fetch`, db/prepared.py) and SQLAlchemy's asyncpg dialect
    (every statement of a session) prepare named statements once per connection and keep
    them. Behind a pooler in transaction mode the next transaction may run on another server
    connection, where the name does not exist, or exists for another statement: "prepared
    statement "__asyncpg_stmt_a__" does not exist" / "already exists". Without their caches
    both use the unnamed statement, which asyncpg then parses again in the same message
    batch as it binds and executes (asyncpg 0.29+), so nothing outlives one round trip:
    each statement costs one Parse more.
    """
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        # The dialect names each statement it prepares; "" is the unnamed statement.
        "prepared_statement_name_func": _unnamed,
    }


def make_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    pool = pool or PoolSettings()
    server_settings = {"application_name": "taskgraph", "timezone": "UTC"}
    if pool.statement_timeout_ms:
        server_settings["statement_timeout"] = str(pool.statement_timeout_ms)
    # A host that does not answer (no refusal either) would hold a request for asyncpg's
    # default minute: no longer than a request waits for a pooled connection.
    connect_args: dict[str, Any] = {"server_settings": server_settings, "timeout": pool.timeout}
    if not pool.statement_cache:
        connect_args.update(without_statement_cache())
    engine = create_async_engine(
        url,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout,
        # A ping per checkout would cost a round trip per request: connections PostgreSQL
        # ended are noticed and replaced instead (db/connections.py).
        pool_pre_ping=False,
        connect_args=connect_args,
    )
    connections.watch(engine)
    prepared.keep_reserve(engine, pool.size, pool.max_overflow)
    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: mutation payloads are built from them.
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=connections.TrackedSession,
    )
