"""DATABASE_READ_URL: queries read a streaming replica, mutations (with the reads of their
payloads) the primary; /readyz needs both.

The replica is real: a hot standby made with pg_basebackup from a primary of this module's
own (tests/private_postgres.py). Which server answered is shown by pausing the replica's
replay: a change committed on the primary is then in a mutation's payload and in the primary,
but not in what any query answers, until the replica replays it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.pool import NullPool

from db import api_keys
from db.engine import make_engine
from db.migrations import upgrade
from db.models import ApiScope
from db.principals import user_principal
from graph.app import create_app
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.backends import plain_url
from tests.graph.conftest import token_for
from tests.private_postgres import (
    Server,
    new_server,
    private_folder,
    running,
    streaming_replica,
    wait_until_replayed,
)

COUNT = "query($p: ID!) { node(id: $p) { ... on Project { taskCounts { total } } } }"
# Introspection goes to the resolvers: the count is read on a session, not compiled.
RESOLVED_COUNT = """query($p: ID!) { __schema { queryType { name } }
  node(id: $p) { ... on Project { taskCounts { total } } } }"""
CREATE = """mutation($p: ID!, $title: String!) {
  createTask(input: {projectId: $p, title: $title}) {
    task { key title project { taskCounts { total } } } userErrors { code }
  }
}"""


@dataclass
class Servers:
    primary: Server
    replica: Server


@pytest.fixture(scope="module")
async def servers() -> AsyncIterator[Servers]:
    with private_folder() as folder, running(new_server(folder / "primary")) as primary:
        engine = create_async_engine(primary.url(), poolclass=NullPool)
        try:
            await upgrade(engine)
        finally:
            await engine.dispose()
        with running(streaming_replica(primary, folder / "replica")) as replica:
            yield Servers(primary, replica)


@dataclass
class Client:
    http: httpx.AsyncClient
    token: str
    key: str
    project: str

    async def post(self, query: str, *, key: bool = False, **variables: str) -> httpx.Response:
        return await self.http.post(
            "/graphql",
            json={"query": query, "variables": {"p": self.project, **variables}},
            headers={"authorization": f"Bearer {self.key if key else self.token}"},
        )

    async def counts(self) -> dict[str, int]:
        """The project's task count as every read path answers it."""
        found = {}
        for name, query, key in (
            ("compiled", COUNT, False),
            ("compiled, by an API key", COUNT, True),
            ("resolvers", RESOLVED_COUNT, False),
        ):
            body = (await self.post(query, key=key)).json()
            assert "errors" not in body, body
            found[name] = body["data"]["node"]["taskCounts"]["total"]
        return found


@pytest.fixture
async def client(servers: Servers, settings: Settings) -> AsyncIterator[Client]:
    primary, replica = servers.primary, servers.replica
    engine = make_engine(primary.url())
    try:
        async with AsyncSession(engine) as session:
            world = await factories.world(session)
            owner = await user_principal(session, world.users["owner"].id)
            assert owner is not None
            key = await api_keys.create_api_key(
                session, owner, world.workspace.id, "both", [ApiScope.READ, ApiScope.WRITE]
            )
            await session.commit()
    finally:
        await engine.dispose()
    wait_until_replayed(primary, replica)
    app = create_app(
        settings.model_copy(
            update={"database_url": primary.url(), "database_read_url": replica.url()}
        )
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
            yield Client(
                http,
                token_for(world.users["owner"].id),
                key.secret,
                to_global_id("Project", world.project.id),
            )
    finally:
        await app.state.engine.dispose()
        await app.state.read_engine.dispose()


async def _tasks(server: Server, title: str) -> int:
    conn = await asyncpg.connect(plain_url(server.url()))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM tasks WHERE title = $1", title))
    finally:
        await conn.close()


async def test_queries_read_the_replica_and_mutations_with_their_payloads_the_primary(
    servers: Servers, client: Client
) -> None:
    primary, replica = servers.primary, servers.replica
    # The two servers are what they are said to be.
    assert primary.psql("SELECT pg_is_in_recovery()") == "f"
    assert replica.psql("SELECT pg_is_in_recovery()") == "t"
    before = await client.counts()
    assert set(before.values()) == {5}, before

    replica.psql("SELECT pg_wal_replay_pause()")
    try:
        for by_key in (False, True):
            title = f"written while the replica waits ({'key' if by_key else 'user'})"
            response = await client.post(CREATE, key=by_key, title=title)
            payload = response.json()["data"]["createTask"]
            # Read after write inside the payload: the new task, counted with the others.
            assert payload["task"]["title"] == title, payload
            assert payload["task"]["project"]["taskCounts"]["total"] == 6 + by_key
            # Written by the primary; the replica has not replayed it.
            assert (await _tasks(primary, title), await _tasks(replica, title)) == (1, 0)
        # Every query is answered by the replica: none sees the new tasks yet.
        assert await client.counts() == before
        # The app's read connections are the replica's (and it is in recovery).
        readers = replica.psql(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'taskgraph'"
            " AND pg_is_in_recovery()"
        )
        assert int(readers) >= 1
    finally:
        replica.psql("SELECT pg_wal_replay_resume()")
    wait_until_replayed(primary, replica)
    assert set((await client.counts()).values()) == {7}

    # How far behind a query is after a mutation, with replay running: measured, not promised.
    title = "timed"
    watcher = await asyncpg.connect(plain_url(replica.url()))
    try:
        started = time.monotonic()
        response = await client.post(CREATE, title=title)
        assert response.json()["data"]["createTask"]["task"]["title"] == title
        committed = time.monotonic()
        seen = "SELECT count(*) FROM tasks WHERE title = $1"
        while not await watcher.fetchval(seen, title):
            assert time.monotonic() - committed < 5, "the replica did not replay within 5 s"
            await asyncio.sleep(0.001)
    finally:
        await watcher.close()
    print(
        f"\nmutation {1000 * (committed - started):.1f} ms; on the replica "
        f"{1000 * (time.monotonic() - committed):.1f} ms after its answer"
    )


async def test_without_the_replica_queries_wait_mutations_go_on_and_readyz_says_why(
    servers: Servers, client: Client
) -> None:
    replica = servers.replica
    ready = await client.http.get("/readyz")
    assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
    replica.stop()
    try:
        ready = await client.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "reason": "the read replica cannot be reached",
        }
        # Queries are refused as any unreachable database is: 503, to retry.
        for query, key in ((COUNT, False), (COUNT, True), (RESOLVED_COUNT, False)):
            response = await client.post(query, key=key)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert {e["extensions"]["code"] for e in response.json()["errors"]} == {
                "SERVICE_UNAVAILABLE"
            }
        # Mutations need only the primary.
        response = await client.post(CREATE, title="while the replica is down")
        body = response.json()
        assert body["data"]["createTask"]["task"]["title"] == "while the replica is down", body
    finally:
        replica.start()
    wait_until_replayed(servers.primary, replica)
    assert (await client.http.get("/readyz")).status_code == 200
    # The connections the replica's stop ended are replaced: queries are answered again.
    assert set((await client.counts()).values()) == {6}
