"""OpenTelemetry spans: the tree of a nested query on the compiled path and through the
resolvers, a mutation's statements from SQLAlchemy's instrumentation, the caller's trace
continued, and no secret in any span."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import make_engine
from db.models import Role
from graph import compiled, tracing
from graph.app import create_app
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.factories import PASSWORD
from tests.graph.conftest import token_for

BOARD = """
query Board($slug: String!) {
  workspace(slug: $slug) {
    project(key: "ENG") {
      tasks(first: 10) {
        nodes { key title assignee { name } labels { name } commentCount }
      }
    }
  }
}
"""


@dataclass
class Traced:
    client: httpx.AsyncClient
    spans: InMemorySpanExporter
    slug: str
    owner: Any
    project_id: int

    def finished(self) -> list[ReadableSpan]:
        found = list(self.spans.get_finished_spans())
        self.spans.clear()
        return found


@pytest.fixture
async def traced(settings: Settings, committed_db: str) -> AsyncIterator[Traced]:
    """The app on a database of its own (its engine traced), with a board to read and an
    exporter that keeps the spans in memory."""
    seeding = make_engine(committed_db)
    async with AsyncSession(seeding) as session:
        owner = await factories.user(session, "owner", email="owner@example.com")
        ws = await factories.workspace(session)
        await factories.member(session, ws.id, owner.id, Role.OWNER)
        project = await factories.project(session, ws.id, "ENG")
        bug = await factories.label(session, ws.id, "bug")
        for n in range(3):
            t = await factories.task(session, project, owner.id, assignee_id=owner.id)
            await factories.tag(session, t.id, bug.id)
            await factories.comment(session, t.id, owner.id, f"comment {n}")
        await session.commit()
    await seeding.dispose()
    exporter = InMemorySpanExporter()
    provider = tracing.make_provider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(
        settings.model_copy(update={"database_url": committed_db}), tracer_provider=provider
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Traced(client, exporter, ws.slug, owner, project.id)
    finally:
        await app.state.engine.dispose()
        provider.shutdown()


def tree(spans: list[ReadableSpan]) -> dict[str, Any]:
    """The spans as nested names: {name: {child name: {...}}} from the one root (children of
    the same name merged, their count under "#")."""
    by_id = {span.context.span_id: span for span in spans}
    roots = [s for s in spans if s.parent is None or s.parent.span_id not in by_id]
    assert len(roots) == 1, [s.name for s in roots]
    assert len({s.context.trace_id for s in spans}) == 1

    def node(span: ReadableSpan) -> dict[str, Any]:
        children: dict[str, Any] = {}
        for child in spans:
            if child.parent is not None and child.parent.span_id == span.context.span_id:
                merged = children.setdefault(child.name, {"#": 0})
                merged["#"] += 1
                for key, value in node(child).items():
                    if key != "#":
                        merged.setdefault(key, value)
        return children

    return {roots[0].name: node(roots[0])}


def named(spans: list[ReadableSpan], name: str) -> ReadableSpan:
    found = [s for s in spans if s.name == name]
    assert len(found) == 1, [s.name for s in spans]
    return found[0]


async def _board(traced: Traced) -> list[ReadableSpan]:
    response = await traced.client.post(
        "/graphql",
        json={"query": BOARD, "variables": {"slug": traced.slug}},
        headers={"authorization": f"Bearer {token_for(traced.owner.id)}"},
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]["workspace"]["project"]["tasks"]["nodes"]) == 3
    return traced.finished()


async def test_a_compiled_query_is_one_span_with_its_statement(traced: Traced) -> None:
    spans = await _board(traced)
    statement = next(s for s in spans if s.kind == SpanKind.CLIENT)
    assert tree(spans) == {
        "POST /graphql": {
            "query Board": {
                "#": 1,
                "graphql.compiled": {"#": 1, statement.name: {"#": 1}},
            }
        }
    }
    # The compiled statement: its values are parameters.
    assert statement.name == statement.attributes["db.operation"] == "WITH"
    assert statement.attributes["db.system"] == "postgresql"
    assert "$1" in statement.attributes["db.statement"]
    assert traced.slug not in statement.attributes["db.statement"]
    operation = named(spans, "query Board")
    assert operation.attributes["graphql.operation.name"] == "Board"
    assert operation.attributes["graphql.operation.type"] == "query"
    assert operation.attributes["taskgraph.statements"] == 1
    assert operation.attributes["http.response.status_code"] == 200
    server = named(spans, "POST /graphql")
    assert server.kind == SpanKind.SERVER
    assert server.attributes["http.route"] == "/graphql"


async def test_through_the_resolvers_each_loader_batch_and_statement_has_a_span(
    traced: Traced, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(compiled, "ENABLED", False)
    spans = await _board(traced)
    statements = [s for s in spans if s.kind == SpanKind.CLIENT]
    operation = named(spans, "query Board")
    # The user and memberships, the workspace, the project, the task page, their labels and
    # comment counts (the assignee is the viewer, known from the authentication).
    assert operation.attributes["taskgraph.statements"] == len(statements) == 6
    sql = {"#": 1, "SELECT": {"#": 1}}
    assert tree(spans) == {
        "POST /graphql": {
            "query Board": {
                "#": 1,
                "graphql.parse": {"#": 1},
                "graphql.validate": {"#": 1},
                "graphql.execute": {
                    "#": 1,
                    # The authentication, before any resolver.
                    "SELECT": {"#": 1},
                    "Query.workspace": {"#": 1, "loader Query.workspace": sql},
                    "loader Workspace.project": sql,
                    "loader Project.tasks pages": sql,
                    "loader Task.labels": sql,
                    "loader Task.comment_count values": sql,
                },
            }
        }
    }


async def test_a_mutation_has_its_statements_from_the_sqlalchemy_instrumentation(
    traced: Traced,
) -> None:
    response = await traced.client.post(
        "/graphql",
        json={
            "query": "mutation CreateTask($p: ID!) { createTask(input: {projectId: $p, "
            'title: "Traced"}) { task { key } userErrors { code } } }',
            "variables": {"p": to_global_id("Project", traced.project_id)},
        },
        headers={"authorization": f"Bearer {token_for(traced.owner.id)}"},
    )
    assert response.json()["data"]["createTask"]["userErrors"] == [], response.text
    spans = traced.finished()
    shape = tree(spans)["POST /graphql"]["mutation CreateTask"]["graphql.execute"]
    # The project's check and number, the task, and its activity with its live-event notice
    # (one statement: db/activities.py): the ORM's statements.
    assert shape["Mutation.createTask"] == {
        "#": 1,
        "SELECT": {"#": 1},
        "UPDATE": {"#": 1},
        "INSERT": {"#": 1},
        "WITH": {"#": 1},
    }
    (insert,) = [s.attributes["db.statement"] for s in spans if s.name == "INSERT"]
    assert insert.startswith("INSERT INTO tasks")
    assert "Traced" not in insert
    (activity,) = [s.attributes["db.statement"] for s in spans if s.name == "WITH"]
    assert "INSERT INTO activities" in activity and "pg_notify" in activity


async def test_the_callers_trace_goes_on(traced: Traced) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    await traced.client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"},
    )
    spans = traced.finished()
    assert {format(s.context.trace_id, "032x") for s in spans} == {trace_id}
    assert named(spans, "query").attributes["graphql.operation.type"] == "query"


async def test_probes_and_scrapes_are_not_traced(traced: Traced) -> None:
    assert (await traced.client.get("/healthz")).status_code == 200
    assert (await traced.client.get("/readyz")).status_code == 200
    assert traced.finished() == []


async def test_no_span_holds_a_secret(traced: Traced) -> None:
    secret_password = "hunter2-" + "x" * 8
    inline = (
        'mutation { logIn(input: {email: "owner@example.com", password: "%s"}) '
        "{ accessToken refreshToken userErrors { code } } }"
    )
    client = traced.client
    answer = (await client.post("/graphql", json={"query": inline % PASSWORD})).json()
    tokens = [answer["data"]["logIn"]["accessToken"], answer["data"]["logIn"]["refreshToken"]]
    assert all(tokens), answer
    await client.post("/graphql", json={"query": inline % secret_password})
    await client.post(
        "/graphql",
        json={
            "query": "mutation($i: LogInInput!) { logIn(input: $i) { accessToken } }",
            "variables": {"i": {"email": "owner@example.com", "password": secret_password}},
        },
        headers={"authorization": f"Bearer {tokens[0]}"},
    )
    await client.get(
        "/graphql",
        params={"query": inline % secret_password},
        headers={"content-type": "application/json", "authorization": f"Bearer {tokens[0]}"},
    )
    spans = traced.finished()
    assert len([s for s in spans if s.kind == SpanKind.SERVER]) == 4
    text = repr(
        [(s.name, dict(s.attributes or {}), [e.attributes for e in s.events]) for s in spans]
    )
    for secret in (PASSWORD, secret_password, *tokens):
        assert secret not in text
    gets = [s for s in spans if s.name == "GET /graphql"]
    assert gets[0].attributes["url.query"] == "query=REDACTED"


class _Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector on loopback that keeps what it is sent."""

    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["content-length"]))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


async def test_spans_go_to_the_otlp_endpoint_when_it_is_set(
    settings: Settings, committed_db: str
) -> None:
    collector = ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=collector.serve_forever, daemon=True)
    thread.start()
    _Collector.received.clear()
    endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
    try:
        app = create_app(
            settings.model_copy(
                update={"database_url": committed_db, "otel_exporter_otlp_endpoint": endpoint}
            )
        )
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                response = await client.post(
                    "/graphql", json={"query": "query Ping { __typename }"}
                )
                assert response.status_code == 200
        # Leaving the lifespan sent the spans still in the batch.
    finally:
        collector.shutdown()
        thread.join()
    assert [path for path, _ in _Collector.received] == ["/v1/traces"]
    sent = ExportTraceServiceRequest.FromString(_Collector.received[0][1])
    (resource,) = sent.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "taskgraph"
    names = {span.name for scope in resource.scope_spans for span in scope.spans}
    assert {"POST /graphql", "query Ping"} <= names


def test_without_an_endpoint_nothing_is_traced(settings: Settings) -> None:
    production = settings.model_copy(update={"database_url": "postgresql+asyncpg://x/y"})

    def traced_by(app: Any) -> list[Any]:
        view = app.state.graphql_view
        built = [extension() for extension in view.schema.extensions]
        return [view.resources.tracer, *(e for e in built if isinstance(e, tracing.Spans))]

    assert traced_by(create_app(production)) == [None]
    with_provider = create_app(production, tracer_provider=tracing.make_provider())
    assert all(traced_by(with_provider)) and len(traced_by(with_provider)) == 2
