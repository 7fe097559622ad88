"""The HTTP edge of /graphql: one view for every request, and every answer in one form."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from strawberry.types import ExecutionResult

from db import api_keys, prepared
from db.engine import PoolSettings, make_engine, make_session_factory
from db.models import ApiScope
from db.principals import user_principal
from graph import compiled
from graph.app import create_app
from graph.context import Context
from graph.ids import to_global_id
from graph.settings import Settings
from graph.view import MAX_BODY_BYTES
from tests import factories
from tests.conftest import StatementCounter, connections_in_use
from tests.graph.conftest import Api, token_for, without_cost


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
    assert without_cost(response.json()) == {"data": {"me": {"name": "Poster"}}}


async def test_a_charset_in_the_content_type_is_accepted(api: Api) -> None:
    response = await api.client.post(
        "/graphql",
        content=b'{"query": "{ __typename }"}',
        headers={"content-type": "application/json; charset=utf-8"},
    )
    assert without_cost(response.json()) == {"data": {"__typename": "Query"}}


async def test_errors_keep_their_codes(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "{ nope }"})
    assert response.status_code == 200
    body = response.json()
    assert "data" not in body  # a request error: no execution began
    assert body["errors"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_bad_credentials_refuse_the_operation(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "{ me { id } }"}, headers={"authorization": "Bearer nonsense"}
    )
    assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


def _refusal(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == "application/json", response.text
    body = response.json()
    assert list(body) == ["errors"] and len(body["errors"]) == 1, body
    error: dict[str, object] = body["errors"][0]
    assert error["extensions"]["code"] == "BAD_REQUEST"
    assert set(error["extensions"]) <= {"code", "requestId"}
    return error


async def test_an_unknown_operation_name_is_a_client_error(api: Api) -> None:
    response = await api.client.post(
        "/graphql", json={"query": "query A { __typename }", "operationName": "B"}
    )
    assert response.status_code == 400
    _refusal(response)


async def test_a_method_the_route_does_not_take_is_refused_in_the_same_form(api: Api) -> None:
    response = await api.client.put("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 405
    assert "allow" in response.headers
    _refusal(response)
    # Other paths keep the framework's answers.
    assert (await api.client.get("/nowhere")).json() == {"detail": "Not Found"}


async def test_answers_are_written_by_one_encoder(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = await factories.user(session, name="Compact")
    headers = {"authorization": f"Bearer {token_for(user.id)}"}
    query = {"query": "{ me { name } }"}
    compiled_answer = await api.client.post("/graphql", json=query, headers=headers)
    monkeypatch.setattr(compiled, "ENABLED", False)
    normal_answer = await api.client.post("/graphql", json=query, headers=headers)
    error = await api.client.post("/graphql", json={"query": "{ nope }"})
    for response in (normal_answer, error):
        assert response.headers["content-type"] == "application/json"
        assert b": " not in response.content and b", " not in response.content, response.text
    # A compiled answer's `data` is written as PostgreSQL built it, spacing and all.
    assert compiled_answer.headers["content-type"] == "application/json"
    assert compiled_answer.content.startswith(b'{"data":{')
    assert without_cost(compiled_answer.json()) == {"data": {"me": {"name": "Compact"}}}


async def test_an_oversized_body_is_refused_before_it_is_run(api: Api) -> None:
    padding = "x" * MAX_BODY_BYTES
    response = await api.client.post(
        "/graphql", json={"query": "{ __typename }", "variables": {"pad": padding}}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/json"
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_a_body_longer_than_declared_is_refused_while_it_is_read(api: Api) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"query": "{ __typename }", "variables": {"pad": "'
        for _ in range(MAX_BODY_BYTES // 65536 + 1):
            yield b"x" * 65536
        yield b'"}}'

    # Streamed without a content-length, so only counting while reading can stop it.
    response = await api.client.post(
        "/graphql", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_get_still_serves_graphiql(api: Api) -> None:
    page = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert page.status_code == 200
    assert "graphiql" in page.text.lower()
    # Operations over GET: see tests/graph/test_http_protocol.py.


async def test_cors_headers_wrap_the_graphql_route(cors_api: Api) -> None:
    response = await cors_api.client.post(
        "/graphql",
        json={"query": "{ __typename }"},
        headers={"origin": "https://app.example"},
    )
    assert without_cost(response.json()) == {"data": {"__typename": "Query"}}
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
    assert [without_cost(r.json()) for r in responses] == [
        {"data": {"me": None, "workspaces": {"totalCount": 0}}}
    ] * 20
    assert most == 3


async def test_compiled_reads_and_sessions_share_the_pool_without_its_overflow(
    committed_db: str, settings: Settings
) -> None:
    # Compiled reads give their connections to the engine's reserve, checked out of the pool;
    # requests that need a session still find theirs in the pool, not in its overflow (which
    # stays for work outside requests, and whose connections would open and close per burst).
    engine = make_engine(committed_db, PoolSettings(size=2, max_overflow=2, timeout=3))
    most = 0

    def checked_out(*_: Any) -> None:
        nonlocal most
        most = max(most, engine.sync_engine.pool.checkedout())  # type: ignore[attr-defined]

    event.listen(engine.sync_engine.pool, "checkout", checked_out)
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(
            settings.model_copy(update={"pool_size": 2, "max_overflow": 2, "pool_timeout": 3}),
            engine=engine,
        )
        headers = {"authorization": f"Bearer {token_for(owner.id)}"}
        read = {"query": "{ me { name } }"}
        create = "mutation($s: String!) { createWorkspace(input: {name: $s, slug: $s}) "
        create += "{ workspace { slug } userErrors { code } } }"
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for rounds in range(3):
                # Reads fill the reserve; then sessions take both turns at once.
                requests = [
                    client.post("/graphql", json=read, headers=headers)
                    if i < 6
                    else client.post(
                        "/graphql",
                        json={"query": create, "variables": {"s": f"w{rounds}x{i}"}},
                        headers=headers,
                    )
                    for i in range(14)
                ]
                answers = [without_cost(r.json()) for r in await asyncio.gather(*requests)]
                assert [a for a in answers if "errors" in a] == []
                assert answers[0] == {"data": {"me": {"name": "owner"}}}
                assert answers[-1]["data"]["createWorkspace"]["userErrors"] == []
        assert most == 2
        assert connections_in_use(engine) == 0
    finally:
        await engine.dispose()


async def test_no_connection_to_be_had_is_a_503_to_retry(
    committed_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    timeout = 0.5
    engine = make_engine(committed_db, PoolSettings(size=1, max_overflow=0, timeout=timeout))
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(
            settings.model_copy(
                update={"pool_size": 1, "max_overflow": 0, "pool_timeout": timeout}
            ),
            engine=engine,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            query = {"query": "{ me { id } workspaces { totalCount } }"}
            async with engine.connect() as held:  # the pool's only connection
                await held.execute(text("SELECT 1"))
                # The compiled path and the normal one (where the session is opened by the
                # first resolver that needs it, and the others must not wait again).
                for enabled in (True, False):
                    monkeypatch.setattr(compiled, "ENABLED", enabled)
                    for token in (None, token_for(owner.id)):
                        headers = {"authorization": f"Bearer {token}"} if token else {}
                        started = time.monotonic()
                        response = await client.post("/graphql", json=query, headers=headers)
                        waited = time.monotonic() - started
                        assert response.status_code == 503
                        assert response.headers["retry-after"] == "1"
                        body = response.json()
                        # No data: absent (nothing was executed) or null (the first field failed).
                        assert body.get("data") is None
                        [error] = body["errors"]
                        assert error["extensions"]["code"] == "SERVICE_UNAVAILABLE"
                        assert error["message"] == "The database is unavailable; retry shortly."
                        assert timeout <= waited < 1.9 * timeout, (enabled, token, waited)
            monkeypatch.setattr(compiled, "ENABLED", True)
            # With the connection back, the same requests are answered.
            response = await client.post(
                "/graphql", json=query, headers={"authorization": f"Bearer {token_for(owner.id)}"}
            )
            assert without_cost(response.json()) == {
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
                assert without_cost(first.json()) == expected
                async with engine.connect() as connection:
                    pid = await connection.scalar(text("SELECT pg_backend_pid()"))
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
                for _ in range(2):
                    response = await client.post("/graphql", json=query, headers=headers)
                    assert response.status_code == 200
                    assert without_cost(response.json()) == expected
    finally:
        await admin.close()
        await engine.dispose()


async def test_a_session_is_opened_only_when_needed_and_closed_after_the_answer(
    committed_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, opened: list[Context]
) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {token_for(owner.id)}"}
        query = {"query": "{ me { name } }"}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # A signed-in user's compiled query: one statement, no session.
            with StatementCounter(engine) as counter:
                response = await client.post("/graphql", json=query, headers=headers)
            assert without_cost(response.json()) == {"data": {"me": {"name": "owner"}}}
            assert counter.count == 1 and opened == []
            # Nothing to read: no session either.
            response = await client.post("/graphql", json={"query": "{ __typename }"})
            assert (
                without_cost(response.json()) == {"data": {"__typename": "Query"}} and opened == []
            )
            # The normal path opens one for the authentication, and closes it afterwards.
            monkeypatch.setattr(compiled, "ENABLED", False)
            response = await client.post("/graphql", json=query, headers=headers)
            assert without_cost(response.json()) == {"data": {"me": {"name": "owner"}}}
            assert len(set(map(id, opened))) == 1
            assert not opened[0].has_session
            assert connections_in_use(engine) == 0
    finally:
        await engine.dispose()


def test_an_answer_the_encoder_refuses_is_a_masked_error(settings: Settings) -> None:
    view = create_app(settings).state.graphql_view
    deep: dict[str, Any] = {}
    level = deep
    for _ in range(300):
        level["a"] = {}
        level = level["a"]
    answer = view._result(ExecutionResult(data=deep, errors=None), "application/json")
    assert answer.status_code == 500
    [error] = orjson.loads(answer.body)["errors"]
    assert error["message"] == "Internal server error"
    assert error["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    # The limits keep real answers well away from it: 2 JSON levels per field at most.
    depth = Settings.model_fields["max_query_depth"].metadata
    assert 2 * next(m.le for m in depth if hasattr(m, "le")) + 1 < 254


async def test_an_api_keys_compiled_query_needs_no_session(
    committed_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch, opened: list[Context]
) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            world = await factories.world(session)
            owner = await user_principal(session, world.users["owner"].id)
            assert owner is not None
            key = await api_keys.create_api_key(
                session, owner, world.workspace.id, "export", [ApiScope.READ]
            )
            await session.commit()
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        headers = {"authorization": f"Bearer {key.secret}"}
        query = {"query": "{ workspaces { nodes { slug } } }"}
        expected = {"data": {"workspaces": {"nodes": [{"slug": world.workspace.slug}]}}}
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            # The first use records last_used_at: the key, the write, the query.
            with StatementCounter(engine) as counter:
                response = await client.post("/graphql", json=query, headers=headers)
            assert without_cost(response.json()) == expected
            assert counter.count == 3 and opened == [], counter.statements
            async with engine.connect() as connection:
                used = await connection.scalar(
                    text("SELECT last_used_at FROM api_keys WHERE id = :id"), {"id": key.row.id}
                )
            assert used is not None
            # Then the key and the query, still without a session.
            with StatementCounter(engine) as counter:
                response = await client.post("/graphql", json=query, headers=headers)
            assert without_cost(response.json()) == expected
            assert counter.count == 2 and opened == []
            # A revoked key is refused at once, on both paths.
            async with engine.begin() as connection:
                await connection.execute(
                    text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"),
                    {"id": key.row.id},
                )
            kept = {id(c) for c in prepared.reserve(engine).idle}
            assert kept
            for enabled in (True, False):
                monkeypatch.setattr(compiled, "ENABLED", enabled)
                refused = await client.post("/graphql", json=query, headers=headers)
                assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
            assert connections_in_use(engine) == 0
            # A refused key leaves the connection it was looked up on as good as it was.
            assert {id(c) for c in prepared.reserve(engine).idle} == kept
    finally:
        await engine.dispose()


async def test_a_database_that_cannot_be_reached_is_a_503_to_retry(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing listens on port 9 of the loopback: every connection is refused.
    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none", PoolSettings(timeout=2))
    try:
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for enabled in (True, False):
                monkeypatch.setattr(compiled, "ENABLED", enabled)
                for token in (None, token_for(1), "tgk_abcdefgh_" + "x" * 40):
                    headers = {"authorization": f"Bearer {token}"} if token else {}
                    response = await client.post(
                        "/graphql",
                        json={"query": "{ me { id } workspaces { totalCount } }"},
                        headers=headers,
                    )
                    assert response.status_code == 503, (enabled, token, response.text)
                    assert response.headers["retry-after"] == "1"
                    codes = {e["extensions"]["code"] for e in response.json()["errors"]}
                    assert codes == {"SERVICE_UNAVAILABLE"}, response.text
    finally:
        await engine.dispose()
