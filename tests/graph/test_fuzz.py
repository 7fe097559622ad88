"""Fuzzing the API with operations generated from the served schema (hypothesis-graphql).

Valid operations (queries and mutations that pass the schema's validation) and invalid ones
(one schema violation each, or a broken document) go through the real app as signed-in users
of every role, anonymously and as API keys. Whatever the operation, the answer must be a
client's answer: no 5xx, a GraphQL JSON body, a code on every error, never a masked internal
error, and within 2 seconds.

How Hypothesis and the event loop meet: the operations are drawn first, by a @given-decorated
synchronous function run inside the async test (derandomized, so every run draws the same
documents for the same world), and only then sent, one by one, on the test's event loop.
Running the requests inside an async @given test would make every example share the test's
function-scoped fixtures anyway (one app, one rolled-back transaction), and the counts of
operations sent could not be asserted in the test that sent them. Drawing first also reports
every failing operation of a run at once instead of the first one, shrunk; the drawn documents
start small, so the first failures are small too.

Each operation runs in a savepoint that is rolled back afterwards: every operation meets the
same world, so a failure reproduces alone, with the world below and the operation.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from datetime import UTC
from typing import Any

import graphql
import hypothesis
import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from hypothesis_graphql import Mode, from_schema, nodes
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from db import api_keys
from db.models import ApiScope
from db.principals import user_principal
from graph.ids import to_global_id
from graph.schema import build_schema
from graph.settings import Settings
from tests import factories
from tests.graph.conftest import SECRET, Api, token_for

SCHEMA = build_schema().as_str()
GRAPHQL_SCHEMA = graphql.build_schema(SCHEMA)
# FUZZ_SCALE=10 sends ten times as many operations; FUZZ_SEED=<n> draws other ones than the
# fixed ones of the suite: for a longer hunt by hand.
SCALE = int(os.environ.get("FUZZ_SCALE", "1"))
SEED = os.environ.get("FUZZ_SEED")
VALID_OPERATIONS = 300 * SCALE
INVALID_OPERATIONS = 100 * SCALE
ANSWER_SECONDS = 2.0
# A valid operation may still be refused by the server's own rules (page sizes, limits,
# malformed ids), but never as a document that the schema rejects.
DOCUMENT_CODES = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}
# What an invalid operation may be answered with.
INVALID_CODES = DOCUMENT_CODES | {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX", "BAD_REQUEST"}
USERS = ["owner", "admin", "member", "viewer", "outsider", "anonymous"]
KEYS = ["write key", "read key"]
# Stands for "an existing id of the type this argument takes": the ID strategy cannot know
# where its value goes, the printer (`Ids.print`) does.
TYPED = "\x00typed-id:"
# The type of object an ID argument or input field names, by its name ...
ID_TYPES = {
    "taskId": "Task",
    "afterTaskId": "Task",
    "beforeTaskId": "Task",
    "projectId": "Project",
    "projectIds": "Project",
    "workspaceId": "Workspace",
    "labelIds": "Label",
    "assigneeId": "User",
    "assigneeIds": "User",
    "userId": "User",
}
# ... and for an input's `id`, by the mutation.
MUTATION_ID_TYPES = {
    "updateWorkspace": "Workspace",
    "updateProject": "Project",
    "archiveProject": "Project",
    "updateTask": "Task",
    "deleteTask": "Task",
    "updateLabel": "Label",
    "deleteLabel": "Label",
    "updateComment": "Comment",
    "deleteComment": "Comment",
    "revokeApiKey": "ApiKey",
}


@pytest.fixture
def settings() -> Settings:
    """Overrides conftest's `settings`, which the `api` fixture builds the app from.

    Rate limits and log-in limits would answer most of the run with RATE_LIMITED and run
    nothing; they have tests of their own (test_rate_limits.py, test_login_limits.py)."""
    return Settings(
        database_url="postgresql+asyncpg://unused/test",
        secret_key=SECRET,
        rate_limits=False,
        login_attempts_per_email=1_000_000,
        login_attempts_per_address=1_000_000,
    )


@dataclass
class Ids:
    """The global ids of the world's objects, by type, and the printer that puts them where
    the schema takes an ID of that type."""

    by_type: dict[str, list[str]]

    @property
    def every(self) -> list[str]:
        return [gid for ids in self.by_type.values() for gid in ids]

    def print(self, document: graphql.DocumentNode) -> str:
        return graphql.print_ast(graphql.visit(document, _TypedIdFiller(self)))

    def of(self, wanted: str | None, index: int) -> str:
        choices = self.by_type[wanted] if wanted else self.every
        return choices[index % len(choices)]


class _TypedIdFiller(graphql.Visitor):
    """Replaces each TYPED placeholder by an existing id of the type its argument takes."""

    def __init__(self, ids: Ids) -> None:
        super().__init__()
        self.ids = ids

    def enter_string_value(
        self, node: graphql.StringValueNode, _key: Any, parent: Any, _path: Any, ancestors: Any
    ) -> graphql.StringValueNode | None:
        if not node.value.startswith(TYPED):
            return None
        lineage = [*ancestors, parent]
        holder = next(
            a
            for a in reversed(lineage)
            if isinstance(a, graphql.ArgumentNode | graphql.ObjectFieldNode)
        )
        root = next(a for a in lineage if isinstance(a, graphql.FieldNode))
        name = holder.name.value
        wanted = ID_TYPES.get(name)
        if wanted is None and name == "id":
            wanted = MUTATION_ID_TYPES.get(root.name.value)
        return nodes.String(self.ids.of(wanted, int(node.value[len(TYPED) :])))


@dataclass
class Fuzzed:
    """A world, the bearer tokens of its principals, and values that mean something in it."""

    world: factories.World
    bearers: dict[str, str | None]
    ids: Ids
    strings: list[str]


async def fuzzed_world(session: AsyncSession) -> Fuzzed:
    w = await factories.world(session)
    newcomer = await factories.user(session, "newcomer")
    comments = [
        await factories.comment(session, w.tasks[0].id, w.users[name].id)
        for name in ("member", "owner")
    ]
    activity = await factories.activity(session, w.tasks[0], "ENG-1", w.users["owner"].id)
    owner = await user_principal(session, w.users["owner"].id)
    assert owner is not None
    read = await api_keys.create_api_key(session, owner, w.workspace.id, "r", [ApiScope.READ])
    write = await api_keys.create_api_key(session, owner, w.workspace.id, "w", [ApiScope.WRITE])
    # The key whose id operations get, to read or revoke it: not one they are sent with.
    spare = await api_keys.create_api_key(session, owner, w.workspace.id, "s", [ApiScope.READ])
    await session.commit()
    bearers: dict[str, str | None] = {name: token_for(u.id) for name, u in w.users.items()}
    bearers |= {"anonymous": None, "read key": read.secret, "write key": write.secret}
    rows = {
        "User": [*w.users.values(), newcomer],
        "Workspace": [w.workspace, w.other_workspace],
        "Project": [w.project, w.other_project],
        "Task": [*w.tasks, w.other_task],
        "Label": [*w.labels, w.other_label],
        "Comment": comments,
        "Activity": [activity],
        "ApiKey": [spare.row],
    }
    ids = Ids({kind: [to_global_id(kind, row.id) for row in found] for kind, found in rows.items()})
    # Slugs, keys, e-mails, the password, colours: random text would seldom get past the
    # first check of a mutation.
    strings = [w.workspace.slug, w.other_workspace.slug, *(u.email for u in rows["User"])]
    strings += [factories.PASSWORD, "ENG", "OPS", "NEW", "ENG-1", "ENG-3", "OPS-1"]
    strings += ["new-place", "bug", "Bug", "#d73a4a", "#00FF00", "A fine title", "", " "]
    return Fuzzed(world=w, bearers=bearers, ids=ids, strings=strings)


def custom_scalars(fuzzed: Fuzzed) -> dict[str, st.SearchStrategy[graphql.ValueNode]]:
    """Value nodes for ID and the schema's own scalars (Date, DateTime, which hypothesis-graphql
    needs to be given), and for String and Int, mixing values that mean something in the world
    with random ones."""
    typed = st.integers(min_value=0, max_value=99).map(lambda k: f"{TYPED}{k}")
    # Well-formed ids of objects that do not exist, ids of unknown types, and plain junk.
    made_up = st.builds(
        to_global_id,
        st.sampled_from(["User", "Task", "Workspace", "Label", "ApiKey", "Membership"]),
        st.integers(min_value=1, max_value=2**63 - 1),
    ) | st.text(max_size=20)
    ids = st.one_of(typed, typed, typed, st.sampled_from(fuzzed.ids.every), made_up)
    strings = st.one_of(st.sampled_from(fuzzed.strings), st.text(max_size=30))
    ints = st.one_of(
        st.sampled_from([0, 1, 2, 3, 5, 50, 100, 101, -1]),
        st.integers(min_value=-(2**31), max_value=2**31 - 1),
    )
    dates = st.dates().map(lambda d: d.isoformat())
    datetimes = st.datetimes(timezones=st.just(UTC)).map(lambda t: t.isoformat())
    return {
        "ID": ids.map(nodes.String),
        "String": strings.map(nodes.String),
        "Int": ints.map(nodes.Int),
        "Date": dates.map(nodes.String),
        "DateTime": datetimes.map(nodes.String),
    }


def operations(fuzzed: Fuzzed, mode: Mode = Mode.POSITIVE) -> st.SearchStrategy[str]:
    return from_schema(
        SCHEMA, custom_scalars=custom_scalars(fuzzed), print_ast=fuzzed.ids.print, mode=mode
    )


BREAKS = ["truncate", "stray brace", "unknown field", "unknown argument"]


def break_document(document: str, how: str, where: int) -> str:
    """A broken copy of a valid document: each way gives a parse or validation error."""
    if how == "truncate":
        # A proper prefix of a printed document leaves a brace open or a string unterminated.
        return document[: 1 + where % (len(document) - 1)]
    if how == "stray brace":
        return document + " }"
    if how == "unknown field":
        # The first brace opens the operation's selection set: no argument comes before it.
        return document.replace("{", "{ fuzzUnknownField ", 1)
    if how == "unknown argument":
        return document.replace("{", "{ __typename(fuzz: 1) ", 1)
    raise AssertionError(how)


def bad_date_operations(fuzzed: Fuzzed) -> st.SearchStrategy[str]:
    """Dates that are no dates, where the schema takes a Date."""
    bad = st.sampled_from(["2026-02-30", "2026-13-01", "tomorrow", "", "0000-01-01"]) | st.text(
        max_size=12
    ).filter(lambda s: not s[:1].isdigit())
    literal = bad.map(json.dumps) | st.sampled_from(["1", "1.5", "true", "[]", "{}"])
    project = json.dumps(to_global_id("Project", fuzzed.world.project.id))
    slug = json.dumps(fuzzed.world.workspace.slug)
    shapes = st.sampled_from(
        [
            f"{{ workspace(slug: {slug}) {{ tasks(filter: {{dueBefore: %s}}) "
            "{ totalCount } } }",
            f'mutation {{ createTask(input: {{projectId: {project}, title: "t", dueDate: %s}}) '
            "{ task { id } userErrors { code } } }",
        ]
    )
    return st.builds(lambda shape, value: shape % value, shapes, literal)


def draw_all(strategy: st.SearchStrategy[str], count: int) -> list[str]:
    """`count` examples of `strategy`, the same ones on every run (see the module's doc)."""
    drawn: list[str] = []

    @hypothesis.settings(
        max_examples=count,
        derandomize=SEED is None,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(strategy)
    def collect(document: str) -> None:
        drawn.append(document)

    if SEED is not None:
        collect = hypothesis.seed(int(SEED))(collect)
    collect()
    return drawn


def with_variables(document: str) -> tuple[str, dict[str, Any]]:
    """The same operation with every argument passed as a variable: values then go through
    variable coercion and the server's argument conversion instead of literal parsing."""
    type_info = graphql.TypeInfo(GRAPHQL_SCHEMA)
    definitions: list[graphql.VariableDefinitionNode] = []
    values: dict[str, Any] = {}

    class Lift(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> graphql.ArgumentNode:
            argument = type_info.get_argument()
            assert argument is not None, node
            name = f"v{len(values)}"
            values[name] = graphql.value_from_ast_untyped(node.value)
            variable = graphql.VariableNode(name=graphql.NameNode(value=name))
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=variable, type=graphql.parse_type(str(argument.type))
                )
            )
            return graphql.ArgumentNode(name=node.name, value=variable)

        def leave_operation_definition(
            self, node: graphql.OperationDefinitionNode, *_: Any
        ) -> graphql.OperationDefinitionNode:
            return graphql.OperationDefinitionNode(
                operation=node.operation,
                name=node.name,
                variable_definitions=tuple(definitions),
                directives=node.directives,
                selection_set=node.selection_set,
            )

    lifted = graphql.visit(graphql.parse(document), graphql.TypeInfoVisitor(type_info, Lift()))
    return graphql.print_ast(lifted), values


@dataclass
class Failure:
    operation: str
    variables: dict[str, Any] | None
    principal: str
    problem: str
    answer: str

    def __str__(self) -> str:
        variables = f"variables: {json.dumps(self.variables)}\n" if self.variables else ""
        return (
            f"{self.problem} as {self.principal}:\n{self.operation}\n{variables}"
            f"-> {self.answer[:600]}"
        )


async def send(
    api: Api,
    connection: AsyncConnection,
    operation: str,
    variables: dict[str, Any] | None,
    bearer: str | None,
) -> tuple[int, Any, float]:
    savepoint = await connection.begin_nested()
    try:
        started = time.perf_counter()
        response = await api.post(operation, variables, token=bearer)
        elapsed = time.perf_counter() - started
    finally:
        await savepoint.rollback()
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body, elapsed


def problems_of(status: int, body: Any, elapsed: float, *, valid: bool) -> list[str]:
    found: list[str] = []
    if status >= 500:
        found.append(f"HTTP {status}")
    if elapsed > ANSWER_SECONDS:
        found.append(f"answered in {elapsed:.2f} s")
    if not isinstance(body, dict) or not ({"data", "errors"} & body.keys()):
        return [*found, "no GraphQL JSON body"]
    errors = body.get("errors") or []
    codes = [(error.get("extensions") or {}).get("code") for error in errors]
    if None in codes:
        found.append("an error without extensions.code")
    if "INTERNAL_SERVER_ERROR" in codes:
        found.append("INTERNAL_SERVER_ERROR")
    if valid and DOCUMENT_CODES & set(codes):
        found.append(f"a valid document refused: {codes}")
    if not valid and not errors:
        found.append("an invalid document answered without errors")
    if not valid and errors and not set(codes) <= INVALID_CODES:
        found.append(f"an invalid document answered with {codes}")
    return found


async def test_generated_operations_get_client_answers_only(
    api: Api, connection: AsyncConnection, session: AsyncSession
) -> None:
    fuzzed = await fuzzed_world(session)
    valid = draw_all(operations(fuzzed), VALID_OPERATIONS)
    invalid = draw_all(operations(fuzzed, Mode.NEGATIVE), INVALID_OPERATIONS // 2)
    invalid += draw_all(
        st.builds(
            break_document, operations(fuzzed), st.sampled_from(BREAKS), st.integers(min_value=0)
        ),
        INVALID_OPERATIONS // 4,
    )
    invalid += draw_all(bad_date_operations(fuzzed), INVALID_OPERATIONS // 4)

    failures: list[Failure] = []
    sent = {True: 0, False: 0}
    mutations = {True: 0, False: 0}
    lifted = 0
    for is_valid, documents in ((True, valid), (False, invalid)):
        for index, operation in enumerate(documents):
            variables = None
            # Every other valid operation passes its arguments as variables.
            if is_valid and index % 2:
                operation, variables = with_variables(operation)
                lifted += 1
            # Every operation goes once as a user (or anonymously) and once as an API key.
            for principal in (USERS[index % len(USERS)], KEYS[index % len(KEYS)]):
                status, body, elapsed = await send(
                    api, connection, operation, variables, fuzzed.bearers[principal]
                )
                for problem in problems_of(status, body, elapsed, valid=is_valid):
                    answer = json.dumps(body)
                    failures.append(Failure(operation, variables, principal, problem, answer))
            sent[is_valid] += 1
            mutations[is_valid] += operation.lstrip().startswith("mutation")

    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(map(str, failures))
    assert sent[True] >= VALID_OPERATIONS and sent[False] >= INVALID_OPERATIONS, sent
    assert len(set(valid)) >= VALID_OPERATIONS * 0.9, "too few distinct valid operations"
    # Queries and mutations both, valid and invalid.
    assert mutations[True] >= VALID_OPERATIONS // 4, mutations
    assert sent[True] - mutations[True] >= VALID_OPERATIONS // 4, mutations
    assert mutations[False] >= 10 and sent[False] - mutations[False] >= 10, mutations
    assert lifted >= VALID_OPERATIONS // 2


def test_broken_documents_are_refused_by_the_schema() -> None:
    """The oracle of the broken documents: each way of breaking one gives a parse or a
    validation error, also when a string argument holds braces."""
    schema = graphql.build_schema(SCHEMA)
    document = '{ workspace(slug: "a{b}") { name } }'
    assert not graphql.validate(schema, graphql.parse(document))
    for how in BREAKS:
        for where in range(len(document) + 3):
            broken = break_document(document, how, where)
            try:
                errors = graphql.validate(schema, graphql.parse(broken))
            except graphql.GraphQLError:
                continue
            assert errors, (how, broken)


def test_typed_ids_go_where_the_schema_takes_an_id_of_their_type() -> None:
    ids = Ids({"Task": ["T1", "T2"], "Label": ["L1"], "Project": ["P1"], "User": ["U1"]})
    document = graphql.parse(
        'mutation { updateTask(input: {id: "@1", afterTaskId: "@0", assigneeId: "x"}) '
        '{ task { project { tasks(filter: {labelIds: ["@5", "y"]}) { totalCount } } } } '
        'addLabelsToTask(input: {taskId: "@0", labelIds: ["@3"]}) { task { id } } } '
        'query { node(id: "@4") { id } }'.replace("@", TYPED)
    )
    printed = ids.print(document)
    assert TYPED not in printed
    assert 'id: "T2", afterTaskId: "T1", assigneeId: "x"' in printed
    assert 'labelIds: ["L1", "y"]' in printed
    assert 'taskId: "T1", labelIds: ["L1"]' in printed
    # An id of any type where the schema takes any.
    assert 'node(id: "U1")' in printed


def test_arguments_become_variables_of_their_types() -> None:
    document, variables = with_variables(
        'mutation { createTask(input: {projectId: "p", title: "t", priority: HIGH}) '
        "{ task { project { tasks(first: 5, filter: {status: [TODO]}) { totalCount } } } } }"
    )
    assert not graphql.validate(GRAPHQL_SCHEMA, graphql.parse(document))
    assert document.startswith("mutation ($v0: CreateTaskInput!, $v1: Int, $v2: TaskFilter) {")
    assert "createTask(input: $v0)" in document
    assert "tasks(first: $v1, filter: $v2)" in document
    assert variables == {
        "v0": {"projectId": "p", "title": "t", "priority": "HIGH"},
        "v1": 5,
        "v2": {"status": ["TODO"]},
    }
