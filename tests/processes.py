"""Processes the tests start: `taskgraph serve`, and the PostgreSQL servers they leave.

A PostgreSQL server is found by its data directory, so that a test only ever sees (and
ends) its own: never the machine's, nor those of another test run on the same machine.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent


def postmasters(under: Path) -> list[psutil.Process]:
    """The running PostgreSQL servers (postmasters) whose data directory is in `under`."""
    root = under.resolve()
    found = []
    for process in psutil.process_iter(["name", "cmdline"]):
        command = process.info["cmdline"] or []
        if process.info["name"] != "postgres" or "-D" not in command[:-1]:
            continue
        data = Path(command[command.index("-D") + 1])
        with contextlib.suppress(psutil.NoSuchProcess):
            if data.is_relative_to(root) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
    return found


def end(processes: list[psutil.Process]) -> None:
    """Stop processes (SIGINT: PostgreSQL's fast shutdown, Ctrl-C for a server), killing
    those still there after 15 s."""
    for process in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.send_signal(signal.SIGINT)
    _, alive = psutil.wait_procs(processes, timeout=15)
    for process in alive:
        process.kill()
    psutil.wait_procs(alive, timeout=5)


def ended(process: psutil.Process) -> bool:
    """Gone, or a zombie: the process has exited and only waits to be reaped (a stopped
    PostgreSQL's parent is init, which may take its time)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def describe(process: psutil.Process) -> str:
    """`pid command line`, or "" for a process that has ended meanwhile."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return ""
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.NoSuchProcess:
        return ""


def socket_of(pgdata: Path) -> tuple[str, int]:
    """Socket directory and port of the running server of `pgdata` (from postmaster.pid)."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    return lines[4].strip(), int(lines[3])


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Serve:
    """A `taskgraph serve` process on the embedded PostgreSQL of `data_dir`."""

    data_dir: Path
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pgdata(self) -> Path:
        return self.data_dir / "postgres"

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def wait_until_serving(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.process.poll() is None, f"serve exited early:\n{self.output()}"
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"serve did not start:\n{self.output()}"
            time.sleep(0.1)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `signum` and wait for the process to end; its return code."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"serve did not stop:\n{self.output()}") from None


def start_serve(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> Serve:
    """Start `taskgraph serve` (not waiting for it) with the embedded PostgreSQL under
    `data_dir`, from a folder of its own, so that a developer's .env plays no part."""
    port = free_port()
    log = data_dir.parent / f"serve-{port}.log"
    environment = {
        **os.environ,
        "DATA_DIR": str(data_dir),
        "DATABASE_URL": "",
        "SECRET_KEY": "",
        "PYTHONPATH": str(ROOT),
        **(env or {}),
    }
    command = [sys.executable, "-m", "graph.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, cwd=data_dir.parent, env=environment, stdout=out, stderr=out
        )
    return Serve(data_dir=data_dir, process=process, port=port, log=log)
