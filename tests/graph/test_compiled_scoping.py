"""Visibility of the compiled answers, checked directly.

The compiled path (graph/compiled.py) and the resolvers are built from the same read
descriptions, so the differential tests cannot see a visibility rule that both get wrong.
Each test here asserts that the answer came from the compiled path (the `used` fixture) and
that it hides what the principal may not read, with a control showing the same query does
reach the object for someone who may.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import create_api_key
from db.models import ApiScope, Membership, Role
from db.principals import user_principal
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for


@dataclass
class Scene:
    world: factories.World
    tokens: dict[str, str]
    # Global IDs of workspace B's objects, by type.
    other: dict[str, str]
    former_member: Any


@pytest.fixture
async def scene(session: AsyncSession) -> Scene:
    w = await factories.world(session)
    # A former member of A who wrote a comment there: still its author, no longer a co-member.
    former = await factories.user(session, "former")
    await factories.member(session, w.workspace.id, former.id, Role.MEMBER)
    await factories.comment(session, w.tasks[0].id, former.id, "from before")
    await factories.comment(session, w.tasks[0].id, w.users["member"].id, "still here")
    other_comment = await factories.comment(session, w.other_task.id, w.users["outsider"].id)
    other_activity = await factories.activity(
        session, w.other_task, "OPS-1", w.users["outsider"].id
    )
    owner = await user_principal(session, w.users["owner"].id)
    outsider = await user_principal(session, w.users["outsider"].id)
    assert owner is not None and outsider is not None
    key_a = await create_api_key(session, owner, w.workspace.id, "A's key", [ApiScope.WRITE])
    key_b = await create_api_key(
        session, outsider, w.other_workspace.id, "B's key", [ApiScope.READ]
    )
    await session.execute(
        delete(Membership).where(
            Membership.workspace_id == w.workspace.id, Membership.user_id == former.id
        )
    )
    await session.commit()
    tokens = {name: token_for(user.id) for name, user in w.users.items()}
    tokens["key"] = key_a.secret
    tokens["key id"] = to_global_id("ApiKey", key_a.row.id)
    other = {
        "Workspace": w.other_workspace.id,
        "Project": w.other_project.id,
        "Task": w.other_task.id,
        "Label": w.other_label.id,
        "Comment": other_comment.id,
        "Activity": other_activity.id,
        "ApiKey": key_b.row.id,
        "User": w.users["outsider"].id,
    }
    return Scene(w, tokens, {t: to_global_id(t, i) for t, i in other.items()}, former)


async def compiled_answer(
    api: Api, used: list[str], query: str, variables: dict[str, Any], token: str
) -> dict[str, Any]:
    """The data of a query that the compiled path answered on its own."""
    used.clear()
    data = await api.data(query, variables, token=token)
    assert len(used) == 1, "not answered by the compiled path"
    return data


# Workspace A's readers, none of whom may see anything of workspace B.
READERS_OF_A = ("owner", "member", "viewer", "key")


async def test_workspace_by_slug_of_a_workspace_one_is_not_in_is_null(
    api: Api, scene: Scene, used: list[str]
) -> None:
    query = "query($s: String!) { workspace(slug: $s) { slug name } }"
    other = {"s": scene.world.other_workspace.slug}
    seen = await compiled_answer(api, used, query, other, scene.tokens["outsider"])
    assert seen == {"workspace": {"slug": other["s"], "name": "Globex"}}
    for who in READERS_OF_A:
        assert await compiled_answer(api, used, query, other, scene.tokens[who]) == {
            "workspace": None
        }, who


PROJECT_AND_TASK_BY_KEY = """query($s: String!) { workspace(slug: $s) {
  project(key: "OPS") { name } task(key: "OPS-1") { title } } }"""


async def test_project_and_task_keys_of_another_workspace_are_not_found_in_ones_own(
    api: Api, scene: Scene, used: list[str]
) -> None:
    w = scene.world
    seen = await compiled_answer(
        api, used, PROJECT_AND_TASK_BY_KEY, {"s": w.other_workspace.slug}, scene.tokens["outsider"]
    )
    assert seen == {
        "workspace": {"project": {"name": "Operations"}, "task": {"title": w.other_task.title}}
    }
    for who in READERS_OF_A:
        data = await compiled_answer(
            api, used, PROJECT_AND_TASK_BY_KEY, {"s": w.workspace.slug}, scene.tokens[who]
        )
        assert data == {"workspace": {"project": None, "task": None}}, who


NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


@pytest.mark.parametrize(
    "type_name", ["Workspace", "Project", "Task", "Label", "Comment", "Activity", "ApiKey", "User"]
)
async def test_node_and_nodes_of_another_workspace_are_null(
    api: Api, scene: Scene, used: list[str], type_name: str
) -> None:
    gid = scene.other[type_name]
    own = {"__typename": "Task", "id": to_global_id("Task", scene.world.tasks[0].id)}
    seen = await compiled_answer(api, used, NODE, {"id": gid}, scene.tokens["outsider"])
    assert seen == {"node": {"__typename": type_name, "id": gid}}
    for who in READERS_OF_A:
        assert await compiled_answer(api, used, NODE, {"id": gid}, scene.tokens[who]) == {
            "node": None
        }, who
        listed = await compiled_answer(
            api, used, NODES, {"ids": [own["id"], gid]}, scene.tokens[who]
        )
        assert listed == {"nodes": [own, None]}, who


async def test_an_api_key_reads_its_own_workspace_only(
    api: Api, scene: Scene, used: list[str]
) -> None:
    w = scene.world
    query = """query($a: String!, $b: String!, $task: ID!) {
      workspaces { totalCount nodes { slug } }
      a: workspace(slug: $a) { slug tasks(first: 100) { totalCount } }
      b: workspace(slug: $b) { slug tasks(first: 100) { totalCount } }
      task: node(id: $task) { id }
    }"""
    variables = {"a": w.workspace.slug, "b": w.other_workspace.slug, "task": scene.other["Task"]}
    data = await compiled_answer(api, used, query, variables, scene.tokens["key"])
    assert data == {
        "workspaces": {"totalCount": 1, "nodes": [{"slug": w.workspace.slug}]},
        "a": {"slug": w.workspace.slug, "tasks": {"totalCount": len(w.tasks)}},
        "b": None,
        "task": None,
    }


API_KEYS = "query($s: String!) { workspace(slug: $s) { apiKeys { name } } }"


@pytest.mark.parametrize("who", ["member", "viewer", "key"])
async def test_api_keys_of_a_non_admin_are_forbidden(
    api: Api, scene: Scene, used: list[str], who: str
) -> None:
    slug = {"s": scene.world.workspace.slug}
    seen = await compiled_answer(api, used, API_KEYS, slug, scene.tokens["admin"])
    assert seen == {"workspace": {"apiKeys": [{"name": "A's key"}]}}
    body = await api(API_KEYS, slug, token=scene.tokens[who])
    assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"], body
    assert "A's key" not in str(body)
    # Nor can they look a key of their workspace up by its ID.
    query = "query($id: ID!) { node(id: $id) { ... on ApiKey { name } } }"
    key = {"id": scene.tokens["key id"]}
    seen = await compiled_answer(api, used, query, key, scene.tokens["admin"])
    assert seen == {"node": {"name": "A's key"}}
    assert await compiled_answer(api, used, query, key, scene.tokens[who]) == {"node": None}


EMAILS = """query($s: String!) {
  me { email }
  workspace(slug: $s) {
    members(first: 10) { nodes { user { name email } } }
    task(key: "ENG-1") { comments(first: 10) { nodes { author { name email } } } }
  }
}"""


@pytest.mark.parametrize("who", ["owner", "member", "viewer", "key"])
async def test_emails_show_to_the_user_and_co_members_only(
    api: Api, scene: Scene, used: list[str], who: str
) -> None:
    users = scene.world.users
    co_member = who != "key"  # an API key is no member

    def email(name: str) -> str | None:
        return users[name].email if co_member else None

    data = await compiled_answer(
        api, used, EMAILS, {"s": scene.world.workspace.slug}, scene.tokens[who]
    )
    assert data["me"] == ({"email": users[who].email} if co_member else None)
    members = data["workspace"]["members"]["nodes"]
    assert [m["user"] for m in members] == [
        {"name": name, "email": email(name)} for name in ("owner", "admin", "member", "viewer")
    ]
    authors = [c["author"] for c in data["workspace"]["task"]["comments"]["nodes"]]
    # The former member shares no workspace with anyone any more: the name stays, not the
    # address.
    assert {"name": "former", "email": None} in authors
    assert {"name": "member", "email": email("member")} in authors
    assert scene.former_member.email not in str(data)
