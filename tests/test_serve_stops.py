"""`taskgraph serve` stops cleanly on SIGTERM and SIGINT: requests in flight finish (within
SHUTDOWN_TIMEOUT), new connections are refused, WebSockets close with 1001, and the
embedded PostgreSQL stops, also one adopted from a run that was killed; several workers
share one embedded PostgreSQL.

Each test runs the real command as a process of its own, on a data directory seeded once.
A request is kept in flight deterministically: the test holds a lock on `tasks` in the
server's own database while the request reads them, and lets go when it wants.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import psutil
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as sync_websocket

from tests.processes import ROOT, Serve, end, ended, free_port, postmasters, socket_of, start_serve

LOG_IN = """mutation {
  logIn(input: {email: "demo@taskgraph.dev", password: "taskgraph-demo"}) {
    accessToken userErrors { message }
  }
}"""
TASKS = """{ workspaces(first: 1) { nodes { slug
  projects(first: 1) { nodes { key tasks(first: 3) { nodes { key title } } } } } } }"""


def _command(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATA_DIR": str(data_dir), "DATABASE_URL": "", "SECRET_KEY": ""}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parent.parent)
    return subprocess.run(
        [sys.executable, "-m", "graph.cli", *args],
        cwd=data_dir.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with demo data, made by `taskgraph seed`, which stops its
    PostgreSQL when it is done."""
    folder = tmp_path_factory.mktemp("serve") / "data"
    done = _command("seed", "--scale", "0.002", data_dir=folder)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert not postmasters(folder), "seed left its PostgreSQL running"
    return folder


@pytest.fixture
def serve(data_dir: Path) -> Iterator[Callable[..., Serve]]:
    """Starts `taskgraph serve` on `data_dir`; afterwards ends whatever a failing test left
    of its own: its serve processes (and their workers), then their PostgreSQL."""
    started: list[Serve] = []

    def start(*args: str, env: dict[str, str] | None = None) -> Serve:
        server = start_serve(data_dir, *args, env=env)
        started.append(server)
        return server

    yield start
    for server in started:
        if server.process.poll() is None:
            parent = psutil.Process(server.process.pid)
            end([parent, *parent.children(recursive=True)])
        server.process.wait(timeout=10)
    end(postmasters(data_dir))


async def _log_in(client: httpx.AsyncClient) -> str:
    answer = (await client.post("/graphql", json={"query": LOG_IN})).json()
    token: str = answer["data"]["logIn"]["accessToken"]
    assert token, answer
    return token


@asynccontextmanager
async def _tasks_locked(server: Serve, *, let_go: bool = True) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's to the server's database, holding every read of `tasks`
    back until the block ends (with `let_go`; else until PostgreSQL ends the connection)."""
    host, port = socket_of(server.pgdata)
    conn = await asyncpg.connect(host=host, port=port, user="postgres", database="taskgraph")
    try:
        await conn.execute("BEGIN; LOCK TABLE tasks IN ACCESS EXCLUSIVE MODE")
        yield conn
        if let_go:
            await conn.execute("ROLLBACK")
    finally:
        conn.terminate()


async def _until_a_request_waits(conn: asyncpg.Connection) -> None:
    """Returns once one of the server's statements waits for the test's lock: the request
    is in flight."""
    deadline = time.monotonic() + 30
    while True:
        waiting = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = 'taskgraph'"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        if waiting:
            return
        assert time.monotonic() < deadline, "the request never reached the database"
        await asyncio.sleep(0.05)


async def _until_refused(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except ConnectionRefusedError:
            return
        writer.close()
        assert time.monotonic() < deadline, "a stopping server still took new connections"
        await asyncio.sleep(0.05)


async def test_sigterm_lets_the_request_in_flight_finish_then_stops_postgres(
    serve: Callable[..., Serve],
) -> None:
    server = serve()
    await asyncio.to_thread(server.wait_until_serving)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        token = await _log_in(client)
        async with _tasks_locked(server) as conn:
            request = asyncio.create_task(
                client.post(
                    "/graphql", json={"query": TASKS}, headers={"authorization": f"Bearer {token}"}
                )
            )
            await _until_a_request_waits(conn)
            server.process.send_signal(signal.SIGTERM)
            await _until_refused(server.port)
            # Still serving the request held back by the lock, a second later.
            await asyncio.sleep(1)
            assert not request.done() and server.process.poll() is None, server.output()
        answer = await asyncio.wait_for(request, 30)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert "errors" not in body, body
    projects = body["data"]["workspaces"]["nodes"][0]["projects"]["nodes"]
    assert projects[0]["tasks"]["nodes"], body
    returncode = await asyncio.to_thread(server.process.wait, 60)
    # Ended by the signal it got (after cleaning up), as uvicorn ends.
    assert returncode == -signal.SIGTERM, server.output()
    assert not postmasters(server.data_dir), "the embedded PostgreSQL is still running"


async def test_a_request_outlasting_shutdown_timeout_is_cut_off_and_serve_still_stops(
    serve: Callable[..., Serve],
) -> None:
    server = serve(env={"SHUTDOWN_TIMEOUT": "1"})
    await asyncio.to_thread(server.wait_until_serving)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
        token = await _log_in(client)
        async with _tasks_locked(server, let_go=False) as conn:
            request = asyncio.create_task(
                client.post(
                    "/graphql", json={"query": TASKS}, headers={"authorization": f"Bearer {token}"}
                )
            )
            await _until_a_request_waits(conn)
            signalled = time.monotonic()
            server.process.send_signal(signal.SIGTERM)
            # The lock is never let go: only the timeout ends the request.
            returncode = await asyncio.to_thread(server.process.wait, 60)
            took = time.monotonic() - signalled
            outcome: Any = await asyncio.gather(request, return_exceptions=True)
    assert returncode == -signal.SIGTERM, server.output()
    assert 1 <= took < 20, (took, server.output())
    assert "timeout graceful shutdown exceeded" in server.output()
    answer = outcome[0]
    assert isinstance(answer, Exception) or answer.status_code != 200, answer
    assert not postmasters(server.data_dir), "the embedded PostgreSQL is still running"


async def test_workers_share_one_embedded_postgres_and_sigint_stops_them_all(
    serve: Callable[..., Serve],
) -> None:
    server = serve("--workers", "2")
    await asyncio.to_thread(server.wait_until_serving)
    (postmaster,) = postmasters(server.data_dir)
    workers = [
        child
        for child in psutil.Process(server.process.pid).children()
        if "multiprocessing.spawn" in " ".join(child.cmdline())
    ]
    assert len(workers) == 2
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        await _log_in(client)
        for _ in range(6):
            assert (await client.get("/readyz")).status_code == 200
    # The workers used the server started by the parent: no other one was started.
    assert [p.pid for p in postmasters(server.data_dir)] == [postmaster.pid]
    returncode = await asyncio.to_thread(server.stop, signal.SIGINT)
    # Uvicorn's supervisor takes the signal and returns; the command then exits as usual.
    assert returncode == 0, server.output()
    assert all(ended(worker) for worker in workers)
    assert ended(postmaster)
    assert not postmasters(server.data_dir)


async def test_a_postgres_left_by_a_killed_serve_is_adopted_and_stopped_with_the_next(
    serve: Callable[..., Serve], data_dir: Path
) -> None:
    crashed = serve()
    await asyncio.to_thread(crashed.wait_until_serving)
    (postmaster,) = postmasters(data_dir)
    crashed.process.kill()
    assert await asyncio.to_thread(crashed.process.wait, 10) == -signal.SIGKILL
    # A process killed outright cleans nothing up: its PostgreSQL stays.
    assert [p.pid for p in postmasters(data_dir)] == [postmaster.pid]

    server = serve()
    await asyncio.to_thread(server.wait_until_serving)
    assert [p.pid for p in postmasters(data_dir)] == [postmaster.pid], "not adopted"
    # A command beside the server shares its PostgreSQL and leaves it running.
    done = await asyncio.to_thread(_command, "migrate", data_dir=data_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        assert (await client.get("/readyz")).status_code == 200
        await _log_in(client)
    assert [p.pid for p in postmasters(data_dir)] == [postmaster.pid]

    assert await asyncio.to_thread(server.stop, signal.SIGTERM) == -signal.SIGTERM
    assert ended(postmaster), server.output()
    assert not postmasters(data_dir)


async def accepting_websockets(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """An ASGI app that accepts any WebSocket and keeps it open until it ends."""
    assert scope["type"] == "websocket"
    await receive()
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def test_a_stopping_server_closes_websockets_with_1001_going_away() -> None:
    # Uvicorn with serve's WebSocket protocol, on an app of its own: /graphql's WebSockets
    # are refused today (the view's context takes an HTTP request only).
    port = free_port()
    code = (
        "import uvicorn\n"
        "from graph.cli import WEBSOCKET_PROTOCOL\n"
        f"uvicorn.run('tests.test_serve_stops:accepting_websockets', port={port},"
        " ws=WEBSOCKET_PROTOCOL, lifespan='off', log_level='warning')"
    )
    process = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "uvicorn did not start"
                time.sleep(0.1)
        with sync_websocket(f"ws://127.0.0.1:{port}/") as ws:
            process.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
