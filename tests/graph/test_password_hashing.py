"""Argon2 runs beside the event loop: a burst of log-ins does not stall other requests."""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from argon2 import PasswordHasher
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import passwords
from db.engine import make_engine
from db.models import User
from graph.app import create_app
from graph.settings import Settings
from tests import factories
from tests.conftest import connections_in_use
from tests.graph.conftest import Api, token_for

LOG_IN = """mutation($input: LogInInput!) { logIn(input: $input) {
  accessToken userErrors { code } } }"""
ME = "{ me { id } }"
LOG_INS = 20


@contextmanager
def garbage_collector_restored() -> Iterator[None]:
    """The app's start-up tunes the garbage collector for the process (graph/app.py); the
    rest of the test session gets the usual settings back."""
    thresholds = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)


async def test_log_ins_do_not_stall_other_requests(
    committed_db: str, settings: Settings, used: list[str]
) -> None:
    # The server as it runs: its own pool on a real database, started through its lifespan
    # (without the tuned garbage collector, a full collection of the test process's heap
    # would be the slowest thing measured).
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            user = await factories.user(session, "busy")
            await session.commit()
        # 20 log-ins of one user: more than the limit against password guessing allows.
        unlimited = settings.model_copy(
            update={"login_attempts_per_email": 1000, "login_attempts_per_address": 1000}
        )
        app = create_app(unlimited, engine=engine)
        transport = httpx.ASGITransport(app=app)
        with garbage_collector_restored():
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=transport, base_url="http://test") as client,
            ):
                api = Api(client)
                token = token_for(user.id)
                credentials = {"input": {"email": user.email, "password": factories.PASSWORD}}

                async def log_in() -> Any:
                    payload = (await api.data(LOG_IN, credentials))["logIn"]
                    assert payload["userErrors"] == [] and payload["accessToken"], payload

                # Warm: the compiled statement of `me`, the pool's connections, the threads.
                for _ in range(5):
                    await api.data(ME, token=token)
                await asyncio.gather(*(log_in() for _ in range(passwords.THREADS)))
                used.clear()

                # `me` one request after another while the log-ins run: each one's latency is
                # how long the event loop kept it waiting, plus its own small cost.
                started = time.perf_counter()
                log_ins = asyncio.gather(*(log_in() for _ in range(LOG_INS)))
                latencies: list[float] = []
                connections: list[int] = []
                while not log_ins.done():
                    sent = time.perf_counter()
                    assert (await api.data(ME, token=token))["me"] is not None
                    latencies.append(time.perf_counter() - sent)
                    connections.append(connections_in_use(engine))
                await log_ins
                elapsed = time.perf_counter() - started
    finally:
        await engine.dispose()

    p99 = statistics.quantiles(latencies, n=100, method="inclusive")[98]
    summary = (
        f"p50 {statistics.median(latencies) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, "
        f"max {max(latencies) * 1000:.1f} ms over {len(latencies)} requests in {elapsed:.2f} s"
    )
    # On the event loop, each verification (about 0.2 s of CPU) would hold up every request.
    assert p99 < 0.050, summary
    # The `me` requests were answered by the compiled path, all through the burst of log-ins.
    assert len(used) == len(latencies) >= 50, summary
    # Log-ins wait for the hashing threads without a connection: one held through the wait
    # would leave the pool (and every other request) waiting behind the queue of log-ins.
    assert max(connections) <= passwords.THREADS, connections


async def test_an_outdated_hash_is_redone_at_log_in(api: Api, session: AsyncSession) -> None:
    user = await factories.user(session, "old-hash")
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(factories.PASSWORD)
    await session.execute(update(User).where(User.id == user.id).values(password_hash=weak))
    await session.commit()
    credentials = {"input": {"email": user.email, "password": factories.PASSWORD}}
    assert (await api.data(LOG_IN, credentials))["logIn"]["userErrors"] == []
    stored = await session.scalar(select(User.password_hash).where(User.id == user.id))
    assert stored != weak and not PasswordHasher().check_needs_rehash(stored)
    assert PasswordHasher().verify(stored, factories.PASSWORD)
