"""PostgreSQL going away and coming back, on a server of this module's own
(tests/private_postgres.py; never the session's shared one): under a steady mixed load a
restart costs only the requests that meet the outage, each answered 503 SERVICE_UNAVAILABLE,
the server answers again as soon as PostgreSQL does, and no acknowledged write is lost;
start-up waits for the database with a logged, growing delay, and gives up after
DATABASE_WAIT_TIMEOUT with one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
from tests.private_postgres import Server, new_server, private_folder, running
from tests.processes import ROOT

READ = "{ me { id } workspaces { nodes { projects { nodes { tasks { totalCount } } } } } }"
KEY_READ = "{ workspaces { nodes { slug projects { nodes { key } } } } }"
RESOLVED_READ = "{ __schema { queryType { name } } me { name } }"
CREATE = """mutation($p: ID!, $title: String!) {
  createTask(input: {projectId: $p, title: $title}) { task { key title } userErrors { code } }
}"""
OUTAGE = 0.6  # seconds PostgreSQL stays down


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    with private_folder() as folder, running(new_server(folder / "primary")) as started:
        yield started


@pytest.fixture(scope="module")
async def migrated(server: Server) -> str:
    url = server.url()
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
    return url


@dataclass
class Outcome:
    kind: str
    started: float
    ended: float
    status: int
    codes: list[str]
    retry_after: str | None


@dataclass
class World:
    token: str
    key: str
    project: str


@pytest.fixture
async def world(migrated: str) -> AsyncIterator[World]:
    engine = make_engine(migrated)
    try:
        async with AsyncSession(engine) as session:
            w = await factories.world(session)
            owner = await user_principal(session, w.users["owner"].id)
            assert owner is not None
            key = await api_keys.create_api_key(
                session, owner, w.workspace.id, "load", [ApiScope.READ]
            )
            await session.commit()
        yield World(
            token_for(w.users["owner"].id), key.secret, to_global_id("Project", w.project.id)
        )
    finally:
        await engine.dispose()


async def test_a_restart_under_load_costs_only_the_requests_that_meet_it(
    server: Server, migrated: str, world: World, settings: Settings
) -> None:
    app = create_app(settings.model_copy(update={"database_url": migrated, "pool_size": 5}))
    outcomes: list[Outcome] = []
    acknowledged: list[str] = []
    stopping = asyncio.Event()

    async def post(client: httpx.AsyncClient, kind: str, query: str, **variables: str) -> Any:
        credential = world.key if kind == "API key query" else world.token
        started = time.monotonic()
        response = await client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"authorization": f"Bearer {credential}"},
        )
        body = response.json()
        codes = [e["extensions"]["code"] for e in body.get("errors", [])]
        outcomes.append(
            Outcome(
                kind,
                started,
                time.monotonic(),
                response.status_code,
                codes,
                response.headers.get("retry-after"),
            )
        )
        return body

    async def reader(client: httpx.AsyncClient, kind: str, query: str) -> None:
        while not stopping.is_set():
            await post(client, kind, query)
            # In process, a request refused without any I/O (no socket to connect to) does
            # not give the event loop a turn: the other clients would starve.
            await asyncio.sleep(0)

    async def writer(client: httpx.AsyncClient) -> None:
        n = 0
        while not stopping.is_set():
            n += 1
            title = f"written under load {n}"
            body = await post(client, "createTask", CREATE, p=world.project, title=title)
            if not body.get("errors") and body["data"]["createTask"]["task"]:
                acknowledged.append(body["data"]["createTask"]["task"]["title"])
            await asyncio.sleep(0)

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        load = [
            asyncio.create_task(reader(client, "compiled query", READ)),
            asyncio.create_task(reader(client, "compiled query", READ)),
            asyncio.create_task(reader(client, "API key query", KEY_READ)),
            asyncio.create_task(reader(client, "query on the resolvers", RESOLVED_READ)),
            asyncio.create_task(writer(client)),
        ]
        await asyncio.sleep(0.5)
        down = time.monotonic()
        await asyncio.to_thread(server.stop)
        await asyncio.sleep(OUTAGE)
        await asyncio.to_thread(server.start)
        up = time.monotonic()
        await asyncio.sleep(1.5)
        stopping.set()
        await asyncio.gather(*load)
    await app.state.engine.dispose()

    failures = [o for o in outcomes if o.codes or o.status != 200]
    during = [o for o in failures if o.ended >= down]
    assert during, "no request met the outage: the test shows nothing"
    # Every failure is one a client may retry, and says so.
    for o in failures:
        assert (o.status, set(o.codes), o.retry_after) == (503, {"SERVICE_UNAVAILABLE"}, "1"), o
    # Only the requests that met the outage failed: none before it began, and none of those
    # sent once PostgreSQL answered again (connections it ended were replaced, not reused).
    assert all(o.ended >= down for o in failures)
    after = [o for o in outcomes if o.started >= up]
    assert after and not [o for o in after if o.codes or o.status != 200]
    # Each kind of request succeeded again, well within 5 s of PostgreSQL's return.
    for kind in {o.kind for o in outcomes}:
        back = min(o.ended for o in outcomes if o.kind == kind and o.started >= up and not o.codes)
        assert back - up < 5, kind
    # No acknowledged write is lost.
    conn = await asyncpg.connect(plain_url(migrated))
    try:
        stored = {
            row["title"]
            for row in await conn.fetch("SELECT title FROM tasks WHERE title LIKE 'written%'")
        }
    finally:
        await conn.close()
    assert acknowledged and set(acknowledged) <= stored
    print(
        f"\n{len(outcomes)} requests, {len(failures)} failed (all 503), outage "
        f"{up - down:.2f} s; first success after PostgreSQL returned: "
        f"{min(o.ended for o in after) - up:.3f} s; {len(acknowledged)} writes acknowledged"
    )


def _migrate_command(url: str, folder: Path, wait: float) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DATABASE_WAIT_TIMEOUT": str(wait),
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "graph.cli", "migrate"],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_start_up_waits_for_the_database_with_a_logged_growing_delay(
    server: Server, migrated: str, tmp_path: Path
) -> None:
    server.stop()
    command = _migrate_command(migrated, tmp_path, wait=60)
    try:
        assert command.stdout is not None
        lines: list[str] = []
        # The command says that it waits, more than once.
        while sum("cannot be reached" in line for line in lines) < 2:
            line = command.stdout.readline()
            assert line, f"migrate ended before PostgreSQL started:\n{''.join(lines)}"
            lines.append(line)
        server.start()
        rest, _ = command.communicate(timeout=60)
    finally:
        if command.poll() is None:
            command.kill()
            command.wait()
        if not server.running():
            server.start()
    output = "".join(lines) + rest
    assert command.returncode == 0, output
    assert "Database migrated to head." in output
    assert '"level":"WARNING"' in output and "trying again in" in output
    assert "Traceback" not in output


def test_start_up_gives_up_after_the_wait_with_one_line(tmp_path: Path) -> None:
    missing = f"postgresql://postgres@/taskgraph?host={tmp_path / 'no-server'}&port=5432"
    started = time.monotonic()
    command = _migrate_command(missing, tmp_path, wait=1)
    output, _ = command.communicate(timeout=60)
    assert command.returncode == 1, output
    assert time.monotonic() - started < 30
    assert "Traceback" not in output
    [last] = [line for line in output.splitlines() if "gave up" in line]
    assert last.startswith("The database at postgresql") and "cannot be reached" in last
    assert "DATABASE_WAIT_TIMEOUT" in last
