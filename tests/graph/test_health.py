"""/healthz says the process answers; /readyz that it can serve: the database answers and is
at the migrations' head."""

from __future__ import annotations

import httpx

from db.engine import PoolSettings, make_engine
from db.migrations import downgrade, heads, upgrade
from graph.app import create_app
from graph.settings import Settings


async def _get(app: object, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(path)


async def test_ready_only_when_the_database_is_at_the_head(
    committed_db: str, settings: Settings
) -> None:
    engine = make_engine(committed_db)
    try:
        app = create_app(settings, engine=engine)
        ready = await _get(app, "/readyz")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
        await downgrade(engine, "-1")
        behind = await _get(app, "/readyz")
        assert behind.status_code == 503
        assert behind.json()["status"] == "unavailable"
        assert sorted(heads())[0] in behind.json()["reason"]
        # The process itself still answers.
        assert (await _get(app, "/healthz")).json() == {"status": "ok"}
        await upgrade(engine)
        assert (await _get(app, "/readyz")).status_code == 200
    finally:
        await engine.dispose()


async def test_not_ready_when_the_database_cannot_be_reached(settings: Settings) -> None:
    engine = make_engine("postgresql+asyncpg://postgres@127.0.0.1:9/none", PoolSettings(timeout=2))
    try:
        app = create_app(settings, engine=engine)
        response = await _get(app, "/readyz")
        assert response.status_code == 503
        assert response.json() == {
            "status": "unavailable",
            "reason": "the database cannot be reached",
        }
        assert (await _get(app, "/healthz")).status_code == 200
    finally:
        await engine.dispose()
