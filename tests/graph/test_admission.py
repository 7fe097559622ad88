"""Limits, cost and rate limits, as the API applies them to every operation (graph/admission.py),
with the default settings."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from graph import compiled
from graph.app import create_app
from graph.rate_limits import KEY_PREFIX
from graph.settings import Settings
from tests import factories
from tests.conftest import StatementCounter
from tests.graph.conftest import Api, _api, token_for
from tests.graph.test_rate_limits import REDIS_URL, _client

GQL = "application/graphql-response+json"
# 2 for the connection, 1 per node: 12.
TEN_WORKSPACES = "{ workspaces(first: 10) { nodes { id } } }"


def defaults(settings: Settings, **changes: Any) -> Settings:
    """The test settings with the product's defaults for limits and buckets."""
    fields = (
        "max_query_depth",
        "max_query_aliases",
        "max_query_root_fields",
        "max_query_cost",
        "rate_limit_maximum",
        "rate_limit_restore_rate",
    )
    default = {name: Settings.model_fields[name].default for name in fields}
    return settings.model_copy(update={**default, **changes})


@pytest.fixture
async def limited(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Api]:
    async for value in _api(defaults(settings), engine, connection):
        yield value


@pytest.mark.parametrize("compiled_path", [True, False])
async def test_every_answer_carries_its_cost_and_the_budget_left(
    limited: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    compiled_path: bool,
) -> None:
    monkeypatch.setattr(compiled, "ENABLED", compiled_path)
    world = await factories.world(session)
    token = token_for(world.users["owner"].id)
    for spent in (12, 24):
        body = (await limited.post(TEN_WORKSPACES, token=token)).json()
        assert len(body["data"]["workspaces"]["nodes"]) == 1
        cost = body["extensions"]["cost"]
        assert cost["requestedQueryCost"] == cost["actualQueryCost"] == 12
        status = cost["throttleStatus"]
        assert status["maximumAvailable"] == 2000.0 and status["restoreRate"] == 100.0
        # Restored at 100 a second between the two requests: at most back to full.
        assert 2000 - spent <= status["currentlyAvailable"] <= 2000 - spent + 12
    assert bool(used) is compiled_path
    # Mutations cost 10 plus what their payload selects (scalars: nothing).
    mutation = await limited.post('mutation { logOut(input: {refreshToken: "x"}) { ok } }')
    assert mutation.json()["extensions"]["cost"]["requestedQueryCost"] == 10


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (
            "{ workspaces { nodes { projects { nodes { tasks { nodes { comments { nodes { "
            "author { workspaces { nodes { projects { nodes { id } } } } } } } } } } } } } }",
            "Query depth 14 exceeds the limit of 12.",
        ),
        ("{ " + " ".join(f"a{i}: me {{ id }}" for i in range(31)) + " }", "alias count 31"),
        (
            "{ " + " ".join(f'w{i}: workspace(slug: "s{i}") {{ id }}' for i in range(21)) + " }",
            "exceeds the limit of 20",
        ),
        (
            "{ workspaces { nodes { projects { nodes { id } } } } }",
            # 2 + 50 * (1 + 2 + 50 * 1): no `first`, so 50 of each.
            "Query cost 2652 exceeds the limit of 1000.",
        ),
    ],
    ids=["depth", "aliases", "root fields", "cost"],
)
async def test_a_document_over_a_limit_is_refused_before_any_statement(
    limited: Api,
    session: AsyncSession,
    engine: AsyncEngine,
    query: str,
    message: str,
) -> None:
    world = await factories.world(session)
    token = token_for(world.users["owner"].id)
    for accept, status in (("application/json", 200), (GQL, 400)):
        with StatementCounter(engine) as counter:
            response = await limited.client.post(
                "/graphql",
                json={"query": query},
                headers={"authorization": f"Bearer {token}", "accept": accept},
            )
        assert response.status_code == status
        body = response.json()
        assert "data" not in body
        [error] = body["errors"]
        assert error["extensions"]["code"] == "QUERY_TOO_COMPLEX"
        assert message in error["message"]
        assert counter.count == 0, counter.statements


@pytest.fixture
async def small_buckets(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Api]:
    small = defaults(
        settings, rate_limit_maximum=30.0, rate_limit_restore_rate=0.5, max_query_cost=30
    )
    async for value in _api(small, engine, connection):
        yield value


async def test_an_empty_bucket_is_429_with_the_time_to_wait(
    small_buckets: Api, session: AsyncSession
) -> None:
    world = await factories.world(session)
    owner, member = token_for(world.users["owner"].id), token_for(world.users["member"].id)
    for _ in range(2):
        assert (await small_buckets.post(TEN_WORKSPACES, token=owner)).status_code == 200
    throttled = await small_buckets.post(TEN_WORKSPACES, token=owner)
    assert throttled.status_code == 429
    body = throttled.json()
    assert "data" not in body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "RATE_LIMITED"
    # 6 points short at 0.5 a second: about 12 seconds.
    assert 10 <= error["extensions"]["retryAfter"] <= 12.5
    assert int(throttled.headers["retry-after"]) >= 10
    assert body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"] < 12
    # Each principal has a bucket of its own; anonymous requests share their address's.
    assert (await small_buckets.post(TEN_WORKSPACES, token=member)).status_code == 200
    for expected in (200, 200, 429):
        assert (await small_buckets.post(TEN_WORKSPACES)).status_code == expected


async def test_workers_share_a_bucket_through_redis(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection, session: AsyncSession
) -> None:
    redis = await _client()
    world = await factories.world(session)
    user = world.users["owner"].id
    key = f"{KEY_PREFIX}cost:user:{user}"
    await redis.delete(key)
    shared = defaults(
        settings,
        redis_url=REDIS_URL,
        rate_limit_maximum=30.0,
        rate_limit_restore_rate=0.5,
        max_query_cost=30,
    )
    token = token_for(user)
    try:
        # Two apps, as two worker processes would be, with one Redis.
        one = _api(shared, engine, connection)
        two = _api(shared, engine, connection)
        first, second = await one.__anext__(), await two.__anext__()
        statuses = []
        for api in (first, second, first, second):
            statuses.append((await api.post(TEN_WORKSPACES, token=token)).status_code)
        assert statuses == [200, 200, 429, 429]
        stored = await redis.hgetall(key)
        assert float(stored[b"available"]) < 12
        for gen in (one, two):
            await gen.aclose()
    finally:
        await redis.delete(key)
        await redis.aclose()


async def test_the_cost_does_not_depend_on_the_path(
    limited: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await factories.world(session)
    token = token_for(world.users["owner"].id)
    query = (
        "query($n: Int) { workspaces(first: $n) { nodes { projects(first: 3) { nodes { id } } } } }"
    )
    costs = []
    for enabled in (True, False):
        monkeypatch.setattr(compiled, "ENABLED", enabled)
        response: httpx.Response = await limited.post(query, {"n": 7}, token=token)
        costs.append(response.json()["extensions"]["cost"]["requestedQueryCost"])
    # 2 + 7 * (1 + 2 + 3 * 1)
    assert costs == [44, 44]


def test_a_parsed_document_goes_to_the_request_that_parsed_it_and_is_not_kept(
    settings: Settings,
) -> None:
    # The compiler takes the document the admission parsed; the admission's store of checks
    # keeps none (a document's tree can weigh a hundred times its text).
    admission = create_app(settings).state.graphql_view.admission
    first = admission.check(TEN_WORKSPACES, None)
    assert first.document is not None and first.plan is not None
    assert admission.checked[(TEN_WORKSPACES, None)].document is None
    again = admission.check(TEN_WORKSPACES, None)
    assert again.document is None and again.plan is first.plan
