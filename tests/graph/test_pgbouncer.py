"""The server behind PgBouncer in transaction mode (docs/deployment.md): with
STATEMENT_CACHE=false every path to the database works while several client connections
share fewer server connections; with the statement caches on, the same load fails.

Needs Debian's `pgbouncer` (1.18, without prepared-statement support); `.ci/run` installs it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Integer, bindparam, func, literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import prepared
from db.api_keys import create_api_key
from db.engine import PoolSettings, make_engine
from db.migrations import upgrade_sync
from db.models import ApiScope, Task
from db.principals import user_principal
from graph.app import create_app
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import SECRET, token_for
from tests.graph.live_app import EVENTS, bearer, served, socket_to

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"
# Fewer server connections than the clients' pools hold: transactions of different client
# connections take turns on the same server connection.
SERVER_CONNECTIONS = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def bouncer_url(committed_db: str, tmp_path: Path) -> Iterator[str]:
    """`committed_db` through a PgBouncer in transaction mode, listening on loopback."""
    assert os.path.exists(PGBOUNCER), "pgbouncer is not installed (apt-get install pgbouncer)"
    url = make_url(committed_db)
    socket_dir = url.query.get("host")
    host = str(socket_dir) if socket_dir else url.host or "127.0.0.1"
    port = int(str(url.query.get("port") or url.port or 5432))
    user = url.username or "postgres"
    folder = tmp_path / "pgbouncer"
    folder.mkdir()
    listen = _free_port()
    # Trust on loopback, as the test PostgreSQL itself; a password there would go in auth_file.
    (folder / "users.txt").write_text(f'"{user}" ""\n')
    (folder / "pgbouncer.ini").write_text(
        f"[databases]\n{url.database} = host={host} port={port} dbname={url.database}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {listen}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {folder / 'users.txt'}\n"
        f"pool_mode = transaction\ndefault_pool_size = {SERVER_CONNECTIONS}\n"
        "max_client_conn = 200\n"
    )
    command = [PGBOUNCER, str(folder / "pgbouncer.ini")]
    if os.geteuid() == 0:
        # PgBouncer refuses to run as root; as the PostgreSQL's own user it can reach its
        # socket directory.
        owner = Path(host).owner() if socket_dir else "nobody"
        for path in (tmp_path, folder, *folder.iterdir()):
            path.chmod(0o755 if path.is_dir() else 0o644)
        command[1:1] = ["-u", owner]
    log = folder / "stderr.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(command, stderr=stderr)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection(("127.0.0.1", listen), timeout=0.5):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"pgbouncer did not start: {log.read_text()}") from None
                time.sleep(0.05)
        yield url.set(host="127.0.0.1", port=listen, query={}).render_as_string(hide_password=False)
    finally:
        process.terminate()
        process.wait(timeout=10)


async def _mixed_load(engine: AsyncEngine, rounds: int = 3, width: int = 30) -> list[str]:
    """Sessions (SQLAlchemy's statements and db/prepared.py's on the session's connection)
    and pooled connections without a session, concurrently; the errors they met."""
    shape = prepared.shape(
        ("pgbouncer-test",),
        lambda: select(literal(1).label("one"), bindparam("x", type_=Integer).label("x")),
    )
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            async with AsyncSession(engine) as session:
                tasks = (await session.execute(select(func.count()).select_from(Task))).scalar()
                assert isinstance(tasks, int)
                assert (await prepared.fetch(session, shape, x=i))[0]["x"] == i
                await session.commit()
            async with prepared.connection(engine) as pooled:
                assert (await pooled.rows(shape, x=i))[0]["x"] == i
                assert await pooled.value("SELECT $1::int * 2", [i]) == 2 * i
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

    for _ in range(rounds):
        await asyncio.gather(*(one(i) for i in range(width)))
    return errors


@pytest.fixture
async def seeded(committed_db: str) -> AsyncIterator[tuple[factories.World, str]]:
    """A world committed to `committed_db`, and a READ API key of its workspace."""
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as session:
            world = await factories.world(session)
            principal = await user_principal(session, world.users["admin"].id)
            assert principal is not None
            key = await create_api_key(
                session, principal, world.workspace.id, "pgbouncer", [ApiScope.READ]
            )
            await session.commit()
        yield world, key.secret
    finally:
        await engine.dispose()


BOARD = """query($id: ID!) { node(id: $id) { ... on Project {
  tasks(first: 50) { nodes { key title assignee { name } labels { name } } } } } }"""
FILTERED = """query($id: ID!) { node(id: $id) { ... on Project {
  tasks(first: 10, filter: {status: [TODO]}, orderBy: [{field: PRIORITY, direction: DESC}]) {
    nodes { key comments(first: 5) { nodes { body } } } } } } }"""
CREATE = """mutation($p: ID!, $t: String!) {
  createTask(input: {projectId: $p, title: $t}) { task { key } userErrors { code } } }"""


async def test_the_server_serves_through_pgbouncer_in_transaction_mode(
    bouncer_url: str, seeded: tuple[factories.World, str]
) -> None:
    world, api_key = seeded
    settings = Settings(
        database_url=bouncer_url,
        secret_key=SECRET,
        statement_cache=False,
        # PgBouncer refuses statement_timeout as a start-up parameter: it is the role's.
        statement_timeout_ms=0,
        pool_size=6,
        rate_limit_maximum=1e9,
        rate_limit_restore_rate=1e9,
    )
    # The start-up migration runs through PgBouncer too, on every start.
    for _ in range(2):
        await asyncio.to_thread(upgrade_sync, bouncer_url, statement_cache=False)
    app = create_app(settings)
    project = to_global_id("Project", world.project.id)
    member = token_for(world.users["member"].id)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

            async def post(query: str, variables: dict[str, str], token: str) -> dict[str, object]:
                response = await client.post(
                    "/graphql",
                    json={"query": query, "variables": variables},
                    headers={"authorization": f"Bearer {token}"},
                )
                assert response.status_code == 200, response.text
                body: dict[str, object] = response.json()
                assert "errors" not in body, body
                return body

            calls = []
            for i in range(12):
                # The compiled statement on a pooled connection, the resolvers' session
                # and loaders, an API key checked on a pooled connection, a mutation.
                calls.append(post(BOARD, {"id": project}, member))
                calls.append(post(FILTERED, {"id": project}, member))
                calls.append(post(BOARD, {"id": project}, api_key))
                calls.append(post(CREATE, {"p": project, "t": f"through pgbouncer {i}"}, member))
            answers = await asyncio.gather(*calls)
            ready = await client.get("/readyz")
    finally:
        await app.state.engine.dispose()
    assert ready.status_code == 200, ready.text
    keys = {a["data"]["createTask"]["task"]["key"] for a in answers if "createTask" in a["data"]}  # type: ignore[index]
    assert len(keys) == 12
    # Every board read after its writes sees every task created so far, none twice.
    engine = make_engine(bouncer_url, PoolSettings(statement_cache=False, statement_timeout_ms=0))
    try:
        async with engine.connect() as connection:
            titles = (
                await connection.execute(
                    text("SELECT title FROM tasks WHERE title LIKE 'through pgbouncer %'")
                )
            ).scalars()
            assert sorted(titles) == sorted(f"through pgbouncer {i}" for i in range(12))
        assert await _mixed_load(engine) == []
    finally:
        await engine.dispose()


async def test_statement_caches_fail_under_transaction_pooling(bouncer_url: str) -> None:
    # Why the setting exists: the same load with the caches on meets other connections'
    # prepared statements, or misses its own.
    engine = make_engine(bouncer_url, PoolSettings(statement_timeout_ms=0))
    try:
        errors = await _mixed_load(engine)
    finally:
        await engine.dispose()
    assert errors, "the statement caches worked through PgBouncer in transaction mode"
    assert all("prepared statement" in error for error in errors), errors[:3]


async def test_live_events_listen_beside_pgbouncer(
    bouncer_url: str, committed_db: str, seeded: tuple[factories.World, str]
) -> None:
    """Through PgBouncer in transaction mode a LISTEN would hear nothing (the next transaction
    runs on another server connection): DATABASE_LISTEN_URL points the listener at PostgreSQL
    itself, while the events' renders and the mutation go through PgBouncer."""
    world, _ = seeded
    settings = Settings(
        database_url=bouncer_url,
        database_listen_url=committed_db,
        secret_key=SECRET,
        statement_cache=False,
        statement_timeout_ms=0,
        rate_limit_maximum=1e9,
        rate_limit_restore_rate=1e9,
    )
    engine = make_engine(bouncer_url, PoolSettings(statement_cache=False, statement_timeout_ms=0))
    try:
        async with served(settings, engine) as live, socket_to(live.ws) as ws:
            await ws.init(bearer(token_for(world.users["viewer"].id)))
            await ws.subscribe(
                "1", EVENTS, {"workspace": to_global_id("Workspace", world.workspace.id)}
            )
            await live.until_subscribed(1)
            project = to_global_id("Project", world.project.id)
            created = await live.post(
                CREATE,
                {"p": project, "t": "heard beside pgbouncer"},
                token=token_for(world.users["member"].id),
            )
            assert created["data"]["createTask"]["userErrors"] == [], created
            event = (await ws.next_message())["payload"]["data"]["taskEvents"]
            assert (event["kind"], event["task"]["title"]) == ("CREATED", "heard beside pgbouncer")
    finally:
        await engine.dispose()
