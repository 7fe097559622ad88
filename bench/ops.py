"""The benchmark operations: GraphQL documents and deterministic variables drawn from the data.

Every target (Taskgraph, the floor, the naive server) answers these exact requests, and the
runner checks that the answers to the reads agree (`bench/run.py`, `inspect`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

import orjson

from db.demo_data import STATUSES, THINGS, VERBS

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

# A filtered view of a board: two statuses, one assignee, one label; most urgent first, then
# by due date (undated last).
FILTERED = """query Filtered($project: ID!, $status: [TaskStatus!], $assignees: [ID!],
  $labels: [ID!]) { node(id: $project) { ... on Project {
  tasks(first: 50, filter: {status: $status, assigneeIds: $assignees, labelIds: $labels},
    orderBy: [{field: PRIORITY, direction: DESC}, {field: DUE_DATE}]) {
    nodes { id key title status priority dueDate assignee { id name }
      labels { id name color } } } } } }"""

SEARCH = """query Search($slug: String!, $word: String!) { workspace(slug: $slug) {
  tasks(first: 20, filter: {search: $word}) { nodes { id key title status } } } }"""

# The page of a board before a task (scrolling up), with the cursor to go on from.
BACKWARD = """query Backward($project: ID!, $before: String!) { node(id: $project) {
  ... on Project { tasks(last: 20, before: $before) {
    pageInfo { hasPreviousPage startCursor } nodes { id key title position } } } } }"""

MEMBERS = """query Members($slug: String!) { workspace(slug: $slug) { members(first: 50) {
  totalCount nodes { role joinedAt user { id name email } } } } }"""

DOCUMENTS = {
    "board": ("Board", BOARD),
    "detail": ("Detail", DETAIL),
    "export": ("Export", EXPORT),
    "me": ("Me", ME),
    "create": ("Create", CREATE),
    "update": ("Update", UPDATE),
    "filtered": ("Filtered", FILTERED),
    "search": ("Search", SEARCH),
    "backward": ("Backward", BACKWARD),
    "members": ("Members", MEMBERS),
}
ALL_OPS = tuple(DOCUMENTS)
MUTATION_OPS = ("create", "update")
READ_OPS = tuple(op for op in ALL_OPS if op not in MUTATION_OPS)


def search_words() -> list[str]:
    """The words of the titles the demo data generator writes ("Speed up", "export to CSV"),
    three letters or longer (a shorter pattern gives a trigram index nothing to look up)."""
    words = {w for phrase in (*VERBS, *THINGS) for w in phrase.split() if len(w) >= 3}
    return sorted(words)


def _search_word(rng: random.Random, words: list[str], i: int) -> str:
    word = rng.choice(words)
    if i == 9:
        # LIKE's wildcards are literal characters in a search: "dark_mode" finds no "dark mode".
        # One such request, among those whose answers are compared (`run.CHECKED`): it finds
        # nothing, slowly (its trigrams are those of "dark mode"), and should not weigh on the
        # measurement.
        return rng.choice(("dark_mode", "drag_and%drop", "log%", "e_mails"))
    # Searches ignore case.
    return rng.choice((word, word.lower(), word.upper()))


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
    words = search_words()
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
            elif op == "filtered":
                project, status, assignee, label = rng.choice(fixtures["filtered"])
                other = rng.choice([s for s in STATUSES if s != status])
                variables = {
                    "project": project,
                    "status": [status, other],
                    "assignees": [assignee],
                    "labels": [label],
                }
                token = fixtures["token"]
            elif op == "search":
                word = _search_word(rng, words, i)
                variables = {"slug": rng.choice(fixtures["slugs"]), "word": word}
                token = fixtures["token"]
            elif op == "backward":
                project, cursor = rng.choice(fixtures["cursors"])
                variables = {"project": project, "before": cursor}
                token = fixtures["token"]
            elif op == "members":
                variables = {"slug": rng.choice(fixtures["slugs"])}
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
