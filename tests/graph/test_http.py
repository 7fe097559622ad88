"""The HTTP edge of /graphql: the direct JSON POST path and what it hands on to the framework."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from sqlalchemy import make_url, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db.engine import PoolSettings, make_engine, make_session_factory
from graph.app import create_app
from graph.http import MAX_BODY_BYTES
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import Api, _api, token_for


async def test_a_json_post_answers_with_data_and_json_headers(
    api: Api, session: AsyncSession
) -> None:
    user = await factories.user(session, name="Poster")
    response = await api.client.post(
        "/graphql",
        json={"query": "query Me { me { name } }", "operationName": "Me", "variables": None},
        headers={"authorization": f"Bearer {token_for(user.id)}"},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"data": {"me": {"name": "Poster"}}}


async def test_a_charset_in_the_content_type_is_accepted(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert response.json() == {"data": {"__typename": "Query"}}


async def test_errors_keep_their_codes(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "{ nope }"})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_bad_credentials_refuse_the_operation(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"authorization": "Bearer nonsense"}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'{"query": 5}',
        b'{"query": "{ __typename }", "variables": [1]}',
        b'{"query": "{ __typename }", "operationName": 3}',
        b'{"variables": {}}',
    ],
)
async def test_malformed_requests_are_client_errors(api: Api, body: bytes) -> None:
    response = await api.client.post(
        "/graphql", content=body, headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, response.text


async def test_an_unknown_operation_name_is_a_client_error(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    assert response.status_code == 400


async def test_an_oversized_body_is_refused_before_it_is_run(api: Api) -> None:
    padding = "x" * MAX_BODY_BYTES
    response = await api.client.post(
        "/graphql", json={"query": "{ __typename }", "variables": {"pad": padding}}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_get_still_serves_graphiql_and_refuses_operations(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    refused = await api.client.get("/graphql", params={"query": "{ __typename }"})
    assert refused.status_code in (400, 405)


@pytest.fixture
async def cors_api(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Api]:
    cors = settings.model_copy(update={"cors_origins": ["https://app.example"]})
    async for value in _api(cors, engine, connection):
        yield value


async def test_cors_headers_wrap_the_direct_path(cors_api: Api) -> None:
    response = await cors_api.client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"origin": "https://app.example"},
    )
    assert response.json() == {"data": {"__typename": "Query"}}
    assert response.headers["access-control-allow-origin"] == "https://app.example"
    other = await cors_api.client.post(
        "/graphql", json={"query": "{ __typename }"}, headers={"origin": "https://evil.example"}
    )
    assert "access-control-allow-origin" not in other.headers


async def test_the_server_tunes_the_garbage_collector_at_start(
    settings: Settings, engine: AsyncEngine
) -> None:
    before = gc.get_threshold()
    app = create_app(settings, engine=make_engine(engine.url.render_as_string(hide_password=False)))
    try:
        async with app.router.lifespan_context(app):
            assert gc.get_threshold() == (10_000, 10, 10)
            assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


async def test_requests_wait_their_turn_for_the_pool_outside_it(
    settings: Settings, engine: AsyncEngine
) -> None:
    # More requests at once than the pool keeps: they queue in arrival order before a
    # session is opened, so the pool never has waiters (whose queue is not first come first
    # served) and never opens overflow connections.
    open_now = 0
    most = 0
    real = make_session_factory(engine)

    class Counted:
        def __init__(self) -> None:
            self.session = real()

        async def __aenter__(self) -> AsyncSession:
            nonlocal open_now, most
            open_now += 1
            most = max(most, open_now)
            return await self.session.__aenter__()

        async def __aexit__(self, *exc: object) -> None:
            nonlocal open_now
            open_now -= 1
            await self.session.__aexit__(*exc)

    app = create_app(
        settings.model_copy(update={"pool_size": 3}),
        engine=engine,
        session_factory=Counted,  # type: ignore[arg-type]
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        responses = await asyncio.gather(
            *(
                client.post("/graphql", json={"query": "{ me { id } workspaces { totalCount } }"})
                for _ in range(20)
            )
        )
    assert [r.json() for r in responses] == [
        {"data": {"me": None, "workspaces": {"totalCount": 0}}}
    ] * 20
    assert most == 3


async def test_no_connection_to_be_had_is_a_masked_error_not_a_500(
    committed_db: str, settings: Settings
) -> None:
    engine = make_engine(committed_db, PoolSettings(size=1, max_overflow=0, timeout=0.3))
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(
            settings.model_copy(update={"pool_size": 1, "max_overflow": 0, "pool_timeout": 0.3}),
            engine=engine,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            query = {"query": "{ me { id } workspaces { totalCount } }"}
            async with engine.connect() as held:  # the pool's only connection
                await held.execute(text("SELECT 1"))
                for token in (None, token_for(owner.id)):
                    headers = {"authorization": f"Bearer {token}"} if token else {}
                    response = await client.post("/graphql", json=query, headers=headers)
                    assert response.status_code == 200
                    error = response.json()["errors"][0]
                    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
                    assert error["message"] == "Internal server error"
            # With the connection back, the same requests are answered.
            response = await client.post(
                "/graphql", json=query, headers={"authorization": f"Bearer {token_for(owner.id)}"}
            )
            assert response.json() == {
                "data": {
                    "me": {"id": to_global_id("User", owner.id)},
                    "workspaces": {"totalCount": 0},
                }
            }
    finally:
        await engine.dispose()


async def test_a_connection_the_server_ended_is_replaced_not_reused(
    committed_db: str, settings: Settings
) -> None:
    # As after a PostgreSQL restart or an idle-connection timeout: the pooled connection is
    # gone, and the request that finds out gets a new one.
    engine = make_engine(committed_db, PoolSettings(size=1, max_overflow=0, timeout=2))
    admin = await asyncpg.connect(
        make_url(committed_db).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(
            settings.model_copy(update={"pool_size": 1, "max_overflow": 0}), engine=engine
        )
        transport = httpx.ASGITransport(app=app)
        query = {"query": "{ me { id } workspaces { totalCount } }"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for token, me in (
                (token_for(owner.id), {"id": to_global_id("User", owner.id)}),
                (None, None),
            ):
                headers = {"authorization": f"Bearer {token}"} if token else {}
                expected = {"data": {"me": me, "workspaces": {"totalCount": 0}}}
                first = await client.post("/graphql", json=query, headers=headers)
                assert first.json() == expected
                async with engine.connect() as connection:
                    pid = await connection.scalar(text("SELECT pg_backend_pid()"))
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                for _ in range(2):
                    response = await client.post("/graphql", json=query, headers=headers)
                    assert response.status_code == 200
                    assert response.json() == expected
    finally:
        await admin.close()
        await engine.dispose()
