"""What the generators of random queries share (tests/graph/test_fast_lists.py and
tests/graph/test_compiled.py): a seeded source of choices and numbered aliases, the world with
the awkward values they run against, and the comparison of both read paths."""

from __future__ import annotations

import json
import random
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.access import Principal
from db.api_keys import create_api_key
from db.models import ApiScope, Project, Role, Task
from graph import compiled
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api


class RandomQueries:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fragments: list[str] = []
        self.aliases = 0

    def alias(self, name: str) -> str:
        if self.rng.random() < 0.2:
            self.aliases += 1
            return f"a{self.aliases}: {name}"
        return name


# Both read paths ---------------------------------------------------------------------------


async def both(
    api: Api,
    monkeypatch: pytest.MonkeyPatch,
    query: str,
    token: str | None,
    variables: Any = None,
    operation_name: str | None = None,
) -> tuple[str, str]:
    """The answers of the normal path and of the compiled one, in that order."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    payload: dict[str, Any] = {"query": query, "variables": variables or {}}
    if operation_name is not None:
        payload["operationName"] = operation_name
    monkeypatch.setattr(compiled, "ENABLED", False)
    plain = await api.client.post("/graphql", json=payload, headers=headers)
    monkeypatch.setattr(compiled, "ENABLED", True)
    fast = await api.client.post("/graphql", json=payload, headers=headers)
    assert plain.status_code == fast.status_code == 200
    return plain.text, fast.text


def same(text: str) -> str:
    # The same JSON with the keys in the same order; PostgreSQL spaces its JSON differently.
    return json.dumps(json.loads(text))


# The world ---------------------------------------------------------------------------------


async def awkward_world(session: AsyncSession) -> tuple[factories.World, dict[str, list[str]], str]:
    """`factories.world` with awkward values (quotes, backslashes, control characters,
    non-ASCII text, whole-second timestamps, positions orjson writes in every form, an
    archived project, a long comment thread); the IDs of some of its objects by type, and
    the secret of a READ API key of the first workspace."""
    world = await factories.world(session)
    owner = world.users["owner"]
    await session.execute(
        update(Project)
        .where(Project.id == world.project.id)
        .values(description='Line one\nLine "two"\t\\ \x01 café ✓ \U0001f680')
    )
    archived = await factories.project(session, world.workspace.id, "OLD", name="Old")
    await session.execute(
        update(Project)
        .where(Project.id == archived.id)
        .values(archived_at=factories.BASE_TIME + timedelta(days=3))
    )
    await factories.task(session, archived, owner.id, title="In an archived project")
    task = world.tasks[0]
    await session.execute(
        update(Task)
        .where(Task.id == task.id)
        .values(
            title='Quote " backslash \\ tab \t',
            description="Émoji 🚀, newline\nand \x1f control",
            # A whole second: Python's isoformat leaves the fraction out.
            updated_at=factories.BASE_TIME + timedelta(days=2),
        )
    )
    # Positions as orjson writes them: 3072.0, 1536.25, 0.1, 0.000030517578125, 1.5e-7.
    positions = zip(world.tasks[1:], (1536.25, 0.1, 3.0517578125e-05, 1.5e-7), strict=True)
    for other, position in positions:
        await session.execute(update(Task).where(Task.id == other.id).values(position=position))
    await factories.tag(session, task.id, world.labels[2].id)
    for minute in range(4):
        await factories.comment(session, task.id, world.users["member"].id, f"c{minute}", minute)
    await factories.comment(session, task.id, world.users["outsider"].id, "from outside", 9)
    for minute in range(3):
        await factories.activity(session, task, "ENG-1", owner.id, minute)
    ids = {
        "Task": [to_global_id("Task", t.id) for t in (task, world.tasks[1], world.other_task)],
        "Project": [to_global_id("Project", p.id) for p in (world.project, world.other_project)],
        "Workspace": [
            to_global_id("Workspace", w.id) for w in (world.workspace, world.other_workspace)
        ],
        "User": [to_global_id("User", u.id) for u in world.users.values()],
    }
    principal = Principal(user_id=owner.id, roles={world.workspace.id: Role.OWNER})
    key = await create_api_key(session, principal, world.workspace.id, "export", [ApiScope.READ])
    return world, ids, key.secret
