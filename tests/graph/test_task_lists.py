"""Task lists: every filter condition, multi-key ordering, cursor paging both ways."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.models import Role
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for

TASKS = """
query($slug: String!, $filter: TaskFilter, $orderBy: [TaskOrder!], $first: Int, $after: String,
      $last: Int, $before: String) {
  workspace(slug: $slug) {
    tasks(filter: $filter, orderBy: $orderBy, first: $first, after: $after, last: $last,
          before: $before) {
      totalCount
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      edges { cursor node { key } }
    }
  }
}
"""


class Board:
    def __init__(
        self, api: Api, slug: str, token: str, ids: dict[str, Any], workspace_id: int, owner_id: int
    ) -> None:
        self.api, self.slug, self.token, self.ids = api, slug, token, ids
        self.workspace_id, self.owner_id = workspace_id, owner_id

    async def page(self, **variables: Any) -> dict[str, Any]:
        data = await self.api.data(TASKS, {"slug": self.slug, **variables}, token=self.token)
        return data["workspace"]["tasks"]  # type: ignore[no-any-return]

    async def keys(self, **variables: Any) -> list[str]:
        return [e["node"]["key"] for e in (await self.page(**variables))["edges"]]

    async def errors(self, **variables: Any) -> list[dict[str, Any]]:
        body = await self.api(TASKS, {"slug": self.slug, **variables}, token=self.token)
        return body.get("errors", [])  # type: ignore[no-any-return]


@pytest.fixture
async def board(api: Api, session: AsyncSession) -> Board:
    """Two projects; ENG-1..ENG-6 and WEB-1..WEB-2 with varied fields."""
    owner = await factories.user(session, "owner")
    ann = await factories.user(session, "ann")
    bob = await factories.user(session, "bob")
    ws = await factories.workspace(session)
    for u, role in ((owner, Role.OWNER), (ann, Role.MEMBER), (bob, Role.MEMBER)):
        await factories.member(session, ws.id, u.id, role)
    eng = await factories.project(session, ws.id, "ENG")
    web = await factories.project(session, ws.id, "WEB")
    bug = await factories.label(session, ws.id, "bug")
    ui = await factories.label(session, ws.id, "ui")
    day = date(2026, 12, 1)
    spec = [
        # project, status, priority, assignee, due, title, description, position
        (eng, "TODO", 2, ann, day, "Fix login", "", 3.0),
        (eng, "DONE", 4, bob, day + timedelta(days=1), "Ship 100% coverage", "", 1.0),
        (eng, "IN_PROGRESS", 2, None, None, "Write docs", "mentions LOGIN flow", 2.0),
        (eng, "CANCELED", 0, ann, day - timedelta(days=1), "Old_idea", "", 5.0),
        (eng, "BACKLOG", 3, None, None, "Refactor", "", 4.0),
        (eng, "IN_REVIEW", 1, bob, day, "Review PR", "", 6.0),
        (web, "TODO", 4, ann, None, "Landing page", "", 1.0),
        (web, "DONE", 0, None, day + timedelta(days=5), "Fonts", "", 2.0),
    ]
    tasks = []
    for proj, status, priority, who, due, title, description, position in spec:
        tasks.append(
            await factories.task(
                session,
                proj,
                owner.id,
                status=status,
                priority=priority,
                assignee_id=who.id if who else None,
                due_date=due,
                title=title,
                description=description,
                position=position,
                completed_at=factories.BASE_TIME if status in ("DONE", "CANCELED") else None,
            )
        )
    await factories.tag(session, tasks[0].id, bug.id, ui.id)
    await factories.tag(session, tasks[1].id, bug.id)
    await factories.tag(session, tasks[6].id, ui.id)
    await session.commit()
    ids = {
        "ann": to_global_id("User", ann.id),
        "bob": to_global_id("User", bob.id),
        "bug": to_global_id("Label", bug.id),
        "ui": to_global_id("Label", ui.id),
        "web": to_global_id("Project", web.id),
    }
    return Board(api, ws.slug, token_for(owner.id), ids, ws.id, owner.id)


ALL_NEWEST_FIRST = ["WEB-2", "WEB-1", "ENG-6", "ENG-5", "ENG-4", "ENG-3", "ENG-2", "ENG-1"]


async def test_default_order_is_newest_first(board: Board) -> None:
    assert await board.keys() == ALL_NEWEST_FIRST


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        ({"status": ["TODO"]}, ["ENG-1", "WEB-1"]),
        ({"status": ["DONE", "CANCELED"]}, ["ENG-2", "ENG-4", "WEB-2"]),
        ({"priority": ["URGENT"]}, ["ENG-2", "WEB-1"]),
        ({"assigneeIds": ["ann"]}, ["ENG-1", "ENG-4", "WEB-1"]),
        (
            {"assigneeIds": ["bob"], "unassigned": True},
            ["ENG-2", "ENG-3", "ENG-5", "ENG-6", "WEB-2"],
        ),
        ({"unassigned": True}, ["ENG-3", "ENG-5", "WEB-2"]),
        ({"unassigned": False}, ["ENG-1", "ENG-2", "ENG-4", "ENG-6", "WEB-1"]),
        ({"labelIds": ["bug"]}, ["ENG-1", "ENG-2"]),
        ({"labelIds": ["bug", "ui"]}, ["ENG-1"]),
        ({"projectIds": ["web"]}, ["WEB-1", "WEB-2"]),
        ({"dueBefore": "2026-12-01"}, ["ENG-4"]),
        ({"dueAfter": "2026-12-01"}, ["ENG-2", "WEB-2"]),
        ({"dueAfter": "2026-11-01", "dueBefore": "2026-12-02"}, ["ENG-1", "ENG-4", "ENG-6"]),
        ({"completed": True}, ["ENG-2", "ENG-4", "WEB-2"]),
        ({"completed": False}, ["ENG-1", "ENG-3", "ENG-5", "ENG-6", "WEB-1"]),
        ({"search": "login"}, ["ENG-1", "ENG-3"]),
        # LIKE wildcards in the search term are matched literally.
        ({"search": "100%"}, ["ENG-2"]),
        ({"search": "_"}, ["ENG-4"]),
        ({"search": "   "}, ALL_NEWEST_FIRST[::-1]),
        ({"status": ["TODO"], "labelIds": ["ui"], "assigneeIds": ["ann"]}, ["ENG-1", "WEB-1"]),
        ({"status": []}, []),
    ],
)
async def test_filters(board: Board, flt: dict[str, Any], expected: list[str]) -> None:
    resolved = {
        k: [board.ids.get(v, v) for v in val] if isinstance(val, list) else val
        for k, val in flt.items()
    }
    page = await board.page(filter=resolved, orderBy=[{"field": "CREATED_AT"}])
    assert [e["node"]["key"] for e in page["edges"]] == expected
    assert page["totalCount"] == len(expected)


@pytest.mark.parametrize(
    ("order", "expected"),
    [
        # The id tie-break follows the direction of the last key.
        (
            [{"field": "PRIORITY", "direction": "DESC"}],
            ["WEB-1", "ENG-2", "ENG-5", "ENG-3", "ENG-1", "ENG-6", "WEB-2", "ENG-4"],
        ),
        # Undated tasks come last ascending, first descending; ties broken by id.
        (
            [{"field": "DUE_DATE"}],
            ["ENG-4", "ENG-1", "ENG-6", "ENG-2", "WEB-2", "ENG-3", "ENG-5", "WEB-1"],
        ),
        (
            [{"field": "DUE_DATE", "direction": "DESC"}],
            ["WEB-1", "ENG-5", "ENG-3", "WEB-2", "ENG-2", "ENG-6", "ENG-1", "ENG-4"],
        ),
        (
            [{"field": "PRIORITY", "direction": "DESC"}, {"field": "DUE_DATE", "direction": "ASC"}],
            ["ENG-2", "WEB-1", "ENG-5", "ENG-1", "ENG-3", "ENG-6", "ENG-4", "WEB-2"],
        ),
        (
            [{"field": "NUMBER"}, {"field": "POSITION", "direction": "DESC"}],
            ["ENG-1", "WEB-1", "WEB-2", "ENG-2", "ENG-3", "ENG-4", "ENG-5", "ENG-6"],
        ),
    ],
)
async def test_ordering_and_paging_in_every_order(
    board: Board, order: list[dict[str, str]], expected: list[str]
) -> None:
    assert await board.keys(orderBy=order) == expected
    # Walking forward 3 at a time, then backward 3 at a time, yields the same order.
    forward: list[str] = []
    after = None
    while True:
        page = await board.page(orderBy=order, first=3, after=after)
        forward += [e["node"]["key"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert forward == expected
    backward: list[str] = []
    before = None
    while True:
        page = await board.page(orderBy=order, last=3, before=before)
        backward = [e["node"]["key"] for e in page["edges"]] + backward
        if not page["pageInfo"]["hasPreviousPage"]:
            break
        before = page["pageInfo"]["startCursor"]
    assert backward == expected


async def test_page_info(board: Board) -> None:
    first = await board.page(first=3)
    assert first["pageInfo"]["hasNextPage"] is True
    assert first["pageInfo"]["hasPreviousPage"] is False
    assert first["pageInfo"]["startCursor"] == first["edges"][0]["cursor"]
    assert first["pageInfo"]["endCursor"] == first["edges"][-1]["cursor"]
    assert first["totalCount"] == 8
    rest = await board.page(first=10, after=first["pageInfo"]["endCursor"])
    assert [e["node"]["key"] for e in rest["edges"]] == ALL_NEWEST_FIRST[3:]
    assert rest["pageInfo"]["hasNextPage"] is False
    assert rest["pageInfo"]["hasPreviousPage"] is True
    empty = await board.page(first=0)
    assert empty["edges"] == [] and empty["pageInfo"]["endCursor"] is None


async def test_cursor_survives_inserts_before_it(board: Board, session: AsyncSession) -> None:
    order = [{"field": "CREATED_AT"}]
    page = await board.page(orderBy=order, first=2)
    assert [e["node"]["key"] for e in page["edges"]] == ["ENG-1", "ENG-2"]
    # A task created meanwhile that sorts first must not shift the next page.
    project = await factories.project(session, board.workspace_id, "NEW")
    await factories.task(session, project, board.owner_id, created_at=factories.BASE_TIME)
    await session.commit()
    after = page["pageInfo"]["endCursor"]
    assert await board.keys(orderBy=order, first=3, after=after) == ["ENG-3", "ENG-4", "ENG-5"]
    assert (await board.keys(orderBy=order, first=1)) == ["NEW-1"]


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"first": 101}, "at most 100"),
        ({"first": -1}, "negative"),
        ({"last": 101}, "at most 100"),
        ({"first": 2, "last": 2}, "either"),
        ({"after": "not-a-cursor"}, "Invalid cursor"),
        ({"after": "eyJ4IjoxfQ"}, "Invalid cursor"),
        ({"filter": {"assigneeIds": ["garbage"]}}, "Invalid ID"),
        ({"filter": {"labelIds": ["web"]}}, "must be the ID of a Label"),
        ({"filter": {"search": "x" * 201}}, "200 characters"),
        ({"orderBy": [{"field": "NUMBER"}, {"field": "NUMBER"}]}, "more than once"),
    ],
)
async def test_bad_arguments_are_bad_user_input(
    board: Board, variables: dict[str, Any], message: str
) -> None:
    if "filter" in variables:
        variables["filter"] = {
            k: [board.ids.get(v, v) for v in val] if isinstance(val, list) else val
            for k, val in variables["filter"].items()
        }
    errors = await board.errors(**variables)
    assert len(errors) == 1
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert message in errors[0]["message"]


async def test_cursor_of_another_ordering_is_refused(board: Board) -> None:
    page = await board.page(orderBy=[{"field": "PRIORITY"}], first=2)
    errors = await board.errors(first=2, after=page["pageInfo"]["endCursor"])
    assert errors[0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "different ordering" in errors[0]["message"]
