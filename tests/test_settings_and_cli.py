"""Settings fail early with one clear line; the CLI and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from db import embedded
from graph.cli import app
from graph.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"POOL_SIZE": "0"}, "POOL_SIZE"),
        ({"POOL_SIZE": "many"}, "POOL_SIZE"),
        ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"ACCESS_TOKEN_MINUTES": "-5"}, "ACCESS_TOKEN_MINUTES"),
    ],
)
def test_bad_settings_fail_with_one_line(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], fragment: str
) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert fragment in message and "\n" not in message


def test_settings_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://u@h:5432/d"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert not settings.embedded


def test_serve_refuses_database_url_without_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "SECRET_KEY must be set" in result.output


def test_export_schema_check_detects_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "schema.graphql"
    stale.write_text("type Query { old: Int }\n")
    assert (
        CliRunner().invoke(app, ["export-schema", "--path", str(stale), "--check"]).exit_code == 1
    )
    assert CliRunner().invoke(app, ["export-schema", "--path", str(stale)]).exit_code == 0
    assert (
        CliRunner().invoke(app, ["export-schema", "--path", str(stale), "--check"]).exit_code == 0
    )


async def _query(url: str, *statements: str) -> list[tuple[object, ...]]:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.begin() as conn:
            for sql in statements:
                result = await conn.execute(text(sql))
            return list(result.all()) if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_embedded_server_keeps_its_data_across_restarts(tmp_path: Path) -> None:
    pgdata = tmp_path / "pg"
    url = await asyncio.to_thread(embedded.start, pgdata)
    await _query(url, "CREATE TABLE kept (v text)", "INSERT INTO kept VALUES ('still here')")
    await asyncio.to_thread(embedded.stop, pgdata)
    assert not (pgdata / "postmaster.pid").exists(), "the server should have stopped"
    url = await asyncio.to_thread(embedded.start, pgdata)
    try:
        assert await _query(url, "SELECT v FROM kept") == [("still here",)]
    finally:
        await asyncio.to_thread(embedded.stop, pgdata)


LOG_IN = """mutation {
  logIn(input: {email: "demo@taskgraph.dev", password: "taskgraph-demo"}) {
    accessToken userErrors { message }
  }
}"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_starts_on_the_embedded_database_with_demo_data(tmp_path: Path) -> None:
    """`taskgraph serve` with no set-up: embedded PostgreSQL, migrations, demo data, API."""
    port = _free_port()
    env = {
        **os.environ,
        "DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": "",
        "SECRET_KEY": "",
    }
    command = [
        sys.executable,
        "-m",
        "graph.cli",
        "serve",
        "--port",
        str(port),
        "--demo-scale",
        "0.002",
    ]
    server = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not start within 60 s"
            time.sleep(0.2)
        login = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": LOG_IN},
            timeout=10,
        ).json()
        token = login["data"]["logIn"]["accessToken"]
        assert token, login
        me = httpx.post(
            f"http://127.0.0.1:{port}/graphql",
            json={"query": "{ me { email } workspaces { totalCount } }"},
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["data"]
        assert me["me"]["email"] == "demo@taskgraph.dev"
        assert me["workspaces"]["totalCount"] >= 1
        assert (tmp_path / "data" / "secret_key").exists()
    finally:
        server.terminate()
        server.wait(timeout=30)
