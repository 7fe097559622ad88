"""GraphQL over HTTP: every malformed request is a 4xx with a GraphQL error and its code, every
well-formed one is answered in the negotiated media type with the specification's status.

Each row is one request; after it, a good request on the same client shows that nothing was
left broken."""

from __future__ import annotations

import asyncio
import http.client
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson
import pytest

from tests.graph.conftest import Api, without_cost
from tests.graph.live_server import Server

JSON = "application/json"
GQL = "application/graphql-response+json"
JSON_BODY = {"content-type": JSON}


@dataclass(frozen=True)
class Row:
    name: str
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=lambda: dict(JSON_BODY))
    method: str = "POST"
    params: dict[str, str] | None = None
    status: int = 400
    code: str | None = "BAD_REQUEST"
    # The media type of the answer; every refusal before negotiation is application/json.
    media_type: str = JSON
    # Whether the answer has a `data` entry (only answers whose execution began do).
    data: bool = False


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _deep(levels: int) -> bytes:
    return (
        b'{"query": "{ __typename }", "variables": {"a": ' + b"[" * levels + b"]" * levels + b"}}"
    )


TWO_OPERATIONS = "query A { __typename } query B { __typename }"
SLUG_VARIABLE = "query($s: String!) { workspace(slug: $s) { id } }"
INT_VARIABLE = "query($n: Int) { workspaces(first: $n) { totalCount } }"

ROWS = [
    # The body.
    Row("empty body", b""),
    Row("not JSON", b"{not json"),
    Row("truncated JSON", b'{ "not a JSON'),
    Row("invalid UTF-8", b'{"query": "{ __typename \xff }"}'),
    Row("UTF-8 of a surrogate", b'{"query": "{ __typename }", "v": "\xed\xa0\x80"}'),
    Row(
        "lone surrogate escape in a read argument",
        b'{"query": "' + SLUG_VARIABLE.encode() + b'", "variables": {"s": "a\\ud800"}}',
        status=200,
        code="BAD_USER_INPUT",
        data=True,
    ),
    Row("JSON nested 2,000 deep", _deep(2000)),
    Row("JSON null", b"null"),
    Row("JSON string", b'"x"'),
    Row("JSON number", b"1"),
    Row("empty batch", b"[]"),
    Row("batch", _json([{"query": "{ __typename }"}])),
    # The parameters.
    Row("query a number", _json({"query": 5})),
    Row("query an object", _json({"query": {"a": 1}})),
    Row("query a list", _json({"query": ["{ __typename }"]})),
    Row("query missing", _json({"variables": {}})),
    Row("query misspelt", _json({"qeury": "{ __typename }"})),
    Row("variables a list", _json({"query": "{ __typename }", "variables": [1]})),
    Row("variables a string", _json({"query": "{ __typename }", "variables": "{}"})),
    Row("operationName a number", _json({"query": "{ __typename }", "operationName": 3})),
    Row("extensions a list", _json({"query": "{ __typename }", "extensions": []})),
    Row("two operations, no name", _json({"query": TWO_OPERATIONS})),
    Row("unknown operation name", _json({"query": TWO_OPERATIONS, "operationName": "C"})),
    Row(
        "NUL in a read argument",
        _json({"query": SLUG_VARIABLE, "variables": {"s": "x\x00y"}}),
        status=200,
        code="BAD_USER_INPUT",
        data=True,
    ),
    Row(
        "NUL in the document",
        _json({"query": '{ workspace(slug: "a\\u0000") { id } }'}),
        status=200,
        code="BAD_USER_INPUT",
        data=True,
    ),
    Row(
        "NUL in the document, GraphQL response",
        _json({"query": '{ workspace(slug: "a\\u0000") { id } }'}),
        headers={**JSON_BODY, "accept": GQL},
        status=200,
        code="BAD_USER_INPUT",
        media_type=GQL,
        data=True,
    ),
    # Well-formed requests with GraphQL errors: 200 under application/json, 4xx under the
    # GraphQL response type; never `data` when nothing was executed.
    Row(
        "huge number for an Int",
        b'{"query": "' + INT_VARIABLE.encode() + b'", "variables": {"n": 1' + b"0" * 40 + b"}}",
        status=200,
        code="BAD_USER_INPUT",
    ),
    Row(
        "huge number for an Int, GraphQL response",
        b'{"query": "' + INT_VARIABLE.encode() + b'", "variables": {"n": 1' + b"0" * 40 + b"}}",
        headers={**JSON_BODY, "accept": GQL},
        code="BAD_USER_INPUT",
        media_type=GQL,
    ),
    Row("parse error", _json({"query": "{"}), status=200, code="GRAPHQL_PARSE_FAILED"),
    Row(
        "parse error, GraphQL response",
        _json({"query": "{"}),
        headers={**JSON_BODY, "accept": GQL},
        code="GRAPHQL_PARSE_FAILED",
        media_type=GQL,
    ),
    Row(
        "validation error, GraphQL response",
        _json({"query": "{ nope }"}),
        headers={**JSON_BODY, "accept": GQL},
        code="GRAPHQL_VALIDATION_FAILED",
        media_type=GQL,
    ),
    Row(
        "variable of the wrong type, GraphQL response",
        _json({"query": INT_VARIABLE, "variables": {"n": "ten"}}),
        headers={**JSON_BODY, "accept": GQL},
        code="BAD_USER_INPUT",
        media_type=GQL,
    ),
    Row(
        "bad credentials, GraphQL response",
        _json({"query": "{ me { id } }"}),
        headers={**JSON_BODY, "accept": GQL, "authorization": "Bearer nonsense"},
        status=401,
        code="UNAUTHENTICATED",
        media_type=GQL,
    ),
    Row(
        "duplicate keys: the last one counts",
        b'{"query": "{ nope }", "query": "{ __typename }"}',
        status=200,
        code=None,
        data=True,
    ),
    # Headers.
    Row("no content type", _json({"query": "{ __typename }"}), headers={}, status=415),
    Row(
        "text/plain",
        b"query { __typename }",
        headers={"content-type": "text/plain"},
        status=415,
    ),
    Row(
        "a form",
        b"query=%7B__typename%7D",
        headers={"content-type": "application/x-www-form-urlencoded"},
        status=415,
    ),
    Row(
        "a charset other than UTF-8",
        _json({"query": "{ __typename }"}),
        headers={"content-type": "application/json; charset=iso-8859-1"},
        status=415,
    ),
    Row(
        "charset=utf-8",
        _json({"query": "{ __typename }"}),
        headers={"content-type": "application/json; charset=UTF-8"},
        status=200,
        code=None,
        data=True,
    ),
    Row(
        "no Accept: application/json",
        _json({"query": "{ __typename }"}),
        status=200,
        code=None,
        data=True,
    ),
    Row(
        "Accept of neither JSON type",
        _json({"query": "{ __typename }"}),
        headers={**JSON_BODY, "accept": "text/html"},
        status=406,
    ),
    Row(
        "GraphQL response type preferred by weight",
        _json({"query": "{ __typename }"}),
        headers={**JSON_BODY, "accept": f"{JSON};q=0.9, {GQL}"},
        status=200,
        code=None,
        media_type=GQL,
        data=True,
    ),
    Row(
        "application/json preferred by weight",
        _json({"query": "{ nope }"}),
        headers={**JSON_BODY, "accept": f"{GQL};q=0.5, {JSON}"},
        status=200,
        code="GRAPHQL_VALIDATION_FAILED",
    ),
    Row("PUT", _json({"query": "{ __typename }"}), method="PUT", status=405),
    Row(
        "a body over 1 MiB", _json({"query": "{ __typename }", "pad": "x" * (1 << 20)}), status=413
    ),
    # GET: queries only, and only from a client that a browser would have preflighted.
    Row(
        "GET without a preflight header",
        method="GET",
        params={"query": "{ __typename }"},
        headers={},
    ),
    Row(
        "GET with a preflight header",
        method="GET",
        params={"query": "{ __typename }"},
        headers={"apollo-require-preflight": "true"},
        status=200,
        code=None,
        data=True,
    ),
    Row(
        "GET with a JSON content type",
        method="GET",
        params={"query": INT_VARIABLE, "variables": '{"n": 1}'},
        headers={"content-type": JSON},
        status=200,
        code=None,
        data=True,
    ),
    Row(
        "GET with variables that are not JSON",
        method="GET",
        params={"query": "{ __typename }", "variables": "{n: 1"},
        headers={"apollo-require-preflight": "true"},
    ),
    Row(
        "GET of a mutation",
        method="GET",
        params={"query": 'mutation { logOut(input: {refreshToken: "x"}) { ok } }'},
        headers={"apollo-require-preflight": "true", "accept": GQL},
        status=405,
        media_type=GQL,
    ),
    Row(
        "GET without a query",
        method="GET",
        params={"operationName": "A"},
        headers={"apollo-require-preflight": "true", "accept": JSON},
    ),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
async def test_each_request_gets_its_status_and_code(api: Api, row: Row) -> None:
    response = await api.client.request(
        row.method, "/graphql", content=row.body, headers=row.headers, params=row.params
    )
    assert response.status_code == row.status, response.text
    assert response.headers["content-type"] == row.media_type
    body = response.json()
    assert ("data" in body) is row.data, body
    if row.code is None:
        assert "errors" not in body, body
    else:
        [error] = body["errors"]
        assert error["message"]
        assert error["extensions"]["code"] == row.code, error
    if response.status_code == 405:
        assert response.headers["allow"]
    # The client goes on as before.
    after = await api.client.post("/graphql", json={"query": "{ __typename }"})
    assert after.status_code == 200
    assert without_cost(after.json()) == {"data": {"__typename": "Query"}}


def _over_one_connection(url: str) -> list[str]:
    """Every row on one keep-alive connection to a real server, each followed by a good
    request: what went wrong, if anything."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    problems = []
    socket = None
    try:
        for row in ROWS:
            target = parts.path + ("?" + urlencode(row.params) if row.params else "")
            connection.request(row.method, target, body=row.body, headers=row.headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != row.status:
                problems.append(f"{row.name}: {response.status} {body[:200]!r}")
            connection.request(
                "POST", parts.path, body=b'{"query": "{ __typename }"}', headers=JSON_BODY
            )
            after = connection.getresponse()
            answer = orjson.loads(after.read())
            if after.status != 200 or answer.get("data") != {"__typename": "Query"}:
                problems.append(f"after {row.name}: {after.status}")
            if socket is None:
                socket = connection.sock
            elif connection.sock is not socket:
                problems.append(f"after {row.name}: the server closed the connection")
                socket = connection.sock
    finally:
        connection.close()
    return problems


async def test_the_table_over_one_live_connection(live_server: Server) -> None:
    # Through uvicorn's HTTP parsing too, and no row costs the client its connection.
    assert await asyncio.to_thread(_over_one_connection, live_server.url) == []


def test_the_table_covers_every_kind_of_malformed_request() -> None:
    assert len(ROWS) >= 30
    assert len({row.name for row in ROWS}) == len(ROWS)
