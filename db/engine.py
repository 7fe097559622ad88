"""Engine and session factory built from a URL and pool settings."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from db import connections


@dataclass(frozen=True, slots=True)
class PoolSettings:
    size: int = 10
    max_overflow: int = 10
    timeout: float = 10.0
    statement_timeout_ms: int = 15_000


def make_engine(url: str, pool: PoolSettings | None = None) -> AsyncEngine:
    pool = pool or PoolSettings()
    server_settings = {"application_name": "taskgraph", "timezone": "UTC"}
    if pool.statement_timeout_ms:
        server_settings["statement_timeout"] = str(pool.statement_timeout_ms)
    engine = create_async_engine(
        url,
        pool_size=pool.size,
        max_overflow=pool.max_overflow,
        pool_timeout=pool.timeout,
        # A ping per checkout would cost a round trip per request: connections PostgreSQL
        # ended are noticed and replaced instead (db/connections.py).
        pool_pre_ping=False,
        # A host that does not answer (no refusal either) would hold a request for asyncpg's
        # default minute: no longer than a request waits for a pooled connection.
        connect_args={"server_settings": server_settings, "timeout": pool.timeout},
    )
    connections.watch(engine)
    return engine


def make_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    # Objects stay readable after commit: mutation payloads are built from them.
    return async_sessionmaker(
        engine,
        expire_on_commit=False,
        autoflush=False,
        sync_session_class=connections.TrackedSession,
    )
