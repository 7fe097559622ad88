"""`python -m bench live`: live events under load. Thousands of WebSocket subscribers on one
worker, spread over the workspaces and two roles (a member and a viewer of each), while task
changes commit at a steady rate through the domain's own command (`db.tasks.update_task`, on a
connection of the benchmark's, so that the server's CPU is the live events' alone).

Reported: latency from commit to delivery (p50, p99), server CPU per delivered event, SQL
statements per event (the database's count of transactions, less the writer's own), peak RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from websockets.asyncio.client import connect

from bench.load import percentile
from bench.server_settings import LIMITS, ROOT, SECRET, free_port
from db.engine import make_engine

SUBSCRIPTION = """subscription Board($w: ID!) {
  taskEvents(workspaceId: $w) {
    kind taskId changedFields occurredAt
    actor { name }
    task { key title status priority viewerCanEdit assignee { name email } labels { name color } }
  }
}"""


async def _cast(url: str) -> dict[str, Any]:
    """Per workspace: a member and a viewer (made so if the data has none), and some tasks."""
    from db.principals import user_principal
    from graph.auth import issue_access_token
    from graph.ids import to_global_id

    engine = make_engine(url)
    try:
        async with engine.begin() as conn:
            workspaces = (
                (await conn.execute(text("SELECT id FROM workspaces ORDER BY id"))).scalars().all()
            )
            cast: list[dict[str, Any]] = []
            for w in workspaces:
                members = (
                    await conn.execute(
                        text(
                            "SELECT user_id, role FROM memberships WHERE workspace_id = :w "
                            "ORDER BY user_id"
                        ),
                        {"w": w},
                    )
                ).all()
                by_role = {role: user for user, role in reversed(members)}
                member = by_role.get("MEMBER") or by_role.get("ADMIN") or by_role["OWNER"]
                viewer = by_role.get("VIEWER")
                if viewer is None:
                    viewer = next(u for u, r in members if u != member and r != "OWNER")
                    await conn.execute(
                        text(
                            "UPDATE memberships SET role = 'VIEWER' "
                            "WHERE workspace_id = :w AND user_id = :u"
                        ),
                        {"w": w, "u": viewer},
                    )
                tasks = (
                    (
                        await conn.execute(
                            text(
                                "SELECT id FROM tasks WHERE workspace_id = :w ORDER BY id LIMIT 200"
                            ),
                            {"w": w},
                        )
                    )
                    .scalars()
                    .all()
                )
                cast.append(
                    {
                        "workspace": w,
                        "workspace_id": to_global_id("Workspace", w),
                        "tokens": [
                            issue_access_token(SECRET, u, timedelta(hours=2))[0]
                            for u in (member, viewer)
                        ],
                        "writer": member,
                        "tasks": list(tasks),
                    }
                )
        async with AsyncSession(engine) as session:
            for entry in cast:
                entry["principal"] = await user_principal(session, entry["writer"])
        return {"cast": cast}
    finally:
        await engine.dispose()


class _Server:
    def __init__(self, url: str, env: dict[str, str]) -> None:
        self.port = free_port()
        command = [sys.executable, "-m", "graph.cli", "serve", "--host", "127.0.0.1"]
        command += ["--port", str(self.port)]
        runner = os.environ.get("BENCH_LIVE_SERVER")
        if runner:
            # Another way to serve the app (bench/profiled_server.py), given the port.
            command = [sys.executable, runner, str(self.port)]
        full = {**os.environ, **LIMITS, "DATABASE_URL": url, "SECRET_KEY": SECRET, **env}
        full["LOG_LEVEL"] = "WARNING"
        self.process = subprocess.Popen(  # noqa: S603
            command, cwd=ROOT, env=full, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 90
        import httpx

        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        # `serve` runs the app in a child process of its own (uvicorn's worker) or in itself.
        me = psutil.Process(self.process.pid)
        self.ps = next(iter(me.children(recursive=True)), me)

    def cpu(self) -> float:
        times = self.ps.cpu_times()
        return float(times.user + times.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _subscribers(url: str, share: list[tuple[str, str]], seconds: float, out: Any) -> None:
    """One client process: its share of (token, workspace) subscribers, for `seconds` after
    all are subscribed; sends back (ready), then the latencies of what it received."""
    import uvloop

    uvloop.run(_client(url, share, seconds, out))


async def _client(url: str, share: list[tuple[str, str]], seconds: float, out: Any) -> None:
    latencies: list[float] = []
    errors = 0
    measuring = asyncio.Event()

    async def one(token: str, workspace: str, ready: asyncio.Event) -> None:
        nonlocal errors
        async with connect(url, subprotocols=["graphql-transport-ws"], open_timeout=120) as ws:  # type: ignore[list-item]
            init = {"type": "connection_init", "payload": {"authorization": f"Bearer {token}"}}
            await ws.send(json.dumps(init))
            if json.loads(await ws.recv()).get("type") != "connection_ack":
                raise SystemExit("not acknowledged")
            payload = {"query": SUBSCRIPTION, "variables": {"w": workspace}}
            await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": payload}))
            ready.set()
            async for raw in ws:
                received = time.time()
                message = orjson.loads(raw)
                if message.get("type") != "next":
                    continue
                data = message["payload"].get("data")
                if not data:
                    errors += 1
                    continue
                # The writer put its wall-clock time of the commit into the title.
                committed = float(data["taskEvents"]["task"]["title"].rsplit(" ", 1)[1])
                if measuring.is_set():
                    latencies.append(1000 * (received - committed))

    tasks = []
    for token, workspace in share:
        ready = asyncio.Event()
        tasks.append(asyncio.create_task(one(token, workspace, ready)))
        await ready.wait()
    out.put(("ready", len(tasks)))
    await asyncio.sleep(WARM_UP)
    measuring.set()
    await asyncio.sleep(seconds)
    measuring.clear()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put(("done", latencies, errors))


# Seconds of changes before the measurement (each group's statement is prepared on its first).
WARM_UP = 3.0


async def _transactions(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        # Reported by each backend at its transactions' end; read after a pause.
        return int(
            (
                await conn.execute(
                    text(
                        "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                        "WHERE datname = current_database()"
                    )
                )
            ).scalar_one()
        )


async def _write(
    engine: AsyncEngine, cast: list[dict[str, Any]], rate: float, seconds: float
) -> int:
    """Task changes at `rate` per second, each committed by the domain's own command."""
    from db.tasks.commands import TaskChanges, update_task

    rng = random.Random(7)
    changes = 0
    started = time.monotonic()
    async with AsyncSession(engine) as session:
        while time.monotonic() < started + seconds:
            entry = rng.choice(cast)
            task = rng.choice(entry["tasks"])
            # The subscribers read the commit's time from the title.
            title = f"bench {changes} {time.time():.6f}"
            await update_task(session, entry["principal"], task, TaskChanges(title=title))
            await session.commit()
            changes += 1
            await asyncio.sleep(max(0.0, started + changes / rate - time.monotonic()))
    return changes


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    fixtures = await _cast(url)
    cast = fixtures["cast"][: args.workspaces]
    server = _Server(
        url,
        {
            "MAX_SUBSCRIPTIONS_PER_PRINCIPAL": str(args.subscribers),
            "POOL_SIZE": "10",
        },
    )
    engine = make_engine(url)
    context = multiprocessing.get_context("spawn")
    results: Any = context.Queue()
    clients = []
    try:
        ws_url = f"ws://127.0.0.1:{server.port}/graphql"
        rss_before = server.rss()
        plan = [
            (
                cast[n % len(cast)]["tokens"][(n // len(cast)) % 2],
                cast[n % len(cast)]["workspace_id"],
            )
            for n in range(args.subscribers)
        ]
        for c in range(args.clients):
            share = plan[c :: args.clients]
            process = context.Process(
                target=_subscribers, args=(ws_url, share, args.duration + 2, results)
            )
            process.start()
            clients.append(process)
        for _ in clients:
            kind, _count = results.get(timeout=600)
            assert kind == "ready", kind
        print(
            f"{args.subscribers} subscribers over {len(cast)} workspaces and 2 roles, "
            f"{args.clients} client processes",
            flush=True,
        )
        await _write(engine, cast, args.rate, WARM_UP)
        transactions = await _transactions(engine)
        cpu = server.cpu()
        peak = _Peak(server)
        sampler = asyncio.create_task(peak.sample())
        changes = await _write(engine, cast, args.rate, args.duration)
        await asyncio.sleep(2)
        server_cpu = server.cpu() - cpu
        sampler.cancel()
        if os.environ.get("BENCH_LIVE_SERVER"):
            server.ps.send_signal(signal.SIGUSR1)
        latencies: list[float] = []
        errors = 0
        for _ in clients:
            kind, received, failed = results.get(timeout=120)
            latencies += received
            errors += failed
        # Backends report their transactions when idle for a while (PostgreSQL 15: 10 s).
        await asyncio.sleep(11)
        rendered = await _transactions(engine) - transactions - changes - 1
        latencies.sort()
        expected = changes * args.subscribers / len(cast)
        return {
            "subscribers": args.subscribers,
            "workspaces": len(cast),
            "changes": changes,
            "rate_per_s": changes / args.duration,
            "delivered": len(latencies),
            "expected": round(expected),
            "errors": errors,
            "p50_ms": percentile(latencies, 50),
            "p99_ms": percentile(latencies, 99),
            "max_ms": latencies[-1] if latencies else 0.0,
            "server_cpu_s": server_cpu,
            "cpu_us_per_delivery": 1e6 * server_cpu / max(1, len(latencies)),
            "statements_per_change": rendered / max(1, changes),
            "groups_per_change": 2,
            "rss_mb_before": rss_before / 2**20,
            "rss_mb_peak": peak.rss / 2**20,
            "load_average": os.getloadavg()[0],
        }
    finally:
        for process in clients:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        await engine.dispose()
        server.stop()


class _Peak:
    def __init__(self, server: _Server) -> None:
        self.server = server
        self.rss = server.rss()

    async def sample(self) -> None:
        while True:
            self.rss = max(self.rss, self.server.rss())
            await asyncio.sleep(0.2)


def main(url: str, args: argparse.Namespace) -> int:
    import uvloop

    report = uvloop.run(run(url, args))
    for name, value in report.items():
        print(f"  {name:22s} {value:.2f}" if isinstance(value, float) else f"  {name:22s} {value}")
    output = (
        args.output or ROOT / "bench" / "results" / f"live-{time.strftime('%Y%m%dT%H%M%S')}.json"
    )
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    Path(output).write_text(json.dumps(report, indent=2))
    print(f"results: {output}")
    return 0
