"""What the generators of random queries share (tests/graph/test_fast_lists.py,
tests/graph/test_compiled.py and tests/graph/test_read_corpus.py): a seeded source of choices,
numbered aliases, arguments written as literals or as variables, the world with the awkward
values they run against, the comparison of both read paths, and `Shape`, what a query
selects once its fragments and directives are applied."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from typing import Any

import pytest
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInputObjectType,
    GraphQLInputType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_enum_type,
    is_object_type,
    parse,
    parse_type,
    type_from_ast,
)
from graphql.language.print_string import print_string
from graphql.utilities import value_from_ast_untyped
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import create_api_key
from db.errors import InvalidArgument
from db.models import ApiScope, Project, Role, Task
from db.principals import Principal
from graph import compiled
from graph.ids import from_global_id, to_global_id
from graph.schema import build_schema
from tests import factories
from tests.graph.conftest import Api


@cache
def schema() -> GraphQLSchema:
    return build_schema()._schema


class RandomQueries:
    """The parts of a query being generated: its choices come from `rng`, seeded."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fragments: list[str] = []
        self.aliases = 0
        # Variables of the operation: their definitions ("$v1: Int = 2") and the values sent.
        self.definitions: list[str] = []
        self.variables: dict[str, Any] = {}

    def alias(self, name: str) -> str:
        if self.rng.random() < 0.2:
            return self.fresh_alias(name)
        return name

    def fresh_alias(self, name: str) -> str:
        self.aliases += 1
        return f"a{self.aliases}: {name}"

    def variable(self, type_: str, value: Any, default: bool = False) -> str:
        """A new variable of `type_` holding `value`; with `default`, the value is the
        variable's default and the request leaves it out."""
        name = f"v{len(self.definitions) + 1}"
        if default:
            literal = _literal(type_from_ast(schema(), parse_type(type_)), value)  # type: ignore[arg-type]
            self.definitions.append(f"${name}: {type_} = {literal}")
        else:
            self.definitions.append(f"${name}: {type_}")
            self.variables[name] = value
        return f"${name}"

    def argument(self, type_: str, value: Any, variables: float = 0.35) -> str:
        """`value` for a position of type `type_`, as a literal or (with the chance
        `variables`) as a variable; an input object's fields may be variables of their own."""
        return self._given(type_from_ast(schema(), parse_type(type_)), value, variables)  # type: ignore[arg-type]

    def _given(self, type_: GraphQLInputType, value: Any, variables: float) -> str:
        if value is not None and self.rng.random() < variables:
            nullable = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
            # A nullable position takes a variable of the type or of its non-null form.
            written = (
                str(type_)
                if isinstance(type_, GraphQLNonNull) or self.rng.random() < 0.5
                else f"{nullable}!"
            )
            return self.variable(written, value, default=self.rng.random() < 0.15)
        named = type_.of_type if isinstance(type_, GraphQLNonNull) else type_
        if isinstance(named, GraphQLList) and isinstance(value, list):
            items = [self._given(named.of_type, item, variables / 2) for item in value]
            return "[" + ", ".join(items) + "]"
        if isinstance(named, GraphQLInputObjectType) and isinstance(value, dict):
            inner = [
                f"{key}: {self._given(named.fields[key].type, item, variables)}"
                for key, item in value.items()
            ]
            return "{" + ", ".join(inner) + "}"
        return _literal(type_, value)

    def operation(self, body: str, name: str = "Q") -> str:
        """The query with its variable definitions and fragments."""
        definitions = f"({', '.join(self.definitions)})" if self.definitions else ""
        return f"query {name}{definitions} {{ {body} }} " + " ".join(self.fragments)


def _literal(type_: GraphQLInputType, value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(type_, GraphQLNonNull):
        return _literal(type_.of_type, value)
    if isinstance(type_, GraphQLList):
        items = value if isinstance(value, list) else [value]
        return "[" + ", ".join(_literal(type_.of_type, v) for v in items) + "]"
    if isinstance(type_, GraphQLInputObjectType):
        fields = [f"{k}: {_literal(type_.fields[k].type, v)}" for k, v in value.items()]
        return "{" + ", ".join(fields) + "}"
    if is_enum_type(type_):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return print_string(str(value))


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
    assert plain.status_code == fast.status_code, (plain.text, fast.text)
    return _same_cost(plain.text, fast.text)


def _same_cost(plain: str, fast: str) -> tuple[str, str]:
    """The answers without their `extensions` and their errors' request ids, once both paths
    are seen to report the same query cost (the bucket's level differs from one request to
    the next)."""
    answers = json.loads(plain), json.loads(fast)
    for answer in answers:
        for error in answer.get("errors", []):
            # Each request has an id of its own.
            assert error["extensions"].pop("requestId")
    costs = [answer.pop("extensions", {}).get("cost", {}) for answer in answers]
    assert costs[0].get("requestedQueryCost") == costs[1].get("requestedQueryCost"), costs
    return json.dumps(answers[0]), json.dumps(answers[1])


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


# What a query selects ----------------------------------------------------------------------


@dataclass
class Shape:
    """What an operation selects, as graphql-core executes it: fragments applied for the
    runtime types the query can meet, selections under a literal false `@include` (or true
    `@skip`) left out, argument values with the variables filled in. `node` and `nodes` meet
    the types their IDs name."""

    # "Type.field" for every field selected, "__typename" included.
    fields: set[str] = field(default_factory=set)
    # "Type.field(argument)" for every argument given a value other than null.
    arguments: set[str] = field(default_factory=set)
    # The TaskFilter conditions given a value other than null, of all filters and by filter.
    conditions: set[str] = field(default_factory=set)
    filters: list[frozenset[str]] = field(default_factory=list)
    # Every orderBy's keys as "FIELD DIRECTION", and the numbers of keys of the orderBys.
    orders: set[str] = field(default_factory=set)
    order_lengths: set[int] = field(default_factory=set)
    # The search terms of the filters.
    searches: set[str] = field(default_factory=set)
    # The page sizes asked for, as "first 2" or "last 0".
    page_sizes: set[str] = field(default_factory=set)
    # The types the IDs of `node` name ("invalid" for what is no ID); the same for `nodes`.
    node_types: set[str] = field(default_factory=set)
    nodes_types: set[str] = field(default_factory=set)
    # Whether a selection that is executed has an `@include`/`@skip` taking a variable.
    variable_directives: bool = False
    # Whether a connection is asked for a page of size 0 after a cursor.
    empty_page_after: bool = False
    operations: int = 0

    def has(self, *names: str) -> bool:
        """Whether any of the "Type.field" or "Type.field(argument)" names is selected."""
        return any(n in self.fields or n in self.arguments for n in names)

    @classmethod
    def of(
        cls, query: str, variables: dict[str, Any] | None = None, operation_name: str | None = None
    ) -> Shape:
        document = parse(query, no_location=True)
        operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
        operation = next(
            o
            for o in operations
            if operation_name is None or (o.name is not None and o.name.value == operation_name)
        )
        values = dict(variables or {})
        for definition in operation.variable_definitions or ():
            name = definition.variable.name.value
            if name not in values and definition.default_value is not None:
                values[name] = value_from_ast_untyped(definition.default_value)
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        shape = cls(operations=len(operations))
        root = schema().query_type
        assert root is not None
        _Walk(shape, fragments, values).fields(root, [operation.selection_set])
        return shape


class _Walk:
    def __init__(
        self, shape: Shape, fragments: dict[str, FragmentDefinitionNode], values: dict[str, Any]
    ) -> None:
        self.shape = shape
        self.fragments = fragments
        self.values = values

    def fields(self, parent: GraphQLObjectType, selection_sets: list[SelectionSetNode]) -> None:
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._collect(parent, selection_set, grouped, set())
        for nodes in grouped.values():
            name = nodes[0].name.value
            self.shape.fields.add(f"{parent.name}.{name}")
            if name.startswith("__"):
                continue
            definition = parent.fields[name]
            arguments = {
                a.name.value: value_from_ast_untyped(a.value, self.values)
                for a in nodes[0].arguments or ()
            }
            self._arguments(parent.name, name, arguments)
            named = get_named_type(definition.type)
            subsets = [n.selection_set for n in nodes if n.selection_set is not None]
            if is_object_type(named):
                self.fields(named, subsets)  # type: ignore[arg-type]
            elif is_abstract_type(named):
                ids = [arguments.get("id")] if name == "node" else arguments.get("ids") or []
                for type_name in sorted({type_of(i) for i in ids} - {"invalid"}):
                    self.fields(schema().get_type(type_name), subsets)  # type: ignore[arg-type]

    def _arguments(self, parent: str, name: str, arguments: dict[str, Any]) -> None:
        shape = self.shape
        for argument, value in arguments.items():
            if value is not None:
                shape.arguments.add(f"{parent}.{name}({argument})")
        given = arguments.get("filter")
        if isinstance(given, dict):
            conditions = frozenset(k for k, v in given.items() if v is not None)
            shape.conditions |= conditions
            shape.filters.append(conditions)
            if given.get("search") is not None:
                shape.searches.add(given["search"])
        orders = arguments.get("orderBy")
        # A single TaskOrder stands for a list of one.
        orders = [orders] if isinstance(orders, dict) else orders or []
        for order in orders:
            shape.orders.add(f"{order['field']} {order.get('direction') or 'ASC'}")
        if orders:
            shape.order_lengths.add(len(orders))
        for size in ("first", "last"):
            if arguments.get(size) is not None:
                shape.page_sizes.add(f"{size} {arguments[size]}")
        if arguments.get("first") == 0 and arguments.get("after") is not None:
            shape.empty_page_after = True
        if parent == "Query" and name == "node":
            shape.node_types.add(type_of(arguments.get("id")))
        if parent == "Query" and name == "nodes":
            shape.nodes_types |= {type_of(i) for i in arguments.get("ids") or ()}

    def _collect(
        self,
        runtime: GraphQLObjectType,
        selection_set: SelectionSetNode,
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        for selection in selection_set.selections:
            if not self._included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or _applies(condition.name.value, runtime):
                    self._collect(runtime, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments[name]
                if name not in visited and _applies(fragment.type_condition.name.value, runtime):
                    visited.add(name)
                    self._collect(runtime, fragment.selection_set, grouped, visited)

    def _included(self, selection: Any) -> bool:
        included = True
        for directive in selection.directives or ():
            (argument,) = directive.arguments
            if isinstance(argument.value, VariableNode):
                self.shape.variable_directives = True
            value = bool(value_from_ast_untyped(argument.value, self.values))
            included = included and (value if directive.name.value == "include" else not value)
        return included


def _applies(condition: str, runtime: GraphQLObjectType) -> bool:
    named = schema().get_type(condition)
    if named is runtime:
        return True
    return is_abstract_type(named) and schema().is_sub_type(named, runtime)  # type: ignore[arg-type]


def type_of(global_id: Any) -> str:
    """The type an ID names, or "invalid" for what is no ID."""
    try:
        return from_global_id(global_id)[0]
    except (InvalidArgument, AttributeError, TypeError):
        return "invalid"
