"""Every field a query can reach has a read description, so no field quietly leaves the
compiled path for the resolvers (db/read_types.py); the loaders' reads per parent made from
the descriptions."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from graphql import GraphQLObjectType, get_named_type, is_object_type
from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db import read_types
from db.descriptions import Listing
from db.models import ApiKey, Role
from db.principals import Principal
from db.read_types import TYPES
from graph import compiled
from graph.compiled import _python_name
from graph.schema import build_schema
from tests import factories
from tests.conftest import StatementCounter
from tests.factories import BASE_TIME
from tests.graph.conftest import Api, token_for

# The fields of a connection, its edges and page info are the pages' own (db.json_statement).
PAGED = {
    "Connection": {"nodes", "edges", "pageInfo", "totalCount"},
    "Edge": {"cursor", "node"},
    "PageInfo": {"hasNextPage", "hasPreviousPage", "startCursor", "endCursor"},
}


def test_every_field_reachable_from_query_and_subscription_is_described() -> None:
    """Queries and subscriptions are both answered by the one statement of the read path."""
    schema = build_schema()._schema
    assert schema.query_type is not None and schema.subscription_type is not None
    missing: list[str] = []
    seen: set[str] = set()
    todo: list[GraphQLObjectType] = [schema.query_type, schema.subscription_type]
    while todo:
        parent = todo.pop()
        if parent.name in seen:
            continue
        seen.add(parent.name)
        paged = next((k for k in PAGED if parent.name.endswith(k)), None)
        for name, definition in parent.fields.items():
            if paged is not None:
                if name not in PAGED[paged]:
                    missing.append(f"{parent.name}.{name}")
            elif parent.name not in TYPES:
                missing.append(f"{parent.name} (the whole type)")
                break
            elif _python_name(definition) not in TYPES[parent.name].fields:
                missing.append(f"{parent.name}.{name}")
            elif isinstance(TYPES[parent.name].fields[_python_name(definition)], Listing):
                assert get_named_type(definition.type).name.endswith("Connection")
            named = get_named_type(definition.type)
            if is_object_type(named):
                todo.append(named)  # type: ignore[arg-type]
            for possible in (
                schema.get_possible_types(named)
                if not is_object_type(named) and hasattr(named, "fields")
                else ()
            ):
                todo.append(possible)
    assert not missing, missing
    # Every Node type is reached, and nothing is described that the schema does not have.
    assert {
        "User",
        "Workspace",
        "Project",
        "Task",
        "Label",
        "Comment",
        "Activity",
        "ApiKey",
    } <= seen
    assert set(TYPES) <= seen


# The loaders' reads per parent, made from the descriptions (db.read_types.related, values) --


async def _related(
    session: AsyncSession, type_name: str, field: str, keys: list[tuple[int, Any]]
) -> dict[tuple[int, Any], Any]:
    return await read_types.related(session, Principal(), type_name, field, keys)


async def _key(session: AsyncSession, workspace_id: int, name: str, minute: int) -> None:
    creator = await factories.user(session)
    await session.execute(
        insert(ApiKey).values(
            workspace_id=workspace_id,
            name=name,
            prefix=factories.unique("tgk_"),
            secret_hash="0" * 64,
            scopes=["READ"],
            created_by_id=creator.id,
            created_at=BASE_TIME + timedelta(minutes=minute),
        )
    )


async def test_labels_per_parent_in_label_order_each_parent_its_own(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    w = await factories.world(session)
    # Inserted out of order: the list is by name case-insensitively ("alpha" before "Beta"),
    # not by id nor by the names' bytes.
    for name in ("gamma", "Beta", "alpha"):
        await factories.label(session, w.other_workspace.id, name)
    empty = await factories.workspace(session)
    task = w.tasks[0]
    await factories.tag(session, task.id, w.labels[2].id)
    keys = [(w.workspace.id, None), (w.other_workspace.id, None), (empty.id, None)]
    with StatementCounter(engine) as counter:
        found = await _related(session, "Workspace", "labels", keys)
        of_tasks = await _related(
            session, "Task", "labels", [(task.id, None), (w.tasks[4].id, None)]
        )
    assert counter.count == 2, counter.statements
    names = {key: [row.name for row in rows] for key, rows in found.items()}
    assert names == {
        (w.workspace.id, None): ["bug", "feature", "urgent"],
        (w.other_workspace.id, None): ["alpha", "Beta", "gamma", "secret"],
        (empty.id, None): [],
    }
    assert [row.name for row in of_tasks[(task.id, None)]] == ["bug", "feature", "urgent"]
    assert of_tasks[(w.tasks[4].id, None)] == []
    # The rows are the labels' own rows, as the loaders by id read them.
    assert {row.workspace_id for row in found[(w.other_workspace.id, None)]} == {
        w.other_workspace.id
    }


async def test_api_keys_per_workspace_by_creation_then_id(session: AsyncSession) -> None:
    w = await factories.world(session)
    await _key(session, w.workspace.id, "late", minute=5)
    await _key(session, w.workspace.id, "early", minute=1)
    await _key(session, w.workspace.id, "early too", minute=1)
    await _key(session, w.other_workspace.id, "theirs", minute=0)
    found = await _related(
        session, "Workspace", "api_keys", [(w.workspace.id, None), (w.other_workspace.id, None)]
    )
    assert [row.name for row in found[(w.workspace.id, None)]] == ["early", "early too", "late"]
    assert [row.name for row in found[(w.other_workspace.id, None)]] == ["theirs"]


async def test_projects_and_tasks_by_key_in_their_own_workspace(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    w = await factories.world(session)
    ws, other = w.workspace.id, w.other_workspace.id
    project_keys = [(ws, "ENG"), (ws, "OPS"), (other, "OPS"), (other, "ENG")]
    task_keys = [(ws, "ENG-1"), (ws, "ENG-5"), (ws, "OPS-1"), (other, "OPS-1"), (ws, "ENG-99")]
    with StatementCounter(engine) as counter:
        projects = await _related(session, "Workspace", "project", project_keys)
        tasks = await _related(session, "Workspace", "task", task_keys)
    # Parents asking for different keys share one statement.
    assert counter.count == 2, counter.statements
    assert {key: row.id for key, row in projects.items()} == {
        (ws, "ENG"): w.project.id,
        (other, "OPS"): w.other_project.id,
    }
    assert {key: row.id for key, row in tasks.items()} == {
        (ws, "ENG-1"): w.tasks[0].id,
        (ws, "ENG-5"): w.tasks[4].id,
        (other, "OPS-1"): w.other_task.id,
    }
    # Task rows carry the key's project key, as every task row does.
    assert tasks[(ws, "ENG-5")].project_key == "ENG"
    # A malformed key finds nothing, beside well-formed ones.
    mixed = await _related(session, "Workspace", "task", [(ws, "ENG-0"), (ws, "ENG-2")])
    assert list(mixed) == [(ws, "ENG-2")]


async def test_task_counts_and_comment_counts_per_parent(
    session: AsyncSession, engine: AsyncEngine
) -> None:
    w = await factories.world(session)
    idle = await factories.project(session, w.workspace.id, "IDLE")
    for minute in range(3):
        await factories.comment(session, w.tasks[1].id, w.users["member"].id, minute=minute)
    await factories.comment(session, w.other_task.id, w.users["outsider"].id)
    with StatementCounter(engine) as counter:
        counts = await _related(
            session, "Project", "task_counts", [(w.project.id, None), (idle.id, None)]
        )
        comments = await read_types.values(
            session,
            Principal(),
            "Task",
            "comment_count",
            [w.tasks[0].id, w.tasks[1].id, w.other_task.id],
        )
    assert counter.count == 2, counter.statements
    eng = dict(counts[(w.project.id, None)])
    eng.pop("tg_n")
    # The world's statuses: TODO, IN_PROGRESS, DONE, BACKLOG, TODO.
    assert eng == {
        "backlog": 1,
        "todo": 2,
        "in_progress": 1,
        "in_review": 0,
        "done": 1,
        "canceled": 0,
        "total": 5,
    }
    assert counts[(idle.id, None)]["total"] == 0
    assert comments == {w.tasks[0].id: 0, w.tasks[1].id: 3, w.other_task.id: 1}


LABELS = "{ workspaces { nodes { slug labels { name } } } }"
KEYS = "query($slug: String!) { workspace(slug: $slug) { apiKeys { name } } }"


@pytest.mark.parametrize("compiled_path", [False, True], ids=["resolvers", "compiled"])
async def test_labels_and_api_keys_through_the_api(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, compiled_path: bool
) -> None:
    monkeypatch.setattr(compiled, "ENABLED", compiled_path)
    w = await factories.world(session)
    admin = token_for(w.users["admin"].id)
    await factories.member(session, w.other_workspace.id, w.users["admin"].id, Role.MEMBER)
    await _key(session, w.workspace.id, "ours", minute=0)
    await _key(session, w.other_workspace.id, "theirs", minute=0)
    await session.commit()
    nodes = (await api.data(LABELS, token=admin))["workspaces"]["nodes"]
    assert {n["slug"]: [x["name"] for x in n["labels"]] for n in nodes} == {
        w.workspace.slug: ["bug", "feature", "urgent"],
        w.other_workspace.slug: ["secret"],
    }
    ours = await api.data(KEYS, {"slug": w.workspace.slug}, token=admin)
    assert ours["workspace"]["apiKeys"] == [{"name": "ours"}]
    # A member, not an admin, of the other workspace: its keys are refused.
    theirs = await api(KEYS, {"slug": w.other_workspace.slug}, token=admin)
    [error] = theirs["errors"]
    assert error["extensions"]["code"] == "FORBIDDEN"
    assert error["path"] == ["workspace", "apiKeys"]
