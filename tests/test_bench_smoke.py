"""The benchmark runs end to end at a tiny scale (it must run, not meet numbers), and every
target gives the same answers to the read ops."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from bench import ops
from bench.ops import ALL_OPS, READ_OPS
from bench.run import disagreement
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
            "7",
            "--database-url",
            url,
        ]
        profiled = await asyncio.to_thread(
            subprocess.run, profile, cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert profiled.returncode == 0, profiled.stdout[-3000:] + profiled.stderr[-3000:]
        reported = [line.split()[0] for line in profiled.stdout.splitlines() if "ms CPU" in line]
        assert reported == list(READ_OPS)
        command = [
            sys.executable,
            "-m",
            "bench",
            "run",
            "--scale",
            "0.005",
            "--duration",
            "0.2",
            "--warmup",
            "0.05",
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
        # A disagreement between targets ends the run before any load, with the difference.
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        agreed = [line for line in result.stdout.splitlines() if line.startswith("answers agree")]
        assert agreed == [f"answers agree: {', '.join(READ_OPS)} (10 requests each)"]
    finally:
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    report = json.loads(output.read_text())
    assert set(report["targets"]) == {"taskgraph", "floor", "naive"}
    for target, results in report["targets"].items():
        assert set(results) == set(ALL_OPS), target
        for op, row in results.items():
            assert row["rps"] > 0 and row["errors"] == 0, (target, op, row)
            assert row["statements_per_request"] >= 1, (target, op)


def test_answers_are_compared_as_json_values() -> None:
    request = ops.Request(ops.body("board", {"id": "UHJvamVjdDox"}), "token")
    built = {"board": ops.Op("board", [request])}

    def answers(*per_target: object) -> dict[str, dict[str, list[object]]]:
        return {f"t{i}": {"board": [{"data": data}]} for i, data in enumerate(per_target)}

    same = {"node": {"position": 1024.0, "tags": ["a", "b"], "ok": True}}
    # Key order and 1024 against 1024.0 are no difference (PostgreSQL writes numbers so).
    reordered = {"node": {"ok": True, "tags": ["a", "b"], "position": 1024}}
    assert disagreement(answers(same, reordered), built) is None
    for other, where in (
        ({"node": {"position": 1024.5, "tags": ["a", "b"], "ok": True}}, "data.node.position"),
        ({"node": {"position": 1024.0, "tags": ["b", "a"], "ok": True}}, "data.node.tags[0]"),
        ({"node": {"position": 1024.0, "tags": ["a"], "ok": True}}, "data.node.tags: 2 items"),
        ({"node": {"position": 1024.0, "tags": ["a", "b"], "ok": 1}}, "data.node.ok"),
        ({"node": {"position": 1024.0, "tags": ["a", "b"]}}, "data.node.ok: present in one"),
        ({"node": None}, "data.node"),
    ):
        found = disagreement(answers(same, same, other), built)
        assert found is not None and found.startswith("board: t2 and t0 disagree on request 0")
        assert where in found, found
