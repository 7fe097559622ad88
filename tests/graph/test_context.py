"""One session per request, used by many concurrent resolvers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import PoolSettings, make_engine
from graph.context import Context, Resources
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import Api, token_for


async def test_wide_query_with_many_concurrent_root_and_nested_fields(
    api: Api, session: AsyncSession
) -> None:
    """Twenty aliased root fields and their nested lists resolve concurrently; without the
    session guard asyncpg raises "another operation is in progress"."""
    w = await factories.world(session)
    for t in w.tasks:
        await factories.comment(session, t.id, w.users["member"].id, f"on {t.number}")
    await session.commit()
    fields = "\n".join(
        f"""w{i}: workspace(slug: $slug) {{
              projects {{ nodes {{ key taskCounts {{ total }} }} }}
              members {{ totalCount nodes {{ role user {{ name }} }} }}
              labels {{ name }}
              tasks(first: {i + 1}) {{ totalCount nodes {{ key labels {{ name }}
                comments {{ nodes {{ body author {{ name }} }} }} activity {{ totalCount }} }} }}
            }}"""
        for i in range(20)
    )
    data = await api.data(
        f"query($slug: String!) {{ me {{ name }} {fields} }}",
        {"slug": w.workspace.slug},
        token=token_for(w.users["owner"].id),
    )
    assert data["me"]["name"] == "owner"
    for i in range(20):
        ws = data[f"w{i}"]
        assert ws["members"]["totalCount"] == 4
        assert ws["projects"]["nodes"] == [{"key": "ENG", "taskCounts": {"total": 5}}]
        assert len(ws["tasks"]["nodes"]) == min(i + 1, 5)
        newest = ws["tasks"]["nodes"][0]
        assert newest["key"] == "ENG-5"
        assert newest["comments"]["nodes"] == [{"body": "on 5", "author": {"name": "member"}}]


async def test_a_call_after_the_answer_opens_no_session(committed_db: str) -> None:
    # A loader batch of a field that graphql-core cancelled can arrive while the request is
    # closing or after: it must fail, not check out a connection that nothing returns.
    engine = make_engine(committed_db, PoolSettings(size=2, max_overflow=0, timeout=1))
    opened: list[AsyncSession] = []

    @asynccontextmanager
    async def open_session() -> AsyncIterator[AsyncSession]:
        async with AsyncSession(engine) as session:
            opened.append(session)
            yield session

    async def one(session: AsyncSession) -> int:
        return int((await session.execute(text("SELECT 1"))).scalar_one())

    resources = Resources(Settings(secret_key="x" * 32), "x" * 32, open_session, None)  # type: ignore[arg-type]
    try:
        context = Context(resources, None)
        assert await context.db(one) == 1
        closing = asyncio.ensure_future(context.close())
        late = asyncio.ensure_future(context.db(one))
        await closing
        with pytest.raises(RuntimeError):
            await late
        with pytest.raises(RuntimeError):
            await context.db(one)
        assert len(opened) == 1
        assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await engine.dispose()
