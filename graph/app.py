"""The ASGI application: /graphql (GraphiQL on GET in a browser, its files under /graphiql/,
WebSockets for subscriptions), /healthz, /readyz, /metrics."""

from __future__ import annotations

import asyncio
import gc
import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from opentelemetry.instrumentation.utils import suppress_instrumentation
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import live_events, migrations, prepared, statement_spans
from db.engine import PoolSettings, make_engine, make_session_factory
from db.errors import Unavailable
from graph import request_log, tracing
from graph.context import Resources, Run
from graph.graphiql import mount_files
from graph.metrics import Metrics
from graph.pubsub import Hub
from graph.schema import build_schema
from graph.settings import Settings, SettingsError, load_settings
from graph.view import GraphQLView

logger = logging.getLogger("taskgraph")


def create_app(
    settings: Settings,
    *,
    engine: AsyncEngine | None = None,
    session_factory: Callable[[], AsyncSession] | None = None,
    read_engine: AsyncEngine | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """Build the app. `settings.database_url` and `settings.secret_key` must be resolved
    (the CLI does that for the embedded database). Tests pass a `session_factory` bound to
    a connection whose transaction they roll back, may pass engines of their own, and a
    `tracer_provider` of their own (else traces go where OTEL_EXPORTER_OTLP_ENDPOINT says, or
    nowhere).

    With `DATABASE_READ_URL` (or `read_engine`) queries read from that replica, through a
    pool of their own; mutations, with the reads of their payloads, API keys' authentication
    and live events go to the primary (graph/context.py, graph/pubsub.py)."""
    if settings.database_url is None and engine is None:
        raise SettingsError("DATABASE_URL is required to build the app")
    if not settings.secret_key:
        raise SettingsError("SECRET_KEY is required when DATABASE_URL is set")
    secret_key = settings.secret_key
    metrics = Metrics.from_settings(settings)
    pool = PoolSettings(
        size=settings.pool_size,
        max_overflow=settings.max_overflow,
        timeout=settings.pool_timeout,
        statement_timeout_ms=settings.statement_timeout_ms,
        statement_cache=settings.statement_cache,
    )
    if engine is None:
        engine = make_engine(settings.database_url or "", pool)
        # An engine given belongs to its caller (the tests share one between many apps).
        metrics.watch_pool(engine)
        if read_engine is None and settings.database_read_url:
            read_engine = make_engine(settings.database_read_url, pool)
            metrics.watch_pool(read_engine)
    engines = [engine] if read_engine is None else [engine, read_engine]
    provider = tracer_provider or tracing.provider_from_settings(settings)
    tracer = None
    if provider is not None:
        tracer = provider.get_tracer("taskgraph")
        for each in engines:
            statement_spans.trace_statements(each, provider)
    sessions = session_factory or make_session_factory(engine)
    primary = _Pool(engine, sessions, settings, metrics)
    replica = primary
    if read_engine is not None:
        replica = _Pool(
            read_engine, session_factory or make_session_factory(read_engine), settings, metrics
        )

    @asynccontextmanager
    async def open_reader() -> AsyncIterator[Run]:
        """One statement's connection for a compiled query (graph/view.py)."""
        if session_factory is not None:
            # Tests' sessions share their connection and its transaction: reads go through them.
            async with replica.session() as session:

                async def in_session(sql: str, args: list[Any]) -> Any:
                    return await prepared.value(session, sql, args)

                yield in_session
            return
        async with replica.pooled() as pooled:
            yield pooled.value

    resources = Resources(
        settings=settings,
        secret_key=secret_key,
        open_session=primary.session,
        open_reader=open_reader,
        # Tests' sessions share one connection and its transaction: everything goes there.
        open_pooled=primary.pooled if session_factory is None else None,
        open_read_session=replica.session,
        metrics=metrics,
        tracer=tracer,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tune_garbage_collector()
        yield
        await router.live.close()
        for each in engines:
            await each.dispose()
        if resources.limiters is not None:
            await resources.limiters.aclose()
        metrics.close()
        if provider is not None and tracer_provider is None:
            # Sends the spans still waiting (the exporter's own timeout bounds it).
            await asyncio.to_thread(provider.shutdown)

    app = FastAPI(
        title="Taskgraph",
        lifespan=lifespan,
        default_response_class=JSONResponse,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        telemetry=tracing.fastapi_telemetry(provider),
    )
    schema = build_schema(
        debug=settings.debug, introspection=settings.introspection_enabled, tracer=tracer
    )
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
                "x-session-cookie",
            ],
            # The named origins may send the session cookie (graph/browser_sessions.py).
            # Never with `*`: the middleware would then echo any origin with credentials.
            allow_credentials="*" not in settings.cors_origins,
            expose_headers=["retry-after"],
            # Browsers keep a preflight's answer this long (Chromium at most 2 hours).
            max_age=600,
        )

    def hub() -> Hub:
        # On the primary: a replica can neither LISTEN nor be sure to hold a row yet when
        # the primary's notice of it arrives.
        listen = settings.database_listen_url or engine.url
        return Hub(schema._schema, live_events.listener_dsn(listen), primary.pooled)

    router = GraphQLView(
        schema,
        "/graphql",
        resources=resources,
        hub=hub,
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
    app.state.read_engine = read_engine
    app.state.metrics = metrics
    for each in engines:
        request_log.count_statements(each)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        """Ready to serve: the database, and the read replica if there is one, answer and are
        migrated to the code's head (a replica behind a migration would fail the queries
        written for it)."""
        # Probes are not traced (graph/tracing.py): nor are their statements.
        with suppress_instrumentation():
            reason = await _not_ready(engine, "the database")
            if reason is None and read_engine is not None:
                reason = await _not_ready(read_engine, "the read replica")
        if reason is not None:
            return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
        return JSONResponse({"status": "ok"})

    if metrics.enabled:
        mount_metrics(app, metrics, settings)
    return app


def mount_metrics(app: FastAPI, metrics: Metrics, settings: Settings) -> None:
    """/metrics for Prometheus: open, or only with `Authorization: Bearer <METRICS_TOKEN>`."""
    token = None
    if settings.metrics_access == "token" and settings.metrics_token is not None:
        token = ("Bearer " + settings.metrics_token.get_secret_value()).encode()

    @app.get("/metrics", include_in_schema=False)
    async def scrape(request: Request) -> Response:
        if token is not None:
            given = request.headers.get("authorization", "").encode("latin-1")
            if not hmac.compare_digest(given, token):
                return JSONResponse(
                    {"detail": "/metrics needs `Authorization: Bearer <METRICS_TOKEN>`."},
                    status_code=401,
                    headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
                )
        # Reading every worker's files and writing the text takes milliseconds: not on the
        # event loop that serves requests.
        body, media_type = await asyncio.to_thread(
            metrics.exposition, request.headers.get("accept")
        )
        return Response(body, media_type=media_type)


class _Pool:
    """One database's connections for requests: sessions and pooled connections, handed out
    first come first served.

    Requests queue here for one of the pool's kept connections. The pool's own queue lets a
    newcomer take a connection that a waiter was woken for, so under load some requests
    waited many times as long as the rest (p99 570 ms at p50 12 ms), and overflow
    connections, closed as soon as they are returned, made PostgreSQL start a backend per
    burst (bench/README.md).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        sessions: Callable[[], AsyncSession],
        settings: Settings,
        metrics: Metrics,
    ) -> None:
        self.engine = engine
        self.sessions = sessions
        self.metrics = metrics
        self.timeout = settings.pool_timeout
        self.gate = asyncio.Semaphore(settings.pool_size)
        # Turns taken and not yet given back: requests holding or about to hold a connection.
        self.busy = 0
        self.reserve = prepared.reserve(engine)

    @asynccontextmanager
    async def turn(self) -> AsyncIterator[None]:
        gate = self.gate
        if gate.locked():
            try:
                with self.metrics.queued():
                    await asyncio.wait_for(gate.acquire(), self.timeout)
            except TimeoutError:
                # Every connection stayed busy as long as the pool would have waited.
                raise Unavailable(
                    f"No database connection came free within {self.timeout} s."
                ) from None
        else:
            await gate.acquire()
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            gate.release()

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.turn():
            # A session checks its connection out of the pool, which must have one to give.
            await self.reserve.make_room(self.busy)
            async with self.sessions() as session:
                yield session

    @asynccontextmanager
    async def pooled(self) -> AsyncIterator[prepared.Pooled]:
        """A pooled connection without a session: a compiled query's, an API key's
        authentication."""
        async with self.turn(), prepared.connection(self.engine) as pooled:
            yield pooled


async def _not_ready(engine: AsyncEngine, name: str) -> str | None:
    try:
        return await migrations.behind(engine, name)
    except Exception as exc:
        logger.warning("Readiness check failed: %s is unreachable (%s)", name, exc)
        return f"{name} cannot be reached"


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
