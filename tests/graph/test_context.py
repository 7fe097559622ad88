"""One session per request, used by many concurrent resolvers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

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
