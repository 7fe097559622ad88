"""A principal sees only what it may read (DESIGN.md, "Roles" and request flow step 3).

An object the principal may not read must look exactly like one that does not exist, on
every root field (`node`, `nodes`, `me`, `workspaces`, `workspace`) and on nested paths.
Each "null" assertion comes with a control showing that the same ID or key does resolve for
someone allowed to read it, so that a null can only come from scoping.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import CreatedKey, create_api_key
from db.models import Activity, ApiScope, Membership, Role
from db.principals import user_principal
from graph.ids import to_global_id
from tests import factories
from tests.factories import World
from tests.graph.conftest import Api, token_for

MISSING_ID = 999_999_999
NODE_TYPES = ("User", "Workspace", "Project", "Task", "Label", "Comment", "Activity", "ApiKey")
# Every principal that can reach workspace A; none of them may see workspace B.
VIEWERS_OF_A = ("owner", "admin", "member", "viewer", "api_key", "anonymous")

NODE = "query($id: ID!) { node(id: $id) { __typename id } }"
NODES = "query($ids: [ID!]!) { nodes(ids: $ids) { __typename id } }"


@dataclass
class Scene:
    """`factories.world` plus a comment, an activity and an API key on each side."""

    world: World
    # The secret of a READ key of workspace A, created by its owner.
    key_secret: str
    stranger_id: int
    stranger_email: str
    # Database ids by node type: an object of workspace A, and one of workspace B.
    own_ids: dict[str, int]
    other_ids: dict[str, int]

    @property
    def own(self) -> dict[str, str]:
        return {t: to_global_id(t, i) for t, i in self.own_ids.items()}

    @property
    def other(self) -> dict[str, str]:
        return {t: to_global_id(t, i) for t, i in self.other_ids.items()}

    def token(self, who: str) -> str | None:
        if who == "anonymous":
            return None
        if who == "api_key":
            return self.key_secret
        if who == "stranger":
            return token_for(self.stranger_id)
        return token_for(self.world.users[who].id)


async def _key(session: AsyncSession, creator_id: int, workspace_id: int, name: str) -> CreatedKey:
    principal = await user_principal(session, creator_id)
    assert principal is not None
    return await create_api_key(session, principal, workspace_id, name, [ApiScope.READ])


@pytest.fixture
async def scene(session: AsyncSession) -> Scene:
    w = await factories.world(session)
    stranger = await factories.user(session, "stranger")
    own_task, other_task = w.tasks[0], w.other_task
    # The other workspace's label must be on a task of its own: the label filter test relies
    # on it matching something where it belongs.
    await factories.tag(session, other_task.id, w.other_label.id)
    own_comment = await factories.comment(session, own_task.id, w.users["member"].id)
    other_comment = await factories.comment(session, other_task.id, w.users["outsider"].id)
    own_activity = await factories.activity(session, own_task, "ENG-1", w.users["owner"].id)
    other_activity = await factories.activity(session, other_task, "OPS-1", w.users["outsider"].id)
    own_key = await _key(session, w.users["owner"].id, w.workspace.id, "Partner")
    other_key = await _key(session, w.users["outsider"].id, w.other_workspace.id, "Secret partner")
    await session.commit()
    own_ids = {
        "User": w.users["member"].id,
        "Workspace": w.workspace.id,
        "Project": w.project.id,
        "Task": own_task.id,
        "Label": w.labels[0].id,
        "Comment": own_comment.id,
        "Activity": own_activity.id,
        "ApiKey": own_key.row.id,
    }
    other_ids = {
        "User": w.users["outsider"].id,
        "Workspace": w.other_workspace.id,
        "Project": w.other_project.id,
        "Task": other_task.id,
        "Label": w.other_label.id,
        "Comment": other_comment.id,
        "Activity": other_activity.id,
        "ApiKey": other_key.row.id,
    }
    return Scene(
        world=w,
        key_secret=own_key.secret,
        stranger_id=stranger.id,
        stranger_email=stranger.email,
        own_ids=own_ids,
        other_ids=other_ids,
    )


def b64(raw: str) -> str:
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def codes(body: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in body.get("errors", [])]


# ---------------------------------------------------------------- node / nodes


@pytest.mark.parametrize("type_name", NODE_TYPES)
async def test_node_of_other_workspace_is_indistinguishable_from_missing(
    api: Api, scene: Scene, type_name: str
) -> None:
    other_id = scene.other[type_name]
    # Control: the ID is real and readable by workspace B's owner.
    seen = await api(NODE, {"id": other_id}, token=scene.token("outsider"))
    assert seen == {"data": {"node": {"__typename": type_name, "id": other_id}}}

    missing_id = to_global_id(type_name, MISSING_ID)
    for who in VIEWERS_OF_A:
        other = await api(NODE, {"id": other_id}, token=scene.token(who))
        missing = await api(NODE, {"id": missing_id}, token=scene.token(who))
        assert other == missing == {"data": {"node": None}}, who


def _own_visible(who: str, type_name: str) -> bool:
    if who == "anonymous":
        return False
    # API keys are for workspace admins only, and a key is no admin.
    return not (who == "api_key" and type_name == "ApiKey")


@pytest.mark.parametrize("type_name", NODE_TYPES)
async def test_nodes_puts_null_in_place_of_unreadable_ids(
    api: Api, scene: Scene, type_name: str
) -> None:
    own_id = scene.own[type_name]
    ids = [own_id, scene.other[type_name], to_global_id(type_name, MISSING_ID), own_id]
    for who in ("owner", "api_key", "anonymous"):
        own = {"__typename": type_name, "id": own_id} if _own_visible(who, type_name) else None
        body = await api(NODES, {"ids": ids}, token=scene.token(who))
        assert body == {"data": {"nodes": [own, None, None, own]}}, who


# ---------------------------------------------------------------- me / workspaces / workspace

WORKSPACES = """
query($a: String!, $b: String!, $c: String!) {
  me { id }
  workspaces { totalCount nodes { slug viewerRole } }
  a: workspace(slug: $a) { slug viewerRole }
  b: workspace(slug: $b) { slug viewerRole }
  c: workspace(slug: $c) { slug viewerRole }
  missing: workspace(slug: "no-such-workspace") { slug viewerRole }
}
"""


@pytest.mark.parametrize(
    ("who", "expected"),
    [
        ("owner", [("a", "OWNER")]),
        ("member", [("a", "MEMBER"), ("c", "VIEWER")]),
        ("outsider", [("b", "OWNER"), ("c", "ADMIN")]),
        ("stranger", []),
        ("anonymous", []),
        # A key reads its own workspace, in which it has no role.
        ("api_key", [("a", None)]),
    ],
)
async def test_root_fields_list_exactly_the_readable_workspaces(
    api: Api, session: AsyncSession, scene: Scene, who: str, expected: list[tuple[str, str | None]]
) -> None:
    w = scene.world
    # A third workspace shared by a member of A and the owner of B: being in it must not open
    # A to B's owner or B to A's member.
    third = await factories.workspace(session, factories.unique("zeta-"), "Zeta")
    await factories.member(session, third.id, w.users["member"].id, Role.VIEWER)
    await factories.member(session, third.id, w.users["outsider"].id, Role.ADMIN)
    await session.commit()
    slugs = {"a": w.workspace.slug, "b": w.other_workspace.slug, "c": third.slug}
    # The fixture's slugs ("acme-", "globex-", "zeta-") sort in a, b, c order.
    assert sorted(slugs.values()) == [slugs["a"], slugs["b"], slugs["c"]]

    data = await api.data(WORKSPACES, slugs, token=scene.token(who))

    readable = {alias: {"slug": slugs[alias], "viewerRole": role} for alias, role in expected}
    user_ids = {**{n: u.id for n, u in w.users.items()}, "stranger": scene.stranger_id}
    assert data == {
        "me": {"id": to_global_id("User", user_ids[who])} if who in user_ids else None,
        "workspaces": {"totalCount": len(expected), "nodes": list(readable.values())},
        "a": readable.get("a"),
        "b": readable.get("b"),
        "c": readable.get("c"),
        "missing": None,
    }


async def test_workspace_of_other_is_indistinguishable_from_missing_slug(
    api: Api, scene: Scene
) -> None:
    query = "query($s: String!) { workspace(slug: $s) { slug } }"
    for who in VIEWERS_OF_A:
        other = await api(query, {"s": scene.world.other_workspace.slug}, token=scene.token(who))
        missing = await api(query, {"s": "no-such-workspace"}, token=scene.token(who))
        assert other == missing == {"data": {"workspace": None}}, who


# ---------------------------------------------------------------- API keys


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("owner", True),
        ("admin", True),
        ("member", False),
        ("viewer", False),
        ("api_key", False),
    ],
)
async def test_api_key_node_is_visible_to_workspace_admins_only(
    api: Api, scene: Scene, who: str, visible: bool
) -> None:
    query = "query($id: ID!) { node(id: $id) { ... on ApiKey { id name scopes } } }"
    key_id = scene.own["ApiKey"]
    body = await api(query, {"id": key_id}, token=scene.token(who))
    node = {"id": key_id, "name": "Partner", "scopes": ["READ"]} if visible else None
    assert body == {"data": {"node": node}}


ACTIVITY_API_KEY = """
query($id: ID!, $slug: String!) {
  node(id: $id) { ... on Activity { actor { id } apiKey { id name } } }
  workspace(slug: $slug) {
    task(key: "ENG-1") { activity { nodes { actor { id } apiKey { id } } } }
  }
}
"""


@pytest.mark.parametrize(
    ("who", "visible"),
    [
        ("owner", True),
        ("admin", True),
        ("member", False),
        ("viewer", False),
        ("api_key", False),
    ],
)
async def test_activity_api_key_is_visible_to_workspace_admins_only(
    api: Api, session: AsyncSession, scene: Scene, who: str, visible: bool
) -> None:
    # As the mutations record an action taken through a key: the key acted, no user.
    await session.execute(
        update(Activity)
        .where(Activity.id == scene.own_ids["Activity"])
        .values(actor_user_id=None, actor_api_key_id=scene.own_ids["ApiKey"])
    )
    await session.commit()
    key_id = scene.own["ApiKey"]

    data = await api.data(
        ACTIVITY_API_KEY,
        {"id": scene.own["Activity"], "slug": scene.world.workspace.slug},
        token=scene.token(who),
    )

    assert data == {
        "node": {"actor": None, "apiKey": {"id": key_id, "name": "Partner"} if visible else None},
        "workspace": {
            "task": {
                "activity": {
                    "nodes": [{"actor": None, "apiKey": {"id": key_id} if visible else None}]
                }
            }
        },
    }


# ---------------------------------------------------------------- users and e-mails


async def test_me_shows_own_email(api: Api, scene: Scene) -> None:
    member = scene.world.users["member"]
    data = await api.data("{ me { id name email } }", token=scene.token("member"))
    assert data == {
        "me": {"id": to_global_id("User", member.id), "name": "member", "email": member.email}
    }


MEMBERS = """
query($slug: String!, $id: ID!) {
  workspace(slug: $slug) {
    members { totalCount nodes { role user { name email } } }
    task(key: "ENG-1") { creator { name email } }
  }
  node(id: $id) { ... on User { name email } }
}
"""


@pytest.mark.parametrize(
    ("who", "emails_visible"),
    [
        ("owner", True),
        ("admin", True),
        ("member", True),
        ("viewer", True),
        # A key reads the workspace but is no member of it.
        ("api_key", False),
    ],
)
async def test_member_emails_are_visible_to_co_members_only(
    api: Api, scene: Scene, who: str, emails_visible: bool
) -> None:
    users = scene.world.users

    def user(name: str) -> dict[str, Any]:
        return {"name": name, "email": users[name].email if emails_visible else None}

    data = await api.data(
        MEMBERS,
        {"slug": scene.world.workspace.slug, "id": scene.own["User"]},
        token=scene.token(who),
    )

    # Memberships made in one transaction share created_at; user id breaks the tie.
    roles = (("owner", "OWNER"), ("admin", "ADMIN"), ("member", "MEMBER"), ("viewer", "VIEWER"))
    assert data == {
        "workspace": {
            "members": {
                "totalCount": 4,
                "nodes": [{"role": role, "user": user(name)} for name, role in roles],
            },
            "task": {"creator": user("owner")},
        },
        "node": user("member"),
    }


async def test_node_of_user_sharing_no_workspace_is_null(api: Api, scene: Scene) -> None:
    query = "query($id: ID!) { node(id: $id) { ... on User { name email } } }"
    stranger = to_global_id("User", scene.stranger_id)
    # Control: the user exists and sees itself.
    seen = await api(query, {"id": stranger}, token=scene.token("stranger"))
    assert seen == {"data": {"node": {"name": "stranger", "email": scene.stranger_email}}}
    for who in ("member", "outsider", "api_key", "anonymous"):
        body = await api(query, {"id": stranger}, token=scene.token(who))
        assert body == {"data": {"node": None}}, who


CREATOR = """
query($slug: String!, $id: ID!) {
  workspace(slug: $slug) { task(key: "ENG-6") { creator { id name email } } }
  node(id: $id) { ... on User { name } }
}
"""


async def test_creator_who_left_is_still_shown_but_without_email(
    api: Api, session: AsyncSession, scene: Scene
) -> None:
    w = scene.world
    leaver = await factories.user(session, "leaver")
    await factories.member(session, w.workspace.id, leaver.id, Role.MEMBER)
    await factories.task(session, w.project, leaver.id)
    await session.commit()
    variables = {"slug": w.workspace.slug, "id": to_global_id("User", leaver.id)}
    creator = {"id": to_global_id("User", leaver.id), "name": "leaver"}

    # Control: while a co-member, the e-mail shows.
    before = await api.data(CREATOR, variables, token=scene.token("member"))
    assert before == {
        "workspace": {"task": {"creator": {**creator, "email": leaver.email}}},
        "node": {"name": "leaver"},
    }

    await session.execute(
        delete(Membership).where(
            Membership.workspace_id == w.workspace.id, Membership.user_id == leaver.id
        )
    )
    await session.commit()

    # The task keeps its (non-null) creator; only the e-mail and the direct lookup go.
    after = await api.data(CREATOR, variables, token=scene.token("member"))
    assert after == {
        "workspace": {"task": {"creator": {**creator, "email": None}}},
        "node": None,
    }


# ---------------------------------------------------------------- nested paths

FILTERED = """
query($slug: String!, $filter: TaskFilter!) {
  workspace(slug: $slug) {
    tasks(filter: $filter) { totalCount nodes { key } }
    project(key: "ENG") { tasks(filter: $filter) { totalCount nodes { key } } }
  }
}
"""
ALL_ENG = [f"ENG-{n}" for n in range(5, 0, -1)]


def _listed(keys: list[str], *, board: bool) -> dict[str, Any]:
    # A board lists by position, the workspace newest first: the same tasks, reversed.
    ordered = sorted(keys, key=lambda k: int(k.split("-")[1])) if board else keys
    return {"totalCount": len(keys), "nodes": [{"key": k} for k in ordered]}


@pytest.mark.parametrize(
    ("field", "type_name", "own_keys", "mixed_keys"),
    [
        # Labels combine with AND: no task of A can carry B's label as well.
        ("labelIds", "Label", ["ENG-2", "ENG-1"], []),
        # Projects combine with OR: B's project adds nothing to A's.
        ("projectIds", "Project", ALL_ENG, ALL_ENG),
    ],
)
async def test_task_filters_with_other_workspace_ids_match_nothing(
    api: Api,
    scene: Scene,
    field: str,
    type_name: str,
    own_keys: list[str],
    mixed_keys: list[str],
) -> None:
    w = scene.world
    own_id, other_id = scene.own[type_name], scene.other[type_name]

    async def tasks(slug: str, ids: list[str], who: str) -> dict[str, Any]:
        variables = {"slug": slug, "filter": {field: ids}}
        return (await api.data(FILTERED, variables, token=scene.token(who)))["workspace"]

    def both(keys: list[str]) -> dict[str, Any]:
        return {
            "tasks": _listed(keys, board=False),
            "project": {"tasks": _listed(keys, board=True)},
        }

    # Control: B's ID does match a task where it belongs (B has no ENG project).
    assert await tasks(w.other_workspace.slug, [other_id], "outsider") == {
        "tasks": _listed(["OPS-1"], board=False),
        "project": None,
    }
    assert await tasks(w.workspace.slug, [own_id], "member") == both(own_keys)
    assert await tasks(w.workspace.slug, [other_id], "member") == both([])
    assert await tasks(w.workspace.slug, [own_id, other_id], "member") == both(mixed_keys)


KEYS = """
query($slug: String!, $task: String!, $project: String!) {
  workspace(slug: $slug) { task(key: $task) { key } project(key: $project) { key } }
}
"""


async def test_keys_of_other_workspace_find_nothing(api: Api, scene: Scene) -> None:
    w = scene.world
    ops = {"task": "OPS-1", "project": "OPS"}
    # Control: the keys are real in workspace B.
    seen = await api.data(
        KEYS, {"slug": w.other_workspace.slug, **ops}, token=scene.token("outsider")
    )
    assert seen == {"workspace": {"task": {"key": "OPS-1"}, "project": {"key": "OPS"}}}

    for who in ("owner", "api_key"):
        token = scene.token(who)
        other = await api(KEYS, {"slug": w.workspace.slug, **ops}, token=token)
        missing = await api(
            KEYS, {"slug": w.workspace.slug, "task": "NOPE-1", "project": "NOPE"}, token=token
        )
        assert other == missing == {"data": {"workspace": {"task": None, "project": None}}}, who


# ---------------------------------------------------------------- invalid IDs

BAD_IDS = [
    pytest.param("garbage", id="not-base64-of-an-id"),
    pytest.param("", id="empty"),
    pytest.param("Task:1", id="not-encoded"),
    pytest.param(b64("Foo:1"), id="unknown-type"),
    pytest.param(b64("Membership:1"), id="type-that-is-no-node"),
    pytest.param(b64("task:1"), id="type-in-wrong-case"),
    pytest.param(b64("Task:0"), id="zero"),
    pytest.param(b64("Task:-1"), id="negative"),
    pytest.param(b64("Task:abc"), id="not-a-number"),
    pytest.param(b64("Task:1.5"), id="fraction"),
    pytest.param(b64("Task: 1"), id="padded-number"),
    pytest.param(b64("Task:9223372036854775808"), id="beyond-bigint"),
    pytest.param(b64("Task"), id="no-separator"),
]


@pytest.mark.parametrize("bad_id", BAD_IDS)
async def test_invalid_id_is_bad_user_input(api: Api, scene: Scene, bad_id: str) -> None:
    token = scene.token("owner")
    body = await api(NODE, {"id": bad_id}, token=token)
    assert body["data"] == {"node": None}
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["node"]

    # `nodes` is non-null, so its error nulls the whole of `data`.
    body = await api(NODES, {"ids": [bad_id]}, token=token)
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]


@asynccontextmanager
async def settled() -> AsyncIterator[None]:
    """Waits for tasks a request left running on the shared test connection, so that a
    failure shows as this test's failure rather than as an error in the rollback at teardown."""
    before = asyncio.all_tasks()
    try:
        yield
    finally:
        left = asyncio.all_tasks() - before
        if left:
            await asyncio.wait(left, timeout=5)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        pytest.param(
            NODES,
            lambda own: {"ids": [own, "garbage"]},
            id="in-one-nodes-list",
        ),
        pytest.param(
            "query($own: ID!, $ids: [ID!]!) { node(id: $own) { id } nodes(ids: $ids) { id } }",
            lambda own: {"own": own, "ids": ["garbage"]},
            id="in-a-sibling-field",
        ),
    ],
)
async def test_invalid_id_beside_valid_one_is_bad_user_input(
    api: Api, scene: Scene, query: str, variables: Callable[[str], dict[str, Any]]
) -> None:
    async with settled():
        body = await api(query, variables(scene.own["Task"]), token=scene.token("owner"))
    assert body["data"] is None
    assert codes(body) == ["BAD_USER_INPUT"]


async def test_nodes_takes_at_most_100_ids(api: Api, scene: Scene) -> None:
    token = scene.token("owner")
    ids = [to_global_id("Task", MISSING_ID - n) for n in range(101)]
    at_limit = await api(NODES, {"ids": ids[:100]}, token=token)
    assert at_limit == {"data": {"nodes": [None] * 100}}

    over = await api(NODES, {"ids": ids}, token=token)
    assert over["data"] is None
    assert codes(over) == ["BAD_USER_INPUT"]


async def test_filter_id_of_wrong_type_is_bad_user_input(api: Api, scene: Scene) -> None:
    query = """query($slug: String!, $filter: TaskFilter!) {
      workspace(slug: $slug) { tasks(filter: $filter) { totalCount } }
    }"""
    variables = {"slug": scene.world.workspace.slug, "filter": {"labelIds": [scene.own["Project"]]}}
    body = await api(query, variables, token=scene.token("owner"))
    # `tasks` is non-null, so the error nulls the workspace.
    assert body["data"] == {"workspace": None}
    assert codes(body) == ["BAD_USER_INPUT"]
    assert body["errors"][0]["path"] == ["workspace", "tasks"]
