"""Assembles the schema: Query, Mutation and the extensions every operation runs through."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionResult

from graph.errors import ErrorCode, classify_all
from graph.execution import FastListExecutionContext
from graph.mutations.api_keys import ApiKeyMutations
from graph.mutations.auth import AuthMutations
from graph.mutations.comments import CommentMutations
from graph.mutations.labels import LabelMutations
from graph.mutations.projects import ProjectMutations
from graph.mutations.tasks import TaskMutations
from graph.mutations.workspaces import WorkspaceMutations
from graph.types.query import Query


@strawberry.type
class Mutation(
    AuthMutations,
    WorkspaceMutations,
    ProjectMutations,
    TaskMutations,
    LabelMutations,
    CommentMutations,
    ApiKeyMutations,
):
    pass


class AuthGate(SchemaExtension):
    """Refuses the whole operation when the request carried bad credentials."""

    def on_execute(self) -> Iterator[None]:
        problem = getattr(self.execution_context.context, "auth_error", None)
        if problem is not None:
            self.execution_context.result = ExecutionResult(
                data=None,
                errors=[
                    GraphQLError(str(problem), extensions={"code": ErrorCode.UNAUTHENTICATED.value})
                ],
            )
        yield


class ValidationByText(SchemaExtension):
    """Validation results remembered by query text.

    Strawberry's `ValidationCache` keys its cache on the parsed document, whose hash walks
    the whole syntax tree on every request (a tenth of a small query's time in profiles).
    The parser cache already maps one text to one document, so the text is the key here.
    """

    def __init__(self, cache: OrderedDict[tuple[Any, ...], Any], maxsize: int) -> None:
        super().__init__()
        self.cache = cache
        self.maxsize = maxsize

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        rules = tuple(context.validation_rules)
        key = (id(context.schema._schema), context.query, rules)
        errors = self.cache.get(key) if context.query is not None else None
        if errors is None:
            errors = validate_document(context.schema._schema, context.graphql_document, rules)
            if context.query is not None:
                self.cache[key] = errors
                if len(self.cache) > self.maxsize:
                    self.cache.popitem(last=False)
        context.pre_execution_errors = errors
        yield


class TaskgraphSchema(strawberry.Schema):
    """Every error leaves with a code; faults are masked (see graph/errors.py). Done on the
    final result so that parse errors, which Strawberry reports outside the extension hooks,
    are covered too."""

    def __init__(self, *args: Any, debug: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.debug = debug

    async def execute(self, *args: Any, **kwargs: Any) -> ExecutionResult:  # type: ignore[override]
        result = await super().execute(*args, **kwargs)
        if result.errors:
            result.errors = classify_all(result.errors, debug=self.debug)
        return result

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Faults are logged once, with an error id, by the ErrorCodes extension; errors the
        client caused are not server problems and are not logged."""


def build_schema(*, debug: bool = False) -> strawberry.Schema:
    validated: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
    return TaskgraphSchema(
        query=Query,
        mutation=Mutation,
        extensions=[
            AuthGate,
            # Both caches are shared by every request of the process.
            lambda: ParserCache(maxsize=1000),
            lambda: ValidationByText(validated, maxsize=1000),
        ],
        debug=debug,
        execution_context_class=FastListExecutionContext,
    )


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
