"""Automatic persisted queries (Apollo's protocol) and trusted documents from client manifests."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from graph.persisted_documents import Documents, ManifestError, read_manifest
from graph.settings import Settings
from tests.graph.conftest import Api, _api, without_cost

QUERY = "query Typename { __typename }"
OTHER = "query Other { workspaces { totalCount } }"
UNLISTED = "query Unlisted { __typename }"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def persisted(text: str) -> dict[str, Any]:
    return {"persistedQuery": {"version": 1, "sha256Hash": sha(text)}}


async def test_a_hash_the_server_does_not_know_asks_for_the_text_then_is_remembered(
    api: Api, used: list[str]
) -> None:
    text = "query Remembered { me { id } }"
    first = await api.client.post("/graphql", json={"extensions": persisted(text)})
    assert first.status_code == 200
    [error] = first.json()["errors"]
    assert error["message"] == "PersistedQueryNotFound"
    assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # Under the GraphQL response type the same answer is a request error's 400.
    strict = await api.client.post(
        "/graphql",
        json={"extensions": persisted(text)},
        headers={"accept": "application/graphql-response+json"},
    )
    assert strict.status_code == 400
    assert strict.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"

    registered = await api.client.post(
        "/graphql", json={"query": text, "extensions": persisted(text)}
    )
    assert without_cost(registered.json()) == {"data": {"me": None}}
    used.clear()
    by_hash = await api.client.post("/graphql", json={"extensions": persisted(text)})
    assert without_cost(by_hash.json()) == {"data": {"me": None}}
    assert len(used) == 1  # answered by the compiled statement, like the text
    # Over GET, as a CDN would cache it.
    over_get = await api.client.get(
        "/graphql",
        params={"extensions": orjson.dumps(persisted(text)).decode()},
        headers={"apollo-require-preflight": "true"},
    )
    assert over_get.status_code == 200
    assert without_cost(over_get.json()) == {"data": {"me": None}}


@pytest.mark.parametrize(
    ("extensions", "message"),
    [
        (persisted("query { me { name } }"), "is not the SHA-256 of the query"),
        ({"persistedQuery": {"version": 2, "sha256Hash": sha(QUERY)}}, "version 1"),
        ({"persistedQuery": {"version": 1, "sha256Hash": "ABC"}}, "64 lower-case hex"),
        ({"persistedQuery": {"version": 1}}, "64 lower-case hex"),
        ({"persistedQuery": "x"}, "must be an object"),
    ],
)
async def test_a_persisted_query_that_does_not_match_is_refused(
    api: Api, extensions: dict[str, Any], message: str
) -> None:
    response = await api.client.post("/graphql", json={"query": QUERY, "extensions": extensions})
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert message in error["message"]
    assert error["extensions"]["code"] == "BAD_REQUEST"


def _manifests(folder: Path) -> list[Path]:
    apollo = folder / "persisted-query-manifest.json"
    apollo.write_bytes(
        orjson.dumps(
            {
                "format": "apollo-persisted-query-manifest",
                "version": 1,
                "operations": [
                    {"id": sha(QUERY), "body": QUERY, "name": "Typename", "type": "query"}
                ],
            }
        )
    )
    relay = folder / "relay-persisted.json"
    relay.write_bytes(orjson.dumps({"3f2c0e9a1b": OTHER}))
    codegen = folder / "persisted-documents.json"
    codegen.write_bytes(orjson.dumps({sha("query Me { me { id } }"): "query Me { me { id } }"}))
    return [apollo, relay, codegen]


@pytest.fixture
async def trusted_api(
    settings: Settings, engine: AsyncEngine, connection: AsyncConnection, tmp_path: Path
) -> AsyncIterator[Api]:
    trusted = settings.model_copy(
        update={"trusted_documents": _manifests(tmp_path), "trusted_documents_only": True}
    )
    async for value in _api(trusted, engine, connection):
        yield value


async def test_only_trusted_documents_run_when_the_server_says_so(trusted_api: Api) -> None:
    client = trusted_api.client
    # By the id of each manifest format.
    apollo = await client.post("/graphql", json={"extensions": persisted(QUERY)})
    assert without_cost(apollo.json()) == {"data": {"__typename": "Query"}}
    relay = await client.post("/graphql", json={"doc_id": "3f2c0e9a1b"})
    assert without_cost(relay.json()) == {"data": {"workspaces": {"totalCount": 0}}}
    codegen = await client.post(
        "/graphql", json={"documentId": "sha256:" + sha("query Me { me { id } }")}
    )
    assert without_cost(codegen.json()) == {"data": {"me": None}}
    # A trusted document sent as text runs; any other text does not, nor its registration.
    as_text = await client.post("/graphql", json={"query": OTHER})
    assert without_cost(as_text.json()) == {"data": {"workspaces": {"totalCount": 0}}}
    for body in (
        {"query": UNLISTED},
        {"query": UNLISTED, "extensions": persisted(UNLISTED)},
    ):
        refused = await client.post("/graphql", json=body)
        assert refused.status_code == 400
        [error] = refused.json()["errors"]
        assert error["extensions"]["code"] == "PERSISTED_QUERY_NOT_IN_LIST"
    unknown = await client.post("/graphql", json={"documentId": "nope"})
    assert unknown.json()["errors"][0]["extensions"]["code"] == "PERSISTED_QUERY_NOT_FOUND"
    # Variables and the operation name go with an id as with a text.
    named = await client.post(
        "/graphql", json={"doc_id": "3f2c0e9a1b", "operationName": "Other", "variables": {}}
    )
    assert without_cost(named.json()) == {"data": {"workspaces": {"totalCount": 0}}}


def test_manifests_that_cannot_be_read_are_reported(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ManifestError, match="Cannot read"):
        read_manifest(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_bytes(orjson.dumps({"format": "other", "operations": []}))
    with pytest.raises(ManifestError, match="not an Apollo"):
        read_manifest(wrong)
    numbers = tmp_path / "numbers.json"
    numbers.write_bytes(orjson.dumps({"a": 1}))
    with pytest.raises(ManifestError, match="string document"):
        read_manifest(numbers)
    with pytest.raises(ManifestError, match="no trusted documents"):
        Documents.from_files([], trusted_only=True)
