"""Fuzzing the API with operations generated from the served schema (hypothesis-graphql).

Valid operations (queries and mutations that pass the schema's validation) and invalid ones
(one schema violation each, or a broken document) go through the real app as signed-in users
of every role, anonymously and as API keys. Whatever the operation, the answer must be a
client's answer: no 5xx, a GraphQL JSON body, a code on every error, never a masked internal
error, and within 2 seconds of the server's CPU (10 of the clock: a machine shared with other
work stretches the clock, not the work).

The values are the world's where they can be: an ID argument gets an existing id of the type
it takes (or of another, or a made-up one), an `after`/`before` a real cursor of that list or
one forged from it, strings are slugs, keys, e-mails or random text (lone surrogates too), and
every other valid operation passes its arguments as JSON variables instead of literals.

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

import base64
import dataclasses
import json
import os
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
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
# The server's CPU for one answer (the app runs in this process), and the clock's.
ANSWER_CPU_SECONDS = 2.0
ANSWER_SECONDS = 10.0
# A valid operation may still be refused by the server's own rules (page sizes, limits,
# malformed ids), but never as a document that the schema rejects.
DOCUMENT_CODES = {"GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED"}
# What an invalid operation may be answered with.
INVALID_CODES = DOCUMENT_CODES | {"BAD_USER_INPUT", "QUERY_TOO_COMPLEX", "BAD_REQUEST"}
USERS = ["owner", "admin", "member", "viewer", "outsider", "anonymous"]
KEYS = ["write key", "read key"]
# Placeholders for "an existing id of the type this argument takes" and "a cursor of this
# list": the scalars' strategies cannot know where their values go, the printer
# (`Placeholders.print`) does.
TYPED = "\x00typed-id:"
CURSOR = "\x00cursor:"
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
class Placeholders:
    """What the world's placeholders stand for, and the printer that puts it in their place:
    ids by type where the schema takes an ID of that type, cursors by the list they page."""

    ids: dict[str, list[str]]
    cursors: dict[str, list[str]] = dataclasses.field(default_factory=dict)

    @property
    def every_id(self) -> list[str]:
        return [gid for ids in self.ids.values() for gid in ids]

    def print(self, document: graphql.DocumentNode) -> str:
        type_info = graphql.TypeInfo(GRAPHQL_SCHEMA)
        filler = graphql.TypeInfoVisitor(type_info, _Filler(self, type_info))
        return graphql.print_ast(graphql.visit(document, filler))

    def id(self, wanted: str | None, index: int) -> str:
        choices = self.ids[wanted] if wanted else self.every_id
        return choices[index % len(choices)]

    def cursor(self, page: str, choice: list[Any]) -> str:
        """A real cursor of that list (or of any), or one forged from it with another value."""
        choices = self.cursors.get(page) or [c for cs in self.cursors.values() for c in cs]
        real = choices[choice[0] % len(choices)]
        if len(choice) == 1:
            return real
        _, index, value = choice
        ordering, values = json.loads(base64.urlsafe_b64decode(real + "=" * (-len(real) % 4)))
        values[index % len(values)] = value
        forged = json.dumps([ordering, values]).encode()
        return base64.urlsafe_b64encode(forged).decode().rstrip("=")


def page_of(parent_type: str, list_field: str, ordered: bool) -> str:
    """The name of a list's pages in one ordering: its own order, or one asked for."""
    return f"{parent_type}.{list_field}" + (" ordered" if ordered else "")


class _Filler(graphql.Visitor):
    """Replaces each placeholder by what it stands for where it stands."""

    def __init__(self, placeholders: Placeholders, type_info: graphql.TypeInfo) -> None:
        super().__init__()
        self.placeholders = placeholders
        self.type_info = type_info

    def enter_string_value(
        self, node: graphql.StringValueNode, _key: Any, parent: Any, _path: Any, ancestors: Any
    ) -> graphql.StringValueNode | None:
        lineage = [*ancestors, parent]
        fields = [a for a in lineage if isinstance(a, graphql.FieldNode)]
        if node.value.startswith(CURSOR):
            choice = json.loads(node.value[len(CURSOR) :])
            return nodes.String(self.placeholders.cursor(self._page(fields[-1]), choice))
        if not node.value.startswith(TYPED):
            return None
        holder = next(
            a
            for a in reversed(lineage)
            if isinstance(a, graphql.ArgumentNode | graphql.ObjectFieldNode)
        )
        name = holder.name.value
        wanted = ID_TYPES.get(name)
        if wanted is None and name == "id":
            wanted = MUTATION_ID_TYPES.get(fields[0].name.value)
        return nodes.String(self.placeholders.id(wanted, int(node.value[len(TYPED) :])))

    def _page(self, field_node: graphql.FieldNode) -> str:
        parent = self.type_info.get_parent_type()
        ordered = any(
            argument.name.value == "orderBy"
            and not isinstance(argument.value, graphql.NullValueNode)
            and not (
                isinstance(argument.value, graphql.ListValueNode) and not argument.value.values
            )
            for argument in field_node.arguments
        )
        return page_of(parent.name if parent else "", field_node.name.value, ordered)


@dataclass
class Fuzzed:
    """A world, the bearer tokens of its principals, and values that mean something in it."""

    world: factories.World
    bearers: dict[str, str | None]
    placeholders: Placeholders
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
    ids = {kind: [to_global_id(kind, row.id) for row in found] for kind, found in rows.items()}
    # Slugs, keys, e-mails, the password, colours: random text would seldom get past the
    # first check of a mutation.
    strings = [w.workspace.slug, w.other_workspace.slug, *(u.email for u in rows["User"])]
    strings += [factories.PASSWORD, "ENG", "OPS", "NEW", "ENG-1", "ENG-3", "OPS-1"]
    strings += ["new-place", "bug", "Bug", "#d73a4a", "#00FF00", "A fine title", "", " "]
    return Fuzzed(world=w, bearers=bearers, placeholders=Placeholders(ids), strings=strings)


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
    ids = st.one_of(typed, typed, typed, st.sampled_from(fuzzed.placeholders.every_id), made_up)
    # Lone surrogates cannot be encoded in UTF-8, but JSON carries them as escapes.
    odd_text = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters())
    forged_cursors = st.builds(
        lambda k, i, value: CURSOR + json.dumps([k, i, value]),
        st.integers(min_value=0, max_value=99),
        st.integers(min_value=0, max_value=9),
        CURSOR_VALUES,
    )
    strings = st.one_of(
        st.sampled_from(fuzzed.strings),
        st.text(max_size=30),
        odd_text,
        # A real cursor of the list, or one with a value changed (see `Placeholders.cursor`).
        st.integers(min_value=0, max_value=99).map(lambda k: CURSOR + json.dumps([k])),
        forged_cursors,
        forged_cursors,
    )
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


# Values a cursor's key may be given: of every JSON type, at the edges of bigint and beyond.
EDGES = st.sampled_from([2**63, 2**63 - 1, -(2**63) - 1, 2**64 - 1, -1])
CURSOR_VALUES = st.one_of(
    EDGES,
    EDGES,
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=10),
    st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=14))])).map(
        datetime.isoformat
    ),
    st.dates().map(date.isoformat),
    st.none(),
    st.booleans(),
)


# Cursors of every list and ordering, to be replayed and forged; an alias names the list's
# type and field, and "ordered" when the pages are in an order asked for.
CURSORS = """query($key: String!, $slug: String!) {
  Query__workspaces: workspaces { edges { cursor } }
  workspace(slug: $slug) {
    Workspace__members: members { edges { cursor } }
    Workspace__projects: projects(includeArchived: true) { edges { cursor } }
    Workspace__tasks: tasks { pageInfo { startCursor endCursor } }
    Workspace__tasks__due: tasks(orderBy: [{field: DUE_DATE}]) {
      pageInfo { startCursor endCursor } }
    Workspace__tasks__priority: tasks(
      orderBy: [{field: PRIORITY, direction: DESC}, {field: UPDATED_AT}]) {
      pageInfo { startCursor endCursor } }
    project(key: "ENG") {
      Project__tasks: tasks { pageInfo { startCursor endCursor } }
      Project__tasks__number: tasks(orderBy: [{field: NUMBER}, {field: CREATED_AT}]) {
        pageInfo { startCursor endCursor } }
    }
    task(key: $key) {
      Task__comments: comments { edges { cursor } }
      Task__activity: activity { edges { cursor } }
    }
  }
}"""


def cursors_by_page(value: Any, found: dict[str, set[str]], page: str = "") -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            if key.lower().endswith("cursor") and inner:
                found.setdefault(page, set()).add(inner)
            parts = key.split("__")
            inner_page = page_of(parts[0], parts[1], len(parts) > 2) if len(parts) > 1 else page
            cursors_by_page(inner, found, inner_page)
    elif isinstance(value, list):
        for inner in value:
            cursors_by_page(inner, found, page)


def operations(fuzzed: Fuzzed, mode: Mode = Mode.POSITIVE) -> st.SearchStrategy[str]:
    return from_schema(
        SCHEMA,
        custom_scalars=custom_scalars(fuzzed),
        print_ast=fuzzed.placeholders.print,
        mode=mode,
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
) -> tuple[int, Any, tuple[float, float]]:
    savepoint = await connection.begin_nested()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        # Encoded here, not by httpx, which cannot encode lone surrogates.
        response = await api.client.post(
            "/graphql",
            content=json.dumps({"query": operation, "variables": variables or {}}),
            headers={"content-type": "application/json"}
            | ({"authorization": f"Bearer {bearer}"} if bearer else {}),
        )
        elapsed = time.perf_counter() - started
        used = time.process_time() - cpu
    finally:
        await savepoint.rollback()
    try:
        body = response.json()
    except ValueError:
        body = response.text
    return response.status_code, body, (elapsed, used)


def problems_of(status: int, body: Any, took: tuple[float, float], *, valid: bool) -> list[str]:
    found: list[str] = []
    if status >= 500:
        found.append(f"HTTP {status}")
    elapsed, used = took
    if elapsed > ANSWER_SECONDS or used > ANSWER_CPU_SECONDS:
        found.append(f"answered in {elapsed:.2f} s ({used:.2f} s of CPU)")
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
    variables = {"key": "ENG-1", "slug": fuzzed.world.workspace.slug}
    found = await api.data(CURSORS, variables, token=fuzzed.bearers["owner"])
    cursors: dict[str, set[str]] = {}
    cursors_by_page(found, cursors)
    fuzzed.placeholders.cursors = {page: sorted(found) for page, found in cursors.items()}
    assert len(fuzzed.placeholders.cursors) == 9, cursors
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
                status, body, took = await send(
                    api, connection, operation, variables, fuzzed.bearers[principal]
                )
                for problem in problems_of(status, body, took, valid=is_valid):
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
    ids = Placeholders({"Task": ["T1", "T2"], "Label": ["L1"], "Project": ["P1"], "User": ["U1"]})
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


def test_cursor_placeholders_become_cursors_of_their_list() -> None:
    tasks = base64.urlsafe_b64encode(b'["ID:a",[7]]').decode().rstrip("=")
    placeholders = Placeholders({}, {"Workspace.tasks": [tasks], "Workspace.members": ["M"]})
    marks = [CURSOR + json.dumps(choice) for choice in ([0], [3, 0, 2**63], [1])]
    document = graphql.parse(
        '{ workspaces(after: "@0") { nodes { tasks(after: "@1", orderBy: []) { totalCount } '
        'members(before: "@2") { totalCount } } } }'.replace("@0", marks[0])
        .replace("@1", marks[1])
        .replace("@2", marks[2])
    )
    printed = placeholders.print(document)
    forged = base64.urlsafe_b64encode(b'["ID:a", [9223372036854775808]]').decode().rstrip("=")
    # A list without cursors of its own gets any list's.
    assert f'workspaces(after: "{tasks}")' in printed
    assert f'tasks(after: "{forged}", orderBy: [])' in printed
    assert 'members(before: "M")' in printed
