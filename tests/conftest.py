"""Database fixtures: a real PostgreSQL, migrated once per session.

By default an embedded PostgreSQL is started in a temporary folder; set TEST_DATABASE_URL to
use another server (a database of that name is created, migrated and dropped again; tests
need permission to create databases).

The session leaves no process behind: `no_process_left` fails the run when a PostgreSQL
server of the session's temporary folders, or a process it started, outlives it (and ends
them).

Isolation: each test gets a connection with an open transaction that is rolled back at the
end; the session under test joins it through savepoints, so code that commits still leaves
no trace. Tests that need real commits and concurrent connections use `committed_db`, a
fresh database cloned from the migrated template, dropped afterwards.
"""

from __future__ import annotations

import os
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from db import prepared
from db.engine import make_engine
from db.migrations import upgrade
from tests.processes import describe, end, postmasters

TEMPLATE = "taskgraph_test_template"
# The folders of the session's embedded PostgreSQL (see `no_process_left`).
EMBEDDED_FOLDERS: list[Path] = []


def pytest_configure(config: pytest.Config) -> None:
    # A test run stopped with SIGTERM (a CI job's timeout, `kill`) is torn down as Ctrl-C
    # tears it down, its PostgreSQL stopped; by default it would just end.
    def interrupt(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session", autouse=True)
def no_process_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Fail the session if it leaves a process running: a PostgreSQL server with its data
    in the session's temporary folders (pytest's and the embedded one's), or a child of
    the test process.

    Autouse and session-wide, it is set up before every other fixture of the session, so
    it is torn down after them all, the session's own embedded PostgreSQL included.
    """
    yield
    roots = [tmp_path_factory.getbasetemp(), *EMBEDDED_FOLDERS]
    left = [server for root in roots for server in postmasters(root)]
    left += psutil.Process().children(recursive=True)
    described = [describe(process) for process in left]
    end(left)
    described = [line for line in described if line]
    assert not described, "the session left processes running (now ended):\n" + "\n".join(described)


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on the test server (asyncpg dialect)."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        if url.startswith(("postgres://", "postgresql://")):
            url = "postgresql+asyncpg://" + url.split("://", 1)[1]
        yield url
        return
    from db.embedded import start, stop

    # A folder of its own, outside pytest's temporary folders (shared by every test run of
    # the same user on the machine, and pruned by them).
    with tempfile.TemporaryDirectory(prefix="taskgraph-test-") as folder:
        EMBEDDED_FOLDERS.append(Path(folder))
        pgdata = Path(folder) / "pg"
        try:
            yield start(pgdata, delete=True).replace("/taskgraph?", "/postgres?")
        finally:
            # Stopped here, while its folder is there: left to the end of the process, it
            # kept running (its folder deleted first, nothing knew of it any more).
            stop(pgdata)


def _database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


async def _admin(server_url: str, *statements: str) -> None:
    engine = create_async_engine(server_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    async with engine.connect() as conn:
        for statement in statements:
            await conn.execute(text(statement))
    await engine.dispose()


@pytest.fixture(scope="session")
async def template_url(server_url: str) -> AsyncIterator[str]:
    """A database migrated to head once per session; cloned by tests that need commits."""
    name = f"{TEMPLATE}_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = _database(server_url, name)
    engine = create_async_engine(url, poolclass=NullPool)
    await upgrade(engine)
    await engine.dispose()
    yield url
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
async def engine(server_url: str, template_url: str) -> AsyncIterator[AsyncEngine]:
    """The engine of the rollback-isolated tests, on a clone of the template: PostgreSQL
    copies a database only while nobody is connected to it, so the template stays idle."""
    name, url = await fresh_database(server_url, template_url)
    eng = make_engine(url)
    yield eng
    await eng.dispose()
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        outer = await conn.begin()
        yield conn
        await outer.rollback()


@pytest.fixture
async def session(connection: AsyncConnection) -> AsyncIterator[AsyncSession]:
    """A session inside the test's transaction; its commits become savepoint releases."""
    async with AsyncSession(
        bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
    ) as sess:
        yield sess


async def fresh_database(server_url: str, template_url: str) -> tuple[str, str]:
    name = f"taskgraph_test_{uuid.uuid4().hex[:12]}"
    template = make_url(template_url).database
    await _admin(server_url, f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    return name, _database(server_url, name)


@pytest.fixture
async def committed_db(server_url: str, template_url: str) -> AsyncIterator[str]:
    """URL of a pristine migrated database where commits are real; dropped afterwards."""
    name, url = await fresh_database(server_url, template_url)
    yield url
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def empty_engine(committed_db: str) -> AsyncIterator[AsyncEngine]:
    eng = make_engine(committed_db)
    yield eng
    await eng.dispose()


@pytest.fixture
async def empty_database(server_url: str) -> AsyncIterator[str]:
    """URL of a database with no tables at all (for migration tests)."""
    name = f"taskgraph_empty_{uuid.uuid4().hex[:12]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    yield _database(server_url, name)
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def connections_in_use(engine: AsyncEngine) -> int:
    """Connections checked out of the engine's pool and not idle in its reserve
    (db/prepared.py): those a request or a session still holds."""
    checked_out: int = engine.sync_engine.pool.checkedout()  # type: ignore[attr-defined]
    return checked_out - len(prepared.reserve(engine).idle)


class StatementCounter:
    """Counts SQL statements sent on an engine (SQLAlchemy `before_cursor_execute`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def _record(self, *args: Any) -> None:
        statement: str = args[2]
        # Savepoints come from the tests' transaction isolation, not from the code under test.
        if not statement.startswith(("SAVEPOINT", "RELEASE SAVEPOINT", "ROLLBACK TO SAVEPOINT")):
            self.statements.append(statement)

    def __enter__(self) -> StatementCounter:
        self.statements.clear()
        event.listen(self.engine.sync_engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine.sync_engine, "before_cursor_execute", self._record)

    @property
    def count(self) -> int:
        return len(self.statements)
