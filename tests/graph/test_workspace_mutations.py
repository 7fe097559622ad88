"""Workspace and membership mutations on the wire: payload shapes, userErrors, odd input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db import api_keys
from db.models import ApiScope
from db.principals import user_principal
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for

CREATE = """mutation($input: CreateWorkspaceInput!) { createWorkspace(input: $input) {
  workspace { id slug name viewerRole members { totalCount nodes { role user { email } } } }
  userErrors { field message code } } }"""
UPDATE = """mutation($input: UpdateWorkspaceInput!) { updateWorkspace(input: $input) {
  workspace { id name viewerRole } userErrors { field message code } } }"""
ADD = """mutation($input: AddMemberInput!) { addMember(input: $input) {
  membership { role joinedAt user { id email } } userErrors { field message code } } }"""
CHANGE = """mutation($input: UpdateMemberRoleInput!) { updateMemberRole(input: $input) {
  membership { role user { id } } userErrors { field message code } } }"""
REMOVE = """mutation($input: RemoveMemberInput!) { removeMember(input: $input) {
  removedUserId userErrors { field message code } } }"""


def gid(type_name: str, db_id: int) -> str:
    return to_global_id(type_name, db_id)


def codes(payload: dict[str, Any]) -> list[tuple[list[str] | None, str]]:
    return [(e["field"], e["code"]) for e in payload["userErrors"]]


@pytest.fixture
async def world(session: AsyncSession) -> factories.World:
    w = await factories.world(session)
    await session.commit()
    return w


def token(world: factories.World, name: str) -> str:
    return token_for(world.users[name].id)


async def test_create_workspace_returns_it_with_the_creator_as_owner(
    api: Api, world: factories.World
) -> None:
    data = await api.data(
        CREATE, {"input": {"name": " Initech ", "slug": "initech"}}, token=token(world, "viewer")
    )
    payload = data["createWorkspace"]
    assert payload["userErrors"] == []
    ws = payload["workspace"]
    assert (ws["slug"], ws["name"], ws["viewerRole"]) == ("initech", "Initech", "OWNER")
    assert ws["members"] == {
        "totalCount": 1,
        "nodes": [{"role": "OWNER", "user": {"email": world.users["viewer"].email}}],
    }
    # Later requests find it through the ordinary read path.
    again = await api.data(
        '{ workspace(slug: "initech") { id viewerRole } }', token=token(world, "viewer")
    )
    assert again["workspace"] == {"id": ws["id"], "viewerRole": "OWNER"}


async def test_create_workspace_reports_problems_with_paths_and_codes(
    api: Api, world: factories.World
) -> None:
    data = await api.data(
        CREATE, {"input": {"name": "   ", "slug": "Bad Slug"}}, token=token(world, "owner")
    )
    payload = data["createWorkspace"]
    assert payload["workspace"] is None
    assert codes(payload) == [(["input", "name"], "INVALID"), (["input", "slug"], "INVALID")]
    taken = await api.data(
        CREATE, {"input": {"name": "X", "slug": world.workspace.slug}}, token=token(world, "owner")
    )
    assert codes(taken["createWorkspace"]) == [(["input", "slug"], "TAKEN")]


async def test_create_workspace_needs_a_signed_in_user(
    api: Api, session: AsyncSession, world: factories.World
) -> None:
    owner = await user_principal(session, world.users["owner"].id)
    assert owner is not None
    key = await api_keys.create_api_key(session, owner, world.workspace.id, "k", [ApiScope.WRITE])
    await session.commit()
    data = await api.data(CREATE, {"input": {"name": "X", "slug": "x-corp"}}, token=key.secret)
    assert data["createWorkspace"]["workspace"] is None
    assert [e["code"] for e in data["createWorkspace"]["userErrors"]] == ["FORBIDDEN"]
    # Nobody signed in: asked to sign in.
    body = await api(CREATE, {"input": {"name": "X", "slug": "x-corp"}})
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


@pytest.mark.parametrize(
    ("name", "slug", "field"),
    [
        ("nul\x00", "fine-slug", "name"),
        ("n" * 1_000_000, "fine-slug", "name"),
        ("lone \ud800 surrogate", "fine-slug", "name"),
        ("Fine", "nul\x00", "slug"),
        ("Fine", "s" * 1_000_000, "slug"),
    ],
    ids=["nul-name", "huge-name", "surrogate-name", "nul-slug", "huge-slug"],
)
async def test_odd_strings_are_user_errors_not_faults(
    api: Api, world: factories.World, name: str, slug: str, field: str
) -> None:
    # Sent as ASCII JSON, so that a lone surrogate arrives as the escape "\\ud800".
    body = json.dumps({"query": CREATE, "variables": {"input": {"name": name, "slug": slug}}})
    response = await api.client.post(
        "/graphql",
        content=body,
        headers={
            "authorization": f"Bearer {token(world, 'owner')}",
            "content-type": "application/json",
        },
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert "errors" not in result, result["errors"]
    assert codes(result["data"]["createWorkspace"]) == [(["input", field], "INVALID")]


async def test_update_workspace_renames_and_refuses_lower_roles(
    api: Api, world: factories.World
) -> None:
    ws_id = gid("Workspace", world.workspace.id)
    data = await api.data(
        UPDATE, {"input": {"id": ws_id, "name": "Acme Ltd"}}, token=token(world, "admin")
    )
    assert data["updateWorkspace"] == {
        "workspace": {"id": ws_id, "name": "Acme Ltd", "viewerRole": "ADMIN"},
        "userErrors": [],
    }
    kept = await api.data(UPDATE, {"input": {"id": ws_id}}, token=token(world, "owner"))
    assert kept["updateWorkspace"]["workspace"]["name"] == "Acme Ltd"
    for who, code in (("member", "FORBIDDEN"), ("outsider", "NOT_FOUND")):
        refused = await api.data(
            UPDATE, {"input": {"id": ws_id, "name": "Hijacked"}}, token=token(world, who)
        )
        assert refused["updateWorkspace"]["workspace"] is None
        assert codes(refused["updateWorkspace"]) == [(["input", "id"], code)]
    malformed = await api.data(
        UPDATE, {"input": {"id": "garbage", "name": "X"}}, token=token(world, "owner")
    )
    assert codes(malformed["updateWorkspace"]) == [(["input", "id"], "NOT_FOUND")]


async def test_add_member_returns_the_membership(
    api: Api, session: AsyncSession, world: factories.World
) -> None:
    newcomer = await factories.user(session, "newcomer", "Newcomer@Example.com")
    await session.commit()
    data = await api.data(
        ADD,
        {
            "input": {
                "workspaceId": gid("Workspace", world.workspace.id),
                "email": "NEWCOMER@example.com",
            }
        },
        token=token(world, "admin"),
    )
    payload = data["addMember"]
    assert payload["userErrors"] == []
    membership = payload["membership"]
    assert membership["role"] == "MEMBER"  # the contract's default
    assert membership["user"] == {"id": gid("User", newcomer.id), "email": newcomer.email}
    assert membership["joinedAt"]


@pytest.mark.parametrize(
    ("who", "email", "role", "error"),
    [
        ("admin", "nobody@example.com", "MEMBER", (["input", "email"], "NOT_FOUND")),
        ("admin", "not an email", "MEMBER", (["input", "email"], "INVALID")),
        ("admin", "VIEWER", "MEMBER", (["input", "email"], "TAKEN")),
        ("admin", "NEW", "ADMIN", (["input", "role"], "FORBIDDEN")),
        ("member", "NEW", "VIEWER", (["input", "workspaceId"], "FORBIDDEN")),
        ("outsider", "NEW", "VIEWER", (["input", "workspaceId"], "NOT_FOUND")),
    ],
)
async def test_add_member_user_errors(
    api: Api,
    session: AsyncSession,
    world: factories.World,
    who: str,
    email: str,
    role: str,
    error: tuple[list[str], str],
) -> None:
    newcomer = await factories.user(session)
    await session.commit()
    email = {"VIEWER": world.users["viewer"].email, "NEW": newcomer.email}.get(email, email)
    data = await api.data(
        ADD,
        {
            "input": {
                "workspaceId": gid("Workspace", world.workspace.id),
                "email": email,
                "role": role,
            }
        },
        token=token(world, who),
    )
    assert data["addMember"]["membership"] is None
    assert codes(data["addMember"]) == [error]


async def test_update_member_role_and_the_last_owner(api: Api, world: factories.World) -> None:
    ws_id = gid("Workspace", world.workspace.id)
    member_id = gid("User", world.users["member"].id)
    data = await api.data(
        CHANGE,
        {"input": {"workspaceId": ws_id, "userId": member_id, "role": "VIEWER"}},
        token=token(world, "admin"),
    )
    assert data["updateMemberRole"] == {
        "membership": {"role": "VIEWER", "user": {"id": member_id}},
        "userErrors": [],
    }
    last = await api.data(
        CHANGE,
        {
            "input": {
                "workspaceId": ws_id,
                "userId": gid("User", world.users["owner"].id),
                "role": "ADMIN",
            }
        },
        token=token(world, "owner"),
    )
    payload = last["updateMemberRole"]
    assert payload["membership"] is None
    assert codes(payload) == [(["input", "role"], "INVALID")]
    assert "at least one owner" in payload["userErrors"][0]["message"]
    wrong_type = await api.data(
        CHANGE,
        {"input": {"workspaceId": ws_id, "userId": ws_id, "role": "VIEWER"}},
        token=token(world, "owner"),
    )
    assert codes(wrong_type["updateMemberRole"]) == [(["input", "userId"], "NOT_FOUND")]


async def test_remove_member_unassigns_their_tasks_with_history(
    api: Api, world: factories.World
) -> None:
    member = world.users["member"]
    data = await api.data(
        REMOVE,
        {
            "input": {
                "workspaceId": gid("Workspace", world.workspace.id),
                "userId": gid("User", member.id),
            }
        },
        token=token(world, "admin"),
    )
    assert data["removeMember"] == {"removedUserId": gid("User", member.id), "userErrors": []}
    board = await api.data(
        """query($slug: String!) { workspace(slug: $slug) { members { totalCount }
             project(key: "ENG") { tasks { nodes { number assignee { id }
               activity { nodes { kind actor { id } changes { field from to } } } } } } } }""",
        {"slug": world.workspace.slug},
        token=token(world, "owner"),
    )
    ws = board["workspace"]
    assert ws["members"]["totalCount"] == 3
    tasks = ws["project"]["tasks"]["nodes"]
    assert all(t["assignee"] is None for t in tasks)
    unassigned = {t.number for t in world.tasks if t.assignee_id == member.id}
    assert len(unassigned) == 3
    for t in tasks:
        expected = (
            [
                {
                    "kind": "TASK_UPDATED",
                    "actor": {"id": gid("User", world.users["admin"].id)},
                    "changes": [{"field": "assigneeId", "from": str(member.id), "to": None}],
                }
            ]
            if t["number"] in unassigned
            else []
        )
        assert t["activity"]["nodes"] == expected


async def test_leaving_and_the_last_owner_on_the_wire(api: Api, world: factories.World) -> None:
    ws_id = gid("Workspace", world.workspace.id)
    viewer_id = gid("User", world.users["viewer"].id)
    left = await api.data(
        REMOVE, {"input": {"workspaceId": ws_id, "userId": viewer_id}}, token=token(world, "viewer")
    )
    assert left["removeMember"] == {"removedUserId": viewer_id, "userErrors": []}
    gone = await api.data(
        "query($slug: String!) { workspace(slug: $slug) { id } }",
        {"slug": world.workspace.slug},
        token=token(world, "viewer"),
    )
    assert gone["workspace"] is None
    owner_id = gid("User", world.users["owner"].id)
    stays = await api.data(
        REMOVE, {"input": {"workspaceId": ws_id, "userId": owner_id}}, token=token(world, "owner")
    )
    assert stays["removeMember"]["removedUserId"] is None
    assert codes(stays["removeMember"]) == [(["input", "userId"], "INVALID")]
    forbidden = await api.data(
        REMOVE, {"input": {"workspaceId": ws_id, "userId": owner_id}}, token=token(world, "admin")
    )
    assert codes(forbidden["removeMember"]) == [(["input", "userId"], "FORBIDDEN")]


async def test_a_failed_field_does_not_undo_an_earlier_one(
    api: Api, world: factories.World
) -> None:
    data = await api.data(
        """mutation {
             ok: createWorkspace(input: {name: "One", slug: "one-ws"}) { workspace { viewerRole } }
             dup: createWorkspace(input: {name: "Two", slug: "one-ws"}) { userErrors { code } }
           }""",
        token=token(world, "member"),
    )
    assert data["ok"]["workspace"] == {"viewerRole": "OWNER"}
    assert data["dup"]["userErrors"] == [{"code": "TAKEN"}]
    listed = await api.data(
        "{ workspaces { nodes { slug viewerRole } } }", token=token(world, "member")
    )
    assert {"slug": "one-ws", "viewerRole": "OWNER"} in listed["workspaces"]["nodes"]
