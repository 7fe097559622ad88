"""`python -m bench profile`: the server's own CPU cost per request, without HTTP or load.

Drives the ASGI app in-process, one request at a time, with the same requests as the
benchmark, and reports the best of seven rounds of CPU time per request: steadier than a
load run on a shared machine, so it is what each optimisation step is measured with. With
`--cprofile` it prints the functions that take the time instead; for a sampling profile of
the same loop, run it under py-spy (`py-spy record -o profile.svg -- python -m bench profile`).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import os
import pstats
import time
from typing import Any

from bench import ops
from bench.run import prepare
from bench.server_settings import LIMITS, SECRET

ROUNDS = 7


def _scope(body: bytes, token: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }


async def _call(app: Any, request: ops.Request) -> None:
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    status: list[int] = []

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            status.append(message["status"])

    await app(_scope(request.body, request.token), receive, send)
    if status != [200]:
        raise SystemExit(f"request failed with {status}")


def _admit_everything() -> None:
    """For measuring what the limits, the cost and the buckets add (bench/README.md): every
    document passes unchecked, uncosted and uncharged."""
    from graph.admission import Admission, Admitted, Checked

    unchecked = Checked(None, None)

    def check(self: Admission, query: str, operation_name: str | None) -> Checked:
        return unchecked

    async def admit(self: Admission, checked: Checked, variables: Any, bucket: str) -> Admitted:
        return Admitted(None, {})

    Admission.check = check  # type: ignore[method-assign]
    Admission.admit = admit  # type: ignore[method-assign]


async def profile(
    url: str, scale: float, names: tuple[str, ...], requests: int, use_cprofile: bool
) -> None:
    fixtures = await prepare(url, scale)
    os.environ["DATABASE_URL"] = url
    os.environ["SECRET_KEY"] = SECRET
    os.environ.update(LIMITS)
    from graph.app import app_from_env, tune_garbage_collector

    if os.environ.get("BENCH_PROFILE_ADMISSION") == "off":
        _admit_everything()
    app = app_from_env()
    tune_garbage_collector()  # as the server does at start-up
    built = ops.build(fixtures, names)
    for name, op in built.items():
        for request in op.requests[:50]:  # warm caches and prepared statements
            await _call(app, request)
        per_round = max(1, requests // ROUNDS)
        if use_cprofile:
            profiler = cProfile.Profile()
            profiler.enable()
            for i in range(per_round):
                await _call(app, op.requests[i % len(op.requests)])
            profiler.disable()
            print(f"== {name}")
            order = os.environ.get("BENCH_PROFILE_SORT", "cumulative")  # or tottime, calls
            stats = pstats.Stats(profiler).sort_stats(order)
            stats.print_stats(40)
            callers = os.environ.get("BENCH_PROFILE_CALLERS")  # a function name
            if callers:
                stats.print_callers(callers)
            continue
        best = float("inf")
        for _ in range(ROUNDS):
            start = time.process_time()
            for i in range(per_round):
                await _call(app, op.requests[i % len(op.requests)])
            best = min(best, (time.process_time() - start) / per_round * 1000)
        print(f"{name:8s} {best:7.3f} ms CPU per request (best of {ROUNDS} x {per_round})")
    gc.unfreeze()
