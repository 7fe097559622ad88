"""SQL statements per nested query must not grow with the page size."""

from __future__ import annotations

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.models import Role
from graph import compiled
from graph.ids import to_global_id
from tests import factories
from tests.conftest import StatementCounter
from tests.graph.conftest import Api, token_for

BOARD = """
query Board($slug: String!, $first: Int!) {
  workspace(slug: $slug) {
    project(key: "ENG") {
      tasks(first: $first) {
        totalCount
        pageInfo { hasNextPage endCursor }
        nodes {
          id key title status priority position
          project { key name }
          assignee { name email }
          creator { name }
          labels { name color }
          commentCount
          comments(first: 3) { nodes { body author { name } } pageInfo { hasNextPage } }
        }
      }
    }
  }
}
"""

# Through the resolvers: 1 user and memberships (authentication), 1 workspace by slug,
# 1 project by key, 1 task page, 1 task count, 1 assignees+creators, 1 labels, 1 comment
# counts, 1 first-3-comments (window function), 1 their authors.
# Compiled (graph/compiled.py): one statement, the user's memberships included.
BOARD_STATEMENTS = {"resolvers": 10, "compiled": 1}


async def _board(session: AsyncSession, tasks: int) -> tuple[str, int]:
    owner = await factories.user(session, "owner")
    assignees = [await factories.user(session, f"assignee{i}") for i in range(3)]
    commenters = [await factories.user(session, f"commenter{i}") for i in range(2)]
    ws = await factories.workspace(session)
    for u in [owner, *assignees, *commenters]:
        await factories.member(session, ws.id, u.id, Role.MEMBER if u is not owner else Role.OWNER)
    project = await factories.project(session, ws.id, "ENG")
    labels = [await factories.label(session, ws.id, name) for name in ("bug", "ui", "api")]
    for n in range(tasks):
        t = await factories.task(session, project, owner.id, assignee_id=assignees[n % 3].id)
        await factories.tag(session, t.id, labels[n % 3].id, labels[(n + 1) % 3].id)
        for c in range(4):
            await factories.comment(session, t.id, commenters[c % 2].id, f"comment {c}", minute=c)
    await session.commit()
    return ws.slug, owner.id


@pytest.mark.parametrize("tasks", [5, 100])
async def test_board_statement_count_is_constant(
    api: Api, session: AsyncSession, engine: AsyncEngine, tasks: int, path: str
) -> None:
    slug, owner_id = await _board(session, tasks)
    with StatementCounter(engine) as counter:
        data = await api.data(BOARD, {"slug": slug, "first": tasks}, token=token_for(owner_id))
    page = data["workspace"]["project"]["tasks"]
    assert page["totalCount"] == tasks
    assert len(page["nodes"]) == tasks
    first = page["nodes"][0]
    assert first["key"] == "ENG-1"
    assert first["commentCount"] == 4
    assert [c["body"] for c in first["comments"]["nodes"]] == [
        "comment 0",
        "comment 1",
        "comment 2",
    ]
    assert first["comments"]["pageInfo"]["hasNextPage"] is True
    assert first["comments"]["nodes"][1]["author"]["name"] == "commenter1"
    assert first["labels"] == [
        {"name": "bug", "color": "#d73a4a"},
        {"name": "ui", "color": "#d73a4a"},
    ]
    assert first["project"]["key"] == "ENG"
    assert counter.count == BOARD_STATEMENTS[path], "\n".join(counter.statements)


EXPORT = """
query Export($slug: String!, $first: Int!) {
  workspace(slug: $slug) {
    tasks(first: $first) {
      pageInfo { hasNextPage endCursor }
      nodes { id key title status priority updatedAt }
    }
  }
}
"""

# Through the resolvers: 1 user and memberships (authentication), 1 workspace by slug, 1 task
# page: task keys come with the task rows, so projects are not read. Compiled
# (graph/compiled.py): one statement that reads the user's memberships and builds the JSON.
EXPORT_STATEMENTS = {"resolvers": 3, "compiled": 1}


@pytest.fixture(params=["resolvers", "compiled"])
def path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The query runs through the resolvers and loaders, or compiled into one statement."""
    monkeypatch.setattr(compiled, "ENABLED", request.param == "compiled")
    return str(request.param)


@pytest.mark.parametrize("tasks", [3, 60])
async def test_export_reads_keys_with_the_tasks(
    api: Api, session: AsyncSession, engine: AsyncEngine, tasks: int, path: str
) -> None:
    owner = await factories.user(session, "owner")
    ws = await factories.workspace(session)
    await factories.member(session, ws.id, owner.id, Role.OWNER)
    projects = [await factories.project(session, ws.id, key) for key in ("ENG", "OPS")]
    for n in range(tasks):
        await factories.task(session, projects[n % 2], owner.id)
    await session.commit()
    with StatementCounter(engine) as counter:
        data = await api.data(EXPORT, {"slug": ws.slug, "first": 50}, token=token_for(owner.id))
    nodes = data["workspace"]["tasks"]["nodes"]
    assert len(nodes) == min(tasks, 50)
    assert {n["key"].split("-")[0] for n in nodes} == {"ENG", "OPS"}
    assert counter.count == EXPORT_STATEMENTS[path], "\n".join(counter.statements)


DETAIL = """
query Detail($id: ID!) {
  node(id: $id) {
    ... on Task {
      id key title
      project { key name }
      assignee { name } creator { name }
      labels { name }
      comments(first: 20) { nodes { body author { id name email } } }
      activity(first: 10) { nodes { kind } }
    }
  }
}
"""

# Through the resolvers: 1 authentication, 1 task, 1 its project, 1 assignee+creator,
# 1 labels, 1 comments, 1 their authors, 1 activity. Compiled: one.
DETAIL_STATEMENTS = {"resolvers": 8, "compiled": 1}


async def test_task_detail_statements(
    api: Api, session: AsyncSession, engine: AsyncEngine, path: str
) -> None:
    world = await factories.world(session)
    task = world.tasks[0]
    outsider = world.users["outsider"]
    await factories.comment(session, task.id, world.users["admin"].id, "first", minute=1)
    await factories.comment(session, task.id, outsider.id, "from a former member", minute=2)
    await session.commit()
    with StatementCounter(engine) as counter:
        data = await api.data(
            DETAIL,
            {"id": to_global_id("Task", task.id)},
            token=token_for(world.users["member"].id),
        )
    node = data["node"]
    assert node["project"] == {"key": "ENG", "name": "Engineering"}
    assert node["key"] == f"ENG-{task.number}"
    comments = node["comments"]["nodes"]
    assert [c["body"] for c in comments] == ["first", "from a former member"]
    # E-mails follow the same rule as everywhere: shown for co-members only.
    assert comments[0]["author"]["email"] == world.users["admin"].email
    assert comments[1]["author"] == {
        "id": to_global_id("User", outsider.id),
        "name": outsider.name,
        "email": None,
    }
    assert counter.count == DETAIL_STATEMENTS[path], "\n".join(counter.statements)
