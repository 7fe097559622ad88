"""Run Alembic migrations programmatically (CLI, server start, tests)."""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from db.engine import without_statement_cache

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def alembic_config(url: str | None = None, *, statement_cache: bool = True) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if url:
        config.attributes["url"] = url
    # Read by migrations/env.py when it connects by itself.
    config.attributes["connect_args"] = {} if statement_cache else without_statement_cache()
    return config


def upgrade_sync(url: str, revision: str = "head", *, statement_cache: bool = True) -> None:
    """Upgrade from synchronous code (the CLI); runs its own event loop."""
    command.upgrade(alembic_config(url, statement_cache=statement_cache), revision)


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    await _run(engine, lambda cfg: command.upgrade(cfg, revision))


async def downgrade(engine: AsyncEngine, revision: str = "base") -> None:
    await _run(engine, lambda cfg: command.downgrade(cfg, revision))


async def _run(engine: AsyncEngine, action: object) -> None:
    def run(connection: Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        action(config)  # type: ignore[operator]

    async with engine.begin() as connection:
        await connection.run_sync(run)


def heads() -> frozenset[str]:
    """The revisions the code expects the database at, read once from the migrations folder."""
    global _HEADS
    if _HEADS is None:
        _HEADS = frozenset(ScriptDirectory.from_config(alembic_config()).get_heads())
    return _HEADS


_HEADS: frozenset[str] | None = None


_CONTEXT_LOG = logging.getLogger("alembic.runtime.migration")


async def behind(engine: AsyncEngine, name: str = "the database") -> str | None:
    """Why the database (called `name` in the reason) is not at the migrations' head, or
    None when it is."""

    def current(connection: Connection) -> frozenset[str]:
        # Alembic says "Context impl PostgresqlImpl." at INFO each time: two log lines per
        # readiness probe (every few seconds, from every load balancer) would drown the log.
        level = _CONTEXT_LOG.level
        _CONTEXT_LOG.setLevel(logging.WARNING)
        try:
            return frozenset(MigrationContext.configure(connection).get_current_heads())
        finally:
            _CONTEXT_LOG.setLevel(level)

    async with engine.connect() as connection:
        found = await connection.run_sync(current)
    expected = heads()
    if found == expected:
        return None
    shown = ", ".join(sorted(found)) or "none"
    return f"{name} is at revision {shown}; the code needs {', '.join(sorted(expected))}"
