"""Subscriptions: `taskEvents` over WebSockets (graphql-transport-ws and the legacy graphql-ws)
and over HTTP (multipart), each joined to the process's hub (graph/pubsub.py).

Strawberry's protocol handlers run every operation of a WebSocket through the schema's
`stream`; the schema hands it here (graph/schema.py). A subscription the read path compiles
(every one within the limits) is checked and joined to the hub here, ahead of the schema's
execution: the hub renders each event once per group of subscribers, not once per subscriber
as the schema's execution would. Documents that do not parse or validate, and selections too
large to compile, go on to the schema's execution, which answers them with their errors.

Queries and mutations sent over a WebSocket run as over HTTP, each with a context of its own
(its own session, closed when it ends) with the connection's credentials.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, Callable, Iterable
from typing import Any

import orjson
from graphql import FieldNode, GraphQLError, GraphQLSchema
from graphql import OperationType as GraphQLOperationType
from graphql.execution.values import get_argument_values, get_variable_values
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError
from strawberry.types.graphql import OperationType

from db import projects
from db.activities import EVENT_PARAM
from db.errors import InvalidArgument
from graph import compiled
from graph.admission import Admission
from graph.context import Context
from graph.errors import ErrorCode, classify_all
from graph.ids import db_id_of
from graph.pubsub import Hub, Subscriber
from graph.rate_limits import principal_key

log = logging.getLogger(__name__)

# A stream of results, as Strawberry's transports read it.
Stream = AsyncGenerator[ExecutionResult, None]
Fallback = Callable[..., Any]


def _refused(message: str, code: ErrorCode, **extensions: Any) -> PreExecutionError:
    return PreExecutionError(
        data=None, errors=[GraphQLError(message, extensions={"code": code, **extensions})]
    )


async def _once(result: ExecutionResult) -> Stream:
    yield result


class Live:
    """The subscriptions of one app: checked, then served by its hub."""

    def __init__(
        self,
        schema: GraphQLSchema,
        compiler: compiled.Compiler,
        admission: Admission,
        hub: Callable[[], Hub],
        *,
        per_connection: int,
        per_principal: int,
        debug: bool = False,
    ) -> None:
        self.schema = schema
        self.compiler = compiler
        self.admission = admission
        self._hub_factory = hub
        self._hub: Hub | None = None
        self.per_connection = per_connection
        self.per_principal = per_principal
        self.debug = debug

    @property
    def hub(self) -> Hub:
        if self._hub is None:
            self._hub = self._hub_factory()
        return self._hub

    @property
    def started(self) -> Hub | None:
        return self._hub

    async def close(self) -> None:
        if self._hub is not None:
            await self._hub.close()

    async def stream(
        self,
        query: str | None,
        variables: dict[str, Any] | None,
        context: Any,
        operation_name: str | None,
        allowed: Iterable[OperationType] | None,
        fallback: Fallback,
    ) -> Stream:
        """The results of one operation sent over a stream (a WebSocket or HTTP)."""
        if not isinstance(context, Context):
            return await fallback(context)  # type: ignore[no-any-return]
        operation = self.compiler.lookup(query, operation_name) if query is not None else None
        if operation is None or operation.kind is not GraphQLOperationType.SUBSCRIPTION:
            # Not a subscription the read path renders: the schema's execution answers it.
            return await self._operation(context, fallback)
        if allowed is not None and OperationType.SUBSCRIPTION not in set(allowed):
            return await fallback(context)  # type: ignore[no-any-return]
        assert query is not None
        checked = self.admission.check(query, operation_name)
        if checked.error is not None:
            return _once(PreExecutionError(data=None, errors=[checked.error]))
        try:
            return await self._subscribe(context, operation, (query, operation_name), variables)
        except _Refusal as refusal:
            return _once(refusal.result)

    async def _operation(self, connection: Context, fallback: Fallback) -> Stream:
        """A query or mutation over a WebSocket: a context of its own, closed at its end."""
        context = Context(connection.resources, connection.authorization)
        context.request = connection.request
        results = await fallback(context)

        async def closing() -> Stream:
            try:
                async for result in results:
                    yield result
            finally:
                await results.aclose()
                await context.close()

        return closing()

    async def _subscribe(
        self,
        context: Context,
        operation: compiled.Operation,
        query_key: tuple[str, str | None],
        variables: dict[str, Any] | None,
    ) -> Stream:
        workspace_id, project_id = self._arguments(operation, variables)
        await context.authenticate()
        principal = context.principal
        if context.auth_error is not None:
            raise _Refusal(_refused(str(context.auth_error), ErrorCode.UNAUTHENTICATED))
        if principal.is_anonymous:
            raise _Refusal(
                _refused("Sign in, or use an API key, to subscribe.", ErrorCode.UNAUTHENTICATED)
            )
        if not principal.can_read(workspace_id):
            raise _Refusal(_refused("Workspace not found.", ErrorCode.NOT_FOUND))
        try:
            # Checked now, with any event id: a request the statement refuses (its variables)
            # is refused before it joins.
            compiled.statement(self.schema, operation, principal, variables, extra={EVENT_PARAM: 0})
        except compiled.Fallback:
            raise _Refusal(
                _refused("This subscription cannot be served.", ErrorCode.BAD_USER_INPUT)
            ) from None
        # The caps are taken before anything waits: subscriptions sent together (each runs in
        # a task of its own) are counted together.
        who = principal_key(principal.user_id, principal.api_key_id, None)
        hub = self.hub
        if context.subscriptions >= self.per_connection:
            raise _Refusal(
                _refused(
                    f"A connection may hold at most {self.per_connection} subscriptions.",
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    limit=self.per_connection,
                )
            )
        if hub.count_of(who) >= self.per_principal:
            raise _Refusal(
                _refused(
                    f"You may hold at most {self.per_principal} subscriptions at once.",
                    ErrorCode.TOO_MANY_SUBSCRIPTIONS,
                    limit=self.per_principal,
                )
            )
        subscriber = Subscriber(principal, workspace_id, project_id, who)
        events = Events(hub, subscriber, context)
        try:
            if project_id is not None:
                async with hub.open_pooled() as pooled:
                    found = await projects.workspace_of(pooled, project_id)
                if found != workspace_id:
                    raise _Refusal(_refused("Project not found.", ErrorCode.NOT_FOUND))
            key = (query_key, orjson.dumps(variables or {}, option=orjson.OPT_SORT_KEYS))
            await hub.join(subscriber, operation, key, variables)
        except _Refusal:
            await events.aclose()
            raise
        except Exception as exc:
            await events.aclose()
            log.warning("a subscription could not join the live events: %s", exc)
            error = classify_all([GraphQLError(str(exc), original_error=exc)], debug=self.debug)
            raise _Refusal(PreExecutionError(data=None, errors=error)) from None
        except BaseException:
            await events.aclose()
            raise
        return events

    def _arguments(
        self, operation: compiled.Operation, variables: dict[str, Any] | None
    ) -> tuple[int, int | None]:
        """The workspace and project of `taskEvents`."""
        definitions = operation.operation.variable_definitions or ()
        values: Any = None
        if definitions:
            values = get_variable_values(self.schema, definitions, variables or {})
            if isinstance(values, list):
                raise _Refusal(
                    PreExecutionError(data=None, errors=classify_all(values, debug=self.debug))
                )
        (field,) = [
            s for s in operation.operation.selection_set.selections if isinstance(s, FieldNode)
        ] or [None]
        root = self.schema.subscription_type
        if field is None or root is None or field.name.value != "taskEvents":
            raise _Refusal(_refused("Subscribe to taskEvents.", ErrorCode.BAD_USER_INPUT))
        try:
            given = get_argument_values(root.fields["taskEvents"], field, values)
            workspace_id = db_id_of(given["workspaceId"], "Workspace", argument="workspaceId")
            project = given.get("projectId")
            project_id = (
                db_id_of(project, "Project", argument="projectId") if project is not None else None
            )
        except (GraphQLError, InvalidArgument) as exc:
            raise _Refusal(_refused(str(exc), ErrorCode.BAD_USER_INPUT)) from None
        return workspace_id, project_id


class _Refusal(Exception):
    def __init__(self, result: PreExecutionError) -> None:
        super().__init__(result.errors)
        self.result = result


class Events:
    """One subscription's results, as Strawberry's transports read them. Its place in the hub
    and in its connection's count are taken when it is made and given back when it is closed
    (`aclose`), whether or not it was ever read: a generator that never started would not run
    its `finally`."""

    def __init__(self, hub: Hub, subscriber: Subscriber, context: Context) -> None:
        self.hub = hub
        self.subscriber = subscriber
        self.context = context
        self.closed = False
        context.subscriptions += 1
        hub.reserve(subscriber.who)

    def __aiter__(self) -> Events:
        return self

    async def __anext__(self) -> ExecutionResult:
        if self.closed:
            raise StopAsyncIteration
        try:
            result = await self.subscriber.queue.get()
        except BaseException:
            # Cancelled while waiting (the client went): a reader that is cancelled does not
            # close what it reads.
            await self.aclose()
            raise
        if result is None:
            await self.aclose()
            raise StopAsyncIteration
        return result

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.hub.leave(self.subscriber)
            self.context.subscriptions -= 1
