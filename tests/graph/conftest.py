"""API fixtures: the real ASGI app over httpx, inside the test's rolled-back transaction."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from db.engine import make_engine
from db.models import ApiScope
from graph import compiled
from graph.app import create_app
from graph.auth import issue_access_token
from graph.context import Context
from graph.ids import to_global_id
from graph.settings import Settings
from tests import factories
from tests.graph.live_app import LiveApp, Seeded, served

SECRET = "test-secret-key-0123456789-abcdefghijklmnop"


@pytest.fixture
def settings() -> Settings:
    # Tests send many requests as one principal, and many large documents: neither the cost
    # limit nor the buckets refuse them here (the tests of the limits set their own).
    return Settings(
        database_url="postgresql+asyncpg://unused/test",
        secret_key=SECRET,
        # As in development; tests/graph/test_production_defaults.py has production's.
        graphiql=True,
        max_query_cost=1_000_000_000,
        max_query_aliases=10_000,
        max_query_root_fields=10_000,
        rate_limit_maximum=1e9,
        rate_limit_restore_rate=1e9,
    )


def without_cost(body: dict[str, Any]) -> dict[str, Any]:
    """The answer without its `extensions.cost`, once that is seen to be there and well
    formed (every answer to an operation carries it: graph/admission.py)."""
    extensions = body.pop("extensions", None)
    assert extensions is not None and set(extensions) == {"cost"}, (extensions, body)
    cost = extensions["cost"]
    assert isinstance(cost["requestedQueryCost"], int) and cost["requestedQueryCost"] >= 0
    assert cost["actualQueryCost"] == cost["requestedQueryCost"]
    return body


class Api:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> httpx.Response:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return await self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
        )

    async def __call__(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        response = await self.post(query, variables, token=token)
        assert response.status_code in (200, 400), response.text
        body = response.json()
        return without_cost(body) if "extensions" in body or "data" in body else body

    async def data(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        body = await self(query, variables, token=token)
        assert "errors" not in body, body["errors"]
        return body["data"]  # type: ignore[no-any-return]


@pytest.fixture
def used(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The SQL of the operations answered by the compiled path (graph/compiled.py)."""
    answered: list[str] = []
    original = compiled.statement

    def counting(*args: Any) -> Any:
        result = original(*args)
        answered.append(result[0])
        return result

    monkeypatch.setattr(compiled, "statement", counting)
    return answered


def token_for(user_id: int) -> str:
    return issue_access_token(SECRET, user_id, timedelta(minutes=15))[0]


async def _api(
    settings: Settings,
    engine: AsyncEngine,
    connection: AsyncConnection,
    base_url: str = "http://test",
) -> AsyncIterator[Api]:
    def sessions() -> AsyncSession:
        return AsyncSession(
            bind=connection, expire_on_commit=False, join_transaction_mode="create_savepoint"
        )

    app = create_app(settings, engine=engine, session_factory=sessions)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=base_url) as client:
        yield Api(client)


@pytest.fixture
async def api(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Api]:
    async for value in _api(settings, engine, connection):
        yield value


@pytest.fixture
async def cors_api(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection
) -> AsyncIterator[Api]:
    """The API with one origin allowed to call it from a browser."""
    cors = settings.model_copy(update={"cors_origins": ["https://app.example"]})
    async for value in _api(cors, engine, connection):
        yield value


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[Context]:
    """The contexts that opened a session, in order."""
    found: list[Context] = []
    real = Context._opened

    async def counted(self: Context) -> AsyncSession:
        found.append(self)
        return await real(self)

    monkeypatch.setattr(Context, "_opened", counted)
    return found


# A real server process, for tests of real connections (tests/graph/live_server.py), and
# headless Chromium (tests/graph/chromium.py).
from tests.graph.chromium import chromium, chromium_path  # noqa: E402, F401
from tests.graph.live_server import live_server  # noqa: E402, F401

# Live events: the app served by uvicorn on a committed database (tests/graph/live_app.py).


@pytest.fixture
async def live_engine(committed_db: str) -> AsyncIterator[AsyncEngine]:
    engine = make_engine(committed_db)
    yield engine
    await engine.dispose()


@pytest.fixture
async def seeded(live_engine: AsyncEngine) -> Seeded:
    async with AsyncSession(live_engine, expire_on_commit=False) as session:
        world = await factories.world(session)
        read_key = await factories.api_key(
            session, world.workspace.id, world.users["admin"].id, {ApiScope.READ}
        )
        await session.commit()
    return Seeded(
        world,
        to_global_id("Workspace", world.workspace.id),
        to_global_id("Project", world.project.id),
        to_global_id("Workspace", world.other_workspace.id),
        {name: token_for(user.id) for name, user in world.users.items()},
        read_key.secret,
        to_global_id("ApiKey", read_key.row.id),
    )


@pytest.fixture
async def live(settings: Settings, live_engine: AsyncEngine) -> AsyncIterator[LiveApp]:
    async with served(settings, live_engine) as app:
        yield app
