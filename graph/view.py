"""The HTTP view of /graphql: Strawberry's router, with the project's GraphQL over HTTP.

Every request to /graphql goes through this one view, so HTTP parsing, content negotiation,
limits, validation, error masking and the response encoding exist once:

- GET and POST follow the GraphQL-over-HTTP specification (graph/http_protocol.py): the
  media type is negotiated, request errors are 4xx answers with a GraphQL error and its
  `extensions.code`, never plain text; bodies larger than `MAX_BODY_BYTES` are refused (413)
  before they are read to the end;
- a query the compiler knows (graph/compiled.py) is answered by one statement in which
  PostgreSQL builds the `data` JSON, written into the response as it came. This happens
  before Strawberry parses, validates and executes: the compiler parsed and validated the
  document once, when it compiled it, and a compiled answer has no errors to mask. Whatever
  the compiled path does not answer (or would answer with an error) goes on to the schema's
  execution, with its extensions (graph/schema.py);
- WebSockets are Strawberry's own; the GraphiQL page is graph/graphiql.py's.

The compiled answer is found here, ahead of the schema's execution, rather than in a schema
extension's `on_execute`, where every compiled request paid for setting up an execution (its
context, the extensions and their runner, the parse and validation hooks): 0.1 ms of CPU more
per request in profiles (bench/README.md, step 20).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta
from typing import Any

import asyncpg
import orjson
from fastapi import FastAPI
from fastapi.exception_handlers import http_exception_handler
from graphql import GraphQLError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.fastapi import GraphQLRouter
from strawberry.schema import BaseSchema
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions import (
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from db import prepared
from db.errors import unavailable
from db.principals import Principal
from graph import browser_sessions, compiled, graphiql, request_log, tracing
from graph.admission import Admission
from graph.context import Context, Resources, Run
from graph.errors import ErrorCode, classify_all
from graph.http_protocol import (
    GRAPHQL_RESPONSE,
    JSON,
    Params,
    RequestError,
    check_content_type,
    decode_body,
    decode_query_string,
    may_be_forged,
    negotiate,
    request_error_status,
)
from graph.persisted_documents import Documents
from graph.pubsub import Hub
from graph.query_limits import Limits
from graph.rate_limits import client_address, principal_key
from graph.subscriptions import Live

log = logging.getLogger(__name__)

# Larger bodies are refused before they are read to the end (a query document plus its
# variables; task descriptions, the largest values, are limited to 50,000 characters).
MAX_BODY_BYTES = 1 << 20

# Queries only over GET: a mutation there is refused with 405 (the spec; and a GET must be
# safe to repeat, cache and prefetch).
_ALLOWED = {
    "GET": frozenset({OperationType.QUERY}),
    "POST": frozenset({OperationType.QUERY, OperationType.MUTATION}),
}


class _Headers(dict[str, str]):
    """The request headers that the view reads, decoded in one pass over the ASGI scope's
    (Starlette's `Headers.get` decodes and compares every header on each call)."""

    _READ = frozenset(
        {
            b"accept",
            b"content-type",
            b"content-length",
            b"authorization",
            b"x-request-id",
            b"apollo-require-preflight",
            b"x-apollo-operation-name",
        }
    )

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        super().__init__()
        read = self._READ
        for name, value in raw:
            if name in read:
                self[name.decode()] = value.decode("latin-1")


async def _body(request: Request, headers: Mapping[str, str]) -> bytes:
    declared = headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise _too_large()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise _too_large()
        chunks.append(chunk)
    return b"".join(chunks)


async def _bucket(context: Context) -> str:
    """The rate-limit bucket of a request: its user's (known from the access token without a
    statement), its API key's (the key is looked up, as any operation would), or, anonymous
    or with bad credentials, its address's."""
    user = context.token_user()
    if user is None and context.authorization:
        try:
            await context.authenticate()
        except Exception:
            # No session to be had: the operation reports it.
            log.debug("no principal for the rate limit", exc_info=True)
        else:
            principal = context.principal
            user = principal.user_id if principal.api_key_id is None else None
            if principal.api_key_id is not None:
                return principal_key(None, principal.api_key_id, None)
    if user is not None:
        return principal_key(user, None, None)
    return principal_key(None, None, client_address(context.request))


_UNAVAILABLE = ErrorCode.SERVICE_UNAVAILABLE.value


def _code(error: GraphQLError) -> str | None:
    return (error.extensions or {}).get("code")


def _wants_graphiql(request: Request) -> bool:
    """A browser's GET of the page itself, not an operation (by text or by id)."""
    params = request.query_params
    if any(name in params for name in ("query", "extensions", "documentId", "doc_id")):
        return False
    accept = request.headers.get("accept", "")
    return "text/html" in accept or "*/*" in accept


def _too_large() -> RequestError:
    return RequestError(413, f"The request body exceeds {MAX_BODY_BYTES} bytes.")


class Answer(Response):
    """A response whose body is already encoded: its headers are written once, as bytes."""

    def __init__(
        self,
        body: bytes,
        status: int = 200,
        media_type: str = JSON,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.status_code = status
        self.body = body
        self.background = None
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", _MEDIA_TYPES.get(media_type) or media_type.encode()),
        ]
        if headers:
            self.raw_headers += [(k.lower().encode(), v.encode()) for k, v in headers.items()]


_MEDIA_TYPES = {JSON: JSON.encode(), GRAPHQL_RESPONSE: GRAPHQL_RESPONSE.encode()}


def refused(error: RequestError, media_type: str = JSON) -> Answer:
    """A request refused before any operation ran, in the form of every other answer."""
    status = error.status
    if status is None:
        status = request_error_status(error.code.value, media_type)
    entry = request_log.current()
    if entry is not None:
        error.extensions["requestId"] = entry.request_id
        entry.errors.append(error.code.value)
    return Answer(error.body(), status, media_type, error.headers)


def _identified(formatted: dict[str, Any]) -> dict[str, Any]:
    """An error as answered, with the request's id (and its code noted for the log line)."""
    entry = request_log.current()
    if entry is None:
        return formatted
    extensions = formatted.get("extensions") or {}
    entry.errors.append(extensions.get("code", ""))
    return {**formatted, "extensions": {**extensions, "requestId": entry.request_id}}


class _LegacyWebSocket(BaseGraphQLWSHandler[Context, None]):
    """The legacy graphql-ws protocol, closing a connection that sends no `connection_init`
    in time (4408, as graphql-transport-ws does; the protocol itself has no deadline)."""

    async def handle(self) -> None:
        deadline = asyncio.create_task(self._close_unless_initialised())
        try:
            await super().handle()
        finally:
            deadline.cancel()

    async def _close_unless_initialised(self) -> None:
        await asyncio.sleep(self.view.ws_init_timeout)  # type: ignore[attr-defined]
        if not self.connection_acknowledged:
            await self.websocket.close(code=4408, reason="Connection initialisation timeout")


class GraphQLView(GraphQLRouter[Context, None]):
    """Strawberry's view of /graphql: its schema execution (with the schema's extensions),
    GraphiQL and WebSockets, and the project's GraphQL-over-HTTP handling of GET and POST
    (graph/http_protocol.py), which Strawberry's own handling does not follow (one media
    type, plain-text refusals, 200 for every request error)."""

    graphql_ws_handler_class = _LegacyWebSocket

    def __init__(
        self,
        schema: BaseSchema,
        path: str,
        *,
        resources: Resources,
        hub: Callable[[], Hub],
        **options: Any,
    ) -> None:
        self.resources = resources
        settings = resources.settings
        super().__init__(
            schema,
            path,
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                GRAPHQL_WS_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
            ),
            connection_init_wait_timeout=timedelta(seconds=settings.ws_init_timeout),
            # Subscriptions are counted by graph/subscriptions.py, with an error code.
            max_subscriptions_per_connection=None,
            # The legacy protocol's keep-alive message; both also get WebSocket pings.
            keep_alive=True,
            keep_alive_interval=15,
            **options,
        )
        self.compiler = compiled.Compiler(schema._schema)
        self.debug: bool = getattr(schema, "debug", False)
        self.graphql_path = path
        self.csrf_prevention = settings.csrf_prevention
        self.admission = Admission(
            schema._schema,
            Limits.from_settings(settings),
            settings.max_query_cost,
            resources.limiters,  # type: ignore[arg-type]
        )
        self.documents = Documents.from_files(
            settings.trusted_documents, trusted_only=settings.trusted_documents_only
        )
        self.live = Live(
            schema._schema,
            self.compiler,
            self.admission,
            hub,
            per_connection=settings.max_subscriptions_per_connection,
            per_principal=settings.max_subscriptions_per_principal,
            debug=self.debug,
        )
        schema.live = self.live  # type: ignore[attr-defined]
        self.ws_init_timeout = settings.ws_init_timeout
        # Every path is the app's own route (see `mount`), not the router's.
        self.routes.clear()

    def encode_json(self, data: object) -> str:
        # Every WebSocket message and multipart part, as text (a text frame: bytes would be
        # a binary one, which GraphQL WebSocket clients do not read).
        return orjson.dumps(data).decode()

    async def render_graphql_ide(self, request: Request) -> Response:
        # GraphiQL from the server's own files (graph/graphiql.py), not from a CDN.
        return graphiql.page()

    def mount(self, app: FastAPI) -> None:
        """Serve the path on `app`: GET and POST, and WebSockets, as plain routes of the app.

        The framework's routes solved a tree of dependencies per request (the context getter
        with its own request, response and background tasks, the root value) and were matched
        through the included router's dispatch: together more CPU than a compiled query's
        statement (bench/README.md).
        """
        path = self.graphql_path
        app.add_route(path, self.serve, methods=["GET", "POST"], include_in_schema=False)
        app.router.add_websocket_route(path, self.serve_websocket)
        app.add_exception_handler(StarletteHTTPException, _refusal_handler(path))

    async def serve_websocket(self, websocket: WebSocket) -> None:
        """A WebSocket on /graphql: Strawberry's handlers of both protocols, with a context
        for the connection (its credentials: the upgrade's `Authorization` header, or the
        `connection_init` payload's, see `on_ws_connect`)."""
        context = Context(self.resources, websocket.headers.get("authorization"))
        context.request = websocket  # type: ignore[assignment]
        try:
            with self.resources.metrics.websocket():
                await self.run(websocket, context=context, root_value=None)
        finally:
            await context.close()

    async def on_ws_connect(self, context: Context) -> None:
        """`connection_init`: the connection's principal, from the payload's `authorization`
        (browsers cannot set headers on a WebSocket) or the upgrade's header. Bad credentials
        close the connection: 4403 (graphql-transport-ws), or `connection_error`."""
        try:
            given = _authorization_of(context.connection_params)
        except ValueError as exc:
            raise ConnectionRejectionError(_rejection(str(exc), ErrorCode.BAD_REQUEST)) from None
        if given is not None:
            context.authorization = given
        try:
            await context.authenticate()
        except Exception as exc:
            log.warning("a WebSocket could not be authenticated: %s", exc)
            raise ConnectionRejectionError(
                _rejection("The server cannot check credentials now.", _UNAVAILABLE)
            ) from None
        finally:
            # The principal is kept; each operation opens what it needs (graph/subscriptions.py).
            await context.close()
        if context.auth_error is not None:
            raise ConnectionRejectionError(
                _rejection(str(context.auth_error), ErrorCode.UNAUTHENTICATED.value)
            )

    async def serve(self, request: Request) -> Response:
        headers = _Headers(request.scope["headers"])
        entry = request_log.Entry(request_log.request_id(headers.get("x-request-id")))
        resources = self.resources
        with (
            request_log.logged(entry),
            resources.metrics.measured(entry),
            tracing.operation(resources.tracer, entry),
        ):
            response = await self._serve(request, headers, entry)
            entry.status = response.status_code
            response.raw_headers.append((b"x-request-id", entry.request_id.encode()))
            return response

    async def _serve(
        self, request: Request, headers: Mapping[str, str], entry: request_log.Entry
    ) -> Response:
        method = request.method
        if method == "GET" and _wants_graphiql(request):
            if self.graphql_ide:
                return await self.render_graphql_ide(request)
            return refused(RequestError(404, "GraphiQL is not enabled on this server."))
        media_type = JSON
        try:
            media_type = negotiate(headers.get("accept"))
            if method == "POST":
                check_content_type(headers.get("content-type"))
                params = decode_body(await _body(request, headers))
            else:
                if self.csrf_prevention and may_be_forged(headers):
                    raise RequestError(
                        400,
                        "A GET request needs `Content-Type: application/json` or an "
                        "`Apollo-Require-Preflight: true` header, so that no other site can "
                        "send it from a browser.",
                    )
                params = decode_query_string(request.query_params)
            if (
                params.query is None
                or params.extensions
                or params.document_id is not None
                or self.documents.trusted_only
            ):
                params = self.documents.resolve(params)
        except RequestError as error:
            return refused(error, media_type)
        entry.operation_name = params.operation_name
        context = Context(self.resources, headers.get("authorization"))
        context.request = request
        try:
            answer = await self._answer(context, method, media_type, params, entry, headers)
            return browser_sessions.with_cookies(answer, context)
        except RequestError as error:
            return refused(error, media_type)
        finally:
            try:
                await context.close()
            except Exception:
                log.exception("closing a request's session failed after its answer")

    async def _answer(
        self,
        context: Context,
        method: str,
        media_type: str,
        params: Params,
        entry: request_log.Entry,
        headers: Mapping[str, str],
    ) -> Response:
        query = params.query
        assert query is not None
        checked = self.admission.check(query, params.operation_name)
        bucket = await _bucket(context) if checked.plan else ""
        admitted = await self.admission.admit(checked, params.variables, bucket)
        extensions = admitted.extensions
        if checked.operation is not None:
            entry.operation_name, entry.operation_type = checked.operation
            # A query reads from the replica, if there is one (graph/context.py).
            context.read_only = entry.operation_type == "query"
        if bucket:
            entry.principal = "anonymous" if bucket.startswith("address:") else bucket
        if extensions:
            entry.cost = extensions["cost"]["requestedQueryCost"]
        if admitted.error is not None:
            return self._result(
                ExecutionResult(data=None, errors=[admitted.error], extensions=extensions),
                media_type,
            )
        if checked.operation is not None and checked.operation[1] == "subscription":
            return await self._subscription(context, params, headers)
        operation = self.compiler.lookup(query, params.operation_name, checked.document)
        if operation is not None and operation.is_query:
            try:
                data = await tracing.within(
                    self.resources.tracer,
                    "graphql.compiled",
                    self._compiled(context, operation, params.variables),
                )
            except Exception as exc:
                # No connection to be had (the pool timed out, the database is down) or the
                # statement timed out: the answer, masked like any other fault, not a reason
                # to wait as long again on the normal path.
                error = GraphQLError(str(exc), original_error=exc)
                return self._result(
                    ExecutionResult(
                        data=None,
                        errors=classify_all([error], debug=self.debug),
                        extensions=extensions,
                    ),
                    media_type,
                )
            if data is not None:
                tail = b',"extensions":' + orjson.dumps(extensions) + b"}" if extensions else b"}"
                return Answer(b'{"data":' + data + tail, 200, media_type)
        try:
            result = await self.schema.execute(
                query,
                variable_values=params.variables,
                context_value=context,
                operation_name=params.operation_name,
                allowed_operation_types=_ALLOWED[method],
                operation_extensions=params.extensions,
            )
        except CannotGetOperationTypeError as error:
            raise RequestError(400, error.as_http_error_reason()) from None
        except InvalidOperationTypeError as error:
            raise RequestError(
                405,
                f"{error.as_http_error_reason(method)}; send them with POST.",
                headers={"Allow": "POST"},
            ) from None
        except MissingQueryError:
            raise RequestError(
                400, "No GraphQL document: send it as the `query` parameter."
            ) from None
        if extensions:
            result.extensions = {**(result.extensions or {}), **extensions}
        return self._result(result, media_type)

    async def _subscription(
        self, context: Context, params: Params, headers: Mapping[str, str]
    ) -> Response:
        """A subscription over HTTP: a multipart response (Apollo Client's transport), one part
        per event, with heartbeats; over a WebSocket otherwise."""
        transport = self._get_stream_transport_from_headers(headers)
        if transport is None:
            raise RequestError(
                406,
                "Subscriptions are served over a WebSocket, or over HTTP with "
                '`Accept: multipart/mixed;subscriptionSpec="1.0"`.',
            )
        results = await self.schema.stream(
            params.query,
            variable_values=params.variables,
            context_value=context,
            operation_name=params.operation_name,
            allowed_operation_types=(OperationType.SUBSCRIPTION,),
        )
        stream = self._stream_result(context.request, results, transport)
        return StreamingResponse(stream(), headers=transport.headers)

    def _result(self, result: ExecutionResult, media_type: str) -> Answer:
        errors = result.errors
        body: dict[str, Any] = {}
        status = 200
        if result.data is None and errors and not any(error.path for error in errors):
            # No execution began (parse, validation, variables, credentials): a request error,
            # answered without `data`.
            code = (errors[0].extensions or {}).get("code")
            status = request_error_status(code, media_type)
        else:
            body["data"] = result.data
            if result.data is None and errors and _code(errors[0]) == _UNAVAILABLE:
                # Nothing could be answered: the client may retry, as after any 503.
                status = 503
        if errors:
            body["errors"] = [_identified(error.formatted) for error in errors]
        if result.extensions:
            body["extensions"] = result.extensions
        headers = None
        if status == 429:
            retry = (errors[0].extensions or {}).get("retryAfter", 1) if errors else 1
            headers = {"Retry-After": str(max(1, math.ceil(retry)))}
        elif status == 503:
            headers = {"Retry-After": "1"}
        try:
            encoded = orjson.dumps(body)
        except (TypeError, orjson.JSONEncodeError) as exc:
            # The depth limit keeps answers far below the encoder's (254 levels; a field adds
            # at most two: its object and its list): were one to meet it, it is a fault.
            error = GraphQLError(str(exc), original_error=exc)
            masked = classify_all([error], debug=self.debug)[0].formatted
            return Answer(orjson.dumps({"errors": [masked]}), 500, media_type)
        return Answer(encoded, status, media_type, headers)

    async def _compiled(
        self, context: Context, operation: compiled.Operation, variables: dict[str, Any] | None
    ) -> bytes | None:
        """The `data` JSON of a compiled operation, or None for the normal path."""
        user = context.token_user()
        if user is not None:
            # The statement reads the user's memberships itself: no authentication statement
            # and no session. None also when the user no longer exists: the normal path
            # says so.
            rendered = self._render(operation, None, user, variables)
            if rendered is None:
                return None
            async with context.reader() as run:
                return await _run(run, *rendered)
        await context.authenticate()
        if context.auth_error is not None:
            return None  # refused by the schema
        rendered = self._render(operation, context.principal, None, variables)
        if rendered is None:
            return None
        if not context.has_session:
            async with context.reader() as run:
                return await _run(run, *rendered)

        # An API key was looked up on the session: the statement follows on its connection.
        async def on_session(sql: str, args: list[Any]) -> Any:
            return await context.db(prepared.value, sql, args)

        data = await _run(on_session, *rendered)
        if data is None:
            # The session goes on to the normal path: not in a failed transaction.
            await context.rollback()
        return data

    def _render(
        self,
        operation: compiled.Operation,
        principal: Principal | None,
        user: int | None,
        variables: dict[str, Any] | None,
    ) -> tuple[str, list[Any]] | None:
        try:
            return compiled.statement(self.compiler.schema, operation, principal, variables, user)
        except compiled.Fallback:
            return None
        except Exception:
            log.exception("compiled operation not rendered; answered by the normal path")
            return None


async def _run(run: Run, sql: str, args: list[Any]) -> bytes | None:
    try:
        text = await run(sql, args)
    except asyncpg.QueryCanceledError:
        # statement_timeout: the normal path would only wait as long again.
        raise
    except Exception as exc:
        if unavailable(exc):
            # The normal path would meet the same database: a 503 now, not after a retry.
            raise
        # The normal path answers the same question, and reports the fault if it shares it.
        log.exception("compiled operation failed; answered by the normal path")
        return None
    if text is None or compiled.refused(text):
        # A value the principal may not read: the normal path answers with its error.
        return None
    return text.encode()


def _refusal_handler(path: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The app's handler of HTTP errors raised before the view is reached (a method the
    route does not take): at `path` they are answered like the view's own refusals, elsewhere
    as the framework answers them."""

    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if request.url.path != path:
            return await http_exception_handler(request, exc)
        return refused(RequestError(exc.status_code, exc.detail, headers=exc.headers))

    return handle


def _authorization_of(payload: Mapping[str, Any] | None) -> str | None:
    """The credentials of a `connection_init` payload: `authorization`, at its top or under
    `headers` (as GraphiQL sends its headers), in any case."""
    if not payload:
        return None
    for found in (payload, payload.get("headers")):
        if isinstance(found, Mapping):
            for name, value in found.items():
                if isinstance(name, str) and name.lower() == "authorization":
                    if not isinstance(value, str):
                        raise ValueError("`authorization` must be a string.")
                    return value
    return None


def _rejection(message: str, code: str) -> dict[str, Any]:
    return {"message": message, "extensions": {"code": code}}
