"""Task mutations on the wire: payload shapes, userErrors with field paths and codes,
roles, partial updates, odd inputs that must not become server errors, statement counts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.api_keys import create_api_key
from db.models import Activity, ApiScope
from db.principals import user_principal
from graph.ids import to_global_id
from tests import factories
from tests.conftest import StatementCounter
from tests.graph.conftest import Api, token_for

# 1 user and memberships (authentication), 1 project with the assignee check, 1 labels
# (key-share locked; they also serve the payload's `labels`), 1 task number, 1 task insert,
# 1 task_labels insert (all three labels), 1 activity. `key` and `labels` come from what the
# command read, so the payload costs nothing more.
CREATE_WITH_3_LABELS_STATEMENTS = 7
# 1 authentication, 1 task row lock, 1 update, 1 activity.
UPDATE_TITLE_AND_STATUS_STATEMENTS = 4

ERRORS = "userErrors { field message code }"
CREATE = f"""
mutation($input: CreateTaskInput!) {{
  createTask(input: $input) {{
    task {{
      id key number title description status priority dueDate position version completedAt
      project {{ key }} assignee {{ name }} creator {{ name }} labels {{ name }}
    }}
    {ERRORS}
  }}
}}
"""
UPDATE = f"""
mutation($input: UpdateTaskInput!) {{
  updateTask(input: $input) {{
    task {{ id title description status priority dueDate assignee {{ name }} version completedAt }}
    {ERRORS}
  }}
}}
"""
DELETE = f"""
mutation($input: DeleteTaskInput!) {{ deleteTask(input: $input) {{ deletedTaskId {ERRORS} }} }}
"""
ADD_LABELS = f"""
mutation($input: TaskLabelsInput!) {{
  addLabelsToTask(input: $input) {{ task {{ version labels {{ name }} }} {ERRORS} }}
}}
"""
REMOVE_LABELS = f"""
mutation($input: TaskLabelsInput!) {{
  removeLabelsFromTask(input: $input) {{ task {{ version labels {{ name }} }} {ERRORS} }}
}}
"""


def gid(type_name: str, db_id: int) -> str:
    return to_global_id(type_name, db_id)


class Ctx:
    def __init__(self, api: Api, world: factories.World, tokens: dict[str, str]) -> None:
        self.api, self.world, self.tokens = api, world, tokens

    @property
    def project_id(self) -> str:
        return gid("Project", self.world.project.id)

    def task_id(self, index: int) -> str:
        return gid("Task", self.world.tasks[index].id)

    def label_id(self, index: int) -> str:
        return gid("Label", self.world.labels[index].id)

    async def run(
        self, query: str, field: str, variables: dict[str, Any], who: str = "member"
    ) -> Any:
        data = await self.api.data(query, {"input": variables}, token=self.tokens.get(who))
        return data[field]


@pytest.fixture
async def ctx(api: Api, session: AsyncSession) -> Ctx:
    world = await factories.world(session)
    owner = await user_principal(session, world.users["owner"].id)
    assert owner is not None
    read_key = await create_api_key(session, owner, world.workspace.id, "read", [ApiScope.READ])
    write_key = await create_api_key(session, owner, world.workspace.id, "write", [ApiScope.WRITE])
    await session.commit()
    tokens = {name: token_for(u.id) for name, u in world.users.items()}
    tokens["read key"] = read_key.secret
    tokens["write key"] = write_key.secret
    return Ctx(api, world, tokens)


# ---------------------------------------------------------------- createTask


async def test_create_task_returns_the_task_through_the_read_types(ctx: Ctx) -> None:
    payload = await ctx.run(
        CREATE,
        "createTask",
        {
            "projectId": ctx.project_id,
            "title": "  Ship it ",
            "priority": "HIGH",
            "dueDate": "2027-01-31",
            "assigneeId": gid("User", ctx.world.users["admin"].id),
            "labelIds": [ctx.label_id(2), ctx.label_id(0)],
        },
    )
    assert payload["userErrors"] == []
    task = payload["task"]
    assert task["id"].startswith("VGFzazo")  # base64 of "Task:"
    assert {
        k: task[k] for k in ("key", "number", "title", "description", "status", "priority")
    } == {
        "key": "ENG-6",
        "number": 6,
        "title": "Ship it",
        "description": "",
        "status": "TODO",
        "priority": "HIGH",
    }
    assert (task["dueDate"], task["version"], task["completedAt"]) == ("2027-01-31", 1, None)
    assert task["project"] == {"key": "ENG"}
    assert task["assignee"] == {"name": "admin"} and task["creator"] == {"name": "member"}
    assert task["labels"] == [{"name": "bug"}, {"name": "urgent"}]


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("owner", None),
        ("admin", None),
        ("member", None),
        ("write key", None),
        ("viewer", "FORBIDDEN"),
        ("read key", "FORBIDDEN"),
        ("outsider", "NOT_FOUND"),
    ],
)
async def test_create_task_roles(ctx: Ctx, who: str, code: str | None) -> None:
    payload = await ctx.run(
        CREATE, "createTask", {"projectId": ctx.project_id, "title": "T"}, who=who
    )
    if code is None:
        assert payload["userErrors"] == [] and payload["task"]["key"] == "ENG-6"
        # An API key acts for its creator, who is recorded as the task's creator.
        expected = "owner" if who == "write key" else who
        assert payload["task"]["creator"] == {"name": expected}
    else:
        assert payload["task"] is None
        [error] = payload["userErrors"]
        assert (error["field"], error["code"]) == (["input", "projectId"], code)


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"title": "   "}, "title", "INVALID"),
        ({"title": "x" * 201}, "title", "INVALID"),
        ({"title": "nul\u0000"}, "title", "INVALID"),
        ({"description": "d" * 50_001}, "description", "INVALID"),
        ({"projectId": "not-an-id"}, "projectId", "NOT_FOUND"),
        ({"projectId": "LABEL"}, "projectId", "NOT_FOUND"),
        ({"projectId": "OTHER"}, "projectId", "NOT_FOUND"),
        ({"assigneeId": "OUTSIDER"}, "assigneeId", "INVALID"),
        ({"assigneeId": "%%%"}, "assigneeId", "NOT_FOUND"),
        ({"labelIds": ["OTHER_LABEL"]}, "labelIds", "NOT_FOUND"),
        ({"labelIds": ["garbage"]}, "labelIds", "NOT_FOUND"),
        ({"labelIds": ["garbage"] * 101}, "labelIds", "LIMIT_EXCEEDED"),
    ],
)
async def test_create_task_user_errors(
    ctx: Ctx, change: dict[str, Any], field: str, code: str
) -> None:
    w = ctx.world
    aliases = {
        "LABEL": gid("Label", w.labels[0].id),
        "OTHER": gid("Project", w.other_project.id),
        "OUTSIDER": gid("User", w.users["outsider"].id),
        "OTHER_LABEL": gid("Label", w.other_label.id),
    }
    variables: dict[str, Any] = {"projectId": ctx.project_id, "title": "Fine"}
    for key, value in change.items():
        if isinstance(value, list):
            variables[key] = [aliases.get(v, v) for v in value]
        else:
            variables[key] = aliases.get(value, value)
    payload = await ctx.run(CREATE, "createTask", variables)
    assert payload["task"] is None
    [error] = payload["userErrors"]
    assert (error["field"], error["code"]) == (["input", field], code)
    assert error["message"]


async def test_create_task_reports_every_input_problem_at_once(ctx: Ctx) -> None:
    payload = await ctx.run(
        CREATE,
        "createTask",
        {
            "projectId": ctx.project_id,
            "title": "",
            "description": "\u0000",
            "assigneeId": gid("User", ctx.world.users["outsider"].id),
        },
    )
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", "title"], "INVALID"),
        (["input", "description"], "INVALID"),
        (["input", "assigneeId"], "INVALID"),
    ]


async def test_create_with_explicit_nulls_uses_the_defaults(ctx: Ctx) -> None:
    payload = await ctx.run(
        CREATE,
        "createTask",
        {
            "projectId": ctx.project_id,
            "title": "Nulls",
            "description": None,
            "status": None,
            "priority": None,
            "dueDate": None,
            "assigneeId": None,
            "labelIds": None,
        },
    )
    task = payload["task"]
    assert (task["description"], task["status"], task["priority"]) == ("", "TODO", "NONE")
    assert (task["dueDate"], task["assignee"], task["labels"]) == (None, None, [])


async def test_create_task_statement_count(ctx: Ctx, engine: AsyncEngine) -> None:
    query = """
    mutation($input: CreateTaskInput!) {
      createTask(input: $input) { task { id key labels { name } } userErrors { code } }
    }
    """
    variables = {
        "input": {
            "projectId": ctx.project_id,
            "title": "Counted",
            "labelIds": [ctx.label_id(0), ctx.label_id(1), ctx.label_id(2)],
        }
    }
    with StatementCounter(engine) as counter:
        data = await ctx.api.data(query, variables, token=ctx.tokens["member"])
    task = data["createTask"]["task"]
    assert task["key"] == "ENG-6"
    assert [label["name"] for label in task["labels"]] == ["bug", "feature", "urgent"]
    assert counter.count == CREATE_WITH_3_LABELS_STATEMENTS, "\n".join(counter.statements)


# ---------------------------------------------------------------- updateTask


async def test_update_task_omitted_fields_stay_and_nulls_clear(ctx: Ctx) -> None:
    task = ctx.world.tasks[0]  # due 2026-12-01, assigned to member
    payload = await ctx.run(UPDATE, "updateTask", {"id": ctx.task_id(0), "dueDate": None})
    assert payload["userErrors"] == []
    updated = payload["task"]
    assert (updated["dueDate"], updated["assignee"]) == (None, {"name": "member"})
    assert (updated["title"], updated["version"]) == (task.title, task.version + 1)

    payload = await ctx.run(UPDATE, "updateTask", {"id": ctx.task_id(0), "assigneeId": None})
    assert (payload["task"]["assignee"], payload["task"]["version"]) == (None, task.version + 2)


@pytest.mark.parametrize("field", ["title", "description", "status", "priority"])
async def test_update_task_null_for_a_required_field(ctx: Ctx, field: str) -> None:
    payload = await ctx.run(UPDATE, "updateTask", {"id": ctx.task_id(0), field: None})
    assert payload["task"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["input", field], "INVALID")
    ]


async def test_update_task_with_a_stale_version(ctx: Ctx) -> None:
    version = ctx.world.tasks[0].version
    first = await ctx.run(
        UPDATE, "updateTask", {"id": ctx.task_id(0), "title": "A", "expectedVersion": version}
    )
    assert first["task"]["version"] == version + 1
    second = await ctx.run(
        UPDATE, "updateTask", {"id": ctx.task_id(0), "title": "B", "expectedVersion": version}
    )
    assert second["task"] is None
    [error] = second["userErrors"]
    assert (error["field"], error["code"]) == (["input", "expectedVersion"], "STALE")


async def test_update_task_status_and_activity_through_the_task(ctx: Ctx) -> None:
    payload = await ctx.run(UPDATE, "updateTask", {"id": ctx.task_id(0), "status": "DONE"})
    assert payload["task"]["completedAt"] is not None
    payload = await ctx.run(
        UPDATE, "updateTask", {"id": ctx.task_id(0), "status": "TODO", "title": "Again"}
    )
    assert payload["task"]["completedAt"] is None
    query = """
    query($id: ID!) {
      node(id: $id) {
        ... on Task {
          activity { nodes { kind taskKey actor { name } changes { field from to } } }
        }
      }
    }
    """
    data = await ctx.api.data(query, {"id": ctx.task_id(0)}, token=ctx.tokens["member"])
    nodes = data["node"]["activity"]["nodes"]
    assert [n["kind"] for n in nodes] == ["TASK_UPDATED", "TASK_UPDATED"]
    assert nodes[0]["changes"] == [
        {"field": "title", "from": "Task 1", "to": "Again"},
        {"field": "status", "from": "DONE", "to": "TODO"},
    ]
    assert nodes[1]["changes"] == [{"field": "status", "from": "TODO", "to": "DONE"}]
    assert nodes[0]["actor"] == {"name": "member"} and nodes[0]["taskKey"] == "ENG-1"


async def test_update_task_placement_on_the_wire(ctx: Ctx) -> None:
    payload = await ctx.run(
        UPDATE,
        "updateTask",
        {"id": ctx.task_id(4), "afterTaskId": ctx.task_id(0), "beforeTaskId": ctx.task_id(1)},
    )
    assert payload["userErrors"] == []
    query = """
    query($slug: String!) {
      workspace(slug: $slug) {
        project(key: "ENG") { tasks(orderBy: [{field: POSITION}]) { nodes { key position } } }
      }
    }
    """
    data = await ctx.api.data(query, {"slug": ctx.world.workspace.slug}, token=ctx.tokens["member"])
    nodes = data["workspace"]["project"]["tasks"]["nodes"]
    assert [n["key"] for n in nodes] == ["ENG-1", "ENG-5", "ENG-2", "ENG-3", "ENG-4"]
    assert nodes[1]["position"] == 1536.0

    for neighbour, code in (
        (gid("Task", ctx.world.other_task.id), "INVALID"),
        ("nonsense", "NOT_FOUND"),
    ):
        payload = await ctx.run(
            UPDATE, "updateTask", {"id": ctx.task_id(4), "afterTaskId": neighbour}
        )
        [error] = payload["userErrors"]
        assert (error["field"], error["code"]) == (["input", "afterTaskId"], code)


@pytest.mark.parametrize(
    ("who", "code"),
    [("viewer", "FORBIDDEN"), ("read key", "FORBIDDEN"), ("outsider", "NOT_FOUND")],
)
async def test_update_task_refused_roles(ctx: Ctx, who: str, code: str) -> None:
    payload = await ctx.run(UPDATE, "updateTask", {"id": ctx.task_id(0), "title": "X"}, who=who)
    assert payload["task"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["input", "id"], code)]


async def test_update_task_statement_count(ctx: Ctx, engine: AsyncEngine) -> None:
    query = """
    mutation($input: UpdateTaskInput!) {
      updateTask(input: $input) { task { id version } userErrors { code } }
    }
    """
    variables = {"input": {"id": ctx.task_id(0), "title": "Counted", "status": "IN_REVIEW"}}
    with StatementCounter(engine) as counter:
        data = await ctx.api.data(query, variables, token=ctx.tokens["member"])
    assert data["updateTask"]["task"]["version"] == ctx.world.tasks[0].version + 1
    assert counter.count == UPDATE_TITLE_AND_STATUS_STATEMENTS, "\n".join(counter.statements)


# ---------------------------------------------------------------- odd input


@pytest.mark.parametrize(
    "variables",
    [
        {"title": "t" * 1_000_000},
        {"title": "\u0000"},
        {"title": "ok", "description": "\u0000" * 10},
        {"title": "ok", "dueDate": "9999-12-31"},
        {"title": "ok", "dueDate": "10000-01-01"},
        {"title": "ok", "dueDate": "2026-02-30"},
        {"title": "ok", "dueDate": "-0001-01-01"},
        {"title": "ok", "labelIds": ["LABEL"] * 100},
        {"title": "ok", "projectId": "VGFzazo5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5"},
        {"title": "ok", "projectId": ""},
        {"title": "ok", "status": "DELETED"},
        {"title": "ok", "assigneeId": "VXNlcjotMQ"},
    ],
)
async def test_odd_create_input_is_never_a_server_error(
    ctx: Ctx, variables: dict[str, Any]
) -> None:
    variables = {"projectId": ctx.project_id, **variables}
    if variables.get("labelIds"):
        variables["labelIds"] = [ctx.label_id(0)] * 100
    response = await ctx.api.post(CREATE, {"input": variables}, token=ctx.tokens["member"])
    assert response.status_code in (200, 400)
    body = response.json()
    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, body


@pytest.mark.parametrize(
    "change",
    [
        {"expectedVersion": 2**31 - 1, "title": "x"},
        {"expectedVersion": -5},
        {"afterTaskId": "OTHER_TASK", "beforeTaskId": "OTHER_TASK"},
        {"afterTaskId": "SELF"},
        {"beforeTaskId": "VGFzazox"},
        {"dueDate": "9999-12-31"},
        {"title": "a\u0000b", "description": "x" * 60_000},
    ],
)
async def test_odd_update_input_is_never_a_server_error(ctx: Ctx, change: dict[str, Any]) -> None:
    aliases = {"OTHER_TASK": gid("Task", ctx.world.other_task.id), "SELF": ctx.task_id(0)}
    variables = {"id": ctx.task_id(0), **{k: aliases.get(v, v) for k, v in change.items()}}
    response = await ctx.api.post(UPDATE, {"input": variables}, token=ctx.tokens["member"])
    assert response.status_code in (200, 400)
    body = response.json()
    assert "errors" not in body, body
    payload = body["data"]["updateTask"]
    assert payload["task"] is not None or payload["userErrors"]


async def test_lone_surrogate_in_json_is_a_user_error(ctx: Ctx) -> None:
    # Valid JSON, but the decoded string holds a lone surrogate that UTF-8 cannot encode.
    variables = {"input": {"projectId": ctx.project_id, "title": "bad SURROGATE"}}
    raw = json.dumps({"query": CREATE, "variables": variables}).replace("SURROGATE", "\\ud800")
    response = await ctx.api.client.post(
        "/graphql",
        content=raw.encode(),
        headers={
            "content-type": "application/json",
            "authorization": f"Bearer {ctx.tokens['member']}",
        },
    )
    assert response.status_code in (200, 400)
    body = response.json()
    codes = [e["extensions"]["code"] for e in body.get("errors", [])]
    assert "INTERNAL_SERVER_ERROR" not in codes, body
    if "errors" not in body:
        [error] = body["data"]["createTask"]["userErrors"]
        assert (error["field"], error["code"]) == (["input", "title"], "INVALID")


# ---------------------------------------------------------------- deleteTask


async def test_delete_task(ctx: Ctx, session: AsyncSession) -> None:
    task = ctx.world.tasks[0]
    await factories.comment(session, task.id, ctx.world.users["owner"].id)
    await session.commit()
    payload = await ctx.run(DELETE, "deleteTask", {"id": ctx.task_id(0)})
    assert payload == {"deletedTaskId": ctx.task_id(0), "userErrors": []}

    data = await ctx.api.data(
        "query($id: ID!) { node(id: $id) { id } }",
        {"id": ctx.task_id(0)},
        token=ctx.tokens["member"],
    )
    assert data["node"] is None
    kinds = (
        await session.execute(
            select(Activity.kind, Activity.task_key).where(Activity.task_id == task.id)
        )
    ).all()
    assert [tuple(k) for k in kinds] == [("TASK_DELETED", "ENG-1")]

    again = await ctx.run(DELETE, "deleteTask", {"id": ctx.task_id(0)})
    assert again["deletedTaskId"] is None
    assert [(e["field"], e["code"]) for e in again["userErrors"]] == [
        (["input", "id"], "NOT_FOUND")
    ]


@pytest.mark.parametrize(
    ("who", "code"), [("viewer", "FORBIDDEN"), ("read key", "FORBIDDEN"), ("outsider", "NOT_FOUND")]
)
async def test_delete_task_refused_roles(ctx: Ctx, who: str, code: str) -> None:
    payload = await ctx.run(DELETE, "deleteTask", {"id": ctx.task_id(0)}, who=who)
    assert payload["deletedTaskId"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [(["input", "id"], code)]


# ---------------------------------------------------------------- labels


async def test_add_and_remove_labels(ctx: Ctx) -> None:
    version = ctx.world.tasks[1].version  # carries "bug"
    task_id = ctx.task_id(1)
    added = await ctx.run(
        ADD_LABELS, "addLabelsToTask", {"taskId": task_id, "labelIds": [ctx.label_id(2)] * 2}
    )
    assert added == {
        "task": {"version": version + 1, "labels": [{"name": "bug"}, {"name": "urgent"}]},
        "userErrors": [],
    }
    again = await ctx.run(
        ADD_LABELS, "addLabelsToTask", {"taskId": task_id, "labelIds": [ctx.label_id(2)]}
    )
    assert again["task"]["version"] == version + 1
    removed = await ctx.run(
        REMOVE_LABELS,
        "removeLabelsFromTask",
        {"taskId": task_id, "labelIds": [ctx.label_id(0), ctx.label_id(1)]},
        who="write key",
    )
    assert removed["task"] == {"version": version + 2, "labels": [{"name": "urgent"}]}


@pytest.mark.parametrize(
    ("who", "label", "field", "code"),
    [
        ("member", "OTHER", "labelIds", "NOT_FOUND"),
        ("member", "broken", "labelIds", "NOT_FOUND"),
        ("viewer", "OWN", "taskId", "FORBIDDEN"),
        ("read key", "OWN", "taskId", "FORBIDDEN"),
        ("outsider", "OTHER", "taskId", "NOT_FOUND"),
    ],
)
async def test_label_mutation_user_errors(
    ctx: Ctx, who: str, label: str, field: str, code: str
) -> None:
    label_id = {"OTHER": gid("Label", ctx.world.other_label.id), "OWN": ctx.label_id(2)}.get(
        label, label
    )
    for query, name in ((ADD_LABELS, "addLabelsToTask"), (REMOVE_LABELS, "removeLabelsFromTask")):
        payload = await ctx.run(
            query, name, {"taskId": ctx.task_id(0), "labelIds": [label_id]}, who=who
        )
        assert payload["task"] is None
        assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
            (["input", field], code)
        ]


async def test_label_mutations_limit(ctx: Ctx) -> None:
    payload = await ctx.run(
        ADD_LABELS, "addLabelsToTask", {"taskId": ctx.task_id(0), "labelIds": ["x"] * 101}
    )
    [error] = payload["userErrors"]
    assert (error["field"], error["code"]) == (["input", "labelIds"], "LIMIT_EXCEEDED")
