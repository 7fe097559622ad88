"""A server given its own database runs as in production: no GraphiQL, no introspection, no
suggested names in errors, unless its settings say otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from graph.settings import Settings
from tests.graph.conftest import SECRET, Api, _api

INTROSPECTION = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "Task") { name } }'
MISSPELT = "{ worksapces { totalCount } }"
BAD_ENUM = (
    "query($s: [TaskStatus!]) "
    "{ workspaces { nodes { tasks(filter: {status: $s}) { totalCount } } } }"
)


def test_the_defaults_follow_the_database() -> None:
    embedded = Settings()
    assert embedded.graphiql_enabled and embedded.introspection_enabled
    production = Settings(database_url="postgresql://db/taskgraph", secret_key=SECRET)
    assert not production.graphiql_enabled and not production.introspection_enabled
    debugging = production.model_copy(update={"debug": True})
    assert debugging.graphiql_enabled and debugging.introspection_enabled
    chosen = production.model_copy(update={"introspection": True})
    assert chosen.introspection_enabled and not chosen.graphiql_enabled


@pytest.fixture
async def production(engine: AsyncEngine, connection: AsyncConnection) -> AsyncIterator[Api]:
    settings = Settings(database_url="postgresql+asyncpg://unused/test", secret_key=SECRET)
    async for value in _api(settings, engine, connection):
        yield value


async def test_production_answers_no_introspection_and_suggests_no_names(
    production: Api, api: Api
) -> None:
    for query in (INTROSPECTION, TYPE):
        body = await production(query)
        assert "data" not in body
        error = body["errors"][0]
        assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        assert "introspection" in error["message"].lower(), body
    assert (await production.data("{ __typename }")) == {"__typename": "Query"}
    misspelt = (await production(MISSPELT))["errors"][0]["message"]
    assert misspelt == "Cannot query field 'worksapces' on type 'Query'."
    enum = (await production(BAD_ENUM, {"s": ["TOD"]}))["errors"][0]["message"]
    assert "TODO" not in enum and "Did you mean" not in enum
    # A development server (the tests' usual settings) keeps both.
    assert (await api.data(INTROSPECTION)) == {"__schema": {"queryType": {"name": "Query"}}}
    assert "Did you mean 'workspaces'" in (await api(MISSPELT))["errors"][0]["message"]
    assert "Did you mean" in (await api(BAD_ENUM, {"s": ["TOD"]}))["errors"][0]["message"]


async def test_production_serves_no_graphiql(production: Api) -> None:
    page = await production.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 404
    assert page.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_preflight_is_answered_for_allowed_origins_only(cors_api: Api) -> None:
    request = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type, apollo-require-preflight",
    }
    allowed = await cors_api.client.options(
        "/graphql", headers={**request, "origin": "https://app.example"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "apollo-require-preflight" in allowed.headers["access-control-allow-headers"].lower()
    assert int(allowed.headers["access-control-max-age"]) > 0
    refused = await cors_api.client.options(
        "/graphql", headers={**request, "origin": "https://evil.example"}
    )
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
