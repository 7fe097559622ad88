"""/metrics of a real `taskgraph serve --workers 2`: whichever worker answers a scrape, it
counts the requests of both; gauges add up over the live workers only; the command's
metrics folder is gone after it stops."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.processes import Serve, end, postmasters, start_serve

PING = {"query": "query Ping { __typename }"}
# What a worker leaves when it is killed: its gauges' file, its process gone.
DEAD_WORKER = """
from prometheus_client import Gauge
Gauge("taskgraph_db_pool_size", "", multiprocess_mode="livesum").set(10)
"""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Serve, Path]]:
    """`serve --workers 2` on a fresh embedded PostgreSQL, its temporary files in a folder
    of the test's; afterwards whatever a failing test left is ended."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    # As /tmp is: the embedded PostgreSQL's initdb, run as a user of its own, fails otherwise.
    temporary.chmod(0o777)
    env = {"TMPDIR": str(temporary), "METRICS": "", "PROMETHEUS_MULTIPROC_DIR": ""}
    serving = start_serve(tmp_path / "data", "--workers", "2", "--no-demo", env=env)
    try:
        yield serving, temporary
    finally:
        if serving.process.poll() is None:
            parent = psutil.Process(serving.process.pid)
            end([parent, *parent.children(recursive=True)])
        serving.process.wait(timeout=10)
        end(postmasters(tmp_path / "data"))


def _total(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


def _scrape(serving: Serve) -> str:
    # A connection of its own: either worker may take it.
    response = httpx.get(f"{serving.url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    return response.text


async def _pings(serving: Serve, count: int) -> None:
    async def one() -> None:
        async with httpx.AsyncClient(base_url=serving.url, timeout=10) as client:
            assert (await client.post("/graphql", json=PING)).status_code == 200

    await asyncio.gather(*(one() for _ in range(count)))


_PID = re.compile(r"_(\d+)\.db$")


def _pids(files: Iterable[Path]) -> set[int]:
    """The processes whose values these files hold."""
    return {int(m.group(1)) for path in files if (m := _PID.search(path.name))}


def test_two_workers_count_together(server: tuple[Serve, Path]) -> None:
    serving, temporary = server
    serving.wait_until_serving()
    (folder,) = temporary.glob("taskgraph-metrics-*")
    # Serving, one worker may still be starting: it has its files once its app is built.
    deadline = time.monotonic() + 120
    while True:
        workers = {child.pid for child in psutil.Process(serving.process.pid).children()}
        workers &= _pids(folder.iterdir())
        if len(workers) == 2:
            break
        assert time.monotonic() < deadline, sorted(p.name for p in folder.iterdir())
        time.sleep(0.1)

    sent = 0
    deadline = time.monotonic() + 30
    # Until both workers have counted a request (each has its counter file).
    while _pids(folder.glob("counter_*.db")) != workers:
        assert time.monotonic() < deadline, "one worker never got a request"
        asyncio.run(_pings(serving, 8))
        sent += 8

    for _ in range(6):
        text = _scrape(serving)
        ping = {"operation_type": "query", "operation_name": "Ping"}
        assert _total(text, "taskgraph_graphql_requests_total", **ping, status="200") == sent
        assert _total(text, "taskgraph_graphql_request_duration_seconds_count", **ping) == sent
        # Each worker keeps POOL_SIZE (10) connections.
        assert _total(text, "taskgraph_db_pool_size") == 20

    # A process that died without stopping (a worker killed outright) left its gauges: they
    # leave the sums at the next scrape; counts stay.
    subprocess.run(
        [sys.executable, "-c", DEAD_WORKER],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(folder)},
        check=True,
        timeout=60,
    )
    (left,) = set(folder.glob("gauge_livesum_*.db")) - {
        folder / f"gauge_livesum_{pid}.db" for pid in workers
    }
    text = _scrape(serving)
    assert _total(text, "taskgraph_db_pool_size") == 20
    assert not left.exists()
    assert _total(text, "taskgraph_graphql_requests_total", operation_name="Ping") == sent

    # Uvicorn's supervisor takes the signal and returns; the command then exits as usual.
    assert serving.stop(signal.SIGTERM) == 0, serving.output()
    assert not folder.exists()
