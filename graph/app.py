"""The ASGI application: /graphql (GraphiQL on GET in a browser, its files under /graphiql/),
/healthz, /readyz."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import migrations, prepared
from db.engine import PoolSettings, make_engine, make_session_factory
from db.errors import Unavailable
from graph import request_log
from graph.context import Resources, Run
from graph.graphiql import mount_files
from graph.schema import build_schema
from graph.settings import Settings, SettingsError, load_settings
from graph.view import GraphQLView

logger = logging.getLogger("taskgraph")


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    session_factory: Callable[[], AsyncSession] | None = None,
) -> FastAPI:
    """Build the app. `settings.database_url` and `settings.secret_key` must be resolved
    (the CLI does that for the embedded database). Tests pass a `session_factory` bound to
    a connection whose transaction they roll back."""
    if settings.database_url is None and engine is None:
        raise SettingsError("DATABASE_URL is required to build the app")
    if not settings.secret_key:
        raise SettingsError("SECRET_KEY is required when DATABASE_URL is set")
    secret_key = settings.secret_key
    engine = engine or make_engine(
        settings.database_url or "",
        PoolSettings(
            size=settings.pool_size,
            max_overflow=settings.max_overflow,
            timeout=settings.pool_timeout,
            statement_timeout_ms=settings.statement_timeout_ms,
            statement_cache=settings.statement_cache,
        ),
    )
    sessions = session_factory or make_session_factory(engine)
    # Requests queue here, first come first served, for one of the pool's kept connections.
    # The pool's own queue lets a newcomer take a connection that a waiter was woken for, so
    # under load some requests waited many times as long as the rest (p99 570 ms at p50 12 ms),
    # and overflow connections, closed as soon as they are returned, made PostgreSQL start
    # a backend per burst (bench/README.md).
    gate = asyncio.Semaphore(settings.pool_size)

    @asynccontextmanager
    async def turn() -> AsyncIterator[None]:
        if gate.locked():
            try:
                await asyncio.wait_for(gate.acquire(), settings.pool_timeout)
            except TimeoutError:
                # Every connection stayed busy as long as the pool would have waited.
                raise Unavailable(
                    f"No database connection came free within {settings.pool_timeout} s."
                ) from None
        else:
            await gate.acquire()
        try:
            yield
        finally:
            gate.release()

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AsyncSession]:
        async with turn(), sessions() as session:
            yield session

    @asynccontextmanager
    async def open_reader() -> AsyncIterator[Run]:
        """One statement's connection for a compiled query (graph/view.py)."""
        if session_factory is not None:
            # Tests' sessions share their connection and its transaction: reads go through them.
            async with open_session() as session:

                async def in_session(sql: str, args: list[Any]) -> Any:
                    return await prepared.value(session, sql, args)

                yield in_session
            return
        async with turn(), prepared.connection(engine) as pooled:
            yield pooled.value

    @asynccontextmanager
    async def open_pooled() -> AsyncIterator[prepared.Pooled]:
        """A pooled connection without a session, for an API key's authentication."""
        async with turn(), prepared.connection(engine) as pooled:
            yield pooled

    resources = Resources(
        settings=settings,
        secret_key=secret_key,
        open_session=open_session,
        open_reader=open_reader,
        # Tests' sessions share one connection and its transaction: everything goes there.
        open_pooled=open_pooled if session_factory is None else None,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tune_garbage_collector()
        yield
        await engine.dispose()
        if resources.limiters is not None:
            await resources.limiters.aclose()

    app = FastAPI(
        title="Taskgraph",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    schema = build_schema(debug=settings.debug, introspection=settings.introspection_enabled)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=[
                "authorization",
                "content-type",
                "apollo-require-preflight",
                "x-apollo-operation-name",
            ],
            expose_headers=["retry-after"],
            max_age=600,
        )
    router = GraphQLView(
        schema,
        "/graphql",
        resources=resources,
        graphql_ide="graphiql" if settings.graphiql_enabled else None,
        # Queries over GET would let a cross-site <img> run them with the browser's cookies;
        # only POST runs operations.
        allow_queries_via_get=False,
    )
    router.mount(app)
    app.state.graphql_view = router
    if settings.graphiql_enabled:
        mount_files(app)
    app.state.engine = engine
    request_log.count_statements(engine)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready to serve: the database answers and is migrated to the code's head."""
        try:
            reason = await migrations.behind(engine)
        except Exception as exc:
            logger.warning("Readiness check failed: the database is unreachable (%s)", exc)
            reason = "the database cannot be reached"
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    return app


def tune_garbage_collector() -> None:
    """Fewer, cheaper collections for a long-running server.

    Everything built at start-up (modules, the schema, table metadata) lives as long as the
    process; frozen, it is no longer traversed by every full collection. A request allocates
    thousands of short-lived objects; with the default threshold (700) the young generation
    is collected several times per request. Measured in-process (bench/README.md): 8-14%
    less CPU per request on the board and the task detail.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def app_from_env() -> FastAPI:
    """Factory for uvicorn workers: settings come from the environment the CLI prepared."""
    settings = load_settings()
    request_log.configure(settings.log_level, settings.log_format)
    return create_app(settings)
