"""Rules every document must meet beyond GraphQL's own validation, checked wherever a document
is validated (graph/schema.py for the resolvers, graph/compiled.py for the compiled path)."""

from __future__ import annotations

from graphql import (
    ASTValidationRule,
    DocumentNode,
    GraphQLError,
    OperationDefinitionNode,
)

from graph.errors import ErrorCode

RULES: tuple[type[ASTValidationRule], ...] = ()


def chosen_operation(
    document: DocumentNode, operation_name: str | None
) -> OperationDefinitionNode | None:
    """The operation that runs: the one named, or the only one; None when there is none."""
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if operation_name is None:
        return operations[0] if len(operations) == 1 else None
    return next(
        (o for o in operations if o.name is not None and o.name.value == operation_name), None
    )


def operation_choice_error(
    document: DocumentNode, operation_name: str | None
) -> GraphQLError | None:
    """A document of several operations runs only the one it names (the GraphQL spec's
    GetOperation: with no name, that is an error, not the first operation)."""
    if operation_name is not None:
        return None
    operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
    if operations > 1:
        return GraphQLError(
            "The document has several operations: name the one to run in `operationName`.",
            extensions={"code": ErrorCode.BAD_REQUEST.value},
        )
    return None
