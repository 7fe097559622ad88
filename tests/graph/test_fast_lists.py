"""The list completion plans (graph/execution.py) give exactly graphql-core's responses.

Generated queries over the task lists (aliases, repeated fields, named and inline fragments,
`@include`/`@skip` with variables, `__typename`, nested objects and lists, edges and nodes)
run with the plans and without, and the response bodies must match byte for byte. A small
schema of its own covers the cases the plans hand back to graphql-core: resolvers that raise
or return awaitables, nulls in non-null positions, and lists of other shapes.
"""

from __future__ import annotations

import asyncio
import enum
import math
from typing import Any

import pytest
import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from graph import compiled, execution
from graph.execution import FastListExecutionContext
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for
from tests.graph.generated import RandomQueries

TASK_SCALARS = [
    "id",
    "number",
    "title",
    "description",
    "status",
    "priority",
    "dueDate",
    "position",
    "version",
    "completedAt",
    "createdAt",
    "updatedAt",
    "key",
    "viewerCanEdit",
    "commentCount",
    "__typename",
]
TASK_OBJECTS = {
    "assignee": ["id", "name", "email", "__typename"],
    "creator": ["id", "name"],
    "labels": ["id", "name", "color", "__typename"],
    "project": ["id", "key", "name"],
}


class QueryMaker(RandomQueries):
    def directive(self) -> str:
        roll = self.rng.random()
        if roll < 0.1:
            return " @include(if: $yes)"
        if roll < 0.2:
            return " @include(if: $no)"
        if roll < 0.3:
            return " @skip(if: $yes)"
        return ""

    def fields(self, names: list[str], low: int = 1) -> list[str]:
        chosen = self.rng.sample(names, self.rng.randint(low, len(names)))
        if self.rng.random() < 0.3:
            chosen.append(self.rng.choice(chosen))  # the same field twice is merged
        return [self.alias(name) + self.directive() for name in chosen]

    def task_selection(self) -> str:
        parts = self.fields(TASK_SCALARS)
        for name, sub in TASK_OBJECTS.items():
            if self.rng.random() < 0.4:
                parts.append(
                    f"{self.alias(name)}{self.directive()} {{ {' '.join(self.fields(sub))} }}"
                )
        roll = self.rng.random()
        if roll < 0.25:
            name = f"F{len(self.fragments)}"
            self.fragments.append(
                f"fragment {name} on Task {{ {' '.join(self.fields(TASK_SCALARS))} }}"
            )
            parts.append(f"...{name}")
        elif roll < 0.5:
            parts.append(f"... on Task {{ {' '.join(self.fields(TASK_SCALARS))} }}")
        elif roll < 0.6:
            parts.append(f"... @include(if: $yes) {{ {' '.join(self.fields(TASK_SCALARS))} }}")
        self.rng.shuffle(parts)
        return " ".join(parts)

    def connection(self) -> str:
        first = self.rng.choice([1, 2, 5, 10])
        shape = self.rng.random()
        body = []
        if shape < 0.5:
            body.append(f"nodes {{ {self.task_selection()} }}")
        if shape >= 0.3:
            body.append(f"edges {{ cursor node {{ {self.task_selection()} }} }}")
        if self.rng.random() < 0.5:
            body.append("pageInfo { hasNextPage endCursor __typename }")
        return f"tasks(first: {first}) {{ {' '.join(body)} }}"

    def query(self, project_id: str, slug: str) -> str:
        roots = []
        if self.rng.random() < 0.6:
            roots.append(
                f'board: node(id: "{project_id}") {{ ... on Project {{ {self.connection()} }} }}'
            )
        if not roots or self.rng.random() < 0.6:
            roots.append(f'workspace(slug: "{slug}") {{ name {self.connection()} }}')
        if self.rng.random() < 0.3:
            roots.append(
                "workspaces { nodes { id __typename projects { nodes { id key name } } } }"
            )
        return (
            # Both variables are always used, as GraphQL requires.
            f"query Q($yes: Boolean!, $no: Boolean!) {{ __typename @include(if: $yes) "
            f"@skip(if: $no) {' '.join(roots)} }} " + " ".join(self.fragments)
        )


@pytest.fixture
def planned(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the lists completed by a plan."""
    used: list[int] = []
    original = FastListExecutionContext._plan

    def counting(self: Any, *args: Any) -> Any:
        plan = original(self, *args)
        if plan is not None:
            used.append(1)
        return plan

    monkeypatch.setattr(FastListExecutionContext, "_plan", counting)
    return used


async def test_generated_queries_give_the_same_responses_with_and_without_plans(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, planned: list[int]
) -> None:
    # The list plans serve the resolvers' path; compiled queries (graph/compiled.py) skip it.
    monkeypatch.setattr(compiled, "ENABLED", False)
    world = await factories.world(session)
    for t in world.tasks[:3]:
        await factories.comment(session, t.id, world.users["member"].id, "hello")
    token = token_for(world.users["member"].id)
    project_id = to_global_id("Project", world.project.id)
    for seed in range(60):
        maker = QueryMaker(seed)
        query = maker.query(project_id, world.workspace.slug)
        payload = {"query": query, "variables": {"yes": True, "no": False}}
        headers = {"authorization": f"Bearer {token}"}
        monkeypatch.setattr(execution, "ENABLED", False)
        plain = await api.client.post("/graphql", json=payload, headers=headers)
        monkeypatch.setattr(execution, "ENABLED", True)
        planned.clear()
        fast = await api.client.post("/graphql", json=payload, headers=headers)
        assert "errors" not in plain.json(), (query, plain.text)
        assert fast.text == plain.text, query
        assert planned, f"no list was completed by a plan: {query}"


# A schema of its own for what the plans hand back to graphql-core.


@strawberry.enum
class Size(enum.Enum):
    SMALL = "s"
    LARGE = "l"


@strawberry.type
class Item:
    name: str
    maybe: str | None = None
    size: Size = Size.SMALL
    count: int = 1
    ratio: float = 0.5
    flag: bool = True

    @strawberry.field
    def odd(self) -> int:
        # Out of GraphQL's 32-bit range for one item: an error, as graphql-core reports it.
        return 2**40 if self.name == "big" else 7

    @strawberry.field
    def fraction(self) -> float:
        return math.nan if self.name == "nan" else 0.25

    @strawberry.field
    def checked(self) -> str:
        if self.name == "boom":
            raise ValueError("boom")
        return self.name

    @strawberry.field
    def required(self) -> str:
        return None if self.name == "null" else self.name  # type: ignore[return-value]

    @strawberry.field
    def later(self) -> str:
        return _later(self.name)  # type: ignore[return-value]

    @strawberry.field
    def sized(self, n: int = 1) -> str:
        return self.name * n


async def _later(name: str) -> str:
    await asyncio.sleep(0)
    return name.upper()


@strawberry.interface
class Thing:
    name: str


@strawberry.type
class Box(Thing):
    width: int


@strawberry.type
class Root:
    @strawberry.field
    def items(self, names: list[str]) -> list[Item]:
        return [Item(name=n) for n in names]

    @strawberry.field
    def maybe_items(self, names: list[str]) -> list[Item | None] | None:
        return [None if n == "none" else Item(name=n) for n in names]

    @strawberry.field
    def things(self) -> list[Thing]:
        return [Box(name="a", width=1), Box(name="b", width=2)]

    @strawberry.field
    def nested(self) -> list[list[Item]]:
        return [[Item(name="x")], [Item(name="y"), Item(name="z")]]


SMALL = strawberry.Schema(query=Root, execution_context_class=FastListExecutionContext)

SMALL_QUERIES = [
    ('{ items(names: ["a", "b"]) { size count ratio flag odd fraction } }', True),
    ('{ items(names: ["a", "big"]) { name odd } }', False),
    ('{ items(names: ["a", "nan"]) { name fraction } }', False),
    ('{ items(names: ["a", "b"]) { name checked required maybe __typename } }', True),
    ('{ items(names: ["a", "boom", "c"]) { name checked } }', False),
    ('{ items(names: ["a", "null"]) { name required } }', False),
    ('{ maybeItems(names: ["a", "none", "null"]) { name required } }', False),
    ('{ items(names: ["a", "b"]) { name later } }', False),
    ('{ items(names: ["a", "b"]) { sized(n: 2) } }', False),
    ("{ things { name ... on Box { width } } }", False),
    ("{ nested { name } }", True),
    ('{ x: items(names: ["q"]) { y: name, name } }', True),
]


@pytest.mark.parametrize(("query", "uses_plan"), SMALL_QUERIES)
async def test_the_small_schema_answers_like_graphql_core(
    query: str, uses_plan: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(execution, "ENABLED", False)
    plain = await SMALL.execute(query)
    monkeypatch.setattr(execution, "ENABLED", True)
    completed: list[int] = []
    original = FastListExecutionContext.complete_iterable_value

    def spy(self: Any, *args: Any) -> Any:
        result = original(self, *args)
        completed.append(1)
        return result

    fast = await SMALL.execute(query)
    assert fast.data == plain.data
    assert [(e.message, e.path) for e in fast.errors or []] == [
        (e.message, e.path) for e in plain.errors or []
    ]
    # The whole-result equality above is what matters; this guards the test itself: the
    # queries meant to exercise a plan do complete through one.
    if uses_plan:
        monkeypatch.setattr(FastListExecutionContext, "complete_iterable_value", spy)
        counted: list[int] = []
        plan = FastListExecutionContext._plan

        def counting(self: Any, *args: Any) -> Any:
            found = plan(self, *args)
            if found is not None:
                counted.append(1)
            return found

        monkeypatch.setattr(FastListExecutionContext, "_plan", counting)
        await SMALL.execute(query)
        assert counted
