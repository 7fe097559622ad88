"""Documents sent by id instead of text: Apollo's automatic persisted queries, and trusted
documents registered from a client's build.

- **Automatic persisted queries** (Apollo Client's persisted-queries link): a request carries
  `extensions.persistedQuery {version: 1, sha256Hash}`, first without the text; a server
  that does not know the hash answers PERSISTED_QUERY_NOT_FOUND and the client sends the
  text with the hash, which is checked and kept (`MAX_REMEMBERED` per process, least recently
  used first out). Over GET such requests can be cached by a CDN.
- **Trusted documents**: manifests written by a client's build, in the formats of Apollo's
  `generate-persisted-query-manifest` (`{"format": "apollo-persisted-query-manifest",
  "operations": [{"id", "body", ...}]}`), Relay's `persistOutput` and GraphQL Codegen's client
  preset (both `{"<id>": "<document>"}`). A request names one by `documentId` (Codegen; the
  GraphQL-over-HTTP persisted documents proposal, optionally prefixed `sha256:`), `doc_id`
  (Relay) or the persisted-query hash (Apollo). With `TRUSTED_DOCUMENTS_ONLY`, nothing else
  runs: a document sent as text runs only if it is one of the manifests' documents.

A document found by id is the same string object on every request, so every cache keyed by
the text (the parser's, the validation's, the compiled documents', the cost plans') finds it
without hashing the text again.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson

from graph.errors import ErrorCode
from graph.http_protocol import Params, RequestError

MAX_REMEMBERED = 10_000
_SHA256 = re.compile(r"[0-9a-f]{64}")


class ManifestError(Exception):
    """A trusted-documents manifest that cannot be read; the message is for the operator."""


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def read_manifest(path: Path) -> dict[str, str]:
    """Document by id, from a manifest in any of the three formats."""
    try:
        data = orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as error:
        raise ManifestError(f"Cannot read the trusted documents in {path}: {error}") from None
    if isinstance(data, dict) and "operations" in data:
        operations = data["operations"]
        if data.get("format") != "apollo-persisted-query-manifest" or not isinstance(
            operations, list
        ):
            raise ManifestError(f"{path}: not an Apollo persisted query manifest")
        pairs: Iterable[tuple[Any, Any]] = (
            (op.get("id"), op.get("body")) for op in operations if isinstance(op, dict)
        )
    elif isinstance(data, dict):
        pairs = data.items()
    else:
        raise ManifestError(f"{path}: a manifest is a JSON object")
    documents: dict[str, str] = {}
    for key, body in pairs:
        if not isinstance(key, str) or not isinstance(body, str):
            raise ManifestError(f"{path}: every entry needs a string id and a string document")
        documents[key] = body
    return documents


class Documents:
    """The trusted documents of the server, and the automatic persisted queries it was sent."""

    def __init__(self, trusted: Mapping[str, str] | None = None, *, trusted_only: bool = False):
        self.trusted = dict(trusted or {})
        # A document sent as text is found among the trusted ones by its text, whatever hash
        # the manifest's tool used for its id (Relay's is MD5).
        self.trusted_texts = {text: text for text in self.trusted.values()}
        self.trusted_only = trusted_only
        self.remembered: OrderedDict[str, str] = OrderedDict()

    @classmethod
    def from_files(cls, paths: Iterable[Path], *, trusted_only: bool) -> Documents:
        trusted: dict[str, str] = {}
        for path in paths:
            trusted.update(read_manifest(path))
        if trusted_only and not trusted:
            raise ManifestError("TRUSTED_DOCUMENTS_ONLY is set but no trusted documents are given")
        return cls(trusted, trusted_only=trusted_only)

    def resolve(self, params: Params) -> Params:
        """The request with its document's text, or the refusal."""
        hash_ = _persisted_hash(params.extensions)
        document_id = params.document_id
        if document_id is not None and document_id.startswith("sha256:"):
            document_id = document_id.removeprefix("sha256:")
        if params.query is None:
            key = hash_ if hash_ is not None else document_id
            if key is None:
                raise RequestError(400, "No GraphQL document: send it as the `query` parameter.")
            text = self.trusted.get(key)
            if text is None and not self.trusted_only:
                text = self.remembered.get(key)
                if text is not None:
                    self.remembered.move_to_end(key)
            if text is None:
                # The message Apollo Client's link looks for.
                raise RequestError(
                    None, "PersistedQueryNotFound", ErrorCode.PERSISTED_QUERY_NOT_FOUND
                )
            params.query = text
            return params
        if hash_ is not None and sha256(params.query) != hash_:
            raise RequestError(
                400,
                "The persisted query's sha256Hash is not the SHA-256 of the query sent with it.",
            )
        if self.trusted_only:
            known = self.trusted_texts.get(params.query)
            if known is None:
                raise RequestError(
                    400,
                    "This server runs only trusted documents: register the document in the "
                    "client's manifest and send its id.",
                    ErrorCode.PERSISTED_QUERY_NOT_IN_LIST,
                )
            params.query = known
        elif hash_ is not None:
            self.remembered[hash_] = params.query
            self.remembered.move_to_end(hash_)
            if len(self.remembered) > MAX_REMEMBERED:
                self.remembered.popitem(last=False)
        return params


def _persisted_hash(extensions: Mapping[str, Any] | None) -> str | None:
    if not extensions or "persistedQuery" not in extensions:
        return None
    persisted = extensions["persistedQuery"]
    if not isinstance(persisted, dict):
        raise RequestError(400, "`extensions.persistedQuery` must be an object.")
    if persisted.get("version") != 1:
        raise RequestError(400, "Only version 1 of persisted queries is supported.")
    hash_ = persisted.get("sha256Hash")
    if not isinstance(hash_, str) or _SHA256.fullmatch(hash_) is None:
        raise RequestError(
            400, "`extensions.persistedQuery.sha256Hash` must be 64 lower-case hex digits."
        )
    return hash_
