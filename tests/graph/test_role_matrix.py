"""Every mutation for every kind of principal: allowed or refused, exactly as DESIGN.md's
roles say. An anonymous caller gets the error UNAUTHENTICATED. Other refusals are user errors:
NOT_FOUND for those outside the workspace (nobody outside learns that it exists), FORBIDDEN for
those inside without the right."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import create_api_key
from db.models import ApiScope, Role
from db.principals import user_principal
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for

PRINCIPALS = [
    "OWNER",
    "ADMIN",
    "MEMBER",
    "VIEWER",
    "OUTSIDER",
    "READ_KEY",
    "WRITE_KEY",
    "ANONYMOUS",
]
ADMINS = {"OWNER", "ADMIN"}
EDITORS = {"OWNER", "ADMIN", "MEMBER", "WRITE_KEY"}
USERS = {"OWNER", "ADMIN", "MEMBER", "VIEWER", "OUTSIDER"}
INSIDE = {"OWNER", "ADMIN", "MEMBER", "VIEWER", "READ_KEY", "WRITE_KEY"}


@dataclass
class Scene:
    world: factories.World
    target: Any
    comments: dict[str, Any]
    principal: str

    def gid(self, type_name: str, db_id: int) -> str:
        return to_global_id(type_name, db_id)

    @property
    def ws(self) -> str:
        return self.gid("Workspace", self.world.workspace.id)

    @property
    def task(self) -> str:
        return self.gid("Task", self.world.tasks[0].id)

    @property
    def own_comment(self) -> str:
        return self.gid("Comment", self.comments[self.principal].id)


@dataclass(frozen=True)
class Case:
    field: str
    document: str
    variables: Callable[[Scene], dict[str, Any]]
    allowed: frozenset[str]
    result: str  # the payload field that holds the changed object when allowed


def case(
    field: str,
    input_type: str,
    result: str,
    allowed: set[str],
    variables: Callable[[Scene], dict[str, Any]],
) -> Case:
    document = (
        f"mutation($input: {input_type}!) {{ {field}(input: $input) {{ {result_selection(result)} "
        "userErrors { code field message } } }"
    )
    return Case(field, document, variables, frozenset(allowed), result)


def result_selection(result: str) -> str:
    return result if result.endswith("Id") or result == "ok" else f"{result} {{ __typename }}"


CASES = [
    case(
        "createWorkspace",
        "CreateWorkspaceInput",
        "workspace",
        USERS,
        lambda s: {"name": "New", "slug": factories.unique("new-")},
    ),
    case(
        "updateWorkspace",
        "UpdateWorkspaceInput",
        "workspace",
        ADMINS,
        lambda s: {"id": s.ws, "name": "Renamed"},
    ),
    case(
        "addMember",
        "AddMemberInput",
        "membership",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "email": s.world.users["outsider"].email, "role": "VIEWER"},
    ),
    case(
        "updateMemberRole",
        "UpdateMemberRoleInput",
        "membership",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "userId": s.gid("User", s.target.id), "role": "VIEWER"},
    ),
    case(
        "removeMember",
        "RemoveMemberInput",
        "removedUserId",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "userId": s.gid("User", s.target.id)},
    ),
    case(
        "createProject",
        "CreateProjectInput",
        "project",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "key": "NEW", "name": "New"},
    ),
    case(
        "updateProject",
        "UpdateProjectInput",
        "project",
        ADMINS,
        lambda s: {"id": s.gid("Project", s.world.project.id), "name": "Renamed"},
    ),
    case(
        "archiveProject",
        "ArchiveProjectInput",
        "project",
        ADMINS,
        lambda s: {"id": s.gid("Project", s.world.project.id), "archived": True},
    ),
    case(
        "createTask",
        "CreateTaskInput",
        "task",
        EDITORS,
        lambda s: {"projectId": s.gid("Project", s.world.project.id), "title": "New"},
    ),
    case(
        "updateTask",
        "UpdateTaskInput",
        "task",
        EDITORS,
        lambda s: {"id": s.task, "title": "Renamed"},
    ),
    case("deleteTask", "DeleteTaskInput", "deletedTaskId", EDITORS, lambda s: {"id": s.task}),
    case(
        "addLabelsToTask",
        "TaskLabelsInput",
        "task",
        EDITORS,
        lambda s: {"taskId": s.task, "labelIds": [s.gid("Label", s.world.labels[2].id)]},
    ),
    case(
        "removeLabelsFromTask",
        "TaskLabelsInput",
        "task",
        EDITORS,
        lambda s: {"taskId": s.task, "labelIds": [s.gid("Label", s.world.labels[0].id)]},
    ),
    case(
        "createLabel",
        "CreateLabelInput",
        "label",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "name": "new", "color": "#00ff00"},
    ),
    case(
        "updateLabel",
        "UpdateLabelInput",
        "label",
        ADMINS,
        lambda s: {"id": s.gid("Label", s.world.labels[0].id), "name": "renamed"},
    ),
    case(
        "deleteLabel",
        "DeleteLabelInput",
        "deletedLabelId",
        ADMINS,
        lambda s: {"id": s.gid("Label", s.world.labels[0].id)},
    ),
    case(
        "addComment",
        "AddCommentInput",
        "comment",
        EDITORS,
        lambda s: {"taskId": s.task, "body": "Hello"},
    ),
    # Each principal edits a comment of its own (a key's comments are its creator's).
    case(
        "updateComment",
        "UpdateCommentInput",
        "comment",
        EDITORS,
        lambda s: {"id": s.own_comment, "body": "Edited"},
    ),
    case(
        "deleteComment",
        "DeleteCommentInput",
        "deletedCommentId",
        EDITORS,
        lambda s: {"id": s.own_comment},
    ),
    case(
        "createApiKey",
        "CreateApiKeyInput",
        "apiKey",
        ADMINS,
        lambda s: {"workspaceId": s.ws, "name": "ci", "scopes": ["READ"]},
    ),
    case(
        "revokeApiKey",
        "RevokeApiKeyInput",
        "apiKey",
        ADMINS,
        lambda s: {"id": s.gid("ApiKey", s.comments["key_to_revoke"].id)},
    ),
]


async def _token(session: AsyncSession, w: factories.World, principal: str) -> str | None:
    if principal == "ANONYMOUS":
        return None
    if principal in ("READ_KEY", "WRITE_KEY"):
        owner = await user_principal(session, w.users["owner"].id)
        assert owner is not None
        scope = ApiScope.READ if principal == "READ_KEY" else ApiScope.WRITE
        return (await create_api_key(session, owner, w.workspace.id, "key", [scope])).secret
    return token_for(w.users[principal.lower()].id)


@pytest.mark.parametrize("principal", PRINCIPALS)
@pytest.mark.parametrize("mutation", CASES, ids=lambda c: c.field)
async def test_role_matrix(api: Api, session: AsyncSession, mutation: Case, principal: str) -> None:
    w = await factories.world(session)
    target = await factories.user(session, "target")
    await factories.member(session, w.workspace.id, target.id, Role.MEMBER)
    authors = {p: w.users[p.lower()] for p in USERS} | {
        "READ_KEY": w.users["owner"],
        "WRITE_KEY": w.users["owner"],
        "ANONYMOUS": w.users["owner"],
    }
    comments: dict[str, Any] = {
        p: await factories.comment(session, w.tasks[0].id, author.id, f"by {p}")
        for p, author in authors.items()
    }
    owner = await user_principal(session, w.users["owner"].id)
    assert owner is not None
    comments["key_to_revoke"] = (
        await create_api_key(session, owner, w.workspace.id, "old", [ApiScope.READ])
    ).row
    token = await _token(session, w, principal)
    await session.commit()
    scene = Scene(w, target, comments, principal)

    if principal == "ANONYMOUS":
        body = await api(mutation.document, {"input": mutation.variables(scene)})
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"], body
        assert body["errors"][0]["path"] == [mutation.field]
        return
    body = await api.data(mutation.document, {"input": mutation.variables(scene)}, token=token)
    payload = body[mutation.field]
    if principal in mutation.allowed:
        assert payload["userErrors"] == [], payload
        assert payload[mutation.result] is not None
        return
    assert payload[mutation.result] is None
    codes = [e["code"] for e in payload["userErrors"]]
    inside = principal in INSIDE or mutation.field == "createWorkspace"
    assert codes == ["FORBIDDEN" if inside else "NOT_FOUND"], payload
