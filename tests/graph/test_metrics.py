"""/metrics: who may read it, what it counts, and labels that no client can multiply.
(With several workers: tests/test_serve_metrics.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db.models import Role
from graph.app import create_app
from graph.metrics import Metrics
from graph.settings import Settings, SettingsError, load_settings
from tests import factories
from tests.graph.conftest import token_for

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def requests(samples: Samples, kind: str, name: str, status: str = "200") -> float:
    return value(
        samples,
        "taskgraph_graphql_requests_total",
        operation_type=kind,
        operation_name=name,
        status=status,
    )


AppFactory = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def metered(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[AppFactory]:
    """Clients of apps in the test's rolled-back transaction, with the settings changed."""
    clients: list[httpx.AsyncClient] = []

    def sessions() -> AsyncSession:
        return AsyncSession(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    def make(**changes: Any) -> httpx.AsyncClient:
        changed = settings.model_copy(update=changes)
        app = create_app(changed, engine=engine, session_factory=sessions)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
        client.app = app  # type: ignore[attr-defined]
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def scrape(client: httpx.AsyncClient, **headers: str) -> Samples:
    response = await client.get("/metrics", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


def test_metrics_are_open_in_development_and_off_in_production(monkeypatch: Any) -> None:
    for name in ("DATABASE_URL", "METRICS", "METRICS_TOKEN", "DEBUG"):
        monkeypatch.delenv(name, raising=False)
    assert load_settings(_env_file=None).metrics_access == "open"
    production = {"database_url": "postgresql://db/taskgraph", "_env_file": None}
    assert load_settings(**production).metrics_access == "off"
    assert load_settings(**production, debug=True).metrics_access == "open"
    token = "t" * 32
    assert load_settings(**production, metrics_token=token).metrics_access == "token"
    assert load_settings(**production, metrics="OPEN").metrics_access == "open"
    with pytest.raises(SettingsError, match="METRICS=token needs METRICS_TOKEN"):
        load_settings(**production, metrics="token")
    with pytest.raises(SettingsError, match="would not ask for the METRICS_TOKEN"):
        load_settings(**production, metrics="open", metrics_token=token)
    with pytest.raises(SettingsError, match="METRICS_TOKEN"):
        load_settings(**production, metrics_token="short")


async def test_off_there_is_no_metrics_route(metered: AppFactory) -> None:
    client = metered(metrics="off")
    assert (await client.post("/graphql", json={"query": "{ __typename }"})).status_code == 200
    assert (await client.get("/metrics")).status_code == 404


async def test_a_token_guards_metrics(metered: AppFactory) -> None:
    token = "metrics-token-0123456789abcdef"
    client = metered(metrics="token", metrics_token=SecretStr(token))
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": token}):
        refused = await client.get("/metrics", headers=headers)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Bearer realm="metrics"'
        assert token not in refused.text
    samples = await scrape(client, authorization=f"Bearer {token}")
    assert value(samples, "taskgraph_db_pool_size") == 10


async def test_requests_are_counted_by_operation_status_statements_and_error(
    metered: AppFactory, session: AsyncSession
) -> None:
    owner = await factories.user(session, "owner")
    ws = await factories.workspace(session)
    await factories.member(session, ws.id, owner.id, Role.OWNER)
    await session.flush()
    client = metered(metrics="open")
    auth = {"authorization": f"Bearer {token_for(owner.id)}"}
    me = "query Me { me { name } workspaces(first: 5) { nodes { slug } } }"
    for _ in range(3):
        answer = (await client.post("/graphql", json={"query": me}, headers=auth)).json()
        assert answer["data"]["workspaces"]["nodes"] == [{"slug": ws.slug}], answer
    await client.post("/graphql", json={"query": "{ __typename }"})
    await client.post("/graphql", json={"query": "query Broken { nope }"})
    await client.post("/graphql", json={"query": "{", "operationName": "Made Up"})
    await client.post("/graphql", content=b"not json", headers={"content-type": "application/json"})
    create = 'mutation M { createTask(input: {projectId: "x", title: "t"}) { task { id } } }'
    await client.post("/graphql", json={"query": create})

    samples = await scrape(client)
    assert requests(samples, "query", "Me") == 3
    assert requests(samples, "query", "(anonymous)") == 1
    assert requests(samples, "query", "Broken") == 1
    # No operation was chosen: no name is taken from the request's operationName.
    assert requests(samples, "none", "(none)", "200") == 1
    assert requests(samples, "none", "(none)", "400") == 1
    assert requests(samples, "mutation", "M") == 1
    assert not any("Made Up" in str(labels) for _, labels in samples)
    me_labels = {"operation_type": "query", "operation_name": "Me"}
    duration = "taskgraph_graphql_request_duration_seconds"
    assert value(samples, f"{duration}_count", **me_labels) == 3
    assert 0 < value(samples, f"{duration}_sum", **me_labels) < 30
    # Exact counts are in the test of the pool below (here the tests' savepoints count too).
    statements = "taskgraph_graphql_request_statements"
    assert value(samples, f"{statements}_bucket", **me_labels, le="0.0") == 0
    assert value(samples, f"{statements}_count", **me_labels) == 3
    errors = "taskgraph_graphql_errors_total"
    assert value(samples, errors, code="GRAPHQL_VALIDATION_FAILED") == 1
    assert value(samples, errors, code="GRAPHQL_PARSE_FAILED") == 1
    assert value(samples, errors, code="BAD_REQUEST") == 1
    assert value(samples, errors, code="UNAUTHENTICATED") == 1


async def test_operation_names_past_the_bound_are_counted_as_other(
    metered: AppFactory,
) -> None:
    client = metered(metrics="open", metrics_operation_names=3)
    for n in range(6):
        await client.post("/graphql", json={"query": f"query Op{n} {{ __typename }}"})
    await client.post("/graphql", json={"query": "query Op0 { __typename }"})
    long_name = "Q" * 101
    await client.post("/graphql", json={"query": f"query {long_name} {{ __typename }}"})
    samples = await scrape(client)
    names = {
        dict(labels)["operation_name"]
        for name, labels in samples
        if name == "taskgraph_graphql_requests_total"
    }
    assert names == {"Op0", "Op1", "Op2", "(other)"}
    assert requests(samples, "query", "Op0") == 2
    assert requests(samples, "query", "(other)") == 4


async def test_websocket_and_subscription_gauges_count_while_open(metered: AppFactory) -> None:
    client = metered(metrics="open")
    metrics: Metrics = client.app.state.metrics  # type: ignore[attr-defined]
    with metrics.websocket(), metrics.websocket(), metrics.subscription():
        samples = await scrape(client)
        assert value(samples, "taskgraph_websocket_connections") == 2
        assert value(samples, "taskgraph_graphql_subscriptions") == 1
    samples = await scrape(client)
    assert value(samples, "taskgraph_websocket_connections") == 0
    assert value(samples, "taskgraph_graphql_subscriptions") == 0


async def test_pool_gauges_show_connections_in_use_idle_and_requests_waiting(
    settings: Settings, committed_db: str
) -> None:
    """One connection: a request held at the database (by the test's lock) keeps it in use,
    the next waits for it; both finish once the lock goes."""
    app = create_app(
        settings.model_copy(
            update={"database_url": committed_db, "metrics": "open", "pool_size": 1}
        )
    )
    url = make_url(committed_db)
    lock = await asyncpg.connect(
        host=url.query.get("host") or url.host,
        port=url.port or int(url.query.get("port", 5432)),
        user=url.username,
        database=url.database,
    )
    query = {"query": "{ workspaces { nodes { slug } } }"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as client:
            await client.post("/graphql", json=query)
            idle = await scrape(client)
            assert value(idle, "taskgraph_db_connections", state="idle") == 1
            assert value(idle, "taskgraph_db_connections", state="in_use") == 0
            await lock.execute("BEGIN; LOCK TABLE workspaces IN ACCESS EXCLUSIVE MODE")
            held = [asyncio.ensure_future(client.post("/graphql", json=query)) for _ in range(2)]
            busy: Samples = {}
            for _ in range(200):
                busy = await scrape(client)
                if value(busy, "taskgraph_db_requests_waiting") == 1:
                    break
                await asyncio.sleep(0.02)
            assert value(busy, "taskgraph_db_requests_waiting") == 1
            assert value(busy, "taskgraph_db_connections", state="in_use") == 1
            assert value(busy, "taskgraph_db_connections", state="idle") == 0
            await lock.execute("ROLLBACK")
            assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
            done = await scrape(client)
            assert value(done, "taskgraph_db_requests_waiting") == 0
            assert value(done, "taskgraph_db_connections", state="in_use") == 0
            assert value(done, "taskgraph_db_connections", state="idle") == 1
            assert requests(done, "query", "(anonymous)") == 3
            # A compiled query: one statement each.
            anonymous = {"operation_type": "query", "operation_name": "(anonymous)"}
            statements = "taskgraph_graphql_request_statements"
            assert value(done, f"{statements}_sum", **anonymous) == 3
            assert value(done, f"{statements}_bucket", **anonymous, le="1.0") == 3
    finally:
        await lock.close()
        await app.state.engine.dispose()
