"""OpenTelemetry traces, exported over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT is set.

A request's trace:

    POST /graphql                  FastAPI's own server span (its native OpenTelemetry
    │                              support); continues the caller's `traceparent`
    └─ query Board                 the operation (graph/view.py): graphql.operation.name and
       │                           .type, the request id, status, statements, error codes
       ├─ graphql.compiled         a compiled read (graph/compiled.py), parsed and validated
       │  └─ WITH                  once per document: its one statement
       │
       ├─ graphql.parse            or the schema's execution, on the resolvers' path
       ├─ graphql.validate
       └─ graphql.execute
          ├─ SELECT                the authentication's statement
          ├─ Query.workspace       each root field's resolver (nested fields read through
          │  └─ loader ...         loaders)
          └─ loader Project.tasks pages   each loader batch (graph/loaders.py)
             └─ SELECT             every SQL statement: SQLAlchemy's OpenTelemetry
                                   instrumentation, and db/statement_spans.py for the reads
                                   sent to asyncpg directly

Like the request log, a span holds no variable, no query text, no credential: the SQL text
has its values as parameters, and the query string of a GET is recorded with its values
redacted. /healthz, /readyz and /metrics are not traced.

Strawberry's own OpenTelemetryExtension is not used: it records the query text and every
resolver's arguments as attributes (a log-in's password among them), spans every resolver of
every object, and never sees the compiled path, which answers before the schema runs.
`Spans` below keeps its hooks but spans only the root fields.

The OTel SDK reads its other settings from the environment: OTEL_SERVICE_NAME (default
`taskgraph`), OTEL_RESOURCE_ATTRIBUTES, OTEL_EXPORTER_OTLP_HEADERS, OTEL_TRACES_SAMPLER and
OTEL_TRACES_SAMPLER_ARG, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT; OTEL_SDK_DISABLED=true turns
tracing off. Only the `http/protobuf` protocol is shipped (the collector's port 4318).

Without an endpoint nothing here is built: the schema has no tracing extension, the engine
no listener, FastAPI's telemetry is off, and the view and the loaders test `tracer is None`
(bench/README.md measures both). With one, every span costs CPU on the worker (about 0.9 ms
per compiled board request, export included): sample with OTEL_TRACES_SAMPLER.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from inspect import isawaitable
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qsl, urlencode

from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.trace import StatusCode, Tracer
from strawberry.extensions import SchemaExtension

from graph.settings import Settings, SettingsError

if TYPE_CHECKING:
    from fastapi.telemetry import TelemetryConfig
    from graphql import GraphQLResolveInfo
    from opentelemetry.context import Context as TraceContext

    from graph.request_log import Entry

T = TypeVar("T")

_NOTHING = nullcontext()
# Not traced: probes and scrapes come every few seconds and say nothing about requests.
_UNTRACED = frozenset({"/healthz", "/readyz", "/metrics"})


def provider_from_settings(settings: Settings) -> TracerProvider | None:
    """A tracer provider exporting to the OTLP endpoint; None when tracing is off."""
    endpoint = settings.otel_exporter_otlp_endpoint
    if endpoint is None or os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = os.environ.get(name)
        if protocol and protocol != "http/protobuf":
            raise SettingsError(f"{name}: only http/protobuf is supported, not {protocol}")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    traces = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or (
        endpoint.rstrip("/") + "/v1/traces"
    )
    provider = make_provider()
    # Spans leave in batches from a thread of their own, never on the event loop.
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=traces)))
    return provider


def make_provider() -> TracerProvider:
    """A provider with the service's resource and the redaction of query strings; the
    caller adds the exporting processor."""
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "taskgraph"}))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(_RedactedQueryStrings())
    return provider


class _RedactedQueryStrings(SpanProcessor):
    """A GET's query string carries the document and its variables (FastAPI records it as
    `url.query`): only the parameters' names stay. A span processor's `on_start` runs before
    any exporting processor sees the span."""

    def on_start(self, span: Span, parent_context: TraceContext | None = None) -> None:
        query = (span.attributes or {}).get("url.query")
        if isinstance(query, str):
            pairs = parse_qsl(query, keep_blank_values=True)
            span.set_attribute("url.query", urlencode([(k, "REDACTED") for k, _ in pairs]))

    def on_end(self, span: ReadableSpan) -> None:
        pass


def fastapi_telemetry(provider: TracerProvider | None) -> TelemetryConfig:
    """FastAPI's native OpenTelemetry: the HTTP server span only (metrics are Prometheus',
    logs graph/request_log.py's), and nothing at all without a provider."""
    if provider is None:
        return {"tracing": False, "metrics": False, "logs": False, "auto_configure": False}
    return {
        "tracer_provider": provider,
        "tracing": True,
        "metrics": False,
        "logs": False,
        # Its spans for dependencies and endpoints: the view has neither.
        "operation_spans": False,
        "auto_configure": False,
        "exclude": _untraced,
    }


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in _UNTRACED


def operation(tracer: Tracer | None, entry: Entry) -> AbstractContextManager[Any]:
    """The span of one request to /graphql, named and described when the request ends."""
    return _NOTHING if tracer is None else _operation(tracer, entry)


@contextmanager
def _operation(tracer: Tracer, entry: Entry) -> Iterator[None]:
    with tracer.start_as_current_span("GraphQL Operation") as span:
        try:
            yield
        finally:
            kind, name = entry.operation_type, entry.operation_name
            attributes: dict[str, Any] = {
                "taskgraph.request_id": entry.request_id,
                "http.response.status_code": entry.status,
                "taskgraph.statements": entry.statements,
            }
            if kind is not None:
                # Only a parsed document's operation: never the request's operationName alone.
                attributes["graphql.operation.type"] = kind
                span.update_name(kind if name is None else f"{kind} {name}")
                if name is not None:
                    attributes["graphql.operation.name"] = name
            if entry.cost is not None:
                attributes["taskgraph.cost"] = entry.cost
            if entry.errors:
                attributes["taskgraph.errors"] = entry.errors
            span.set_attributes(attributes)
            if entry.status >= 500:
                span.set_status(StatusCode.ERROR)


def within(tracer: Tracer | None, name: str, awaitable: Awaitable[T]) -> Awaitable[T]:
    """`awaitable`, run inside a span `name` (as it is, without a tracer)."""
    if tracer is None:
        return awaitable
    return _within(tracer, name, awaitable)


async def _within(tracer: Tracer, name: str, awaitable: Awaitable[T]) -> T:
    with tracer.start_as_current_span(name):
        return await awaitable


class Spans(SchemaExtension):
    """Spans of the schema's execution: parsing, validation, execution, and each root
    field's resolver (nested fields read through loaders, which have spans of their own).
    First among the schema's extensions, so that the others' work falls inside."""

    def __init__(self, tracer: Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def on_parse(self) -> Iterator[None]:
        with self.tracer.start_as_current_span("graphql.parse"):
            yield

    def on_validate(self) -> Iterator[None]:
        with self.tracer.start_as_current_span("graphql.validate"):
            yield

    def on_execute(self) -> Iterator[None]:
        with self.tracer.start_as_current_span("graphql.execute"):
            yield

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if info.path.prev is not None:
            return _next(root, info, *args, **kwargs)
        return self._root(_next, root, info, args, kwargs)

    async def _root(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        with self.tracer.start_as_current_span(f"{info.parent_type.name}.{info.field_name}"):
            result = _next(root, info, *args, **kwargs)
            if isawaitable(result):
                result = await result
            return result
