"""Whole queries answered by one SQL statement that builds the response's `data` in PostgreSQL.

The fastest GraphQL engines compile an operation into one statement that returns JSON. This
module does that for the read queries it knows completely: a document is checked once (parsed,
validated, every selected field known to `_FIELDS`), then each request renders the statement
with its variables and the principal's visibility (`db.json_sql` holds the rules and value
formats), and PostgreSQL returns the `data` object.

Anything else, or a request whose values the normal path would answer with an error (a bad ID,
a page size out of range, a bad cursor), goes to the normal execution unchanged: a compiled
operation is only ever a faster way to the same answer. tests/graph/test_compiled.py compares
the two on generated queries, principals and data.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLID,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    ListTypeNode,
    NamedTypeNode,
    NonNullTypeNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
    parse,
    type_from_ast,
    validate,
)
from graphql.execution.values import get_argument_values, get_variable_values

from db import json_sql as J
from db.access import Principal
from db.errors import InvalidArgument
from db.models import Role
from db.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, decode_cursor
from graph.ids import from_global_id
from graph.types.project import PROJECT_TASK_ORDER
from graph.types.task import MAX_ORDER_KEYS
from graph.types.workspace import WORKSPACE_TASK_ORDER

# Switched off by tests that compare the compiled path with the normal one.
ENABLED = True
MAX_DOCUMENTS = 1000
# Longer documents are not compiled, so that the cache of documents stays small.
MAX_QUERY_CHARS = 20_000
MAX_RENDERED = 256  # per operation
# json_build_object takes at most 100 arguments.
MAX_KEYS = 50


class Unsupported(Exception):
    """The document is not compiled; the normal path serves it."""


class Fallback(Exception):
    """This request is served by the normal path (it would end in an error there)."""


@dataclass(slots=True)
class Selected:
    key: str
    name: str
    node: FieldNode
    definition: GraphQLField | None
    # The sub-selection per possible runtime type; None where that type is not compiled.
    children: dict[str, list[Selected] | None] = field(default_factory=dict)


@dataclass(slots=True)
class Operation:
    operation: OperationDefinitionNode
    fields: list[Selected]
    # Variables of type ID: a statement depends on the type of object they name, not the id.
    id_variables: frozenset[str] = frozenset()
    # Statements rendered before, by the kind of principal and the variables (ID variables by
    # their type): the SQL, and where each parameter's value comes from (see `_Source`).
    rendered: OrderedDict[Any, tuple[str, list[tuple[_Source, Any]]]] = field(
        default_factory=OrderedDict
    )
    # One copy of each distinct SQL text: variables that are only parameters (a slug, a
    # cursor) make new entries above, not new statements.
    texts: dict[str, str] = field(default_factory=dict)


class Compiler:
    """Compiled operations of one schema, remembered by (query text, operation name)."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.cache: OrderedDict[tuple[str, str | None], Operation | None] = OrderedDict()

    def lookup(self, query: str, operation_name: str | None) -> Operation | None:
        if not ENABLED or len(query) > MAX_QUERY_CHARS:
            return None
        key = (query, operation_name)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        try:
            compiled: Operation | None = self._compile(query, operation_name)
        except Unsupported:
            compiled = None
        self.cache[key] = compiled
        if len(self.cache) > MAX_DOCUMENTS:
            self.cache.popitem(last=False)
        return compiled

    def _compile(self, query: str, operation_name: str | None) -> Operation:
        try:
            document = parse(query)
        except GraphQLError:
            raise Unsupported from None
        if validate(self.schema, document):
            raise Unsupported
        operation = _operation(document, operation_name)
        if operation.operation != OperationType.QUERY:
            raise Unsupported
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        root = self.schema.query_type
        assert root is not None
        id_variables = frozenset(
            d.variable.name.value
            for d in operation.variable_definitions or ()
            if isinstance(d.type, NamedTypeNode | NonNullTypeNode)
            and get_named_type(type_from_ast(self.schema, d.type)) is GraphQLID
            and not isinstance(getattr(d.type, "type", None), ListTypeNode)
        )
        fields = self._fields(root, [operation.selection_set], fragments)
        return Operation(operation, fields, id_variables)

    def _fields(
        self,
        parent: GraphQLObjectType,
        selection_sets: list[SelectionSetNode],
        fragments: dict[str, FragmentDefinitionNode],
    ) -> list[Selected]:
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._collect(parent, selection_set, fragments, grouped, set())
        if len(grouped) > MAX_KEYS:
            raise Unsupported
        selected = []
        for key, nodes in grouped.items():
            name = nodes[0].name.value
            if name == "__typename":
                selected.append(Selected(key, name, nodes[0], None))
                continue
            if (parent.name, name) not in _FIELDS:
                raise Unsupported
            definition = parent.fields[name]
            item = Selected(key, name, nodes[0], definition)
            named = get_named_type(definition.type)
            subsets = [n.selection_set for n in nodes if n.selection_set is not None]
            for runtime in self._runtime_types(named):
                try:
                    item.children[runtime.name] = self._fields(runtime, subsets, fragments)
                except Unsupported:
                    if not is_abstract_type(named):
                        raise
                    item.children[runtime.name] = None
            selected.append(item)
        return selected

    def _runtime_types(self, named: GraphQLNamedType) -> list[GraphQLObjectType]:
        if is_object_type(named):
            return [named]  # type: ignore[list-item]
        if is_abstract_type(named):
            return list(self.schema.get_possible_types(named))  # type: ignore[arg-type]
        return []

    def _collect(
        self,
        runtime: GraphQLObjectType,
        selection_set: SelectionSetNode,
        fragments: dict[str, FragmentDefinitionNode],
        grouped: dict[str, list[FieldNode]],
        visited: set[str],
    ) -> None:
        """graphql-core's field collection, for directives without variables."""
        for selection in selection_set.selections:
            if not _included(selection):
                continue
            if isinstance(selection, FieldNode):
                key = selection.alias.value if selection.alias else selection.name.value
                grouped.setdefault(key, []).append(selection)
            elif isinstance(selection, InlineFragmentNode):
                if selection.type_condition is None or self._applies(
                    selection.type_condition.name.value, runtime
                ):
                    self._collect(runtime, selection.selection_set, fragments, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = fragments[name]
                if self._applies(fragment.type_condition.name.value, runtime):
                    self._collect(runtime, fragment.selection_set, fragments, grouped, visited)

    def _applies(self, condition: str, runtime: GraphQLObjectType) -> bool:
        named = self.schema.get_type(condition)
        if named is None:
            return False
        if named is runtime:
            return True
        return is_abstract_type(named) and self.schema.is_sub_type(named, runtime)  # type: ignore[arg-type]


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name is None:
        if len(operations) != 1:
            raise Unsupported
        return operations[0]
    for operation in operations:
        if operation.name is not None and operation.name.value == name:
            return operation
    raise Unsupported


def _included(selection: Any) -> bool:
    included = True
    for directive in selection.directives or ():
        name = directive.name.value
        if name not in ("include", "skip"):
            raise Unsupported
        (argument,) = directive.arguments
        if isinstance(argument.value, VariableNode):
            raise Unsupported
        value = argument.value.value  # type: ignore[attr-defined]
        included = included and (value if name == "include" else not value)
    return included


# Rendering -------------------------------------------------------------------------------

_PRINCIPAL_PARAM = re.compile(
    r":(readable|member_of|me|viewer|role_workspaces|role_names|task_editable)\b"
)


_PRINCIPAL_VALUES: dict[str, Callable[[Principal], tuple[Any, str]]] = {
    "readable": lambda p: (p.readable_workspace_ids, "bigint[]"),
    "member_of": lambda p: (list(p.roles), "bigint[]"),
    "me": lambda p: (p.user_id if p.user_id is not None else -1, "bigint"),
    "role_workspaces": lambda p: (list(p.roles), "bigint[]"),
    "role_names": lambda p: ([Role(r).value for r in p.roles.values()], "text[]"),
    "task_editable": lambda p: (
        [w for w in p.readable_workspace_ids if p.can_edit_tasks(w)],
        "bigint[]",
    ),
}


class Render:
    """One request's statement: SQL text and its positional parameters."""

    def __init__(self, principal: Principal | None, viewer: int | None, variables: Any) -> None:
        # Either a principal, or a signed-in user whose principal the statement reads itself.
        self.principal = principal
        self.viewer = viewer
        self.user_id = viewer if principal is None else principal.user_id
        self.variables = variables
        self.params: list[Any] = []
        self.sources: list[_Source] = []
        self.named: dict[str, str] = {}
        self.aliases = 0
        # Aliases of task rows that carry their project's key (`tg_project_key`).
        self.keyed: set[str] = set()

    def alias(self, prefix: str) -> str:
        self.aliases += 1
        return f"{prefix}{self.aliases}"

    def param(self, value: Any, cast: str, source: _Source = None) -> str:
        """A parameter. A value taken from an ID variable must name it as its `source`: the
        statement is kept for every id of the same type (`statement`)."""
        self.params.append(value)
        self.sources.append(source)
        return f"${len(self.params)}::{cast}"

    def rule(self, sql: str) -> str:
        """SQL from `db.json_sql` with the principal's parameters filled in."""
        return _PRINCIPAL_PARAM.sub(lambda m: self._principal(m.group(1)), sql)

    def _principal(self, name: str) -> str:
        if name not in self.named:
            if self.principal is not None:
                value, cast = _PRINCIPAL_VALUES[name](self.principal)
                self.named[name] = self.param(value, cast, name)
            elif name in ("me", "viewer"):
                viewer = self.param(self.viewer, "bigint", "viewer")
                self.named["me"] = self.named["viewer"] = viewer
            else:
                self.named[name] = J.VIEWER_VALUES[name]
        return self.named[name]

    def arguments(self, selected: Selected) -> dict[str, Any]:
        assert selected.definition is not None
        try:
            return get_argument_values(selected.definition, selected.node, self.variables)
        except GraphQLError:
            # e.g. null given for a defaulted variable that feeds a non-null argument.
            raise Fallback from None

    def object(self, type_name: str, fields: list[Selected] | None, row: str) -> str:
        if fields is None:
            raise Fallback
        parts = []
        for selected in fields:
            if selected.name == "__typename":
                value = f"'{type_name}'"
            else:
                value = _FIELDS[(type_name, selected.name)](self, selected, row)
            parts.append(f"'{selected.key}', {value}")
        return f"json_build_object({', '.join(parts)})"

    def child(self, selected: Selected, type_name: str, row: str) -> str:
        return self.object(type_name, selected.children[type_name], row)


Handler = Callable[[Render, Selected, str], str]


def _column(template: str) -> Handler:
    return lambda r, s, row: template.format(r=row)


def _id(type_name: str) -> Handler:
    return lambda r, s, row: J.global_id(type_name, f"{row}.id")


def _timestamp(column: str) -> Handler:
    return lambda r, s, row: J.timestamp(f"{row}.{column}")


def _page_size(arguments: dict[str, Any]) -> int:
    first = arguments.get("first")
    if first is None:
        return DEFAULT_PAGE_SIZE
    if first < 0 or first > MAX_PAGE_SIZE:
        raise Fallback
    return int(first)


def _connection(
    r: Render,
    selected: Selected,
    node_type: str,
    source: Callable[[str], str],
    keys: tuple[J.Key, ...],
    arguments: dict[str, Any],
    total: str,
    columns: str = "",
    alias: str | None = None,
) -> str:
    """A connection's JSON: `source(alias)` is `<table> <alias> WHERE ...`, the whole list;
    `arguments` has `first` and `after` (`db.pagination.fetch_page` semantics)."""
    size = _page_size(arguments)
    x = alias or r.alias("x")
    bound = J.bound(keys, x)
    after = _after(r, bound, arguments.get("after"), size)
    order = J.order_by(bound)
    cursor = J.cursor(bound)
    in_page = f"FILTER (WHERE {x}.tg_rn <= {size})"
    (connection_fields,) = selected.children.values()
    assert connection_fields is not None
    connection_type = next(iter(selected.children))
    parts = []
    for item in connection_fields:
        if item.name == "__typename":
            value = f"'{connection_type}'"
        elif item.name == "totalCount":
            value = total
        elif item.name == "nodes":
            node = r.child(item, node_type, x)
            value = f"coalesce(json_agg({node} ORDER BY {x}.tg_rn) {in_page}, '[]')"
        elif item.name == "edges":
            edge_type = next(iter(item.children))
            edge_parts = []
            for edge_field in item.children[edge_type] or ():
                if edge_field.name == "__typename":
                    edge_parts.append(f"'{edge_field.key}', '{edge_type}'")
                elif edge_field.name == "cursor":
                    edge_parts.append(f"'{edge_field.key}', {cursor}")
                else:
                    edge_parts.append(f"'{edge_field.key}', {r.child(edge_field, node_type, x)}")
            edge = f"json_build_object({', '.join(edge_parts)})"
            value = f"coalesce(json_agg({edge} ORDER BY {x}.tg_rn) {in_page}, '[]')"
        else:  # pageInfo
            info_parts = []
            for info_field in item.children["PageInfo"] or ():
                name = info_field.name
                if name == "__typename":
                    info_value = "'PageInfo'"
                elif name == "hasNextPage":
                    info_value = f"count(*) > {size}" if size else "false"
                elif name == "hasPreviousPage":
                    info_value = "true" if after else "false"
                else:
                    # The cursor of one row, from its sort-key values: not one per row.
                    direction = "" if name == "startCursor" else " DESC"
                    picked = [
                        J.Key(
                            k.name,
                            f"(array_agg({k.sql} ORDER BY {x}.tg_rn{direction}) {in_page})[1]",
                            k.kind,
                            k.descending,
                        )
                        for k in bound
                    ]
                    info_value = (
                        f"CASE WHEN count(*) > 0 AND {size} > 0 THEN {J.cursor(picked)} END"
                    )
                info_parts.append(f"'{info_field.key}', {info_value}")
            value = f"json_build_object({', '.join(info_parts)})"
        parts.append(f"'{item.key}', {value}")
    rows = (
        f"SELECT {x}.*, row_number() OVER (ORDER BY {order}) AS tg_rn FROM "
        f"(SELECT {x}.*{columns} FROM {source(x)}{after} ORDER BY {order} LIMIT {size + 1}) {x}"
    )
    if size == 0:
        rows = f"SELECT {x}.*{columns}, 0 AS tg_rn FROM {source(x)} AND false"
    # Grouped, so that there is one row even when no aggregate is selected.
    return f"(SELECT json_build_object({', '.join(parts)}) FROM ({rows}) {x} GROUP BY ())"


_CASTS = {"int": "bigint", "str": "text", "datetime": "timestamptz", "float": "float8"}


def _after(r: Render, keys: tuple[J.Key, ...], cursor: str | None, size: int) -> str:
    """The condition for rows after `cursor` (`db.pagination._after`), or ""."""
    if cursor is None:
        return ""
    if size == 0:
        # The normal path answers hasPreviousPage differently for one parent and for many.
        raise Fallback
    try:
        values = decode_cursor(cursor, keys)  # type: ignore[arg-type]
    except InvalidArgument:
        raise Fallback from None
    params = [r.param(v, _CASTS[k.kind]) for k, v in zip(keys, values, strict=True)]
    if len({k.descending for k in keys}) == 1:
        # A row comparison, so that PostgreSQL walks the index.
        operator = "<" if keys[0].descending else ">"
        left = ", ".join(k.sql for k in keys)
        return f" AND ({left}) {operator} ({', '.join(params)})"
    clauses = []
    for i, key in enumerate(keys):
        equal = [f"{keys[j].sql} = {params[j]}" for j in range(i)]
        step = f"{key.sql} {'<' if key.descending else '>'} {params[i]}"
        clauses.append("(" + " AND ".join([*equal, step]) + ")")
    return f" AND ({' OR '.join(clauses)})"


# Query -----------------------------------------------------------------------------------


def _me(r: Render, s: Selected, row: str) -> str:
    if r.user_id is None:
        return "NULL"
    u = r.alias("u")
    me = r.rule(":me")
    return f"(SELECT {r.child(s, 'User', u)} FROM users {u} WHERE {u}.id = {me})"


def _workspaces(r: Render, s: Selected, row: str) -> str:
    readable = r.rule(":readable")
    return _connection(
        r,
        s,
        "Workspace",
        lambda x: f"workspaces {x} WHERE {x}.id = ANY({readable})",
        J.WORKSPACE_KEYS,
        r.arguments(s),
        f"cardinality({readable})",
    )


def _workspace(r: Render, s: Selected, row: str) -> str:
    w = r.alias("w")
    slug = r.param(r.arguments(s)["slug"], "text")
    visible = r.rule(J.readable(f"{w}.id"))
    return (
        f"(SELECT {r.child(s, 'Workspace', w)} FROM workspaces {w} "
        f"WHERE {w}.slug = {slug} AND {visible})"
    )


_NODES: dict[str, tuple[str, str, Callable[[str], str]]] = {
    "Task": ("tasks", "t", lambda a: J.readable(f"{a}.workspace_id")),
    "Project": ("projects", "p", lambda a: J.readable(f"{a}.workspace_id")),
    "Workspace": ("workspaces", "w", lambda a: J.readable(f"{a}.id")),
    "User": ("users", "u", lambda a: J.user_visible(f"{a}.id")),
}


def _node(r: Render, s: Selected, row: str) -> str:
    try:
        type_name, db_id = from_global_id(r.arguments(s)["id"])
    except InvalidArgument:
        raise Fallback from None
    if type_name not in _NODES:
        raise Fallback
    table, prefix, visible = _NODES[type_name]
    a = r.alias(prefix)
    (argument,) = [a for a in s.node.arguments if a.name.value == "id"]
    source = ("id", argument.value.name.value) if isinstance(argument.value, VariableNode) else None
    return (
        f"(SELECT {r.child(s, type_name, a)} FROM {table} {a} "
        f"WHERE {a}.id = {r.param(db_id, 'bigint', source)} AND {r.rule(visible(a))})"
    )


# Objects ---------------------------------------------------------------------------------


def _email(r: Render, s: Selected, row: str) -> str:
    return f"CASE WHEN {r.rule(J.email_visible(f'{row}.id'))} THEN {row}.email END"


def _user(column: str) -> Handler:
    def render(r: Render, s: Selected, row: str) -> str:
        u = r.alias("u")
        return f"(SELECT {r.child(s, 'User', u)} FROM users {u} WHERE {u}.id = {row}.{column})"

    return render


def _viewer_role(r: Render, s: Selected, row: str) -> str:
    return r.rule(J.role_in(f"{row}.id"))


def _projects(r: Render, s: Selected, row: str) -> str:
    arguments = r.arguments(s)
    listed = "" if arguments.get("includeArchived") else " AND {x}.archived_at IS NULL"

    def source(x: str) -> str:
        return f"projects {x} WHERE {x}.workspace_id = {row}.id" + listed.format(x=x)

    c = r.alias("c")
    total = f"(SELECT count(*) FROM {source(c)})"
    return _connection(r, s, "Project", source, J.PROJECT_KEYS, arguments, total)


def _tasks(parent: str, default: tuple[tuple[str, bool], ...]) -> Handler:
    def render(r: Render, s: Selected, row: str) -> str:
        return _task_list(r, s, row, parent, default)

    return render


def _task_list(
    r: Render, s: Selected, row: str, parent: str, default: tuple[tuple[str, bool], ...]
) -> str:
    arguments = r.arguments(s)
    if any(arguments.get(n) is not None for n in ("filter", "last", "before")):
        raise Fallback
    order_by = arguments.get("orderBy")
    order = (
        tuple((_enum(o["field"]), _enum(o.get("direction", "ASC")) == "DESC") for o in order_by)
        if order_by
        else default
    )
    keys = J.task_keys(order) if len(order) <= MAX_ORDER_KEYS else None
    if keys is None:
        raise Fallback

    x = r.alias("x")
    r.keyed.add(x)

    def source(x: str) -> str:
        return f"tasks {x} WHERE {x}.{parent} = {row}.id"

    def keyed_source(x: str) -> str:
        return (
            f"tasks {x} JOIN projects {x}k ON {x}k.id = {x}.project_id "
            f"WHERE {x}.{parent} = {row}.id"
        )

    c = r.alias("c")
    total = f"(SELECT count(*) FROM {source(c)})"
    return _connection(
        r, s, "Task", keyed_source, keys, arguments, total, f", {x}k.key AS tg_project_key", x
    )


def _project_by_key(r: Render, s: Selected, row: str) -> str:
    # Keys are matched as `Workspace.project` matches them: stripped and upper-cased in Python.
    key = r.param(str(r.arguments(s)["key"]).strip().upper(), "text")
    p = r.alias("p")
    return (
        f"(SELECT {r.child(s, 'Project', p)} FROM projects {p} "
        f"WHERE {p}.workspace_id = {row}.id AND {p}.key = {key})"
    )


def _workspace_labels(r: Render, s: Selected, row: str) -> str:
    lb = r.alias("l")
    return (
        f"(SELECT coalesce(json_agg({r.child(s, 'Label', lb)} ORDER BY lower({lb}.name), "
        f"{lb}.id), '[]') FROM labels {lb} WHERE {lb}.workspace_id = {row}.id)"
    )


def _parent_workspace(r: Render, s: Selected, row: str) -> str:
    w = r.alias("w")
    visible = r.rule(J.readable(f"{w}.id"))
    return (
        f"(SELECT {r.child(s, 'Workspace', w)} FROM workspaces {w} "
        f"WHERE {w}.id = {row}.workspace_id AND {visible})"
    )


_STATUS_COUNTS = {
    "backlog": "BACKLOG",
    "todo": "TODO",
    "inProgress": "IN_PROGRESS",
    "inReview": "IN_REVIEW",
    "done": "DONE",
    "canceled": "CANCELED",
}


def _task_counts(r: Render, s: Selected, row: str) -> str:
    tc, t = r.alias("tc"), r.alias("t")
    counts = ", ".join(
        f"count(*) FILTER (WHERE {t}.status = '{status}') AS \"{name}\""
        for name, status in _STATUS_COUNTS.items()
    )
    return (
        f"(SELECT {r.child(s, 'TaskCounts', tc)} FROM (SELECT {counts}, count(*) AS total "
        f"FROM tasks {t} WHERE {t}.project_id = {row}.id) {tc})"
    )


def _enum(value: Any) -> str:
    # graphql-core gives the schema's enum members; their values are the names.
    return str(getattr(value, "value", value))


def _task_key(r: Render, s: Selected, row: str) -> str:
    if row in r.keyed:
        return f"{row}.tg_project_key || '-' || {row}.number"
    k = r.alias("k")
    return (
        f"(SELECT {k}.key FROM projects {k} WHERE {k}.id = {row}.project_id) || '-' || {row}.number"
    )


def _task_project(r: Render, s: Selected, row: str) -> str:
    p = r.alias("p")
    return f"(SELECT {r.child(s, 'Project', p)} FROM projects {p} WHERE {p}.id = {row}.project_id)"


def _labels(r: Render, s: Selected, row: str) -> str:
    tl, lb = r.alias("tl"), r.alias("l")
    return (
        f"(SELECT coalesce(json_agg({r.child(s, 'Label', lb)} "
        f"ORDER BY lower({lb}.name), {lb}.id), '[]') FROM task_labels {tl} "
        f"JOIN labels {lb} ON {lb}.id = {tl}.label_id WHERE {tl}.task_id = {row}.id)"
    )


def _comment_count(r: Render, s: Selected, row: str) -> str:
    c = r.alias("c")
    return f"(SELECT count(*) FROM comments {c} WHERE {c}.task_id = {row}.id)"


def _task_children(table: str, node_type: str, keys: tuple[J.Key, ...]) -> Handler:
    def render(r: Render, s: Selected, row: str) -> str:
        def source(x: str) -> str:
            return f"{table} {x} WHERE {x}.task_id = {row}.id"

        c = r.alias("c")
        total = f"(SELECT count(*) FROM {source(c)})"
        return _connection(r, s, node_type, source, keys, r.arguments(s), total)

    return render


def _viewer_can_edit(r: Render, s: Selected, row: str) -> str:
    return r.rule(J.can_edit_tasks(f"{row}.workspace_id"))


def _changes(r: Render, s: Selected, row: str) -> str:
    e, n = r.alias("e"), r.alias("n")
    change = r.child(s, "FieldChange", e)
    return (
        f"(SELECT coalesce(json_agg({change} ORDER BY {n}), '[]') "
        f"FROM jsonb_array_elements({row}.changes) WITH ORDINALITY AS {e}(v, {n}))"
    )


def _change(key: str) -> Handler:
    return lambda r, s, row: f"{row}.v->>'{key}'"


_FIELDS: dict[tuple[str, str], Handler] = {
    ("Query", "me"): _me,
    ("Query", "workspaces"): _workspaces,
    ("Query", "workspace"): _workspace,
    ("Query", "node"): _node,
    ("User", "id"): _id("User"),
    ("User", "name"): _column("{r}.name"),
    ("User", "email"): _email,
    ("User", "createdAt"): _timestamp("created_at"),
    ("Workspace", "id"): _id("Workspace"),
    ("Workspace", "slug"): _column("{r}.slug"),
    ("Workspace", "name"): _column("{r}.name"),
    ("Workspace", "createdAt"): _timestamp("created_at"),
    ("Workspace", "viewerRole"): _viewer_role,
    ("Workspace", "projects"): _projects,
    ("Workspace", "tasks"): _tasks("workspace_id", WORKSPACE_TASK_ORDER),
    ("Project", "tasks"): _tasks("project_id", PROJECT_TASK_ORDER),
    ("Project", "id"): _id("Project"),
    ("Project", "key"): _column("{r}.key"),
    ("Project", "name"): _column("{r}.name"),
    ("Project", "description"): _column("{r}.description"),
    ("Project", "archivedAt"): _timestamp("archived_at"),
    ("Project", "createdAt"): _timestamp("created_at"),
    ("Project", "updatedAt"): _timestamp("updated_at"),
    ("Task", "id"): _id("Task"),
    ("Task", "number"): _column("{r}.number"),
    ("Task", "key"): _task_key,
    ("Task", "title"): _column("{r}.title"),
    ("Task", "description"): _column("{r}.description"),
    ("Task", "status"): _column("{r}.status"),
    ("Task", "priority"): lambda r, s, row: J.priority(f"{row}.priority"),
    ("Task", "dueDate"): lambda r, s, row: J.day(f"{row}.due_date"),
    ("Task", "version"): _column("{r}.version"),
    ("Task", "position"): lambda r, s, row: f"({J.number(f'{row}.position')})::json",
    ("Task", "completedAt"): _timestamp("completed_at"),
    ("Task", "createdAt"): _timestamp("created_at"),
    ("Task", "updatedAt"): _timestamp("updated_at"),
    ("Task", "project"): _task_project,
    ("Task", "assignee"): _user("assignee_id"),
    ("Task", "creator"): _user("creator_id"),
    ("Task", "labels"): _labels,
    ("Task", "commentCount"): _comment_count,
    ("Task", "viewerCanEdit"): _viewer_can_edit,
    ("Task", "comments"): _task_children("comments", "Comment", J.COMMENT_KEYS),
    ("Task", "activity"): _task_children("activities", "Activity", J.ACTIVITY_KEYS),
    ("Comment", "id"): _id("Comment"),
    ("Comment", "body"): _column("{r}.body"),
    ("Comment", "createdAt"): _timestamp("created_at"),
    ("Comment", "updatedAt"): _timestamp("updated_at"),
    ("Comment", "author"): _user("author_id"),
    ("Activity", "id"): _id("Activity"),
    ("Activity", "kind"): _column("{r}.kind"),
    ("Activity", "taskKey"): _column("{r}.task_key"),
    ("Activity", "createdAt"): _timestamp("created_at"),
    ("Activity", "changes"): _changes,
    ("FieldChange", "field"): _change("field"),
    ("FieldChange", "from"): _change("from"),
    ("FieldChange", "to"): _change("to"),
    ("Workspace", "project"): _project_by_key,
    ("Workspace", "labels"): _workspace_labels,
    ("Project", "workspace"): _parent_workspace,
    ("Project", "taskCounts"): _task_counts,
    **{("TaskCounts", name): _column(f'{{r}}."{name}"') for name in (*_STATUS_COUNTS, "total")},
    ("Activity", "actor"): _user("actor_user_id"),
    ("Label", "workspace"): _parent_workspace,
    ("Label", "id"): _id("Label"),
    ("Label", "name"): _column("{r}.name"),
    ("Label", "color"): _column("{r}.color"),
}
# Connections, their edges and page info are rendered by `_connection`.
for _connection_type in ("Workspace", "Project", "Task", "Comment", "Activity"):
    for _name in ("nodes", "edges", "pageInfo", "totalCount"):
        _FIELDS[(f"{_connection_type}Connection", _name)] = _connection  # type: ignore[assignment]
    for _name in ("cursor", "node"):
        _FIELDS[(f"{_connection_type}Edge", _name)] = _connection  # type: ignore[assignment]
for _name in ("hasNextPage", "hasPreviousPage", "startCursor", "endCursor"):
    _FIELDS[("PageInfo", _name)] = _connection  # type: ignore[assignment]


def statement(
    schema: GraphQLSchema,
    operation: Operation,
    principal: Principal | None,
    variables: dict[str, Any] | None,
    viewer: int | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of one request; Fallback where the normal path must answer.

    With a `viewer` (the user of a good access token) instead of a principal, the statement
    reads the user's memberships itself and returns NULL when the user no longer exists.
    """
    user_id = viewer if principal is None else principal.user_id
    given = variables or {}
    key = _key(operation, given, principal is None, user_id is None)
    known = operation.rendered.get(key) if key is not None else None
    if known is not None:
        sql, params = known
        return sql, [_value(n, v, principal, viewer, given) for n, v in params]
    coerced = get_variable_values(
        schema, operation.operation.variable_definitions or (), variables or {}
    )
    if isinstance(coerced, list):
        raise Fallback
    r = Render(principal, viewer, coerced)
    sql = r.object("Query", operation.fields, "")
    if principal is not None:
        sql = f"SELECT ({sql})::text"
    else:
        viewer_cte = r.rule(J.VIEWER_CTE)
        sql = (
            f"WITH {viewer_cte} SELECT CASE WHEN (SELECT found FROM {J.VIEWER}) "
            f"THEN ({sql})::text END"
        )
    # The principal's values are parameters, so the statement serves every principal of the
    # same kind; the values from the request's variables are kept with it.
    if key is None:
        return sql, r.params
    if len(operation.texts) >= MAX_RENDERED:
        operation.texts.clear()
    sql = operation.texts.setdefault(sql, sql)
    operation.rendered[key] = (
        sql,
        [(n, None if isinstance(n, str) else v) for n, v in zip(r.sources, r.params, strict=True)],
    )
    if len(operation.rendered) > MAX_RENDERED:
        operation.rendered.popitem(last=False)
    return sql, r.params


_SORTED = orjson.OPT_SORT_KEYS


# Where a parameter's value comes from: None, the value itself (kept with the statement); a
# name, that value of the principal; ("id", variable), the database id in an ID variable.
_Source = str | tuple[str, str] | None


def _key(operation: Operation, given: dict[str, Any], viewer: bool, anonymous: bool) -> Any:
    """What a rendered statement depends on: the kind of principal and the variables, ID
    variables by the type of object they name. None when an ID variable holds no valid ID
    (such a request is not kept: the normal path answers it)."""
    shaped = {}
    for name, value in given.items():
        if name in operation.id_variables:
            try:
                shaped[name] = from_global_id(value)[0] if isinstance(value, str) else None
            except InvalidArgument:
                shaped[name] = None
            if shaped[name] is None:
                return None
        else:
            shaped[name] = value
    return (viewer, anonymous, orjson.dumps(shaped, option=_SORTED))


def _value(
    source: _Source,
    kept: Any,
    principal: Principal | None,
    viewer: int | None,
    variables: dict[str, Any],
) -> Any:
    if source is None:
        return kept
    if isinstance(source, tuple):
        given = variables.get(source[1])
        return from_global_id(given)[1] if given is not None else kept
    if principal is None:
        return viewer
    return _PRINCIPAL_VALUES[source](principal)[0]
