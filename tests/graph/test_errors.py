"""Error codes on the wire, masking of faults, and GraphiQL."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db import read_types
from graph import compiled
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import SECRET, Api, _api, token_for


async def test_parse_error(api: Api) -> None:
    body = await api("query { workspaces { ")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    assert "data" not in body or body["data"] is None


async def test_validation_error(api: Api) -> None:
    body = await api("query { workspaces { nope } }")
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "nope" in body["errors"][0]["message"]


async def test_bad_variable_is_bad_user_input(api: Api) -> None:
    body = await api("query($n: Int) { workspaces(first: $n) { totalCount } }", {"n": "ten"})
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_bad_date_literal_is_refused(api: Api, session: AsyncSession) -> None:
    w = await factories.world(session)
    await session.commit()
    body = await api(
        """query($s: String!) {
             workspace(slug: $s) { tasks(filter: {dueBefore: "soon"}) { totalCount } } }""",
        {"s": w.workspace.slug},
        token=token_for(w.users["owner"].id),
    )
    assert body["errors"][0]["extensions"]["code"] in (
        "GRAPHQL_VALIDATION_FAILED",
        "BAD_USER_INPUT",
    )


@pytest.fixture
def broken_workspace_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("connection string postgres://secret@db leaked")

    monkeypatch.setattr(read_types, "related", explode)
    # The fault is planted in the resolvers' path; a compiled query would not pass it.
    monkeypatch.setattr(compiled, "ENABLED", False)


@pytest.mark.usefixtures("broken_workspace_lookup")
async def test_internal_errors_are_masked_and_logged(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="taskgraph.errors"):
        body = await api('{ workspace(slug: "x") { id } }')
    error = body["errors"][0]
    assert error["message"] == "Internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    assert "secret" not in str(body)
    error_id = error["extensions"]["errorId"]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "RuntimeError" in caplog.text


@pytest.fixture
async def debug_api(engine: AsyncEngine, connection: AsyncConnection) -> AsyncIterator[Api]:
    settings = Settings(
        database_url="postgresql+asyncpg://unused/test", secret_key=SECRET, debug=True
    )
    async for value in _api(settings, engine, connection):
        yield value


@pytest.mark.usefixtures("broken_workspace_lookup")
async def test_debug_shows_the_original_message(debug_api: Api) -> None:
    body = await debug_api('{ workspace(slug: "x") { id } }')
    assert "connection string" in body["errors"][0]["message"]
    assert body["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"


async def test_graphiql_on_get_in_a_browser(api: Api) -> None:
    response = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert "graphiql" in response.text.lower()


async def test_queries_are_not_run_over_get(api: Api) -> None:
    response = await api.client.get(
        "/graphql", params={"query": "{ me { id } }"}, headers={"accept": "application/json"}
    )
    assert response.status_code in (400, 405)


async def test_health_endpoints(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/readyz")).json() == {"status": "ok"}


async def test_unknown_node_type_in_nodes_is_bad_user_input(api: Api) -> None:
    body = await api('{ nodes(ids: ["Rm9vOjE"]) { id } }')
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_malformed_json_body_is_a_client_error(api: Api) -> None:
    response = await api.client.post(
        "/graphql", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
