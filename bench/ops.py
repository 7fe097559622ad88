"""The benchmark operations: GraphQL documents and deterministic variables drawn from the data.

Every target (Taskgraph, the floor, the naive server) answers these exact requests, and the
runner checks that the answers to the reads agree (`bench/run.py`, `inspect`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

BOARD = """query Board($id: ID!) { node(id: $id) { ... on Project {
  tasks(first: 50) { nodes { id key title status priority position
    assignee { id name } labels { id name color } commentCount } } } } }"""

DETAIL = """query Detail($id: ID!) { node(id: $id) { ... on Task {
  id key title description status priority dueDate createdAt
  project { key name } assignee { id name } creator { id name } labels { id name color }
  comments(first: 20) { nodes { id body createdAt author { id name } } }
  activity(first: 10) { nodes { kind createdAt changes { field from to } } } } } }"""

# A partner integration pages through a workspace's tasks, 100 per request (500 = 5 requests).
EXPORT = """query Export($slug: String!) { workspace(slug: $slug) {
  tasks(first: 100) { pageInfo { hasNextPage endCursor }
    nodes { id key title status priority updatedAt } } } }"""

ME = """query Me { me { id name email }
  workspaces { nodes { id slug name viewerRole projects { nodes { id key name } } } } }"""

CREATE = """mutation Create($projectId: ID!, $title: String!) {
  createTask(input: {projectId: $projectId, title: $title}) {
    task { id key title status } userErrors { code } } }"""

UPDATE = """mutation Update($id: ID!, $title: String!) {
  updateTask(input: {id: $id, title: $title}) { task { id title version } userErrors { code } } }"""

DOCUMENTS = {
    "board": ("Board", BOARD),
    "detail": ("Detail", DETAIL),
    "export": ("Export", EXPORT),
    "me": ("Me", ME),
    "create": ("Create", CREATE),
    "update": ("Update", UPDATE),
}
ALL_OPS = tuple(DOCUMENTS)
READ_OPS = ("board", "detail", "export", "me")


@dataclass
class Request:
    body: bytes
    token: str


@dataclass
class Op:
    name: str
    requests: list[Request] = field(default_factory=list)


def body(op: str, variables: dict[str, Any]) -> bytes:
    name, document = DOCUMENTS[op]
    return orjson.dumps({"query": document, "operationName": name, "variables": variables})


def build(
    fixtures: dict[str, Any], ops: tuple[str, ...], per_op: int = 200, seed: int = 7
) -> dict[str, Op]:
    """Request bodies per op, spread over many rows so that caches do not flatter anyone."""
    rng = random.Random(seed)
    built: dict[str, Op] = {}
    for op in ops:
        requests = []
        for i in range(per_op):
            if op == "board":
                variables = {"id": rng.choice(fixtures["projects"])}
                token = fixtures["token"]
            elif op == "detail":
                variables = {"id": rng.choice(fixtures["tasks"])}
                token = fixtures["token"]
            elif op == "export":
                variables = {"slug": fixtures["export_slug"]}
                token = fixtures["api_key"]
            elif op == "me":
                variables = {}
                token = fixtures["token"]
            elif op == "create":
                variables = {"projectId": rng.choice(fixtures["projects"]), "title": f"Bench {i}"}
                token = fixtures["token"]
            else:
                variables = {"id": rng.choice(fixtures["tasks"]), "title": f"Renamed {i}"}
                token = fixtures["token"]
            requests.append(Request(body(op, variables), token))
        built[op] = Op(op, requests)
    return built
