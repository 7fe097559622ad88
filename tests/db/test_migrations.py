"""Migrations: a full round trip works and the models never drift from them."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine
from sqlalchemy.pool import NullPool

from db.migrations import downgrade, upgrade
from db.models import Base, Task
from db.tasks import TaskFilter, filter_conditions, filter_params

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


SEARCH_INDEXES = {"ix_tasks_title_trgm", "ix_tasks_description_trgm"}


async def _search_indexes(conn: AsyncConnection) -> dict[str, str]:
    rows = await conn.execute(
        text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'tasks'")
    )
    return {name: definition for name, definition in rows if name in SEARCH_INDEXES}


async def _has_pg_trgm(conn: AsyncConnection) -> bool:
    found = await conn.execute(text("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'"))
    return found.first() is not None


async def test_trigram_revision_upgrades_and_downgrades(empty_database: str) -> None:
    engine = create_async_engine(empty_database, poolclass=NullPool)
    try:
        await upgrade(engine, "0001")
        async with engine.connect() as conn:
            assert await _search_indexes(conn) == {}
            assert not await _has_pg_trgm(conn)
        await upgrade(engine, "0002")
        async with engine.connect() as conn:
            indexes = await _search_indexes(conn)
            assert set(indexes) == SEARCH_INDEXES
            assert all("USING gin" in d and "gin_trgm_ops" in d for d in indexes.values())
            assert await _has_pg_trgm(conn)
        await downgrade(engine, "0001")
        async with engine.connect() as conn:
            assert await _search_indexes(conn) == {}
            assert not await _has_pg_trgm(conn)
            assert await conn.run_sync(_tables) == TABLES
        # The extension may exist already (another schema's use): the upgrade keeps it.
        async with engine.begin() as conn:
            await conn.execute(text("CREATE EXTENSION pg_trgm"))
        await upgrade(engine)
        async with engine.connect() as conn:
            assert set(await _search_indexes(conn)) == SEARCH_INDEXES
            assert await conn.run_sync(_diff) == []
    finally:
        await engine.dispose()


async def test_search_filter_can_use_the_trigram_indexes(connection: AsyncConnection) -> None:
    # The condition exactly as the task filter writes it; with sequential scans priced out, a
    # plan without the indexes would have to scan (or filter every row of another index).
    flt = TaskFilter(search="Login_50%")
    where = filter_conditions(flt)
    statement = select(Task.id).where(*where).compile(dialect=connection.dialect)
    params = filter_params(flt)
    values = tuple(params[name] for name in statement.positiontup or ())
    await connection.execute(text("SET LOCAL enable_seqscan = off"))
    plan = await connection.exec_driver_sql(f"EXPLAIN {statement}", values)
    lines = "\n".join(row[0] for row in plan)
    assert "BitmapOr" in lines, lines
    assert "Bitmap Index Scan on ix_tasks_title_trgm" in lines, lines
    assert "Bitmap Index Scan on ix_tasks_description_trgm" in lines, lines
