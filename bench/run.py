"""`python -m bench run`: seed (or reuse) a database, start each target (`--workers`), drive
every operation over loopback HTTP, and report throughput, latency, SQL statements, server CPU
and memory per operation."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from bench import load, ops
from bench.server_settings import LIMITS, ROOT, SECRET, free_port
from db.engine import make_engine

RESULTS = ROOT / "bench" / "results"
_LIMIT_SETTINGS: dict[str, Any] = {name.lower(): value for name, value in LIMITS.items()}
TARGETS = {
    "taskgraph": "graph.app:app_from_env",
    "floor": "bench.floor:create_app",
    "naive": "bench.naive:create_app",
}


async def prepare(url: str, scale: float) -> dict[str, Any]:
    """Migrate and seed the database when it is empty; gather the variables of the requests."""
    from db.accounts import hash_password
    from db.api_keys import create_api_key
    from db.demo_data import DEMO_EMAIL, seed
    from db.migrations import upgrade
    from db.models import ApiScope
    from db.principals import user_principal
    from graph.auth import issue_access_token
    from graph.ids import to_global_id

    engine = make_engine(url)
    try:
        await upgrade(engine)
        async with engine.connect() as conn:
            tasks = (await conn.execute(text("SELECT count(*) FROM tasks"))).scalar_one()
        expected = max(1, round(100_000 * scale))
        if tasks == 0:
            print(f"seeding scale {scale} ...", flush=True)
            await seed(engine, scale=scale, password_hash=hash_password("taskgraph-demo"))
        elif not expected * 0.9 <= tasks <= expected * 3:
            # The create op adds tasks on every run; a database far off the scale is another one.
            raise SystemExit(f"the database holds {tasks} tasks, not scale {scale}: use another")
        async with AsyncSession(engine) as session:
            user_id = (
                await session.execute(
                    text("SELECT id FROM users WHERE email = :e"), {"e": DEMO_EMAIL}
                )
            ).scalar_one()
            principal = await user_principal(session, user_id)
            assert principal is not None
            workspace_id = min(principal.readable_workspace_ids)
            slug = (
                await session.execute(
                    text("SELECT slug FROM workspaces WHERE id = :w"), {"w": workspace_id}
                )
            ).scalar_one()
            projects = (
                (
                    await session.execute(
                        text("SELECT id FROM projects WHERE workspace_id = :w ORDER BY id"),
                        {"w": workspace_id},
                    )
                )
                .scalars()
                .all()
            )
            task_ids = (
                (
                    await session.execute(
                        text("SELECT id FROM tasks WHERE workspace_id = :w ORDER BY id LIMIT 2000"),
                        {"w": workspace_id},
                    )
                )
                .scalars()
                .all()
            )
            slugs = (
                (
                    await session.execute(
                        text("SELECT slug FROM workspaces WHERE id = ANY(:w) ORDER BY id"),
                        {"w": principal.readable_workspace_ids},
                    )
                )
                .scalars()
                .all()
            )
            # Filters that find something: each is the status, assignee and a label of a task.
            anchors = (
                await session.execute(
                    text(
                        "SELECT t.project_id, t.status, t.assignee_id, min(tl.label_id) AS label_id"
                        " FROM tasks t JOIN task_labels tl ON tl.task_id = t.id"
                        " WHERE t.workspace_id = :w AND t.assignee_id IS NOT NULL"
                        " GROUP BY t.id ORDER BY t.id LIMIT 2000"
                    ),
                    {"w": workspace_id},
                )
            ).all()
            key = await create_api_key(session, principal, workspace_id, "bench", [ApiScope.READ])
            await session.commit()
        token = issue_access_token(SECRET, user_id, timedelta(hours=6))[0]
        project_ids = [to_global_id("Project", p) for p in projects]
        return {
            "token": token,
            "api_key": key.secret,
            "export_slug": slug,
            "slugs": list(slugs),
            "projects": project_ids,
            "tasks": [to_global_id("Task", t) for t in task_ids],
            "filtered": [
                (
                    to_global_id("Project", a.project_id),
                    a.status,
                    to_global_id("User", a.assignee_id),
                    to_global_id("Label", a.label_id),
                )
                for a in anchors
            ],
            "cursors": await board_cursors(engine, token, project_ids),
        }
    finally:
        await engine.dispose()


CURSORS = """query Cursors($id: ID!, $after: String) { node(id: $id) { ... on Project {
  tasks(first: 100, after: $after) { pageInfo { hasNextPage endCursor } edges { cursor } } } } }"""


async def board_cursors(
    engine: AsyncEngine, token: str, projects: list[str], pages: int = 10
) -> list[tuple[str, str]]:
    """(project, cursor) pairs for the tasks of the first `pages` pages of each board, as the
    API hands them out (a client paging backwards got its cursor from an earlier page)."""
    import httpx

    from graph.app import create_app
    from graph.settings import load_settings

    app = create_app(load_settings(secret_key=SECRET, **_LIMIT_SETTINGS), engine=engine)
    found: list[tuple[str, str]] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        for project in projects:
            after = None
            for _ in range(pages):
                response = await client.post(
                    "/graphql",
                    json={"query": CURSORS, "variables": {"id": project, "after": after}},
                    headers={"authorization": f"Bearer {token}"},
                )
                body = response.json()
                if "errors" in body:
                    raise SystemExit(f"reading board cursors: {response.text[:800]}")
                tasks = body["data"]["node"]["tasks"]
                found += [(project, edge["cursor"]) for edge in tasks["edges"]]
                if not tasks["pageInfo"]["hasNextPage"]:
                    break
                after = tasks["pageInfo"]["endCursor"]
    return found


Call = Callable[[ops.Request], Awaitable[tuple[bytes, int]]]


@asynccontextmanager
async def in_process(target: str, url: str) -> AsyncIterator[Call]:
    """A target's app in this process: a request's answer and the SQL statements it sent,
    counted on the target's engine (SQLAlchemy `before_cursor_execute`; the floor counts its
    own calls). The caller sets DATABASE_URL and SECRET_KEY first: the naive server reads them
    when it is imported, the floor when it is made."""
    import httpx

    if target == "floor":
        import asyncpg

        from bench.floor import Floor

        floor = Floor(url.replace("postgresql+asyncpg://", "postgresql://"))
        floor.pool = await asyncpg.create_pool(floor.dsn, min_size=1, max_size=2)

        async def ask_floor(request: ops.Request) -> tuple[bytes, int]:
            floor.statements = 0
            headers = {b"authorization": f"Bearer {request.token}".encode()}
            answer = await floor.answer(json.loads(request.body), headers)
            return answer, floor.statements

        try:
            yield ask_floor
        finally:
            await floor.pool.close()
        return
    if target == "naive":
        from bench import naive

        app: Any = naive.create_app()
        engine = naive.engine
    else:
        from graph.app import create_app
        from graph.settings import load_settings

        engine = make_engine(url)
        app = create_app(load_settings(**_LIMIT_SETTINGS), engine=engine)
    seen: list[str] = []

    def record(*args: Any) -> None:
        seen.append(args[2])

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:

            async def ask(request: ops.Request) -> tuple[bytes, int]:
                seen.clear()
                response = await client.post(
                    "/graphql",
                    content=request.body,
                    headers={
                        "authorization": f"Bearer {request.token}",
                        "content-type": "application/json",
                    },
                )
                if response.status_code != 200:
                    raise SystemExit(f"{target}: HTTP {response.status_code} {response.text[:800]}")
                return response.content, len(seen)

            yield ask
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
        await engine.dispose()


# The first requests of each read op are answered by every target before any load, and their
# answers must agree (as JSON values: key order, spacing and 1024 vs 1024.0 aside).
CHECKED = 10


def _answer(target: str, op: str, raw: bytes) -> Any:
    answer = json.loads(raw)
    if "errors" in answer or "data" not in answer:
        raise SystemExit(f"{target} {op}: {raw[:800]!r}")
    return answer


def _difference(a: Any, b: Any, path: str = "data") -> str | None:
    """Where two JSON values first differ, or None when they are equal."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: present in one answer only"
            found = _difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list) and isinstance(b, list):
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            found = _difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return None if len(a) == len(b) else f"{path}: {len(a)} items against {len(b)}"
    # Numbers compare by value (PostgreSQL writes 1024 where orjson writes 1024.0), but a
    # boolean is no number.
    if a == b and isinstance(a, bool) == isinstance(b, bool):
        return None
    return f"{path}: {a!r} against {b!r}"


def disagreement(answers: dict[str, dict[str, list[Any]]], built: dict[str, ops.Op]) -> str | None:
    """The first answer of a target that differs from the first target's, described; None
    when all agree. `answers` holds, per target and op, the answers to the op's requests."""
    targets = list(answers)
    for target in targets[1:]:
        for name, expected_answers in answers[targets[0]].items():
            pairs = zip(expected_answers, answers[target][name], strict=True)
            for i, (expected, got) in enumerate(pairs):
                difference = _difference(expected["data"], got["data"])
                if difference:
                    variables = json.loads(built[name].requests[i].body)["variables"]
                    return (
                        f"{name}: {target} and {targets[0]} disagree on request {i} "
                        f"(variables {json.dumps(variables)}): {difference}"
                    )
    return None


async def inspect(targets: list[str], url: str, built: dict[str, ops.Op]) -> dict[str, Any]:
    """Check that the targets agree, then count each op's statements per request.

    Answers are gathered from every target first, before any request that writes (the
    create and update ops change what the reads return). Statements are counted in the
    steady state: the first request of an op fills caches (and, for an API key, records its
    use, a write made at most once a minute); the second is counted."""
    os.environ["DATABASE_URL"] = url
    os.environ["SECRET_KEY"] = SECRET
    os.environ.update(LIMITS)
    reads = [name for name in built if name in ops.READ_OPS]
    answers: dict[str, dict[str, list[Any]]] = {}
    for target in targets:
        async with in_process(target, url) as ask:
            answers[target] = {}
            for name in reads:
                found = []
                for request in built[name].requests[:CHECKED]:
                    found.append(_answer(target, name, (await ask(request))[0]))
                answers[target][name] = found
    problem = disagreement(answers, built)
    if problem:
        raise SystemExit(problem)
    if len(targets) > 1:
        print(f"answers agree: {', '.join(reads)} ({CHECKED} requests each)", flush=True)
    counts: dict[str, dict[str, int]] = {}
    for target in targets:
        async with in_process(target, url) as ask:
            counts[target] = {}
            for name, op in built.items():
                for request in op.requests[:2]:
                    raw, statements = await ask(request)
                    _answer(target, name, raw)
                counts[target][name] = statements
    return counts


# Looked up here, not in the forked child, which must not take locks (imports, dlopen).
_PRCTL = ctypes.CDLL(None).prctl if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def _stop_with_parent() -> None:
    """In a server's process before it starts: SIGTERM it when the runner dies. A runner
    killed outright (a timeout's SIGKILL) otherwise left its server and workers running."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Server:
    """A target served over loopback: the Taskgraph server as `taskgraph serve --workers N`
    (as it is deployed), the references by uvicorn with as many workers."""

    def __init__(self, target: str, url: str, workers: int = 1) -> None:
        self.port = free_port()
        env = {
            **os.environ,
            **LIMITS,
            "DATABASE_URL": url,
            "SECRET_KEY": SECRET,
            "GRAPHIQL": "false",
        }
        listen = ["--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers)]
        if target == "taskgraph":
            command = [sys.executable, "-m", "graph.cli", "serve", *listen]
        else:
            command = [
                sys.executable,
                "-m",
                "uvicorn",
                TARGETS[target],
                "--factory",
                *listen,
                "--loop",
                "uvloop",
                "--http",
                "httptools",
                "--no-access-log",
                "--log-level",
                "warning",
            ]
        # A server writes a log line per request, as in production; they are not the
        # bench's output, but the last of them say why a server did not start.
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=self.log,
            preexec_fn=_stop_with_parent,
        )
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.process.kill()
                    self.log.seek(0)
                    last = self.log.read().decode(errors="replace")[-2000:]
                    raise SystemExit(f"{target} did not start:\n{last}") from None
                time.sleep(0.1)
        self.ps = psutil.Process(self.process.pid)
        self.peak_rss = 0
        self._sampling = False

    def _processes(self) -> list[psutil.Process]:
        """The server's processes: with several workers, a supervisor and its workers."""
        return [self.ps, *self.ps.children(recursive=True)]

    def cpu(self) -> float:
        total = 0.0
        for process in self._processes():
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def _sample(self) -> None:
        while self._sampling:
            rss = 0
            for process in self._processes():
                try:
                    rss += process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
            self.peak_rss = max(self.peak_rss, rss)
            time.sleep(0.1)

    def measure(self) -> threading.Thread:
        self._sampling = True
        thread = threading.Thread(target=self._sample, daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._sampling = False
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


def run_target(
    target: str, url: str, built: dict[str, ops.Op], args: argparse.Namespace
) -> dict[str, Any]:
    server = Server(target, url, args.workers)
    results: dict[str, Any] = {}
    try:
        for name, op in built.items():
            requests = [(r.body, r.token) for r in op.requests]
            load.run(
                "127.0.0.1",
                server.port,
                requests,
                concurrency=args.concurrency,
                seconds=args.warmup,
                processes=args.clients,
            )
            cpu0 = server.cpu()
            server.measure()
            measured = load.run(
                "127.0.0.1",
                server.port,
                requests,
                concurrency=args.concurrency,
                seconds=args.duration,
                processes=args.clients,
            )
            server_cpu = server.cpu() - cpu0
            lat = measured.latencies_ms
            results[name] = {
                "requests": measured.requests,
                "errors": measured.errors,
                "rps": measured.requests / measured.seconds if measured.seconds else 0.0,
                "p50_ms": load.percentile(lat, 50),
                "p95_ms": load.percentile(lat, 95),
                "p99_ms": load.percentile(lat, 99),
                "server_cpu_ms_per_request": 1000 * server_cpu / max(1, measured.requests),
                "client_cpu_s": measured.client_cpu_seconds,
                "server_cpu_s": server_cpu,
                "peak_rss_mb": server.peak_rss / 2**20,
            }
            row = results[name]
            print(
                f"{target:10s} {name:7s} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.1f}  "
                f"p95 {row['p95_ms']:7.1f}  p99 {row['p99_ms']:7.1f} ms  "
                f"cpu {row['server_cpu_ms_per_request']:6.2f} ms/req  "
                f"client cpu {row['client_cpu_s']:5.1f}s vs server {server_cpu:5.1f}s  "
                f"rss {row['peak_rss_mb']:5.0f} MB  errors {row['errors']}",
                flush=True,
            )
    finally:
        server.stop()
    return results


def database_url(args: argparse.Namespace) -> str:
    if args.database_url:
        url: str = args.database_url
        return (
            url if "+asyncpg" in url else url.replace("postgresql://", "postgresql+asyncpg://", 1)
        )
    from db.embedded import start

    return start(ROOT / ".data" / f"bench-{args.scale:g}", keep_running=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run the benchmark")
    p.add_argument("--ops", default=",".join(ops.ALL_OPS))
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--duration", type=float, default=10.0, help="seconds per op and target")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--clients", type=int, default=2, help="client processes")
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes of each server (taskgraph serve)"
    )
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    p.add_argument("--output", type=Path, default=None)
    q = sub.add_parser("profile", help="CPU per request of the server alone, in-process")
    q.add_argument("--ops", default=",".join(ops.READ_OPS))
    q.add_argument("--requests", type=int, default=1400, help="requests per op")
    q.add_argument("--cprofile", action="store_true", help="print a profile instead")
    q.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    q.add_argument("--scale", type=float, default=1.0)
    live = sub.add_parser("live", help="live events: WebSocket subscribers under task changes")
    live.add_argument("--subscribers", type=int, default=2000)
    live.add_argument("--workspaces", type=int, default=20)
    live.add_argument("--rate", type=float, default=50.0, help="task changes per second")
    live.add_argument("--duration", type=float, default=30.0)
    live.add_argument("--clients", type=int, default=2, help="subscriber processes")
    live.add_argument("--scale", type=float, default=1.0)
    live.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL"))
    live.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.command == "live":
        from bench import live as live_events

        url = database_url(args)
        asyncio.run(prepare(url, args.scale))
        return live_events.main(url, args)
    if args.command == "profile":
        import uvloop

        from bench.profile import profile

        names = tuple(o for o in args.ops.split(",") if o)
        uvloop.run(profile(database_url(args), args.scale, names, args.requests, args.cprofile))
        return 0

    chosen_ops = tuple(o for o in args.ops.split(",") if o)
    unknown = set(chosen_ops) - set(ops.ALL_OPS)
    if unknown:
        parser.error(f"unknown ops: {', '.join(sorted(unknown))}")
    url = database_url(args)
    fixtures = asyncio.run(prepare(url, args.scale))
    built = ops.build(fixtures, chosen_ops)
    report: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "cpu": _cpu_model(),
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("output", "database_url")},
        "targets": {},
    }
    targets = [t for t in args.targets.split(",") if t]
    statements = asyncio.run(inspect(targets, url, built))
    for target in targets:
        results = run_target(target, url, built, args)
        for name, count in statements[target].items():
            results[name]["statements_per_request"] = count
        report["targets"][target] = results
    _summary(report)
    output = args.output or RESULTS / f"{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2))
    print(f"results: {output}")
    return 0


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _summary(report: dict[str, Any]) -> None:
    targets = report["targets"]
    print("\nop       taskgraph req/s  stmts  floor ratio  naive ratio  p99 / floor p99")
    for name, row in targets.get("taskgraph", {}).items():
        floor = targets.get("floor", {}).get(name)
        naive = targets.get("naive", {}).get(name)
        ratio = f"{row['rps'] / floor['rps']:.2f}x" if floor and floor["rps"] else "-"
        over_naive = f"{row['rps'] / naive['rps']:.1f}x" if naive and naive["rps"] else "-"
        p99 = f"{row['p99_ms'] / floor['p99_ms']:.1f}x" if floor and floor["p99_ms"] else "-"
        print(
            f"{name:8s} {row['rps']:15.1f}  {row['statements_per_request']:5d}  {ratio:>11s}  "
            f"{over_naive:>11s}  {p99:>15s}"
        )


if __name__ == "__main__":
    sys.exit(main())
