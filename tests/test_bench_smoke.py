"""The benchmark runs end to end at a tiny scale (it must run, not meet numbers)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.ops import ALL_OPS
from tests.conftest import _admin

ROOT = Path(__file__).resolve().parent.parent


async def test_bench_runs_every_op_against_every_target(server_url: str, tmp_path: Path) -> None:
    name = f"taskgraph_bench_{uuid.uuid4().hex[:8]}"
    await _admin(server_url, f'CREATE DATABASE "{name}"')
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    output = tmp_path / "results.json"
    try:
        # First, while the data is as seeded (the create op adds tasks).
        profile = [
            sys.executable,
            "-m",
            "bench",
            "profile",
            "--scale",
            "0.005",
            "--requests",
            "14",
            "--database-url",
            url,
        ]
        profiled = await asyncio.to_thread(
            subprocess.run, profile, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert profiled.returncode == 0, profiled.stdout[-3000:] + profiled.stderr[-3000:]
        reported = [line.split()[0] for line in profiled.stdout.splitlines() if "ms CPU" in line]
        assert reported == ["board", "detail", "export", "me"]
        command = [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--scale",
            "0.005",
            "--duration",
            "0.5",
            "--warmup",
            "0.1",
            "--concurrency",
            "2",
            "--clients",
            "1",
            "--database-url",
            url,
            "--output",
            str(output),
        ]
        result = await asyncio.to_thread(
            subprocess.run, command, cwd=ROOT, capture_output=True, text=True, timeout=240
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report = json.loads(output.read_text())
    assert set(report["targets"]) == {"taskgraph", "floor", "naive"}
    for target, ops in report["targets"].items():
        assert set(ops) == set(ALL_OPS), target
        for op, row in ops.items():
            assert row["rps"] > 0 and row["errors"] == 0, (target, op, row)
            assert row["statements_per_request"] >= 1, (target, op)
