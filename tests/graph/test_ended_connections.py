"""Connections that PostgreSQL ended while they sat in the pool (a restart, an operator's
`pg_terminate_backend`, `idle_session_timeout`) cost no request: a connection seen closed is
replaced when it is taken from the pool, and a call that meets one PostgreSQL ended before it
answered anything runs once more on a fresh connection. Once PostgreSQL has answered part of a
mutation, nothing is run again: the request fails with SERVICE_UNAVAILABLE and leaves no trace.

Only the backends of each test's own database that the app opened are ended (tests/backends.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities, api_keys
from db.engine import PoolSettings, make_engine
from db.models import ApiScope
from db.principals import user_principal
from graph.app import create_app
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.backends import end_backends, end_backends_unnoticed, plain_url
from tests.graph.conftest import token_for

POOL = 4
READ = "{ me { id } workspaces { nodes { projects { nodes { tasks { totalCount } } } } } }"
KEY_READ = "{ workspaces { nodes { slug } } }"
# Introspection is answered by the resolvers, on a session, not by the compiled statement.
RESOLVED_READ = "{ __schema { queryType { name } } me { name } }"
CREATE = """mutation($p: ID!, $title: String!) {
  createTask(input: {projectId: $p, title: $title}) { task { key title } userErrors { code } }
}"""


@dataclass
class Setup:
    client: httpx.AsyncClient
    url: str
    token: str
    key: str
    project: str

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, key: bool = False
    ) -> httpx.Response:
        credential = self.key if key else self.token
        return await self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {credential}"},
        )

    async def fill_the_pool(self) -> None:
        """Every connection of the pool opened, and idle again."""
        answers = await asyncio.gather(*(self.post(READ) for _ in range(2 * POOL)))
        assert {a.status_code for a in answers} == {200}


@pytest.fixture
async def setup(committed_db: str, settings: Settings) -> AsyncIterator[Setup]:
    engine = make_engine(committed_db, PoolSettings(size=POOL, max_overflow=0, timeout=5))
    try:
        async with AsyncSession(engine) as session:
            world = await factories.world(session)
            owner = await user_principal(session, world.users["owner"].id)
            assert owner is not None
            key = await api_keys.create_api_key(
                session, owner, world.workspace.id, "sync", [ApiScope.READ, ApiScope.WRITE]
            )
            await session.commit()
        app = create_app(
            settings.model_copy(update={"pool_size": POOL, "max_overflow": 0, "pool_timeout": 5}),
            engine=engine,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Setup(
                client,
                committed_db,
                token_for(world.users["owner"].id),
                key.secret,
                to_global_id("Project", world.project.id),
            )
    finally:
        await engine.dispose()


REQUESTS: list[tuple[str, str, bool]] = [
    ("compiled query", READ, False),
    ("compiled query by an API key", KEY_READ, True),
    ("query on the resolvers", RESOLVED_READ, False),
    ("createTask", CREATE, False),
    ("createTask by an API key", CREATE, True),
]


@pytest.mark.parametrize("noticed", [True, False], ids=["noticed", "unnoticed"])
async def test_every_request_succeeds_after_every_idle_connection_was_ended(
    setup: Setup, noticed: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Noticed: asyncpg saw the connections close (they are replaced at checkout).
    Unnoticed: PostgreSQL ended them in the instant before the request took one, so its first
    statement meets an ended connection and runs again on a fresh one."""
    caplog.set_level(logging.INFO, logger="taskgraph.database")
    conn = await asyncpg.connect(plain_url(setup.url))
    try:
        for name, query, by_key in REQUESTS:
            await setup.fill_the_pool()
            caplog.clear()
            if noticed:
                ended = await end_backends(setup.url)
            else:
                ended = end_backends_unnoticed(setup.url)
            assert ended == POOL, name
            title = f"after the end, {name}"
            response = await setup.post(query, {"p": setup.project, "title": title}, key=by_key)
            assert response.status_code == 200, (name, response.text)
            body = response.json()
            assert "errors" not in body, (name, body)
            if query is CREATE:
                assert body["data"]["createTask"]["task"]["title"] == title
                # Run again, the mutation still wrote once.
                written = await conn.fetchval("SELECT count(*) FROM tasks WHERE title = $1", title)
                assert written == 1
            retried = [r.getMessage() for r in caplog.records if "on a new one" in r.getMessage()]
            if not noticed:
                assert retried, f"{name}: the retry on a fresh connection did not happen"
    finally:
        await conn.close()


async def test_a_mutation_is_not_run_again_once_postgresql_answered_part_of_it(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The activity row is written after the task row: the connection ends in between.
    real = activities.record
    calls = 0

    async def ending_first(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            conn = await asyncpg.connect(plain_url(setup.url))
            try:
                await conn.fetchval(
                    "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND application_name = 'taskgraph'"
                    " AND state = 'idle in transaction'"
                )
            finally:
                await conn.close()
        return await real(*args, **kwargs)

    monkeypatch.setattr(activities, "record", ending_first)
    title = "half written"
    response = await setup.post(CREATE, {"p": setup.project, "title": title})
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == "1"
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
    assert calls == 1, "the mutation ran again after PostgreSQL had answered part of it"
    conn = await asyncpg.connect(plain_url(setup.url))
    try:
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE title = $1", title) == 0
    finally:
        await conn.close()
    # The next one succeeds, on a fresh connection.
    response = await setup.post(CREATE, {"p": setup.project, "title": "whole"})
    assert response.json()["data"]["createTask"]["task"]["title"] == "whole"
