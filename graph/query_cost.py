"""The calculated cost of an operation, before it runs (the model of Shopify's GraphQL Admin API).

The cost is static: it is computed from the document and the request's variables, without
the data. The rules, for each field selected (fields merged by response key as execution merges
them; every field counts whatever its `@include`/`@skip`, as Shopify counts):

- a scalar or an enum (and `__typename`): 0;
- an object, or a plain list of objects (`Many`: a task's labels, a workspace's labels): 1,
  plus the cost of its selection. A plain list counts as one object: its length is not known
  before the data, and its elements' nested fields are rarely more than scalars;
- a connection (`Listing` in the read descriptions, `db/read_types.py`; for types without a
  description, a field with `first`/`last` returning a type with `nodes` or `edges`):
  2 + size * (1 + the cost of the node's selection), where size is `first` or `last` (a literal
  or a variable; the larger when both are given), the default page size when neither is,
  clamped to [0, `MAX_PAGE_SIZE`] (a larger page is refused when it runs, so it never costs
  more). `nodes` and `edges { node }` select the same rows: their selections are merged.
  `pageInfo`, `totalCount` and `cursor` are scalars or covered by the 2. A connection
  selecting neither `nodes` nor `edges` costs 2;
- an interface or a union: the largest cost over its possible types (fragments on each);
- `node(id:)`: 1 + the largest selection over the node types; `nodes(ids:)`: the number of
  ids (at most `MAX_NODES`) * that;
- a mutation's root field: 10, plus the cost of its payload's selection (the payload object is
  in the 10): `createTask { task { id } userErrors { message } }` costs 12.

So `{ workspaces(first: 5) { nodes { projects(first: 3) { nodes { name } } } } }` costs
2 + 5 * (1 + 2 + 3 * 1) = 32: nested connections multiply.

Shopify's actual cost is computed from the response; here the compiled path's responses are
built by PostgreSQL as JSON bytes that are never decoded, so the actual cost is the requested
cost (`cost_extension`).

A `CostPlan` is built once per document and operation (`CostPlans` keeps them by text): the
costs that do not depend on variables are folded into constants, so a request evaluates only the
`first`/`last`/`ids` variables; a document without such variables costs one attribute read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLField,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    IntValueNode,
    ListValueNode,
    NullValueNode,
    OperationDefinitionNode,
    OperationType,
    SchemaMetaFieldDef,
    SelectionSetNode,
    TypeMetaFieldDef,
    ValueNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_leaf_type,
    is_object_type,
    parse,
)
from strawberry.schema.schema_converter import GraphQLCoreConverter

from db.descriptions import ById, Listing
from db.pagination import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from db.read_types import TYPES
from graph.document_rules import chosen_operation
from graph.query_limits import too_complex
from graph.types.query import MAX_NODES

if TYPE_CHECKING:
    from graph.rate_limits import Throttle

OBJECT_COST = 1
CONNECTION_COST = 2
MUTATION_COST = 10
MAX_DOCUMENTS = 1000


# Cost expressions: an int, or a node whose cost depends on variables. -----------------------


class _Size:
    """A page size (`first`/`last`) or a number of ids, from literals or variables."""

    __slots__ = ("cap", "default", "ids", "sources")

    def __init__(
        self, sources: tuple[tuple[str, Any], ...], default: int, cap: int, ids: bool
    ) -> None:
        # ("literal", value) or ("variable", (name, default value or _ABSENT)).
        self.sources = sources
        self.default = default
        self.cap = cap
        self.ids = ids

    def of(self, variables: Mapping[str, Any]) -> int:
        found: int | None = None
        for kind, value in self.sources:
            if kind == "variable":
                name, default = value
                value = variables.get(name, default)
                if value is _ABSENT:
                    value = None
            if self.ids:
                count = len(value) if isinstance(value, list) else int(value is not None)
                found = count if found is None else max(found, count)
            elif isinstance(value, int) and not isinstance(value, bool):
                found = value if found is None else max(found, value)
        if found is None:
            return self.default
        return min(max(found, 0), self.cap)


class _Scaled:
    """base + size * inner."""

    __slots__ = ("base", "inner", "size")

    def __init__(self, base: int, size: _Size, inner: Expr) -> None:
        self.base, self.size, self.inner = base, size, inner

    def cost(self, variables: Mapping[str, Any]) -> int:
        inner = self.inner if isinstance(self.inner, int) else self.inner.cost(variables)
        return self.base + self.size.of(variables) * inner


class _Sum:
    __slots__ = ("constant", "parts")

    def __init__(self, constant: int, parts: tuple[Any, ...]) -> None:
        self.constant, self.parts = constant, parts

    def cost(self, variables: Mapping[str, Any]) -> int:
        return self.constant + sum(part.cost(variables) for part in self.parts)


class _Max:
    __slots__ = ("parts",)

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts

    def cost(self, variables: Mapping[str, Any]) -> int:
        return max(part if isinstance(part, int) else part.cost(variables) for part in self.parts)


Expr = int | _Scaled | _Sum | _Max


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT: Any = _Absent()


def _sum(parts: Sequence[Expr]) -> Expr:
    constant = sum(p for p in parts if isinstance(p, int))
    rest = tuple(p for p in parts if not isinstance(p, int))
    if not rest:
        return constant
    if constant == 0 and len(rest) == 1:
        return rest[0]
    return _Sum(constant, rest)


def _max(parts: Sequence[Expr]) -> Expr:
    if not parts:
        return 0
    constants = [p for p in parts if isinstance(p, int)]
    rest = tuple(p for p in parts if not isinstance(p, int))
    if not rest:
        return max(constants)
    if constants:
        return _Max((max(constants), *rest))
    return rest[0] if len(rest) == 1 else _Max(rest)


def _scaled(base: int, size: _Size, inner: Expr) -> Expr:
    if not size.sources or all(kind == "literal" for kind, _ in size.sources):
        constant_size = size.of({})
        if isinstance(inner, int):
            return base + constant_size * inner
    if inner == 0:
        return base
    return _Scaled(base, size, inner)


# Plans -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CostPlan:
    """The cost of one operation of a document, as a function of its variables."""

    expr: Expr

    @classmethod
    def for_document(
        cls, schema: GraphQLSchema, document: DocumentNode, operation_name: str | None
    ) -> CostPlan:
        """The plan of the operation that would run; cost 0 when there is none (execution
        reports that). Expects a validated document; an invalid one gets some cost, and
        fragment cycles are cut, never followed."""
        chosen = chosen_operation(document, operation_name)
        if chosen is None:
            return cls(0)
        return cls(_Planner(schema, document, chosen).plan())

    def cost(self, variables: Mapping[str, Any] | None = None) -> int:
        """The cost for the request's variables as sent (not coerced yet: values of the
        wrong type count as absent)."""
        expr = self.expr
        if isinstance(expr, int):
            return expr
        return expr.cost(variables if isinstance(variables, Mapping) else {})


class CostPlans:
    """Plans of one schema by (query text, operation name), the most recently used kept."""

    def __init__(self, schema: GraphQLSchema, max_documents: int = MAX_DOCUMENTS) -> None:
        self.schema = schema
        self.max_documents = max_documents
        self.plans: OrderedDict[tuple[str, str | None], CostPlan] = OrderedDict()

    def plan(
        self, query: str, operation_name: str | None, document: DocumentNode | None = None
    ) -> CostPlan:
        """The plan of a document that parses (pass the parsed `document` when there is one,
        to save parsing it again)."""
        key = (query, operation_name)
        found = self.plans.get(key)
        if found is not None:
            self.plans.move_to_end(key)
            return found
        if document is None:
            document = parse(query)
        plan = CostPlan.for_document(self.schema, document, operation_name)
        self.plans[key] = plan
        if len(self.plans) > self.max_documents:
            self.plans.popitem(last=False)
        return plan


def requested_cost(
    schema: GraphQLSchema,
    document: DocumentNode,
    operation_name: str | None,
    variables: Mapping[str, Any] | None,
) -> int:
    """The cost of one request, without a kept plan (see `CostPlans` for every request)."""
    return CostPlan.for_document(schema, document, operation_name).cost(variables)


def check_cost(cost: int, maximum: int) -> GraphQLError | None:
    if cost > maximum:
        return too_complex(
            f"Query cost {cost} exceeds the limit of {maximum}. Ask for smaller pages: a "
            f"connection costs its page size (`first` or `last`, {DEFAULT_PAGE_SIZE} when "
            "neither is given) times what each of its nodes selects.",
            "cost",
            maximum,
            cost=cost,
        )
    return None


def cost_extension(
    requested: int, throttle: Throttle | None = None, actual: int | None = None
) -> dict[str, Any]:
    """The response's `extensions`: the costs and, when a bucket was charged, its state."""
    cost: dict[str, Any] = {
        "requestedQueryCost": requested,
        "actualQueryCost": requested if actual is None else actual,
    }
    if throttle is not None:
        cost["throttleStatus"] = {
            "maximumAvailable": float(throttle.maximum),
            "currentlyAvailable": round(throttle.currently_available, 1),
            "restoreRate": float(throttle.restore_rate),
        }
    return {"cost": cost}


# Building a plan ---------------------------------------------------------------------------


def _python_name(definition: GraphQLField) -> str:
    backref = (definition.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return backref.python_name if backref is not None else ""


# Grouped fields: response key -> (field nodes, fragments being expanded where they were found).
_Grouped = dict[str, list[tuple[FieldNode, frozenset[str]]]]


class _Planner:
    def __init__(
        self, schema: GraphQLSchema, document: DocumentNode, operation: OperationDefinitionNode
    ) -> None:
        self.schema = schema
        self.operation = operation
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.variable_defaults: dict[str, Any] = {}
        for definition in operation.variable_definitions or ():
            default = definition.default_value
            self.variable_defaults[definition.variable.name.value] = (
                _ABSENT if default is None else _literal(default)
            )

    def plan(self) -> Expr:
        kind = self.operation.operation
        root = self.schema.get_root_type(kind)
        if root is None:
            return 0
        grouped = self._collect(root, [(self.operation.selection_set, frozenset())])
        if kind != OperationType.MUTATION:
            return self._fields(root, grouped)
        parts: list[Expr] = []
        for nodes in grouped.values():
            definition = root.fields.get(nodes[0][0].name.value)
            if definition is None:
                continue
            named = get_named_type(definition.type)
            children = 0 if is_leaf_type(named) else self._selection(named, _subsets(nodes))
            parts.append(_sum([MUTATION_COST, children]))
        return _sum(parts)

    def _fields(self, parent: GraphQLObjectType, grouped: _Grouped) -> Expr:
        return _sum([self._field(parent, nodes) for nodes in grouped.values()])

    def _field(
        self, parent: GraphQLObjectType, nodes: list[tuple[FieldNode, frozenset[str]]]
    ) -> Expr:
        name = nodes[0][0].name.value
        definition = self._definition(parent, name)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named):
            return 0
        subsets = _subsets(nodes)
        description = TYPES.get(parent.name)
        described = description.fields.get(_python_name(definition)) if description else None
        if isinstance(described, Listing) or (
            described is None and _connection_like(definition, named)
        ):
            return self._connection(named, nodes[0][0], subsets)  # type: ignore[arg-type]
        inner = _sum([OBJECT_COST, self._selection(named, subsets)])
        if isinstance(described, ById) and described.many:
            size = self._size(nodes[0][0], ("ids",), default=0, cap=MAX_NODES, ids=True)
            return _scaled(0, size, inner)
        return inner

    def _connection(
        self,
        connection: GraphQLNamedType,
        field: FieldNode,
        subsets: list[tuple[SelectionSetNode, frozenset[str]]],
    ) -> Expr:
        size = self._size(field, ("first", "last"), DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, ids=False)
        if not is_object_type(connection):
            return CONNECTION_COST
        grouped = self._collect(connection, subsets)  # type: ignore[arg-type]
        node_subsets: list[tuple[SelectionSetNode, frozenset[str]]] = []
        node_type: GraphQLNamedType | None = None
        paged = False
        for nodes in grouped.values():
            name = nodes[0][0].name.value
            definition = self._definition(connection, name)  # type: ignore[arg-type]
            if definition is None:
                continue
            if name == "nodes":
                paged = True
                node_type = get_named_type(definition.type)
                node_subsets += _subsets(nodes)
            elif name == "edges":
                paged = True
                edge = get_named_type(definition.type)
                if not is_object_type(edge):
                    continue
                for edge_nodes in self._collect(edge, _subsets(nodes)).values():  # type: ignore[arg-type]
                    if edge_nodes[0][0].name.value == "node":
                        found = self._definition(edge, "node")  # type: ignore[arg-type]
                        if found is not None:
                            node_type = get_named_type(found.type)
                            node_subsets += _subsets(edge_nodes)
        if not paged:
            return CONNECTION_COST
        children: Expr = 0
        if node_type is not None and node_subsets:
            children = self._selection(node_type, node_subsets)
        return _scaled(CONNECTION_COST, size, _sum([OBJECT_COST, children]))

    def _selection(
        self, named: GraphQLNamedType, subsets: list[tuple[SelectionSetNode, frozenset[str]]]
    ) -> Expr:
        """The cost of an object's selection: for an abstract type, the largest over its
        possible types."""
        if is_object_type(named):
            return self._fields(named, self._collect(named, subsets))  # type: ignore[arg-type]
        if is_abstract_type(named):
            return _max(
                [
                    self._fields(runtime, self._collect(runtime, subsets))
                    for runtime in self.schema.get_possible_types(named)  # type: ignore[arg-type]
                ]
            )
        return 0

    def _definition(self, parent: GraphQLObjectType, name: str) -> GraphQLField | None:
        found = parent.fields.get(name)
        if found is not None:
            return found
        if parent is self.schema.query_type:
            if name == "__schema":
                return SchemaMetaFieldDef
            if name == "__type":
                return TypeMetaFieldDef
        return None

    def _size(
        self, field: FieldNode, names: tuple[str, ...], default: int, cap: int, ids: bool
    ) -> _Size:
        sources: list[tuple[str, Any]] = []
        for argument in field.arguments or ():
            if argument.name.value not in names:
                continue
            value = argument.value
            if isinstance(value, VariableNode):
                name = value.name.value
                sources.append(("variable", (name, self.variable_defaults.get(name, _ABSENT))))
            elif ids and isinstance(value, ListValueNode):
                # Each element counts, whether a literal or a variable.
                sources.append(("literal", list(value.values)))
            else:
                sources.append(("literal", _literal(value)))
        return _Size(tuple(sources), default, cap, ids)

    def _collect(
        self,
        runtime: GraphQLObjectType,
        subsets: list[tuple[SelectionSetNode, frozenset[str]]],
    ) -> _Grouped:
        grouped: _Grouped = {}
        for selection_set, active in subsets:
            self._collect_into(runtime, selection_set, active, grouped)
        return grouped

    def _collect_into(
        self,
        runtime: GraphQLObjectType,
        selection_set: SelectionSetNode,
        active: frozenset[str],
        grouped: _Grouped,
    ) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                key = (selection.alias or selection.name).value
                grouped.setdefault(key, []).append((selection, active))
            elif isinstance(selection, InlineFragmentNode):
                condition = selection.type_condition
                if condition is None or self._applies(condition.name.value, runtime):
                    self._collect_into(runtime, selection.selection_set, active, grouped)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                fragment = self.fragments.get(name)
                # A fragment already being expanded on this path is a cycle: cut it.
                if fragment is None or name in active:
                    continue
                if self._applies(fragment.type_condition.name.value, runtime):
                    self._collect_into(runtime, fragment.selection_set, active | {name}, grouped)

    def _applies(self, condition: str, runtime: GraphQLObjectType) -> bool:
        named = self.schema.get_type(condition)
        if named is None:
            return False
        if named is runtime:
            return True
        return is_abstract_type(named) and self.schema.is_sub_type(named, runtime)  # type: ignore[arg-type]


def _subsets(
    nodes: list[tuple[FieldNode, frozenset[str]]],
) -> list[tuple[SelectionSetNode, frozenset[str]]]:
    return [(node.selection_set, active) for node, active in nodes if node.selection_set]


def _connection_like(definition: GraphQLField, named: GraphQLNamedType) -> bool:
    return (
        ("first" in definition.args or "last" in definition.args)
        and is_object_type(named)
        and ("nodes" in named.fields or "edges" in named.fields)  # type: ignore[attr-defined]
    )


def _literal(value: ValueNode) -> Any:
    if isinstance(value, IntValueNode):
        return int(value.value)
    if isinstance(value, NullValueNode):
        return None
    if isinstance(value, ListValueNode):
        return [_literal(v) for v in value.values]
    if isinstance(value, VariableNode):
        return _ABSENT
    return getattr(value, "value", None)
