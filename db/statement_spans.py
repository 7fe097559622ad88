"""OpenTelemetry spans for SQL statements, on an engine whose statements are traced.

SQLAlchemy's OpenTelemetry instrumentation spans the statements SQLAlchemy runs itself (the
commands' ORM writes, Core statements on a session). The hot reads of db/prepared.py go to
asyncpg directly and are only announced to SQLAlchemy's `before_cursor_execute` listeners
(without an execution context, which the instrumentation needs); their spans are made here,
named and attributed as the instrumentation names its own: `SELECT`, kind CLIENT, the
database, its user and the statement's text (its values are parameters, never in the text,
so no span holds one).

An engine that is not traced costs a test of an empty dictionary per statement.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any
from weakref import WeakKeyDictionary

from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
from opentelemetry.instrumentation.utils import is_instrumentation_enabled
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import SpanKind, Tracer, TracerProvider
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine


class _Instrumentation(EngineTracer):  # type: ignore[misc]
    """The instrumentation, for the statements SQLAlchemy executes. db/prepared.py announces
    its own without an execution context: they are spanned by `span`."""

    def _before_cur_exec(
        self,
        conn: Any,
        cursor: Any,
        statement: str,
        params: Any,
        context: Any,
        executemany: bool,
    ) -> tuple[str, Any]:
        if context is None:
            return statement, params
        return super()._before_cur_exec(  # type: ignore[no-any-return]
            conn, cursor, statement, params, context, executemany
        )


class _Traced:
    def __init__(self, tracer: Tracer, engine: Engine) -> None:
        self.tracer = tracer
        url = engine.url
        attributes: dict[str, Any] = {"db.system": "postgresql"}
        if url.database:
            attributes["db.name"] = url.database
        if url.username:
            attributes["db.user"] = url.username
        if url.host:
            attributes["net.peer.name"] = url.host
        if url.port:
            attributes["net.peer.port"] = url.port
        self.attributes = attributes


_traced: WeakKeyDictionary[Engine, _Traced] = WeakKeyDictionary()
_NOTHING = nullcontext()


def trace_statements(engine: AsyncEngine, provider: TracerProvider) -> None:
    """Span every statement of `engine` from now on (once per engine; for as long as it
    lives)."""
    sync_engine = engine.sync_engine
    if sync_engine in _traced:
        return
    tracer = trace.get_tracer("taskgraph.db", tracer_provider=provider)
    # The instrumentation's connection gauges are not wanted: /metrics has the pool's.
    usage = (
        NoOpMeterProvider()
        .get_meter("taskgraph.db")
        .create_up_down_counter("db.client.connections.usage")
    )
    _Instrumentation(tracer, sync_engine, usage)
    _traced[sync_engine] = _Traced(tracer, sync_engine)


def span(engine: Engine, sql: str) -> AbstractContextManager[Any]:
    """The span of one statement that db/prepared.py sends to asyncpg itself."""
    if not _traced:
        return _NOTHING
    traced = _traced.get(engine)
    if traced is None or not is_instrumentation_enabled():
        return _NOTHING
    words = sql.split(None, 1)
    operation = words[0].upper() if words else "SQL"
    return traced.tracer.start_as_current_span(
        operation,
        kind=SpanKind.CLIENT,
        attributes={**traced.attributes, "db.statement": sql, "db.operation": operation},
    )
