"""GraphQL over HTTP (the specification's current draft): what a request must look like, which
media type an answer is written in, and which status it carries.

- Answers are `application/graphql-response+json` when the client names that type in
  `Accept` (at a weight no lower than `application/json`), else `application/json`; a missing
  `Accept` or a wildcard is answered as `application/json`, which the spec's audit suite asks
  for. An `Accept` that allows neither is refused with 406.
- POST bodies are `application/json` in UTF-8 (415 otherwise); GET takes the parameters from
  the query string and runs queries only (a mutation is 405 with `Allow: POST`).
- A request that is not a GraphQL request (bad JSON, a parameter of the wrong type, no query)
  is refused with 400 and a GraphQL error with `extensions.code`, in either media type.
- A request error (parse, validation, variable coercion: no execution began) has no `data`
  entry; under `application/graphql-response+json` it is a 4xx, under `application/json` a
  200, as the spec says for clients that never opted into the new type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson

from graph.errors import ErrorCode

JSON = "application/json"
GRAPHQL_RESPONSE = "application/graphql-response+json"

# Headers that a browser sends only after a CORS preflight: a page of another origin cannot
# attach them to a "simple" cross-site request (a form post, an <img>). Named as Apollo Server
# names them, so that its clients' settings work here.
PREFLIGHT_HEADERS = ("apollo-require-preflight", "x-apollo-operation-name", "authorization")
# Content types a cross-site form or fetch may send without a preflight.
_SIMPLE_TYPES = frozenset(
    {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}
)


class RequestError(Exception):
    """A request refused before any operation ran."""

    def __init__(
        self,
        status: int | None,
        message: str,
        code: ErrorCode = ErrorCode.BAD_REQUEST,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        super().__init__(message)
        # None: a GraphQL request error, whose status follows the media type.
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers
        self.extensions = extensions

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "errors": [
                    {
                        "message": self.message,
                        "extensions": {"code": self.code.value, **self.extensions},
                    }
                ]
            }
        )


@dataclass(slots=True)
class Params:
    """The GraphQL request parameters of one request."""

    query: str | None
    operation_name: str | None
    variables: dict[str, Any] | None
    extensions: dict[str, Any] | None
    # A persisted document's id (graph/persisted_documents.py).
    document_id: str | None = None


def _media_ranges(header: str) -> list[tuple[str, float, int]]:
    """(type, weight, specificity) of each range of an Accept header; malformed weights
    make a range unacceptable (RFC 9110 qvalues are 0 to 1 with up to three decimals)."""
    ranges = []
    for part in header.split(","):
        kind, *parameters = part.split(";")
        kind = kind.strip().lower()
        if not kind:
            continue
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = 0.0
                if not 0.0 <= weight <= 1.0:
                    weight = 0.0
        specificity = 0 if kind == "*/*" else 1 if kind.endswith("/*") else 2
        ranges.append((kind, weight, specificity))
    return ranges


def _weight(ranges: list[tuple[str, float, int]], media_type: str) -> tuple[float, bool]:
    """The weight the most specific matching range gives `media_type`, and whether the client
    named the type itself."""
    best: tuple[int, float] | None = None
    family = media_type.split("/", 1)[0] + "/*"
    for kind, weight, specificity in ranges:
        if kind in (media_type, family, "*/*") and (best is None or specificity > best[0]):
            best = (specificity, weight)
    if best is None:
        return 0.0, False
    return best[1], best[0] == 2


@lru_cache(maxsize=512)
def negotiate(accept: str | None) -> str:
    """The media type of the answer to a request with this `Accept` header (clients send the
    same few headers with every request, hence the cache)."""
    if accept is None or not accept.strip():
        return JSON
    ranges = _media_ranges(accept)
    graphql, graphql_named = _weight(ranges, GRAPHQL_RESPONSE)
    json, _ = _weight(ranges, JSON)
    if graphql <= 0 and json <= 0:
        raise RequestError(
            406,
            f"The answer is written as {GRAPHQL_RESPONSE} or {JSON}; `Accept` allows neither.",
            ErrorCode.BAD_REQUEST,
        )
    if graphql > json or (graphql == json and graphql_named):
        return GRAPHQL_RESPONSE
    return JSON


@lru_cache(maxsize=256)
def check_content_type(content_type: str | None) -> None:
    """A POST body must be JSON in UTF-8."""
    if content_type is None or not content_type.strip():
        raise RequestError(
            415, f"Send the request with `Content-Type: {JSON}`.", ErrorCode.BAD_REQUEST
        )
    kind, *parameters = content_type.split(";")
    if kind.strip().lower() != JSON:
        raise RequestError(
            415,
            f"Unsupported content type {kind.strip()!r}: send `Content-Type: {JSON}`.",
            ErrorCode.BAD_REQUEST,
        )
    for parameter in parameters:
        name, _, value = parameter.strip().partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in (
            "utf-8",
            "utf8",
        ):
            raise RequestError(
                415, "The request body must be UTF-8 (charset=utf-8).", ErrorCode.BAD_REQUEST
            )


def may_be_forged(headers: Mapping[str, str]) -> bool:
    """Whether a browser could have sent this GET from another site without a preflight
    (an <img>, a link): it carries neither a content type other than a form's (Apollo Client
    sends `Content-Type: application/json` with its GETs) nor a preflight header. Such a
    request would run with the browser's cookies, so it is refused. (A POST must be JSON,
    which no cross-site form can send without a preflight.)"""
    content_type = headers.get("content-type")
    if content_type:
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind and kind not in _SIMPLE_TYPES:
            return False
    return not any(headers.get(name) for name in PREFLIGHT_HEADERS)


def decode_body(body: bytes) -> Params:
    if not body:
        raise RequestError(400, "The request body is empty: send a JSON object with a `query`.")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        # orjson refuses escaped lone surrogates ("\ud800"), which JSON's grammar allows:
        # such text is the operation's to judge (a field's user error). Everything else that
        # orjson refuses (invalid UTF-8, nesting over 1,024 deep) the standard parser refuses
        # too, or the constants below.
        try:
            # Strictly decoded: the standard parser would let UTF-8-encoded surrogates through.
            data = json.loads(body.decode(), parse_constant=_no_constant)
        except (ValueError, RecursionError):
            raise RequestError(400, f"The request body is not valid JSON: {error}.") from None
    if isinstance(data, list):
        raise RequestError(400, "Batched operations are not supported: send one JSON object.")
    if not isinstance(data, dict):
        raise RequestError(400, "The request body must be a JSON object with a `query`.")
    return params_of(data)


def decode_query_string(query_params: Mapping[str, str]) -> Params:
    data: dict[str, Any] = {}
    for name in ("query", "operationName", "documentId", "doc_id"):
        value = query_params.get(name)
        if value is not None:
            data[name] = value
    for name in ("variables", "extensions"):
        value = query_params.get(name)
        if value:
            try:
                data[name] = orjson.loads(value)
            except orjson.JSONDecodeError as error:
                raise RequestError(
                    400, f"The `{name}` parameter is not valid JSON: {error}."
                ) from None
    return params_of(data)


def params_of(data: dict[str, Any]) -> Params:
    query = data.get("query")
    if query is not None and not isinstance(query, str):
        raise RequestError(400, "The `query` parameter must be a string.")
    name = data.get("operationName")
    if name is not None and not isinstance(name, str):
        raise RequestError(400, "The `operationName` parameter must be a string or null.")
    variables = data.get("variables")
    if variables is not None and not isinstance(variables, dict):
        raise RequestError(400, "The `variables` parameter must be an object or null.")
    extensions = data.get("extensions")
    if extensions is not None and not isinstance(extensions, dict):
        raise RequestError(400, "The `extensions` parameter must be an object or null.")
    document_id = data.get("documentId", data.get("doc_id"))
    if document_id is not None and not isinstance(document_id, str):
        raise RequestError(400, "The `documentId` parameter must be a string.")
    return Params(query, name, variables, extensions, document_id)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# Statuses of answers without data whatever the media type: the client must wait (with
# Retry-After), or sent no GraphQL request the server could run (no single operation).
_ALWAYS = {
    ErrorCode.RATE_LIMITED.value: 429,
    ErrorCode.SERVICE_UNAVAILABLE.value: 503,
    ErrorCode.BAD_REQUEST.value: 400,
}
# And under application/graphql-response+json only; any other request error is a 400.
_GRAPHQL_RESPONSE = {
    ErrorCode.UNAUTHENTICATED.value: 401,
    ErrorCode.INTERNAL_SERVER_ERROR.value: 500,
}


def request_error_status(code: str | None, media_type: str) -> int:
    """The status of an answer without data (no execution began)."""
    code = code or ""
    if code in _ALWAYS:
        return _ALWAYS[code]
    if media_type != GRAPHQL_RESPONSE:
        return 200
    return _GRAPHQL_RESPONSE.get(code, 400)
