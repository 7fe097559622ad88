"""Assembles the schema: Query, Mutation, Subscription and the extensions every operation runs
through."""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator
from contextlib import aclosing
from typing import TYPE_CHECKING, Any

import strawberry
from graphql import ASTValidationRule, GraphQLError, NoSchemaIntrospectionCustomRule
from strawberry.extensions import ParserCache, SchemaExtension
from strawberry.schema.schema import validate_document
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graph import document_rules
from graph.context import Context
from graph.errors import ErrorCode, classify_all, rebuilt
from graph.mutations.api_keys import ApiKeyMutations
from graph.mutations.auth import AuthMutations
from graph.mutations.comments import CommentMutations
from graph.mutations.labels import LabelMutations
from graph.mutations.projects import ProjectMutations
from graph.mutations.tasks import TaskMutations
from graph.mutations.workspaces import WorkspaceMutations
from graph.tracing import Spans
from graph.types.query import Query
from graph.types.task_event import Subscription

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from graph.subscriptions import Live


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


class Authentication(SchemaExtension):
    """Builds the request's principal before the operation runs (graph/context.py), and
    refuses the whole operation when the request carried bad credentials."""

    async def on_execute(self) -> AsyncIterator[None]:
        context = self.execution_context.context
        if isinstance(context, Context):
            try:
                await context.authenticate()
            except Exception as exc:
                # No session to be had: the operation's one answer (see TaskgraphSchema).
                self.execution_context.result = _failed(exc)
            else:
                if context.auth_error is not None:
                    self.execution_context.result = ExecutionResult(
                        data=None,
                        errors=[
                            GraphQLError(
                                str(context.auth_error),
                                extensions={"code": ErrorCode.UNAUTHENTICATED.value},
                            )
                        ],
                    )
        yield


def _failed(problem: Exception) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(str(problem), original_error=problem)])


class ValidationByText(SchemaExtension):
    """Validation results remembered by query text.

    Strawberry's `ValidationCache` keys its cache on the parsed document, whose hash walks
    the whole syntax tree on every request (a tenth of a small query's time in profiles).
    The parser cache already maps one text to one document, so the text is the key here.
    """

    def __init__(
        self,
        cache: OrderedDict[tuple[Any, ...], Any],
        maxsize: int,
        extra_rules: tuple[type[ASTValidationRule], ...] = (),
    ) -> None:
        super().__init__()
        self.cache = cache
        self.maxsize = maxsize
        self.extra_rules = (*document_rules.RULES, *extra_rules)

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        rules = (*context.validation_rules, *self.extra_rules)
        # The name the request gave: Strawberry's `operation_name` falls back to the first
        # operation's, which would run one of several operations that nobody named.
        name = context._provided_operation_name
        key = (id(context.schema._schema), context.query, name, rules)
        errors = self.cache.get(key) if context.query is not None else None
        if errors is None:
            document = context.graphql_document
            choice = document_rules.operation_choice_error(document, name)
            errors = (
                [choice] if choice else validate_document(context.schema._schema, document, rules)
            )
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

    def __init__(
        self, *args: Any, debug: bool = False, suggestions: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.debug = debug
        self.suggestions = suggestions
        # The app's subscriptions, set by its view (graph/view.py).
        self.live: Live | None = None

    async def execute(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
        operation_extensions: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        result = await super().execute(
            query,
            variable_values=variable_values,
            context_value=context_value,
            root_value=root_value,
            operation_name=operation_name,
            allowed_operation_types=allowed_operation_types,
            operation_extensions=operation_extensions,
        )
        unavailable = getattr(context_value, "unavailable", None)
        if unavailable is not None:
            # No session could be opened (the pool timed out, the database is down): every
            # field that needed one failed alike, and the first already waited the whole
            # timeout. One masked error says it, not a list of partial failures.
            result = _failed(unavailable)
        if result.errors:
            result.errors = self.client_errors(result.errors)
        return result

    def client_errors(self, errors: list[GraphQLError]) -> list[GraphQLError]:
        """Errors as a client gets them: each with its code, faults masked, and without
        suggested names when introspection is off."""
        errors = classify_all(errors, debug=self.debug)
        if not self.suggestions:
            errors = [_without_suggestions(error) for error in errors]
        return errors

    async def stream(
        self,
        query: str | None,
        variable_values: dict[str, Any] | None = None,
        context_value: Any | None = None,
        root_value: Any | None = None,
        operation_name: str | None = None,
        operation_extensions: dict[str, Any] | None = None,
        allowed_operation_types: Iterable[OperationType] | None = None,
    ) -> AsyncGenerator[Any, None]:
        """Operations over a stream (WebSockets, multipart HTTP): subscriptions served by the
        app's live events (graph/subscriptions.py), the rest by the schema's execution, each
        error with its code as over HTTP."""

        async def executed(context: Any) -> AsyncGenerator[Any, None]:
            results = await super(TaskgraphSchema, self).stream(
                query,
                variable_values=variable_values,
                context_value=context,
                root_value=root_value,
                operation_name=operation_name,
                operation_extensions=operation_extensions,
                allowed_operation_types=allowed_operation_types,
            )
            return self._classified(results)

        if self.live is None:
            return await executed(context_value)
        return await self.live.stream(
            query,
            variable_values,
            context_value,
            operation_name,
            allowed_operation_types,
            executed,
        )

    async def _classified(self, results: AsyncGenerator[Any, None]) -> AsyncGenerator[Any, None]:
        async with aclosing(results):
            async for result in results:
                if getattr(result, "errors", None):
                    result.errors = self.client_errors(result.errors)
                yield result

    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """Faults are logged once, with an error id, by the ErrorCodes extension; errors the
        client caused are not server problems and are not logged."""


_SUGGESTION = re.compile(r" ?Did you mean [^?]*\?")


def _without_suggestions(error: GraphQLError) -> GraphQLError:
    """The error without graphql-core's "Did you mean ...?": with introspection off, the names
    it suggests would tell a client the schema piece by piece."""
    message = _SUGGESTION.sub("", error.message)
    return error if message == error.message else rebuilt(error, message)


def build_schema(
    *, debug: bool = False, introspection: bool = True, tracer: Tracer | None = None
) -> strawberry.Schema:
    """The schema; without `introspection`, `__schema` and `__type` are refused by validation
    and errors suggest no names (`__typename` stays: clients need it). With a `tracer`, its
    execution has spans (graph/tracing.py); without, no hook of it runs."""
    validated: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
    extra_rules = () if introspection else (NoSchemaIntrospectionCustomRule,)
    traced: list[Callable[[], SchemaExtension]] = []
    if tracer is not None:
        traced.append(lambda: Spans(tracer))
    return TaskgraphSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        extensions=[
            *traced,
            Authentication,
            # Both caches are shared by every request of the process.
            lambda: ParserCache(maxsize=1000),
            lambda: ValidationByText(validated, maxsize=1000, extra_rules=extra_rules),
        ],
        debug=debug,
        suggestions=introspection,
    )


def export_sdl() -> str:
    return build_schema().as_str() + "\n"
