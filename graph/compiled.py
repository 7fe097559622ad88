"""Read queries answered by one SQL statement that builds the response's `data` in PostgreSQL.

A document is checked once (parsed, validated, every selected field found in the read
descriptions of `db.read_types`) and turned into `Pick`s for `db.json_statement`. Each request
then evaluates the arguments of the fields that take any, with the resolvers' own conversions
(Strawberry's argument conversion, the inputs' `to_db`, the descriptions' `convert`), and gets
the statement of its shape, built and compiled once and kept, with its values as parameters.

What goes to the resolvers instead, because its answer is an error or is not known here:
- documents that do not parse or validate, mutations, documents with several
  operations and no name, documents over `MAX_QUERY_CHARS`, selections of more than
  `json_statement.MAX_KEYS` keys, and any field without a read description;
- requests whose variables do not coerce, and arguments the resolvers refuse: a bad ID, a bad
  cursor, a page size out of range, `first` with `last`, too many filter values or order keys,
  `first: 0` after a cursor;
- `Workspace.apiKeys` for a principal who does not manage the workspace (FORBIDDEN), noticed in
  the statement's answer (`refused`);
- a request whose statement fails (logged by the caller).
tests/graph/test_compiled.py and tests/graph/test_read_corpus.py compare the two paths.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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
    ListValueNode,
    ObjectValueNode,
    OperationDefinitionNode,
    OperationType,
    SelectionSetNode,
    VariableNode,
    get_named_type,
    is_abstract_type,
    is_object_type,
    parse,
    specified_rules,
    validate,
)
from graphql.execution.get_variable_signature import (
    GraphQLVariableSignature,
    get_variable_signature,
)
from graphql.execution.values import (
    VariableValues,
    VariableValueSource,
    coerce_argument,
    get_argument_values,
    get_variable_values,
    input_is_nested_too_deeply,
)
from graphql.pyutils import Undefined
from graphql.type import is_non_null_type, is_required_argument
from graphql.utilities.coerce_input_value import coerce_input_value
from strawberry.schema.schema_converter import GraphQLCoreConverter

from db import json_statement, prepared
from db.descriptions import ById, Listing
from db.errors import InvalidArgument
from db.json_statement import NotCompiled, Pick
from db.principals import VIEWER_PARAM, Principal, principal_params
from db.read_types import TYPES
from graph import document_rules, query_limits
from graph.argument_conversion import arguments_converter, db_value
from graph.ids import from_global_id
from graph.types.query import MAX_NODES

# Switched off by tests that compare the compiled path with the normal one.
ENABLED = True
MAX_DOCUMENTS = 1000
# Longer documents are not compiled, so that the cache of documents stays small; by default
# the size limit refuses them anyway (graph/query_limits.py).
MAX_QUERY_CHARS = query_limits.DEFAULT_LIMITS.chars
# Compiled statements kept (all operations), and the bytes of their SQL.
MAX_KEPT = 4096
MAX_KEPT_BYTES = 32 << 20
# Trees (combinations of `@include`/`@skip` variables) kept per operation.
MAX_TREES = 16
# Larger selections are not compiled: building one statement would hold the event loop.
MAX_PICKS = 2000


class Unsupported(Exception):
    """The document is not compiled; the normal path serves it."""


class Fallback(Exception):
    """This request is served by the normal path (it would end in an error there)."""


@dataclass(slots=True)
class Site:
    """A field that takes arguments: where a request's values for it come from."""

    definition: GraphQLField
    node: FieldNode
    described: Any
    # The field's arguments as its resolver receives them (`graph.argument_conversion`).
    convert: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None
    # Under `node(id:)` or `nodes(ids:)`, the field is only read when an id is of this type:
    # (the node field's site, type name) for each of them above it.
    guard: tuple[tuple[int, str], ...] = ()
    # Whether the arguments take variables; if not, they are evaluated once (`constant`).
    variables: bool = True
    constant: tuple[Any, Hashable, dict[str, Any]] | None = None
    # How the arguments follow from the variables, worked out once (`ArgumentPlan`).
    plan: ArgumentPlan | None = None


@dataclass(frozen=True, slots=True)
class ArgumentPlan:
    """A field's arguments as graphql-core's `get_argument_values` coerces them, read from
    the document once: the values that do not depend on variables (literals, defaults), and
    for each argument given as a variable, where its value comes from. None of a field with
    a variable inside a literal (a list or an input object): graphql-core coerces those."""

    constants: dict[str, Any]
    # (output name, variable name, whether null is refused, what a missing variable gives:
    # None where the argument is required, an error of the normal path's).
    variables: tuple[tuple[str, str, bool, dict[str, Any] | None], ...]

    @classmethod
    def of(cls, definition: GraphQLField, node: FieldNode) -> ArgumentPlan | None:
        given = {a.name.value: a for a in node.arguments or ()}
        constants: dict[str, Any] = {}
        variables = []
        for name, argument in definition.args.items():
            argument_node = given.get(name)
            if argument_node is not None and isinstance(argument_node.value, VariableNode):
                out = argument.out_name or name
                missing: dict[str, Any] | None = None
                if not is_required_argument(argument):
                    # No value for the variable: as if the argument were left out.
                    missing = {}
                    coerce_argument(missing, node, name, argument, None, None, None)
                non_null = is_non_null_type(argument.type)
                variables.append((out, argument_node.value.name.value, non_null, missing))
                continue
            if argument_node is not None and _takes_variables(argument_node.value):
                return None
            coerce_argument(constants, node, name, argument, argument_node, None, None)
        return cls(constants, tuple(variables))

    def values(self, coerced: Mapping[str, Any]) -> dict[str, Any]:
        given = dict(self.constants)
        for out, variable, non_null, missing in self.variables:
            if variable not in coerced:
                if missing is None:
                    raise Fallback
                given.update(missing)
                continue
            value = coerced[variable]
            if value is None and non_null:
                raise Fallback
            given[out] = value
        return given


# A field whose arguments graphql-core coerces on every request.
_UNPLANNED = ArgumentPlan({}, ())


_trees = itertools.count()


@dataclass(slots=True)
class Tree:
    """The picks of an operation for one set of `@include`/`@skip` variable values."""

    picks: list[Pick]
    sites: list[Site]
    # Names the tree's statements in `KEPT` (an object's id could be reused once it is gone).
    token: int = field(default_factory=lambda: next(_trees))


class Kept:
    """Compiled statements of every operation, by (tree, shape), least recently used first
    out: bounded in number and in the bytes of their SQL, as one document can have many
    shapes (page sizes 0 and others, orders, filters, cursors, principals' kinds) and one
    shape of a large document can be hundreds of kilobytes of SQL."""

    def __init__(self) -> None:
        self.shapes: OrderedDict[Hashable, prepared.Shape] = OrderedDict()
        self.size = 0

    def get(self, key: Hashable) -> prepared.Shape | None:
        found = self.shapes.get(key)
        if found is not None:
            self.shapes.move_to_end(key)
        return found

    def put(self, key: Hashable, shape: prepared.Shape) -> None:
        self.shapes[key] = shape
        self.size += len(shape.sql)
        while len(self.shapes) > MAX_KEPT or self.size > MAX_KEPT_BYTES:
            _, dropped = self.shapes.popitem(last=False)
            self.size -= len(dropped.sql)


KEPT = Kept()


@dataclass(slots=True)
class Operation:
    operation: OperationDefinitionNode
    fragments: dict[str, FragmentDefinitionNode]
    # Variables that decide `@include`/`@skip`: each combination of values is a tree, the
    # most recently used kept.
    directive_variables: tuple[str, ...]
    trees: OrderedDict[tuple[Any, ...], Tree | None] = field(default_factory=OrderedDict)
    # The variables' types, read from the document by the first request (`_variable_values`).
    signatures: list[GraphQLVariableSignature] | None = None

    @property
    def kind(self) -> OperationType:
        return self.operation.operation

    @property
    def is_query(self) -> bool:
        return self.operation.operation is OperationType.QUERY


class Compiler:
    """Compiled operations of one schema, remembered by (query text, operation name)."""

    def __init__(self, schema: GraphQLSchema) -> None:
        self.schema = schema
        self.cache: OrderedDict[tuple[str, str | None], Operation | None] = OrderedDict()

    def lookup(
        self, query: str, operation_name: str | None, document: DocumentNode | None = None
    ) -> Operation | None:
        """The compiled operation of `query`, or None; `document` is the query parsed, when
        the caller has parsed it already (graph/admission.py)."""
        if not ENABLED or len(query) > MAX_QUERY_CHARS:
            return None
        key = (query, operation_name)
        if key in self.cache:
            self.cache.move_to_end(key)
            return self.cache[key]
        try:
            compiled: Operation | None = self._compile(query, operation_name, document)
        except Unsupported:
            compiled = None
        self.cache[key] = compiled
        if len(self.cache) > MAX_DOCUMENTS:
            self.cache.popitem(last=False)
        return compiled

    def _compile(
        self, query: str, operation_name: str | None, document: DocumentNode | None
    ) -> Operation:
        if document is None:
            try:
                document = parse(query)
            except GraphQLError:
                raise Unsupported from None
        operation = _operation(document, operation_name)
        if operation.operation not in _ROOTS:
            raise Unsupported  # a mutation: not validated here, the schema does that
        if validate(self.schema, document, (*specified_rules, *document_rules.RULES)):
            raise Unsupported
        fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        variables = sorted(_directive_variables(document))
        compiled = Operation(operation, fragments, tuple(variables))
        # The tree without variables is checked now: a document that cannot be compiled is
        # known as such once.
        if not variables:
            compiled.trees[()] = _Collector(self.schema, fragments, {}).tree(operation)
        return compiled


# The operations compiled, and the description of their root. A subscription's statement
# renders one event (graph/pubsub.py).
_ROOTS = {OperationType.QUERY: "Query", OperationType.SUBSCRIPTION: "Subscription"}


def _operation(document: DocumentNode, name: str | None) -> OperationDefinitionNode:
    operation = document_rules.chosen_operation(document, name)
    if operation is None:
        raise Unsupported
    return operation


def _directive_variables(document: DocumentNode) -> set[str]:
    found: set[str] = set()

    def visit(selection_set: SelectionSetNode | None) -> None:
        if selection_set is None:
            return
        for selection in selection_set.selections:
            for directive in selection.directives or ():
                for argument in directive.arguments:
                    if isinstance(argument.value, VariableNode):
                        found.add(argument.value.name.value)
            visit(getattr(selection, "selection_set", None))

    for definition in document.definitions:
        visit(getattr(definition, "selection_set", None))
    return found


class _Collector:
    """graphql-core's field collection, turned into picks of the read descriptions."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: dict[str, FragmentDefinitionNode],
        variables: dict[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables
        self.sites: list[Site] = []
        self.guard: tuple[tuple[int, str], ...] = ()
        self.picked = 0

    def tree(self, operation: OperationDefinitionNode) -> Tree:
        root = self.schema.get_root_type(operation.operation)
        assert root is not None
        picks = self.objects(root, [operation.selection_set])
        return Tree(picks, self.sites)

    def grouped(
        self, runtime: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> dict[str, list[FieldNode]]:
        grouped: dict[str, list[FieldNode]] = {}
        for selection_set in selection_sets:
            self._collect(runtime, selection_set, grouped, set())
        if len(grouped) > json_statement.MAX_KEYS:
            raise Unsupported
        return grouped

    def objects(
        self, parent: GraphQLObjectType, selection_sets: Sequence[SelectionSetNode]
    ) -> list[Pick]:
        node = TYPES.get(parent.name)
        if node is None:
            raise Unsupported
        picks = []
        for key, nodes in self.grouped(parent, selection_sets).items():
            self.picked += 1
            if self.picked > MAX_PICKS:
                raise Unsupported
            name = nodes[0].name.value
            if name == "__typename":
                picks.append(Pick(key, name))
                continue
            definition = parent.fields.get(name)
            if definition is None:
                raise Unsupported  # introspection
            described = node.fields.get(_python_name(definition))
            if described is None:
                raise Unsupported
            site = self._site(definition, nodes[0], described)
            named = get_named_type(definition.type)
            subsets = [n.selection_set for n in nodes if n.selection_set is not None]
            children: dict[str, list[Pick] | None] = {}
            if isinstance(described, Listing):
                assert is_object_type(named)
                children[named.name] = self.connection(named, subsets, described.target)  # type: ignore[arg-type]
            else:
                by_id = isinstance(described, ById)
                for runtime in self._runtime_types(named):
                    outer = self.guard
                    if by_id and site is not None:
                        self.guard = (*outer, (site, runtime.name))
                    try:
                        children[runtime.name] = self.objects(runtime, subsets)
                    except Unsupported:
                        if not is_abstract_type(named):
                            raise
                        children[runtime.name] = None
                    finally:
                        self.guard = outer
            picks.append(Pick(key, _python_name(definition), site, children))
        return picks

    def connection(
        self, connection: GraphQLObjectType, subsets: Sequence[SelectionSetNode], target: str
    ) -> list[Pick]:
        picks = []
        for key, nodes in self.grouped(connection, subsets).items():
            name = nodes[0].name.value
            children: dict[str, list[Pick] | None] = {}
            inner = [n.selection_set for n in nodes if n.selection_set is not None]
            if name == "nodes":
                children[target] = self.objects(self._object(target), inner)
            elif name == "edges":
                edge = get_named_type(connection.fields[name].type)
                assert is_object_type(edge)
                children[edge.name] = self.edge(edge, inner, target)  # type: ignore[arg-type]
            elif name == "pageInfo":
                info = get_named_type(connection.fields[name].type)
                children[info.name] = self.leaves(info, inner)  # type: ignore[arg-type]
            elif name not in ("totalCount", "__typename"):
                raise Unsupported
            picks.append(Pick(key, name, None, children))
        return picks

    def edge(
        self, edge: GraphQLObjectType, subsets: Sequence[SelectionSetNode], target: str
    ) -> list[Pick]:
        picks = []
        for key, nodes in self.grouped(edge, subsets).items():
            name = nodes[0].name.value
            children: dict[str, list[Pick] | None] = {}
            if name == "node":
                inner = [n.selection_set for n in nodes if n.selection_set is not None]
                children[target] = self.objects(self._object(target), inner)
            elif name not in ("cursor", "__typename"):
                raise Unsupported
            picks.append(Pick(key, name, None, children))
        return picks

    def leaves(self, parent: GraphQLObjectType, subsets: Sequence[SelectionSetNode]) -> list[Pick]:
        return [
            Pick(key, nodes[0].name.value) for key, nodes in self.grouped(parent, subsets).items()
        ]

    def _object(self, name: str) -> GraphQLObjectType:
        found = self.schema.get_type(name)
        assert is_object_type(found)
        return found  # type: ignore[return-value]

    def _site(self, definition: GraphQLField, node: FieldNode, described: Any) -> int | None:
        if not definition.args:
            return None
        takes = any(_takes_variables(a.value) for a in node.arguments or ())
        self.sites.append(Site(definition, node, described, guard=self.guard, variables=takes))
        return len(self.sites) - 1

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
                if selection.type_condition is None or self._applies(
                    selection.type_condition.name.value, runtime
                ):
                    self._collect(runtime, selection.selection_set, grouped, visited)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments[name]
                if self._applies(fragment.type_condition.name.value, runtime):
                    self._collect(runtime, fragment.selection_set, grouped, visited)

    def _included(self, selection: Any) -> bool:
        included = True
        for directive in selection.directives or ():
            name = directive.name.value
            if name not in ("include", "skip"):
                raise Unsupported
            (argument,) = directive.arguments
            if isinstance(argument.value, VariableNode):
                value = bool(self.variables.get(argument.value.name.value))
            else:
                value = argument.value.value  # type: ignore[attr-defined]
            included = included and (value if name == "include" else not value)
        return included

    def _applies(self, condition: str, runtime: GraphQLObjectType) -> bool:
        named = self.schema.get_type(condition)
        if named is None:
            return False
        if named is runtime:
            return True
        return is_abstract_type(named) and self.schema.is_sub_type(named, runtime)  # type: ignore[arg-type]


def _takes_variables(value: Any) -> bool:
    if isinstance(value, VariableNode):
        return True
    if isinstance(value, ListValueNode):
        return any(_takes_variables(v) for v in value.values)
    if isinstance(value, ObjectValueNode):
        return any(_takes_variables(f.value) for f in value.fields)
    return False


def _python_name(definition: GraphQLField) -> str:
    backref = (definition.extensions or {}).get(GraphQLCoreConverter.DEFINITION_BACKREF)
    return backref.python_name if backref is not None else ""


# Requests --------------------------------------------------------------------------------


def statement(
    schema: GraphQLSchema,
    operation: Operation,
    principal: Principal | None,
    variables: dict[str, Any] | None,
    viewer: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> tuple[str, list[Any]]:
    """The SQL and parameters of one request; Fallback where the normal path must answer.

    With a `viewer` (the user of a good access token) instead of a principal, the statement
    reads the user's memberships itself and returns NULL when the user no longer exists.
    `extra` holds parameters of the root's own (a subscription's event).
    """
    definitions = operation.operation.variable_definitions or ()
    values: Any = None
    coerced: dict[str, Any] = {}
    if definitions:
        values = _variable_values(schema, operation, variables or {})
        coerced = values.coerced
    tree = _tree(schema, operation, coerced)
    args: list[Any] = []
    shapes = []
    params: dict[str, Any] = (
        {VIEWER_PARAM: viewer} if principal is None else principal_params(principal)
    )
    if extra:
        params.update(extra)
    try:
        for i, site in enumerate(tree.sites):
            if not all(_reads(tree.sites[j], args[j], t) for j, t in site.guard):
                # Under a `node` whose id is of another type: not read by this request.
                args.append(None)
                shapes.append(None)
                continue
            if site.constant is not None:
                value, shape, given = site.constant
            else:
                value = _arguments(schema, site, values)
                shape, given = json_statement.bind(site.described, value, i)
                if not site.variables:
                    # Written in the document alone: the same for every request.
                    site.constant = (value, shape, given)
            args.append(value)
            shapes.append(shape)
            params.update(given)
        key = (tree.token, principal is None, tuple(shapes))
        compiled = KEPT.get(key)
        if compiled is None:
            root = _ROOTS[operation.operation.operation]
            built = json_statement.build(TYPES, root, tree.picks, args, principal is None)
            compiled = prepared.compile_shape(built)
            KEPT.put(key, compiled)
    except NotCompiled:
        raise Fallback from None
    return compiled.sql, prepared.arguments(compiled, params)


def _variable_values(
    schema: GraphQLSchema, operation: Operation, inputs: dict[str, Any]
) -> VariableValues:
    """The request's variables coerced as graphql-core's `get_variable_values` coerces them,
    with the variables' types read from the document once per operation rather than once per
    request (half of the coercion's time). Anything but a plain value given for every
    variable without a default (a default, a value left out, a value that does not coerce)
    goes through graphql-core itself; its errors are the normal path's to answer."""
    signatures = operation.signatures
    if signatures is None:
        found = [
            get_variable_signature(schema, d) for d in operation.operation.variable_definitions
        ]
        if any(isinstance(s, GraphQLError) for s in found):
            raise Fallback
        signatures = operation.signatures = found  # type: ignore[assignment]
    sources: dict[str, VariableValueSource] = {}
    coerced: dict[str, Any] = {}
    for signature in signatures:
        name = signature.name
        value = inputs.get(name, Undefined)
        if value is Undefined or signature.default is not None:
            return _slow_variable_values(schema, operation, inputs)
        sources[name] = VariableValueSource(signature, value)
        if isinstance(value, list | dict) and input_is_nested_too_deeply(value, signature.type):
            raise Fallback
        found_value = coerce_input_value(value, signature.type)
        if found_value is Undefined:
            return _slow_variable_values(schema, operation, inputs)
        coerced[name] = found_value
    return VariableValues(sources, coerced)


def _slow_variable_values(
    schema: GraphQLSchema, operation: Operation, inputs: dict[str, Any]
) -> VariableValues:
    values = get_variable_values(schema, operation.operation.variable_definitions, inputs)
    if isinstance(values, list):
        raise Fallback
    return values


def _reads(site: Site, args: Any, type_name: str) -> bool:
    """Whether the ids of a `node`/`nodes` field (`args`) name an object of `type_name`."""
    if args is None:
        return False
    if site.described.many:
        return any(t == type_name for t, _ in args)
    return bool(args[0] == type_name)


def refused(text: str) -> bool:
    """Whether a compiled answer holds a value the principal may not read (see `statement`)."""
    return json_statement.REFUSED_TEXT in text


def _tree(schema: GraphQLSchema, operation: Operation, coerced: dict[str, Any]) -> Tree:
    given = [coerced.get(name) for name in operation.directive_variables]
    if any(value is None for value in given):
        # `if:` is a non-null Boolean: the resolvers answer a null with an error.
        raise Fallback
    values = tuple(bool(value) for value in given)
    if values in operation.trees:
        operation.trees.move_to_end(values)
    else:
        collector = _Collector(
            schema,
            operation.fragments,
            dict(zip(operation.directive_variables, values, strict=True)),
        )
        try:
            operation.trees[values] = collector.tree(operation.operation)
        except Unsupported:
            operation.trees[values] = None
        if len(operation.trees) > MAX_TREES:
            operation.trees.popitem(last=False)
    tree = operation.trees[values]
    if tree is None:
        raise Fallback
    return tree


def _arguments(schema: GraphQLSchema, site: Site, values: Any) -> Any:
    """The field's arguments as its description takes them, converted as the resolvers
    convert them; Fallback where the resolvers answer an error."""
    try:
        if site.plan is None:
            site.plan = ArgumentPlan.of(site.definition, site.node) or _UNPLANNED
        if site.plan is _UNPLANNED:
            given = get_argument_values(site.definition, site.node, values)
        else:
            given = site.plan.values(values.coerced if values is not None else {})
    except GraphQLError:
        # e.g. null given for a defaulted variable that feeds a non-null argument.
        raise Fallback from None
    described = site.described
    try:
        if isinstance(described, ById):
            if described.many:
                ids = given["ids"]
                if len(ids) > MAX_NODES:
                    raise Fallback
                return [from_global_id(i) for i in ids]
            return from_global_id(given["id"])
        if site.convert is None:
            strawberry_schema = schema._strawberry_schema  # type: ignore[attr-defined]
            backref = site.definition.extensions[GraphQLCoreConverter.DEFINITION_BACKREF]
            site.convert = arguments_converter(
                backref.arguments,
                strawberry_schema.schema_converter.scalar_registry,
                strawberry_schema.config,
            )
        kwargs = site.convert(given)
        return described.arguments.convert(**{k: db_value(v) for k, v in kwargs.items()})
    except InvalidArgument:
        raise Fallback from None
