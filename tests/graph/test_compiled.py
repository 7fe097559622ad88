"""Compiled operations (graph/compiled.py) give exactly the normal execution's answers.

Generated queries over everything the compiler knows (aliases, repeated fields, named and
inline fragments, literal `@include`/`@skip`, `__typename`, nested objects, lists and
connections with edges, cursors and counts) run for several principals with the compiled path
and without, and the responses must be the same JSON, keys in the same order. Data with the
awkward values (quotes, backslashes, control characters, non-ASCII text, whole-second
timestamps, archived projects, long comment threads) is part of the world they run against.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from db.engine import PoolSettings, make_engine
from db.models import Role
from db.principals import Principal
from graph import compiled
from graph.app import create_app
from graph.ids import to_global_id
from graph.schema import build_schema
from graph.settings import Settings
from tests import factories
from tests.conftest import StatementCounter, connections_in_use
from tests.graph.conftest import Api, token_for
from tests.graph.generated import RandomQueries, awkward_world, both, same

USER = ["id", "name", "email", "createdAt", "__typename"]
PROJECT = ["id", "key", "name", "description", "archivedAt", "createdAt", "updatedAt"]
LABEL = ["id", "name", "color", "__typename"]
TASK = [
    "id",
    "number",
    "key",
    "title",
    "description",
    "status",
    "priority",
    "dueDate",
    "version",
    "position",
    "completedAt",
    "createdAt",
    "updatedAt",
    "commentCount",
    "viewerCanEdit",
    "__typename",
]
COMMENT = ["id", "body", "createdAt", "updatedAt", "__typename"]
ACTIVITY = ["id", "kind", "taskKey", "createdAt", "__typename"]
WORKSPACE = ["id", "slug", "name", "createdAt", "viewerRole", "__typename"]
PAGE_INFO = ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor", "__typename"]


class QueryMaker(RandomQueries):
    def directive(self) -> str:
        roll = self.rng.random()
        if roll < 0.05:
            return " @include(if: false)"
        if roll < 0.1:
            return " @skip(if: false)"
        return ""

    def pick(self, names: list[str]) -> list[str]:
        chosen = self.rng.sample(names, self.rng.randint(1, len(names)))
        if self.rng.random() < 0.3:
            chosen.append(self.rng.choice(chosen))  # the same field twice is merged
        return [self.alias(name) + self.directive() for name in chosen]

    def first(self) -> str:
        return self.rng.choice(["", "(first: 0)", "(first: 1)", "(first: 2)", "(first: 100)"])

    def connection(self, make_node: Any) -> str:
        # Nodes are made only when selected: a fragment they define must be used.
        node = make_node if isinstance(make_node, str) else None
        body = []
        roll = self.rng.random()
        if node is None and roll < 0.85:
            node = make_node()
        if roll < 0.6:
            body.append(f"nodes {{ {node} }}")
        if 0.4 < roll < 0.85:
            body.append(
                f"edges {{ {' '.join(self.pick(['cursor', '__typename']))} node {{ {node} }} }}"
            )
        if self.rng.random() < 0.5:
            body.append(f"pageInfo {{ {' '.join(self.pick(PAGE_INFO))} }}")
        if not body or self.rng.random() < 0.4:
            body.append("totalCount")
        if self.rng.random() < 0.1:
            body.append("__typename")
        return " ".join(body)

    def user(self) -> str:
        return " ".join(self.pick(USER))

    def project(self) -> str:
        parts = self.pick(PROJECT)
        if self.rng.random() < 0.3:
            counts = ["backlog", "todo", "inProgress", "inReview", "done", "canceled", "total"]
            parts.append(f"taskCounts {{ {' '.join(self.pick(counts))} }}")
        if self.rng.random() < 0.2:
            parts.append(f"workspace {{ {' '.join(self.pick(WORKSPACE))} }}")
        return " ".join(parts)

    def label(self) -> str:
        parts = self.pick(LABEL)
        if self.rng.random() < 0.2:
            parts.append("workspace { slug }")
        return " ".join(parts)

    def task(self, depth: int = 0) -> str:
        parts = self.pick(TASK)
        objects = {
            "project": self.project,
            "assignee": self.user,
            "creator": self.user,
            "labels": self.label,
        }
        for name, make in objects.items():
            if self.rng.random() < 0.4:
                parts.append(f"{self.alias(name)}{self.directive()} {{ {make()} }}")
        if depth == 0 and self.rng.random() < 0.4:
            comment = " ".join(self.pick(COMMENT))
            if self.rng.random() < 0.5:
                comment += f" author {{ {self.user()} }}"
            parts.append(f"{self.alias('comments')}{self.first()} {{ {self.connection(comment)} }}")
        if depth == 0 and self.rng.random() < 0.4:
            activity = " ".join(self.pick(ACTIVITY))
            if self.rng.random() < 0.6:
                activity += " changes { field from to __typename }"
            if self.rng.random() < 0.4:
                activity += f" actor {{ {self.user()} }}"
            parts.append(f"activity{self.first()} {{ {self.connection(activity)} }}")
        roll = self.rng.random()
        if roll < 0.2:
            name = f"T{len(self.fragments)}"
            self.fragments.append(f"fragment {name} on Task {{ {' '.join(self.pick(TASK))} }}")
            parts.append(f"...{name}")
        elif roll < 0.4:
            parts.append(f"... on Task {{ {' '.join(self.pick(TASK))} }}")
        elif roll < 0.5:
            parts.append("... on Node { id __typename }")
        self.rng.shuffle(parts)
        return " ".join(parts)

    def tasks(self) -> str:
        order = self.rng.choice(
            [
                "",
                "orderBy: [{field: CREATED_AT, direction: ASC}]",
                "orderBy: [{field: PRIORITY, direction: DESC}, {field: NUMBER}]",
                "orderBy: [{field: UPDATED_AT}]",
                "orderBy: [{field: POSITION, direction: DESC}]",
            ]
        )
        first = self.rng.choice(["", "first: 0", "first: 2", "first: 3", "first: 100"])
        arguments = ", ".join(a for a in (order, first) if a)
        arguments = f"({arguments})" if arguments else ""
        return f"tasks{arguments} {{ {self.connection(lambda: self.task(1))} }}"

    def workspace(self) -> str:
        parts = self.pick(WORKSPACE)
        if self.rng.random() < 0.6:
            archived = self.rng.choice(["", "includeArchived: true", "includeArchived: false"])
            args = ", ".join(a for a in (archived, self.first()[1:-1]) if a)
            args = f"({args})" if args else ""
            parts.append(f"projects{args} {{ {self.connection(self.project)} }}")
        if self.rng.random() < 0.3:
            key = self.rng.choice(["ENG", " eng ", "OLD", "NOPE"])
            parts.append(f'{self.alias("project")}(key: "{key}") {{ {self.project()} }}')
        if self.rng.random() < 0.3:
            parts.append(f"labels {{ {self.label()} }}")
        if self.rng.random() < 0.5:
            parts.append(self.tasks())
        return " ".join(parts)

    def query(self, ids: dict[str, str], slugs: list[str]) -> str:
        roots = []
        if self.rng.random() < 0.4:
            roots.append(f"me {{ {self.user()} }}")
        if self.rng.random() < 0.4:
            body = self.connection(self.workspace)
            roots.append(f"{self.alias('workspaces')}{self.first()} {{ {body} }}")
        if self.rng.random() < 0.4:
            roots.append(f'workspace(slug: "{self.rng.choice(slugs)}") {{ {self.workspace()} }}')
        if not roots or self.rng.random() < 0.5:
            kind = self.rng.choice(sorted(ids))
            body = {
                "Task": lambda: self.task(),
                "Project": lambda: self.project() + " " + self.tasks(),
                "Workspace": self.workspace,
                "User": self.user,
            }[kind]()
            spread = f"... on {kind} {{ {body} }}"
            roots.append(f'{self.alias("node")}(id: "{ids[kind]}") {{ __typename {spread} }}')
        if self.rng.random() < 0.1:
            roots.append("__typename")
        return f"query Q {{ {' '.join(roots)} }} " + " ".join(self.fragments)


async def test_generated_queries_give_the_same_answers_compiled_and_not(
    api: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, ids, api_key = await awkward_world(session)
    principals = {
        "owner": token_for(world.users["owner"].id),
        "viewer": token_for(world.users["viewer"].id),
        "outsider": token_for(world.users["outsider"].id),
        "api key": api_key,
        "anonymous": None,
    }
    slugs = [world.workspace.slug, world.other_workspace.slug, "no-such-workspace"]
    compiled_count = 0
    for seed in range(150):
        rng = random.Random(seed)
        maker = QueryMaker(seed)
        query = maker.query({k: rng.choice(v) for k, v in ids.items()}, slugs)
        who = list(principals)[seed % len(principals)]
        used.clear()
        plain, fast = await both(api, monkeypatch, query, principals[who])
        assert "errors" not in json.loads(plain), (query, who, plain)
        assert same(fast) == same(plain), (query, who)
        compiled_count += bool(used)
    # Every generated query is one the compiler knows, and its statement ran without a fault
    # (a failed statement hands over to the normal path, and logs it).
    assert compiled_count == 150
    assert not [r for r in caplog.records if r.name == "graph.view"], caplog.text


async def test_the_compiled_answers_carry_the_awkward_values_exactly(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, used: list[str]
) -> None:
    world, ids, _ = await awkward_world(session)
    query = """query { node(id: "%s") { ... on Task { title description updatedAt
      project { description } comments(first: 2) { pageInfo { endCursor hasNextPage } } } } }"""
    plain, fast = await both(
        api, monkeypatch, query % ids["Task"][0], token_for(world.users["member"].id)
    )
    assert used
    assert same(fast) == same(plain)
    task = json.loads(fast)["data"]["node"]
    assert task["title"] == 'Quote " backslash \\ tab \t'
    assert task["description"] == "Émoji 🚀, newline\nand \x1f control"
    assert task["updatedAt"] == "2026-01-03T00:00:00+00:00"
    assert task["project"]["description"].endswith("\x01 café ✓ \U0001f680")
    assert task["comments"]["pageInfo"]["hasNextPage"] is True
    # The cursor leads to the next page on the normal path.
    after = task["comments"]["pageInfo"]["endCursor"]
    follow = await api.data(
        "query($id: ID!, $after: String) { node(id: $id) { ... on Task { "
        "comments(first: 2, after: $after) { nodes { body } } } } }",
        {"id": ids["Task"][0], "after": after},
        token=token_for(world.users["member"].id),
    )
    assert [c["body"] for c in follow["node"]["comments"]["nodes"]] == ["c2", "c3"]


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        # The normal path answers these with errors or needs what the compiler does not do.
        ('query { node(id: "not-an-id") { id } }', None),
        ("query($id: ID!) { node(id: $id) { id } }", {"id": "VGFzazpub3Q"}),
        ("query { workspaces(first: 101) { nodes { id } } }", None),
        ("query { workspaces(first: -1) { nodes { id } } }", None),
        ('query { workspaces(after: "bad") { nodes { id } } }', None),
        ("query($n: Int) { workspaces(first: $n) { nodes { id } } }", {"n": "x"}),
        ('query($s: String = "acme") { workspace(slug: $s) { id } }', {"s": None}),
        ("query($s: String!) { workspace(slug: $s) { id } }", {}),
        ("query($s: String!) { workspace(slug: $s) { id } }", {"s": 5}),
        ("query { me { id } } query Other { me { name } }", None),
        ("{ __schema { queryType { name } } }", None),
        ("query { me { id", None),
        ("mutation { signOut { ok } }", None),
        ("query { workspaces { nodes { tasks(first: 1, last: 1) { nodes { id } } } } }", None),
        ('query { workspaces { nodes { tasks(last: 1, after: "x") { nodes { id } } } } }', None),
        (
            'query { workspaces { nodes { tasks(filter: {search: "%s"}) { totalCount } } } }'
            % ("x" * 201),
            None,
        ),
    ],
)
async def test_what_the_compiler_cannot_answer_goes_to_the_normal_path(
    api: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    query: str,
    variables: Any,
) -> None:
    plain, fast = await _as_member(api, session, monkeypatch, query, variables)
    assert fast == plain
    assert not used


async def _as_member(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, query: str, variables: Any
) -> tuple[str, str]:
    """The answers of both paths to a member of the factories' world."""
    world = await factories.world(session)
    return await both(api, monkeypatch, query, token_for(world.users["member"].id), variables)


@pytest.mark.parametrize(
    ("query", "variables"),
    [
        ("query($yes: Boolean!) { me @include(if: $yes) { id } }", {"yes": True}),
        ("query($no: Boolean!) { me { id name @skip(if: $no) } }", {"no": True}),
        ('query { node(id: "TGFiZWw6MQ") { id } }', None),
        ('query { nodes(ids: ["TGFiZWw6MQ", "VGFzazox"]) { id __typename } }', None),
        (
            "query { workspaces { nodes { tasks(orderBy: [{field: DUE_DATE}]) { totalCount } } } }",
            None,
        ),
        (
            "query { workspaces { nodes { tasks(filter: {completed: true}) { nodes { id } } } } }",
            None,
        ),
        ("query { workspaces { nodes { tasks(last: 2) { nodes { id } } } } }", None),
        (
            "query($c: String) { workspaces { nodes { tasks(last: 0, before: $c) "
            "{ pageInfo { hasNextPage hasPreviousPage startCursor } } } } }",
            {"c": "WyJDUkVBVEVEX0FUOmQsSUQ6ZCIsWyIyMDI2LTAxLTAxVDAwOjAwOjAwKzAwOjAwIiwxXV0"},
        ),
        # One key written two ways is one task, on both paths.
        (
            'query { workspaces { nodes { a: task(key: "eng-1") { key } '
            'b: task(key: " ENG-1") { key } } } }',
            None,
        ),
        ("query { workspaces { nodes { members { nodes { role user { name } } } } } }", None),
        # Variables left out, given null, or defaulted, as graphql-core coerces them.
        ("query($n: Int) { workspaces(first: $n) { totalCount nodes { slug } } }", {}),
        ("query($n: Int) { workspaces(first: $n) { nodes { slug } } }", {"n": None}),
        ("query($n: Int = 1) { workspaces(first: $n) { nodes { slug } } }", {}),
        ("query($n: Int = 1) { workspaces(first: $n) { nodes { slug } } }", {"n": 2}),
        (
            "query($f: TaskFilter, $n: Int) { workspaces { nodes { tasks(filter: $f, first: $n) "
            "{ totalCount } } } }",
            {"f": {"completed": False}, "extra": 1},
        ),
    ],
)
async def test_shapes_the_compiler_learned_are_compiled(
    api: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    query: str,
    variables: Any,
) -> None:
    plain, fast = await _as_member(api, session, monkeypatch, query, variables)
    assert "errors" not in json.loads(plain)
    assert same(fast) == same(plain)
    assert used


async def test_api_keys_refused_in_the_statement_are_answered_by_the_resolvers(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    # FORBIDDEN for a member, listed for an owner: the statement cannot know in advance which
    # workspaces it meets, so it marks the refusal and the resolvers answer with the error.
    world = await factories.world(session)
    query = "query { workspaces { nodes { slug apiKeys { name } } } }"
    for who, refused in (("member", True), ("owner", False)):
        plain, fast = await both(api, monkeypatch, query, token_for(world.users[who].id))
        assert same(fast) == same(plain)
        errors = json.loads(plain).get("errors", [])
        assert bool(errors) is refused
        if refused:
            assert errors[0]["extensions"]["code"] == "FORBIDDEN"


@pytest.mark.parametrize("credential", ["access token", "API key"])
async def test_one_statement_answers_a_compiled_query(
    api: Api,
    session: AsyncSession,
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    credential: str,
) -> None:
    world, ids, api_key = await awkward_world(session)
    for n in range(30):
        await factories.task(session, world.project, world.users["owner"].id, title=f"More {n}")
    token = token_for(world.users["owner"].id) if credential == "access token" else api_key
    query = """query { me { id } workspaces { nodes { projects { nodes { key } }
      tasks(first: %d) { nodes { key assignee { name } labels { name } } } } }
      node(id: "%s") { ... on Task { comments { nodes { author { name } } } } } }"""
    # An API key's first use records when it was used (once a minute): not counted here.
    await api.data("query { workspaces { totalCount } }", token=token)
    for size in (2, 30):
        with StatementCounter(engine) as counter:
            data = await api.data(query % (size, ids["Task"][0]), token=token)
        assert len(data["workspaces"]["nodes"][0]["tasks"]["nodes"]) == size
        assert used
        # A signed-in user's memberships are read by the same statement; an API key is
        # looked up first.
        assert counter.count == (1 if credential == "access token" else 2), counter.statements


async def test_a_token_of_a_user_who_is_gone_gets_the_normal_answer(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, used: list[str]
) -> None:
    await factories.world(session)
    token = token_for(2**40)  # no such user
    plain, fast = await both(api, monkeypatch, "query { me { id } }", token)
    assert fast == plain
    assert used  # the compiled statement ran, found no user, and handed over
    assert json.loads(fast)["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_statement_rendered_for_one_principal_answers_each_principal_for_itself(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, used: list[str]
) -> None:
    # Statements are kept per operation and variables; the principal's values are parameters.
    world, ids, api_key = await awkward_world(session)
    query = """query Q($task: ID!, $slug: String!) { me { id email }
      node(id: $task) { ... on Task { title viewerCanEdit assignee { email } } }
      workspace(slug: $slug) { viewerRole tasks(first: 2) { totalCount } }
      workspaces { nodes { slug } } }"""
    variables = {"task": ids["Task"][0], "slug": world.workspace.slug}
    answers = {}
    for who in ("owner", "viewer", "outsider", "api key", "anonymous", "owner again"):
        name = who.removesuffix(" again")
        token = {"api key": api_key, "anonymous": None}.get(name)
        if name in world.users:
            token = token_for(world.users[name].id)
        plain, fast = await both(api, monkeypatch, query, token, variables)
        assert same(fast) == same(plain), who
        answers[who] = json.loads(fast)["data"]
    assert answers["owner again"] == answers["owner"]
    assert answers["owner"]["workspace"]["viewerRole"] == "OWNER"
    assert answers["viewer"]["workspace"]["viewerRole"] == "VIEWER"
    assert answers["viewer"]["node"]["viewerCanEdit"] is False
    assert answers["owner"]["node"]["viewerCanEdit"] is True
    assert answers["outsider"]["node"] is None and answers["outsider"]["workspace"] is None
    assert answers["api key"]["me"] is None and answers["api key"]["node"] is not None
    assert answers["anonymous"] == {
        "me": None,
        "node": None,
        "workspace": None,
        "workspaces": {"nodes": []},
    }
    assert len(used) == 6


async def test_a_statement_kept_for_one_id_answers_for_another_of_the_same_type(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, used: list[str]
) -> None:
    world, _, _ = await awkward_world(session)
    token = token_for(world.users["owner"].id)
    query = "query Q($id: ID!) { node(id: $id) { __typename ... on Task { id title } } }"
    for task in world.tasks:
        plain, fast = await both(
            api, monkeypatch, query, token, {"id": to_global_id("Task", task.id)}
        )
        assert same(fast) == same(plain)
        assert json.loads(fast)["data"]["node"]["id"] == to_global_id("Task", task.id)
    project = to_global_id("Project", world.project.id)
    plain, fast = await both(api, monkeypatch, query, token, {"id": project})
    assert (
        json.loads(fast)["data"]["node"]
        == {"__typename": "Project"}
        == json.loads(plain)["data"]["node"]
    )
    assert len(used) == len(world.tasks) + 1


LISTS = {
    "workspaces": "query($after: String) { list: workspaces(first: 1, after: $after) { %s } }",
    "projects": 'query($after: String) { workspace(slug: "%%s") { list: projects(first: 1, '
    "after: $after, includeArchived: true) { %s } } }",
    "tasks": 'query($after: String) { workspace(slug: "%%s") { list: tasks(first: 2, '
    "after: $after, orderBy: %%s) { %s } } }",
    "board": 'query($after: String) { node(id: "%%s") { ... on Project { list: tasks(first: 2, '
    "after: $after) { %s } } } }",
    "comments": 'query($after: String) { node(id: "%%s") { ... on Task { list: comments('
    "first: 2, after: $after) { %s } } } }",
    "activity": 'query($after: String) { node(id: "%%s") { ... on Task { list: activity('
    "first: 2, after: $after) { %s } } } }",
}
PAGE = "totalCount pageInfo { hasNextPage hasPreviousPage startCursor endCursor } edges { cursor }"


def _list(data: dict[str, Any]) -> dict[str, Any]:
    # The list is at the root, or inside the one root field.
    page: dict[str, Any] = data["list"] if "list" in data else next(iter(data.values()))["list"]
    return page


@pytest.mark.parametrize(
    "order",
    [
        "[]",
        "[{field: PRIORITY, direction: DESC}, {field: NUMBER}]",
        "[{field: POSITION}]",
        "[{field: UPDATED_AT, direction: DESC}]",
    ],
)
async def test_pages_after_a_cursor_are_the_same_compiled_and_not(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch, used: list[str], order: str
) -> None:
    world, ids, _ = await awkward_world(session)
    token = token_for(world.users["owner"].id)
    await factories.member(session, world.other_workspace.id, world.users["owner"].id, Role.ADMIN)
    arguments = {
        "workspaces": (),
        "projects": (world.workspace.slug,),
        "tasks": (world.workspace.slug, order),
        "board": (to_global_id("Project", world.project.id),),
        "comments": (ids["Task"][0],),
        "activity": (ids["Task"][0],),
    }
    for name, template in LISTS.items():
        query = (template % PAGE) % arguments[name] if arguments[name] else template % PAGE
        after = None
        pages = 0
        while True:
            used.clear()
            plain, fast = await both(api, monkeypatch, query, token, {"after": after})
            assert used and same(fast) == same(plain), (name, after, plain, fast)
            page = _list(json.loads(fast)["data"])
            pages += 1
            if not page["pageInfo"]["hasNextPage"]:
                break
            after = page["pageInfo"]["endCursor"]
        assert pages >= 2, name
    # A cursor of another ordering is an error, as the normal path reports it.
    used.clear()
    other = (LISTS["board"] % PAGE) % arguments["board"]
    plain, fast = await both(api, monkeypatch, other, token, {"after": after})
    assert fast == plain and "errors" in json.loads(plain)


async def test_compiled_queries_run_on_pooled_connections_without_a_session(
    committed_db: str,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The server (no test session factory) runs a signed-in user's compiled query on a pooled
    # connection of its own, outside any session.
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine) as session:
            world, ids, _ = await awkward_world(session)
            await session.commit()
        app = create_app(settings, engine=engine)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            api = Api(client)
            token = token_for(world.users["owner"].id)
            slugs = [world.workspace.slug, world.other_workspace.slug]
            for seed in range(30):
                rng = random.Random(seed)
                query = QueryMaker(seed).query({k: rng.choice(v) for k, v in ids.items()}, slugs)
                plain, fast = await both(api, monkeypatch, query, token)
                assert same(fast) == same(plain), query
            assert len(used) == 30
            assert not [r for r in caplog.records if r.name == "graph.view"], caplog.text
            with StatementCounter(engine) as counter:
                await api.data("query { me { id } workspaces { nodes { slug } } }", token=token)
            assert counter.count == 1, counter.statements

            # A statement that fails leaves no connection behind and hands over.
            def broken(*args: Any) -> tuple[str, list[Any]]:
                return "SELECT no_such_column FROM users", []

            monkeypatch.setattr(compiled, "statement", broken)
            answer = await api.data("query { me { id } }", token=token)
            assert answer == {"me": {"id": to_global_id("User", world.users["owner"].id)}}
            assert connections_in_use(engine) == 0
    finally:
        await engine.dispose()


def test_kept_statements_are_bounded_and_shared_by_parameters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Variables that are only parameters (a slug, a cursor) share one statement; what changes
    # a statement (another document, a page size of another LIMIT, written in so that
    # PostgreSQL can keep a generic plan) makes another, up to bounds in number and in bytes,
    # the least recently used going first.
    schema = build_schema()._schema
    compiler = compiled.Compiler(schema)
    monkeypatch.setattr(compiled, "KEPT", compiled.Kept())
    operation = compiler.lookup(
        "query Q($slug: String!, $n: Int) { workspace(slug: $slug) { projects(first: $n) "
        "{ nodes { name } } } }",
        None,
    )
    assert operation is not None
    principal = Principal(user_id=1, roles={1: Role.OWNER})
    texts = set()
    for n in range(1, 51):
        sql, params = compiled.statement(schema, operation, principal, {"slug": f"s{n}", "n": 5})
        assert f"s{n}" in params and 5 in params and "LIMIT 6" in sql
        texts.add(sql)
    assert len(texts) == 1
    # The LIMIT is the page and a row more, rounded up to a few sizes: 7 and 10 share one.
    limits = {}
    for n in (0, 1, 2, 5, 7, 10):
        sql, params = compiled.statement(schema, operation, principal, {"slug": "s", "n": n})
        limits[n] = int(sql.split("LIMIT ", 1)[1].split()[0].rstrip(")"))
        assert n in params
    assert limits == {0: 2, 1: 2, 2: 3, 5: 6, 7: 11, 10: 11}
    assert len(compiled.KEPT.shapes) == 5

    monkeypatch.setattr(compiled, "MAX_KEPT", 10)
    first = None
    for n in range(30):
        document = compiler.lookup(
            f"query Q{n} {{ workspaces {{ nodes {{ a{n}: name }} }} }}", None
        )
        assert document is not None
        first = first or document
        compiled.statement(schema, document, principal, {})
        # The first one stays, being used again and again.
        compiled.statement(schema, first, principal, {})
    assert len(compiled.KEPT.shapes) == 10
    assert compiled.KEPT.size == sum(len(s.sql) for s in compiled.KEPT.shapes.values())
    tokens = {key[0] for key in compiled.KEPT.shapes}
    assert first.trees[()] is not None and first.trees[()].token in tokens

    monkeypatch.setattr(compiled, "MAX_KEPT_BYTES", 1)
    another = compiler.lookup("query Z { me { id } }", None)
    assert another is not None
    compiled.statement(schema, another, principal, {})
    assert len(compiled.KEPT.shapes) == 0 and compiled.KEPT.size == 0


def test_large_selections_and_many_directive_combinations_stay_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = build_schema()._schema
    compiler = compiled.Compiler(schema)
    wide = " ".join(f"a{i}: workspaces {{ nodes {{ name slug id }} }}" for i in range(600))
    assert compiler.lookup(f"query {{ {wide} }}", None) is None
    variables = ", ".join(f"$v{i}: Boolean!" for i in range(8))
    fields = " ".join(f"n{i}: name @include(if: $v{i})" for i in range(8))
    operation = compiler.lookup(
        f"query Q({variables}) {{ workspaces {{ nodes {{ {fields} }} }} }}", None
    )
    assert operation is not None
    principal = Principal(user_id=1, roles={1: Role.OWNER})
    for combination in range(40):
        given = {f"v{i}": bool(combination >> i & 1) for i in range(8)}
        compiled.statement(schema, operation, principal, given)
    assert len(operation.trees) == compiled.MAX_TREES
    # `if:` given null: the resolvers answer it with an error.
    with pytest.raises(compiled.Fallback):
        compiled.statement(schema, operation, principal, {**given, "v0": None})


async def test_a_compiled_statement_cut_off_by_the_statement_timeout_is_not_run_twice(
    committed_db: str, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(committed_db, PoolSettings(statement_timeout_ms=100))
    try:
        async with AsyncSession(engine) as session:
            owner = await factories.user(session, "owner")
            await session.commit()
        app = create_app(settings, engine=engine)

        def slow(*args: Any) -> tuple[str, list[Any]]:
            return "SELECT pg_sleep(5)::text", []

        monkeypatch.setattr(compiled, "statement", slow)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            with StatementCounter(engine) as counter:
                response = await client.post(
                    "/graphql",
                    json={"query": "{ me { id } }"},
                    headers={"authorization": f"Bearer {token_for(owner.id)}"},
                )
        assert response.status_code == 200
        assert response.json()["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
        assert counter.statements == ["SELECT pg_sleep(5)::text"]
    finally:
        await engine.dispose()


async def test_a_kept_statement_is_not_used_for_a_variable_that_is_no_id(
    api: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    world, ids, _ = await awkward_world(session)
    token = token_for(world.users["owner"].id)
    query = "query N($id: ID!) { node(id: $id) { id } }"
    await both(api, monkeypatch, query, token, {"id": ids["Task"][0]})
    for bad in (["ID", "Task"], "Task", 7, "VGFzazp4"):
        plain, fast = await both(api, monkeypatch, query, token, {"id": bad})
        assert fast == plain and "errors" in json.loads(plain), bad
    assert not [r for r in caplog.records if r.name == "graph.view"], caplog.text


def test_documents_are_compiled_once_and_long_ones_not_at_all() -> None:
    compiler = compiled.Compiler(build_schema()._schema)
    query = "query { me { id } }"
    first = compiler.lookup(query, None)
    assert first is not None and compiler.lookup(query, None) is first
    padded = query + " " * compiled.MAX_QUERY_CHARS
    assert compiler.lookup(padded, None) is None
    assert len(compiler.cache) == 1
