from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from tests import factories
from tests.graph.conftest import Api, token_for


async def test_workspace_board(api: Api, session: AsyncSession) -> None:
    w = await factories.world(session)
    await session.commit()
    data = await api.data(
        """query($slug: String!) { workspace(slug: $slug) { name viewerRole
             project(key: "ENG") { key taskCounts { total todo done }
               tasks { totalCount
                 nodes { key title assignee { name email } labels { name } } } } } }""",
        {"slug": w.workspace.slug},
        token=token_for(w.users["member"].id),
    )
    ws = data["workspace"]
    assert ws["viewerRole"] == "MEMBER"
    assert ws["project"]["taskCounts"] == {"total": 5, "todo": 2, "done": 1}
    assert [t["key"] for t in ws["project"]["tasks"]["nodes"]] == [f"ENG-{i}" for i in range(1, 6)]
    assert ws["project"]["tasks"]["nodes"][0]["labels"] == [{"name": "bug"}, {"name": "feature"}]
