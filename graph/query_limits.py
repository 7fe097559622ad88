"""Limits on the shape of a query document, checked before it runs and costing no database work.

- size: the document's length in characters, checked before parsing;
- tokens: graphql-core stops parsing after `tokens` tokens (`parse(..., max_tokens=)`);
- depth: the most fields on one path from a root field to a leaf (`{ me { name } }` is 2);
- aliases: fields written with an alias, counted in the operation with its fragments
  expanded (a fragment with 5 aliases spread 4 times counts 20): what the response repeats;
- root fields: the operation's distinct response keys at the root.

Depth, aliases and root fields are counted through fragment spreads and inline fragments.
Each fragment is summarised once (memoised), so a document whose fragments spread each other
many times is checked in time linear in its size; a spread of a fragment that is being
summarised (a cycle, which validation refuses anyway) counts as empty instead of looping.
All the operation's fields count, whatever their `@include`/`@skip` (the check is static).

Introspection: GraphiQL's introspection query (graphql-js `getIntrospectionQuery`, as graphql-
core's `get_introspection_query`) is 15 fields deep, 9 of them the `ofType` chain of
`fragment TypeRef`. `ofType` adds no depth: it is one wrapper type inside another (at most a
few levels in any schema), never a fan-out, so that query is 6 deep and passes the default
limit, while introspection that does fan out (`types { fields { type { fields { ... } } } }`)
is counted like any other nesting. Only `__Type.ofType` has that name in this schema.

A failed limit is a `GraphQLError` with `extensions.code` QUERY_TOO_COMPLEX, the limit's
name (`limit`) and its value (`maximum`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSyntaxError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationRule,
    parse,
)

from graph.document_rules import chosen_operation
from graph.errors import ErrorCode

if TYPE_CHECKING:
    from graphql import ValidationContext

    from graph.settings import Settings

# Fields that add no depth (see the module's docstring).
_NO_DEPTH = frozenset({"ofType"})


@dataclass(frozen=True, slots=True)
class Limits:
    chars: int = 20_000
    tokens: int = 5_000
    depth: int = 12
    aliases: int = 30
    root_fields: int = 20

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(
            chars=settings.max_query_chars,
            tokens=settings.max_query_tokens,
            depth=settings.max_query_depth,
            aliases=settings.max_query_aliases,
            root_fields=settings.max_query_root_fields,
        )


DEFAULT_LIMITS = Limits()


def too_complex(message: str, limit: str, maximum: int, **extra: object) -> GraphQLError:
    return GraphQLError(
        message,
        extensions={
            "code": ErrorCode.QUERY_TOO_COMPLEX.value,
            "limit": limit,
            "maximum": maximum,
            **extra,
        },
    )


def check_text(query: str, limits: Limits) -> GraphQLError | None:
    """The size limit, for a document not parsed yet."""
    if len(query) > limits.chars:
        return too_complex(
            f"Query size {len(query)} characters exceeds the limit of {limits.chars}.",
            "chars",
            limits.chars,
        )
    return None


def too_many_tokens(error: GraphQLError, limits: Limits) -> GraphQLError | None:
    """graphql-core's syntax error for a document over `max_tokens`, as a QUERY_TOO_COMPLEX
    error; None for any other error (a plain syntax error stays GRAPHQL_PARSE_FAILED)."""
    if isinstance(error, GraphQLSyntaxError) and "tokens. Parsing aborted." in error.message:
        return too_complex(
            f"Query token count exceeds the limit of {limits.tokens}.", "tokens", limits.tokens
        )
    return None


def parse_limited(query: str, limits: Limits) -> DocumentNode:
    """Parse within the size and token limits; raises `GraphQLError` (QUERY_TOO_COMPLEX for
    a limit, graphql-core's `GraphQLSyntaxError` for bad syntax)."""
    error = check_text(query, limits)
    if error is not None:
        raise error
    try:
        return parse(query, max_tokens=limits.tokens)
    except GraphQLError as exc:
        limited = too_many_tokens(exc, limits)
        if limited is not None:
            raise limited from None
        raise


@dataclass(frozen=True, slots=True)
class Shape:
    """What the limits measure of an operation."""

    depth: int
    aliases: int
    root_fields: int


class _Measure:
    def __init__(self, fragments: dict[str, FragmentDefinitionNode]) -> None:
        self.fragments = fragments
        # Per fragment: (depth, aliases) of its selection set.
        self.done: dict[str, tuple[int, int]] = {}
        self.open: set[str] = set()

    def selections(self, selection_set: SelectionSetNode) -> tuple[int, int]:
        """(depth, aliases) of a selection set."""
        depth = aliases = 0
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                inner_depth, inner_aliases = (
                    self.selections(selection.selection_set)
                    if selection.selection_set is not None
                    else (0, 0)
                )
                own = 0 if selection.name.value in _NO_DEPTH else 1
                depth = max(depth, own + inner_depth)
                aliases += inner_aliases + (selection.alias is not None)
            elif isinstance(selection, InlineFragmentNode):
                inner_depth, inner_aliases = self.selections(selection.selection_set)
                depth = max(depth, inner_depth)
                aliases += inner_aliases
            elif isinstance(selection, FragmentSpreadNode):
                inner_depth, inner_aliases = self.fragment(selection.name.value)
                depth = max(depth, inner_depth)
                aliases += inner_aliases
        return depth, aliases

    def fragment(self, name: str) -> tuple[int, int]:
        found = self.done.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.open:
            # Unknown, or a cycle: validation refuses the document; count nothing.
            return 0, 0
        self.open.add(name)
        try:
            measured = self.selections(definition.selection_set)
        finally:
            self.open.discard(name)
        self.done[name] = measured
        return measured

    def root_keys(self, selection_set: SelectionSetNode, keys: set[str], seen: set[str]) -> None:
        for selection in selection_set.selections:
            if isinstance(selection, FieldNode):
                keys.add((selection.alias or selection.name).value)
            elif isinstance(selection, InlineFragmentNode):
                self.root_keys(selection.selection_set, keys, seen)
            elif isinstance(selection, FragmentSpreadNode):
                name = selection.name.value
                definition = self.fragments.get(name)
                if definition is not None and name not in seen:
                    seen.add(name)
                    self.root_keys(definition.selection_set, keys, seen)


def fragments_of(document: DocumentNode) -> dict[str, FragmentDefinitionNode]:
    return {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}


def operations_of(
    document: DocumentNode, operation_name: str | None
) -> list[OperationDefinitionNode]:
    """The operation that would run: the one named, or the only one; none when that is not
    known (execution reports it)."""
    chosen = chosen_operation(document, operation_name)
    return [chosen] if chosen is not None else []


def measure(
    operation: OperationDefinitionNode, fragments: dict[str, FragmentDefinitionNode]
) -> Shape:
    measuring = _Measure(fragments)
    depth, aliases = measuring.selections(operation.selection_set)
    keys: set[str] = set()
    measuring.root_keys(operation.selection_set, keys, set())
    return Shape(depth, aliases, len(keys))


def check_operations(
    operations: Iterable[OperationDefinitionNode],
    fragments: dict[str, FragmentDefinitionNode],
    limits: Limits,
) -> GraphQLError | None:
    for operation in operations:
        shape = measure(operation, fragments)
        if shape.depth > limits.depth:
            return too_complex(
                f"Query depth {shape.depth} exceeds the limit of {limits.depth}.",
                "depth",
                limits.depth,
            )
        if shape.aliases > limits.aliases:
            return too_complex(
                f"Query alias count {shape.aliases} exceeds the limit of {limits.aliases}.",
                "aliases",
                limits.aliases,
            )
        if shape.root_fields > limits.root_fields:
            return too_complex(
                f"Query root field count {shape.root_fields} exceeds the limit of "
                f"{limits.root_fields}.",
                "rootFields",
                limits.root_fields,
            )
    return None


def check(
    document: DocumentNode, operation_name: str | None, limits: Limits
) -> GraphQLError | None:
    """The first limit the operation that would run fails (depth, aliases, root fields), or
    None. The size and token limits are checked on the text (`parse_limited`)."""
    return check_operations(operations_of(document, operation_name), fragments_of(document), limits)


def limits_rule(limits: Limits) -> type[ValidationRule]:
    """A validation rule for Strawberry's validation: it checks every operation of the
    document (a validation rule does not know which one will run)."""

    class QueryLimits(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)
            document = context.document
            operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
            error = check_operations(operations, fragments_of(document), limits)
            if error is not None:
                context.report_error(error)

    return QueryLimits
