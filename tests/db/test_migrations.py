"""Migrations: a full round trip works and the models never drift from them."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from db.migrations import downgrade, upgrade
from db.models import Base

TABLES = {
    "users",
    "workspaces",
    "memberships",
    "projects",
    "tasks",
    "labels",
    "task_labels",
    "comments",
    "activities",
    "api_keys",
    "refresh_tokens",
}


def _tables(connection: Connection) -> set[str]:
    return set(inspect(connection).get_table_names()) - {"alembic_version"}


def _diff(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "compare_server_default": True}
    )
    return list(compare_metadata(context, Base.metadata))


async def test_upgrade_downgrade_upgrade_on_empty_database(empty_database: str) -> None:
    engine = create_async_engine(empty_database, poolclass=NullPool)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES
        await downgrade(engine, "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == set()
        await upgrade(engine)
        async with engine.connect() as conn:
            assert await conn.run_sync(_tables) == TABLES
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_models_match_migrations(engine: Any) -> None:
    async with engine.connect() as conn:
        assert await conn.run_sync(_diff) == []
