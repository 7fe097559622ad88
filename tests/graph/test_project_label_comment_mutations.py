"""Projects, labels and comments through the API: validation, uniqueness, side effects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import labels as label_db
from db.api_keys import create_api_key
from db.engine import make_engine
from db.models import Activity, ApiScope, Role, TaskLabel
from db.principals import user_principal
from db.problems import Rejected
from graph.ids import to_global_id
from tests import factories
from tests.conftest import StatementCounter
from tests.graph.conftest import Api, token_for


def gid(type_name: str, db_id: int) -> str:
    return to_global_id(type_name, db_id)


async def run(
    api: Api, field: str, input_type: str, selection: str, values: dict[str, Any], token: str
) -> dict[str, Any]:
    document = (
        f"mutation($input: {input_type}!) {{ {field}(input: $input) "
        f"{{ {selection} userErrors {{ field message code }} }} }}"
    )
    return (await api.data(document, {"input": values}, token=token))[field]  # type: ignore[no-any-return]


@pytest.fixture
async def w(session: AsyncSession) -> factories.World:
    world = await factories.world(session)
    await session.commit()
    return world


def owner(w: factories.World) -> str:
    return token_for(w.users["owner"].id)


@pytest.mark.parametrize(
    ("values", "errors"),
    [
        ({"key": "eng2", "name": "x"}, [(["input", "key"], "INVALID")]),
        ({"key": "E", "name": "x"}, [(["input", "key"], "INVALID")]),
        ({"key": "ENG\n", "name": "x"}, [(["input", "key"], "INVALID")]),
        ({"key": "2ENG", "name": "x"}, [(["input", "key"], "INVALID")]),
        ({"key": "NEW", "name": "   "}, [(["input", "name"], "INVALID")]),
        ({"key": "NEW", "name": "x" * 101}, [(["input", "name"], "INVALID")]),
        ({"key": "NEW", "name": "a\x00b"}, [(["input", "name"], "INVALID")]),
        (
            {"key": "NEW", "name": "x", "description": "d" * 50_001},
            [(["input", "description"], "INVALID")],
        ),
        (
            {"key": "bad", "name": ""},
            [(["input", "key"], "INVALID"), (["input", "name"], "INVALID")],
        ),
        ({"key": "ENG", "name": "Again"}, [(["input", "key"], "TAKEN")]),
    ],
)
async def test_create_project_validation(
    api: Api, w: factories.World, values: dict[str, Any], errors: list[tuple[list[str], str]]
) -> None:
    payload = await run(
        api,
        "createProject",
        "CreateProjectInput",
        "project { id }",
        {"workspaceId": gid("Workspace", w.workspace.id), **values},
        owner(w),
    )
    assert payload["project"] is None
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == errors


async def test_project_lifecycle(api: Api, w: factories.World) -> None:
    created = await run(
        api,
        "createProject",
        "CreateProjectInput",
        "project { id key name description archivedAt }",
        {"workspaceId": gid("Workspace", w.workspace.id), "key": "OPS", "name": "  Ops  "},
        owner(w),
    )
    project = created["project"]
    assert project["key"] == "OPS" and project["name"] == "Ops" and project["description"] == ""
    # The same key in another workspace is fine.
    other = await run(
        api,
        "createProject",
        "CreateProjectInput",
        "project { key }",
        {"workspaceId": gid("Workspace", w.other_workspace.id), "key": "ENG", "name": "x"},
        token_for(w.users["outsider"].id),
    )
    assert other["project"] == {"key": "ENG"}
    updated = await run(
        api,
        "updateProject",
        "UpdateProjectInput",
        "project { key name description }",
        {"id": project["id"], "description": "All things ops"},
        owner(w),
    )
    assert updated["project"] == {"key": "OPS", "name": "Ops", "description": "All things ops"}
    listing = """query($s: String!, $a: Boolean) {
      workspace(slug: $s) { projects(includeArchived: $a) { nodes { key } } } }"""
    for archived in (True, True):  # idempotent
        payload = await run(
            api,
            "archiveProject",
            "ArchiveProjectInput",
            "project { archivedAt }",
            {"id": project["id"], "archived": archived},
            owner(w),
        )
        assert payload["project"]["archivedAt"] is not None
    visible = await api.data(listing, {"s": w.workspace.slug}, token=owner(w))
    assert [p["key"] for p in visible["workspace"]["projects"]["nodes"]] == ["ENG"]
    everything = await api.data(listing, {"s": w.workspace.slug, "a": True}, token=owner(w))
    assert [p["key"] for p in everything["workspace"]["projects"]["nodes"]] == ["ENG", "OPS"]
    restored = await run(
        api,
        "archiveProject",
        "ArchiveProjectInput",
        "project { archivedAt }",
        {"id": project["id"], "archived": False},
        owner(w),
    )
    assert restored["project"]["archivedAt"] is None


async def test_label_rules(api: Api, w: factories.World) -> None:
    ws = gid("Workspace", w.workspace.id)
    created = await run(
        api,
        "createLabel",
        "CreateLabelInput",
        "label { name color }",
        {"workspaceId": ws, "name": " Design ", "color": "#AABBCC"},
        owner(w),
    )
    assert created["label"] == {"name": "Design", "color": "#aabbcc"}
    for name in ("design", "BUG"):
        taken = await run(
            api,
            "createLabel",
            "CreateLabelInput",
            "label { name }",
            {"workspaceId": ws, "name": name, "color": "#000000"},
            owner(w),
        )
        assert [(e["field"], e["code"]) for e in taken["userErrors"]] == [
            (["input", "name"], "TAKEN")
        ]
    bad = await run(
        api,
        "createLabel",
        "CreateLabelInput",
        "label { name }",
        {"workspaceId": ws, "name": "", "color": "red"},
        owner(w),
    )
    assert [(e["field"], e["code"]) for e in bad["userErrors"]] == [
        (["input", "name"], "INVALID"),
        (["input", "color"], "INVALID"),
    ]
    renamed_onto_existing = await run(
        api,
        "updateLabel",
        "UpdateLabelInput",
        "label { name }",
        {"id": gid("Label", w.labels[1].id), "name": "Bug"},
        owner(w),
    )
    assert renamed_onto_existing["userErrors"][0]["code"] == "TAKEN"
    recased = await run(
        api,
        "updateLabel",
        "UpdateLabelInput",
        "label { name color }",
        {"id": gid("Label", w.labels[0].id), "name": "Bug"},
        owner(w),
    )
    assert recased["label"] == {"name": "Bug", "color": "#d73a4a"}


async def test_delete_label_takes_it_off_tasks_with_history(
    api: Api, w: factories.World, session: AsyncSession
) -> None:
    bug = w.labels[0]
    deleted = await run(
        api,
        "deleteLabel",
        "DeleteLabelInput",
        "deletedLabelId",
        {"id": gid("Label", bug.id)},
        owner(w),
    )
    assert deleted["deletedLabelId"] == gid("Label", bug.id)
    links = await session.scalar(
        select(func.count()).select_from(TaskLabel).where(TaskLabel.label_id == bug.id)
    )
    assert links == 0
    rows = (
        await session.execute(
            select(Activity.task_id, Activity.kind, Activity.changes).order_by(Activity.task_id)
        )
    ).all()
    assert [(r.task_id, r.kind, r.changes) for r in rows] == [
        (
            w.tasks[0].id,
            "LABELS_CHANGED",
            [{"field": "labels", "from": "bug, feature", "to": "feature"}],
        ),
        (w.tasks[1].id, "LABELS_CHANGED", [{"field": "labels", "from": "bug", "to": None}]),
    ]
    task = await api.data(
        "query($id: ID!) { node(id: $id) { ... on Task { version labels { name } } } }",
        {"id": gid("Task", w.tasks[0].id)},
        token=owner(w),
    )
    assert task["node"] == {"version": 2, "labels": [{"name": "feature"}]}


async def test_comments(api: Api, w: factories.World, session: AsyncSession) -> None:
    task = gid("Task", w.tasks[0].id)
    member, admin = token_for(w.users["member"].id), token_for(w.users["admin"].id)
    for body, code in (("   ", "INVALID"), ("x" * 20_001, "INVALID"), ("a\x00", "INVALID")):
        bad = await run(
            api,
            "addComment",
            "AddCommentInput",
            "comment { id }",
            {"taskId": task, "body": body},
            member,
        )
        assert [(e["field"], e["code"]) for e in bad["userErrors"]] == [(["input", "body"], code)]
    added = await run(
        api,
        "addComment",
        "AddCommentInput",
        "comment { id body author { name } task { key } }",
        {"taskId": task, "body": "First!"},
        member,
    )
    comment = added["comment"]
    assert comment["author"] == {"name": "member"} and comment["task"] == {"key": "ENG-1"}
    # An admin may not edit someone else's comment, but may delete it.
    refused = await run(
        api,
        "updateComment",
        "UpdateCommentInput",
        "comment { id }",
        {"id": comment["id"], "body": "x"},
        admin,
    )
    assert refused["userErrors"][0]["code"] == "FORBIDDEN"
    edited = await run(
        api,
        "updateComment",
        "UpdateCommentInput",
        "comment { body updatedAt createdAt }",
        {"id": comment["id"], "body": "First, edited"},
        member,
    )
    assert edited["comment"]["body"] == "First, edited"
    assert edited["comment"]["updatedAt"] >= edited["comment"]["createdAt"]
    removed = await run(
        api, "deleteComment", "DeleteCommentInput", "deletedCommentId", {"id": comment["id"]}, admin
    )
    assert removed["deletedCommentId"] == comment["id"]
    history = await api.data(
        """query($id: ID!) { node(id: $id) { ... on Task { commentCount
             activity { nodes { kind actor { name } changes { field from to } } } } } }""",
        {"id": task},
        token=member,
    )
    assert history["node"]["commentCount"] == 0
    assert [
        (a["kind"], a["actor"]["name"], a["changes"]) for a in history["node"]["activity"]["nodes"]
    ] == [
        ("COMMENT_DELETED", "admin", [{"field": "body", "from": "First, edited", "to": None}]),
        ("COMMENT_UPDATED", "member", [{"field": "body", "from": "First!", "to": "First, edited"}]),
        ("COMMENT_ADDED", "member", [{"field": "body", "from": None, "to": "First!"}]),
    ]


async def test_write_key_comments_as_its_creator(
    api: Api, w: factories.World, session: AsyncSession
) -> None:
    admin = await user_principal(session, w.users["admin"].id)
    assert admin is not None
    key = await create_api_key(session, admin, w.workspace.id, "bot", [ApiScope.WRITE])
    await session.commit()
    added = await run(
        api,
        "addComment",
        "AddCommentInput",
        "comment { id author { name } }",
        {"taskId": gid("Task", w.tasks[0].id), "body": "from CI"},
        key.secret,
    )
    assert added["comment"]["author"] == {"name": "admin"}
    actor = await session.scalar(
        select(Activity.actor_api_key_id).where(Activity.kind == "COMMENT_ADDED")
    )
    assert actor == key.row.id


# 1 authentication, 1 task with its project key, 1 insert, 1 activity, 1 author.
ADD_COMMENT_STATEMENTS = 5


async def test_add_comment_statement_count(
    api: Api, w: factories.World, engine: AsyncEngine
) -> None:
    with StatementCounter(engine) as counter:
        added = await run(
            api,
            "addComment",
            "AddCommentInput",
            "comment { id body author { name } }",
            {"taskId": gid("Task", w.tasks[0].id), "body": "hi"},
            token_for(w.users["member"].id),
        )
    assert added["comment"]["author"] == {"name": "member"}
    assert counter.count == ADD_COMMENT_STATEMENTS, "\n".join(counter.statements)


async def test_concurrent_labels_differing_in_case_one_wins(committed_db: str) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            owner_row = await factories.user(session, "owner")
            ws = await factories.workspace(session)
            await factories.member(session, ws.id, owner_row.id, Role.OWNER)
            await session.commit()
            principal = await user_principal(session, owner_row.id)
        assert principal is not None

        async def create(name: str) -> str:
            async with AsyncSession(engine) as session, session.begin():
                try:
                    await label_db.create_label(session, principal, ws.id, name, "#123456")
                except Rejected as rejected:
                    return rejected.problems[0].code.value
                # Hold the transaction open so that the other insert has to wait for it.
                await asyncio.sleep(0.2)
                return "CREATED"

        results = await asyncio.gather(create("Infra"), create("INFRA"))
        assert sorted(results) == ["CREATED", "TAKEN"]
    finally:
        await engine.dispose()
