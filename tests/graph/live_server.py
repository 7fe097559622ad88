"""`taskgraph serve` as a process of its own on a free loopback port, on a committed test
database: for tests that need a real HTTP server (the protocol audit, real connections)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.graph.conftest import SECRET


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def _start(
    database_url: str, folder: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], Server]:
    port = _free_port()
    log = folder / "server.log"
    given = env or {}
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": SECRET,
        # The defaults, stated: the audits' GET requests meet GraphiQL's route.
        "GRAPHIQL": "true",
        "DEBUG": "false",
        "CORS_ORIGINS": "",
        **given,
    }
    command = [sys.executable, "-m", "graph.cli", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port)]
    with log.open("wb") as out:
        # The temporary folder as working directory: a developer's .env plays no part.
        server = subprocess.Popen(command, cwd=folder, env=env, stdout=out, stderr=out)
    handle = Server(url=f"http://127.0.0.1:{port}/graphql", log=log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                pytest.fail(f"the server exited ({server.returncode}):\n{handle.output()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    return server, handle
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server did not start within 60 s:\n{handle.output()}")
            time.sleep(0.1)
    except BaseException:
        _stop(server)
        raise


def _stop(server: subprocess.Popen[bytes]) -> None:
    server.terminate()
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait(timeout=10)


@asynccontextmanager
async def serving(
    database_url: str, folder: Path, env: dict[str, str] | None = None
) -> AsyncIterator[Server]:
    """`taskgraph serve` as a process of its own, stopped (and waited for) afterwards."""
    await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    process, server = await asyncio.to_thread(_start, database_url, folder, env)
    try:
        yield server
    finally:
        await asyncio.to_thread(_stop, process)


@pytest.fixture
async def live_server(committed_db: str, tmp_path: Path) -> AsyncIterator[Server]:
    async with serving(committed_db, tmp_path) as server:
        yield server
