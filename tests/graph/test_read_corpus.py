"""A generated corpus over every read shape of the contract, answered alike by both read paths.

More than a thousand error-free queries, deterministic by seed, over everything a client can
read: every TaskFilter condition alone and combined, every TaskOrderField both ways and orders
of several keys, pages forwards and backwards with cursors taken from earlier answers,
members, labels, API keys, projects and tasks by key, activity and comments, `node` and
`nodes` over every Node type (IDs the principal cannot see and IDs of deleted objects
included), named and inline fragments, fragments on `Node`, `@include`/`@skip` with literals
and with variables, aliases, repeated fields, `__typename` at every level and variables of
every argument kind. Each runs for one of five principals with the compiled path off and on
(graph/compiled.py), and the two answers must be the same JSON with the keys in the same
order. A smaller set of queries that end in errors is compared the same way.

The compiled path answers a share of the corpus; the rest falls back to the normal path. Every
query that falls back must match a named entry of `FALLS_BACK`, the shapes the compiler does
not know yet, and every entry must still be needed: when the compiler learns a shape, its entry
goes, and the corpus then demands that the compiler answers it. `KNOWN_DIFFERENCES` names the
queries whose answers differ today (bugs of the compiled path); the test demands that they
still differ, so that the list shrinks with their fixes.
"""

from __future__ import annotations

import base64
import gc
import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from functools import cached_property
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db.api_keys import create_api_key
from db.models import (
    Activity,
    ApiKey,
    ApiScope,
    Comment,
    Label,
    Membership,
    Project,
    Role,
    Task,
    User,
    Workspace,
)
from db.principals import Principal
from db.tasks import PROJECT_TASK_ORDER, WORKSPACE_TASK_ORDER
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for
from tests.graph.generated import RandomQueries, Shape, awkward_world, both, same, type_of

# Shapes that the compiled path hands to the normal one today. A query that is not compiled
# must match one of them; an entry that no longer explains a fallback must go.
FALLS_BACK: dict[str, Callable[[Shape], bool]] = {}

# Queries of the corpus whose compiled answer differs from the normal one today, by name
# ("query 17", "query 17 again", "cursors 3: members", "error: ..."), each with what differs.
# The corpus is deterministic by seed: a name stays the same query until the generator
# changes. Empty: no difference found.
KNOWN_DIFFERENCES: dict[str, str] = {}

PRINCIPALS = ("owner", "viewer", "outsider", "api key", "anonymous")
# Principals that manage every workspace they read: `Workspace.apiKeys` answers them.
ADMINS = frozenset({"owner", "outsider"})
THEMES = ("filter", "order", "paging", "workspace", "detail", "nodes", "fragments", "mixed")
CORPUS_SIZE = 1000
SEED = 20261201
MAX_DEPTH = 3

SCALARS: dict[str, list[str]] = {
    "User": ["id", "name", "email", "createdAt"],
    "Workspace": ["id", "slug", "name", "createdAt", "viewerRole"],
    "Project": ["id", "key", "name", "description", "archivedAt", "createdAt", "updatedAt"],
    "Task": [
        "id",
        "key",
        "number",
        "title",
        "description",
        "status",
        "priority",
        "dueDate",
        "position",
        "version",
        "completedAt",
        "createdAt",
        "updatedAt",
        "commentCount",
        "viewerCanEdit",
    ],
    "Label": ["id", "name", "color"],
    "Comment": ["id", "body", "createdAt", "updatedAt"],
    "Activity": ["id", "kind", "taskKey", "createdAt"],
    "ApiKey": ["id", "name", "prefix", "scopes", "createdAt", "lastUsedAt", "revokedAt"],
    "Membership": ["role", "joinedAt"],
    "FieldChange": ["field", "from", "to"],
    "TaskCounts": ["backlog", "todo", "inProgress", "inReview", "done", "canceled", "total"],
    "PageInfo": ["hasNextPage", "hasPreviousPage", "startCursor", "endCursor"],
}
NODE_TYPES = ("User", "Workspace", "Project", "Task", "Label", "Comment", "Activity", "ApiKey")
# Fields of the same name whose types differ between Node types (`Comment.task` is non-null,
# `Activity.task` is not): side by side in `node { ... on A { } ... on B { } }` they need
# aliases of their own.
CLASHING = frozenset({"task", "project"})

STATUSES = ["BACKLOG", "TODO", "IN_PROGRESS", "IN_REVIEW", "DONE", "CANCELED"]
PRIORITIES = ["NONE", "LOW", "NORMAL", "HIGH", "URGENT"]
CONDITIONS = [
    "status",
    "priority",
    "assigneeIds",
    "unassigned",
    "labelIds",
    "projectIds",
    "dueBefore",
    "dueAfter",
    "completed",
    "search",
]
SEARCHES = [
    "%",
    "_",
    "\\",
    "100%",
    "%_\\",
    "snake_",
    "under_score",
    "MiXeD",
    "mixed case",
    "TITLE",
    "",
    "   ",
    " plain ",
    "école",
    "ÉCOLE",
    "🚀",
    'quote "',
    "'",
    "a%b",
    "C:\\path",
    "task",
    "no such words",
]
# The first filter of each query of the "filter" theme, in turn: every condition alone and
# combined with others, and every search term alone.
FILTER_PLAN: list[tuple[str, Any]] = [
    *((c, "alone") for c in CONDITIONS),
    *(("search", term) for term in SEARCHES),
    *((c, "combined") for c in CONDITIONS),
]
DATES = ["2000-01-01", "2026-12-01", "2026-12-02", "2026-12-03", "2026-12-31", "2027-01-01"]
# Page sizes; None is an explicit null (the default page).
SIZES = [0, 1, 1, 2, 2, 3, 5, 100, None]
# Orders of the task lists: (field, direction), direction None for the default (ASC).
ORDERS: list[tuple[tuple[str, str | None], ...]] = [
    (("CREATED_AT", "ASC"),),
    (("CREATED_AT", "DESC"),),
    (("UPDATED_AT", None),),
    (("UPDATED_AT", "DESC"),),
    (("DUE_DATE", "ASC"),),
    (("DUE_DATE", "DESC"),),
    (("PRIORITY", None),),
    (("PRIORITY", "DESC"),),
    (("POSITION", "ASC"),),
    (("POSITION", "DESC"),),
    (("NUMBER", "ASC"),),
    (("NUMBER", "DESC"),),
    (("PRIORITY", "DESC"), ("NUMBER", None)),
    (("DUE_DATE", None), ("PRIORITY", "DESC")),
    (("UPDATED_AT", "ASC"), ("POSITION", "DESC"), ("NUMBER", "ASC")),
    (("POSITION", None), ("CREATED_AT", "DESC")),
    (("NUMBER", "DESC"), ("DUE_DATE", "ASC")),
    (
        ("PRIORITY", "ASC"),
        ("DUE_DATE", "DESC"),
        ("CREATED_AT", None),
        ("POSITION", "ASC"),
        ("UPDATED_AT", "DESC"),
        ("NUMBER", "DESC"),
    ),
]
# The task lists' orders when none is given.
DEFAULT_ORDER = {
    parent: tuple((f, "DESC" if descending else "ASC") for f, descending in order)
    for parent, order in (("Workspace", WORKSPACE_TASK_ORDER), ("Project", PROJECT_TASK_ORDER))
}


def _order_key(order: tuple[tuple[str, str | None], ...]) -> str:
    return "tasks " + ", ".join(f"{f} {d or 'ASC'}" for f, d in order)


# The world ---------------------------------------------------------------------------------


@dataclass
class World:
    """What the queries may name: IDs by type (visible to some principal, of the other
    workspace, of deleted objects), slugs, keys, and cursors from earlier answers."""

    tokens: dict[str, str | None]
    ids: dict[str, list[str]]
    tasks: list[str]
    slugs: list[str]
    project_keys: list[str]
    task_keys: list[str]
    workspace_slug: str
    other_slug: str
    project: str
    # One ID by type of an object of the other workspace, and of a deleted object.
    foreign: dict[str, str]
    deleted: dict[str, str]
    cursors: dict[str, list[str]] = field(default_factory=dict)


async def _world(session: AsyncSession) -> World:
    """`awkward_world` and more: a third workspace of the owner's with an empty project; a
    member with quotes and an emoji in the name and a mixed-case e-mail, a user of no
    workspace; labels whose names sort differently by case; tasks whose titles and
    descriptions hold `%`, `_`, backslashes, mixed case and accented capitals, every status
    and priority, null and shared due dates, shared creation times, timestamps on whole
    seconds and off them by a microsecond, positions from 5e-324 to 1e20 and below zero,
    several labels; comments with control characters; activity of a user, of an API key and
    of a user who is gone, changes from and to null and none at all; a revoked API key; and
    one deleted object of every type."""
    base, _, api_key = await awkward_world(session)
    ws, other = base.workspace, base.other_workspace
    users = dict(base.users)
    owner = users["owner"]
    t = factories.BASE_TIME

    # A third workspace of the owner's, with a project and nothing else: empty lists.
    third = await factories.workspace(session, factories.unique("empty-"), 'Ünïcødé "ws" \\ ✓')
    await factories.member(session, third.id, owner.id, Role.OWNER)
    await factories.project(session, third.id, "NIL", name="Nothing", description="")
    users["zoe"] = await factories.user(session, 'Zoë "Q" O\'Brien 🚀', "Zoe.OBrien@Example.COM")
    users["lonely"] = await factories.user(session, "Lonely, in no workspace")
    await factories.member(session, ws.id, users["zoe"].id, Role.MEMBER)
    # Members joined in one transaction share a timestamp (ties broken by user id); one did
    # on a whole second.
    await session.execute(
        update(Membership)
        .where(Membership.user_id == users["zoe"].id)
        .values(created_at=t + timedelta(days=1))
    )
    labels = list(base.labels)
    for name, color in (("Zeta ✓", "#00ff00"), ('alpha "q"', "#ABCDEF"), ("Beta_%\\", "#000000")):
        labels.append(await factories.label(session, ws.id, name, color))
    qa = await factories.project(session, ws.id, "QA1", name='Quality "assurance"', description="")

    async def task(project: Any, creator: Any, **values: Any) -> Any:
        return await factories.task(session, project, creator.id, **values)

    tie = t + timedelta(hours=5, microseconds=250_000)
    tasks = list(base.tasks)
    tasks.append(
        await task(
            base.project,
            users["zoe"],
            title="100% done",
            description="snake_case_name and C:\\path\\to",
            status="IN_REVIEW",
            priority=4,
            due_date=date(2026, 12, 2),
            assignee_id=users["zoe"].id,
            created_at=tie,
            updated_at=t + timedelta(days=4),
            position=1536.25,
        )
    )
    tasks.append(
        await task(
            base.project,
            owner,
            title="MiXeD CaSe Title",
            description="back\\slash",
            status="CANCELED",
            priority=0,
            completed_at=t + timedelta(days=2, microseconds=1),
            created_at=tie,
            updated_at=t + timedelta(days=4),
            position=-2.5,
        )
    )
    tasks.append(
        await task(
            base.project,
            owner,
            title="under_score",
            description="",
            status="DONE",
            priority=3,
            due_date=date(2026, 12, 1),
            assignee_id=owner.id,
            completed_at=t + timedelta(days=2, milliseconds=500),
            position=123456789.125,
        )
    )
    tasks.append(
        await task(
            qa,
            users["viewer"],
            title="Émigré ÉCOLE école",
            description='quote "x" %_\\ and a\x7f\u2028line',
            status="TODO",
            priority=2,
            assignee_id=users["viewer"].id,
            position=1e20,
        )
    )
    tasks.append(
        await task(
            qa,
            owner,
            title="plain",
            status="BACKLOG",
            due_date=date(2027, 1, 1),
            position=5e-324,
        )
    )
    await factories.task(session, base.other_project, users["outsider"].id, title="Secret 100%")
    await factories.tag(session, tasks[5].id, labels[3].id, labels[4].id)
    await factories.tag(session, tasks[7].id, *(label.id for label in labels))
    await factories.tag(session, tasks[9].id, labels[3].id)
    await factories.tag(session, base.other_task.id, base.other_label.id)
    for minute, (author, body) in enumerate(
        (
            ("zoe", "\x7f\u2028\u2029 emoji 🚀 'single' \"double\""),
            ("owner", "Same minute as the next one"),
            ("viewer", "Ünïcødé\r\nCRLF"),
        )
    ):
        await factories.comment(session, tasks[5].id, users[author].id, body, min(minute, 1))
    elsewhere = await factories.comment(
        session, base.other_task.id, users["outsider"].id, "Elsewhere"
    )

    principal = Principal(user_id=owner.id, roles={ws.id: Role.OWNER, third.id: Role.OWNER})
    partner = await create_api_key(
        session, principal, ws.id, 'Partner "β" \\', [ApiScope.READ, ApiScope.WRITE]
    )
    await session.execute(
        update(ApiKey)
        .where(ApiKey.id == partner.row.id)
        .values(revoked_at=t + timedelta(days=5), last_used_at=t + timedelta(days=4))
    )
    foreign_key = await create_api_key(
        session,
        Principal(user_id=users["outsider"].id, roles={other.id: Role.OWNER}),
        other.id,
        "elsewhere",
        [ApiScope.READ],
    )

    async def activity(on: Any, key: str, minute: int, **values: Any) -> Any:
        values.setdefault("kind", "TASK_UPDATED")
        row = (
            await session.execute(
                insert(Activity)
                .values(
                    workspace_id=on.workspace_id,
                    project_id=on.project_id,
                    task_id=on.id,
                    task_key=key,
                    created_at=t + timedelta(days=6, minutes=minute),
                    **values,
                )
                .returning(Activity.id)
            )
        ).scalar_one()
        return row

    changes = [
        {"field": "status", "from": "TODO", "to": "IN_REVIEW"},
        {"field": "title", "from": None, "to": "100% done"},
        {"field": "description", "from": 'a"b\\c\n', "to": None},
    ]
    await activity(tasks[5], "ENG-6", 0, actor_user_id=users["zoe"].id, changes=changes)
    await activity(
        tasks[5], "ENG-6", 1, kind="LABELS_CHANGED", actor_api_key_id=partner.row.id, changes=[]
    )
    await activity(tasks[5], "ENG-6", 1, kind="COMMENT_ADDED", actor_user_id=users["zoe"].id)
    foreign_activity = await activity(
        base.other_task, "OPS-1", 2, kind="TASK_CREATED", actor_user_id=users["outsider"].id
    )
    foreign = {
        "Task": base.other_task.id,
        "Comment": elsewhere.id,
        "Label": base.other_label.id,
        "Project": base.other_project.id,
        "Workspace": other.id,
        "User": users["outsider"].id,
        "ApiKey": foreign_key.row.id,
        "Activity": foreign_activity,
    }

    # Objects that existed once: their IDs name nothing. The deleted task's history stays.
    doomed = await task(base.project, owner, title="Doomed")
    await activity(doomed, f"ENG-{doomed.number}", 3, kind="TASK_DELETED", actor_user_id=owner.id)
    await activity(doomed, f"ENG-{doomed.number}", 4, actor_user_id=owner.id)
    gone_comment = await factories.comment(session, tasks[0].id, owner.id, "Gone")
    gone_label = await factories.label(session, ws.id, "gone")
    gone_project = await factories.project(session, ws.id, "GONE")
    gone_workspace = await factories.workspace(session, factories.unique("gone-"))
    ghost = await factories.user(session, "ghost")
    # A change by a user who is gone: its actor is null.
    await activity(tasks[6], "ENG-7", 6, actor_user_id=ghost.id, changes=changes[:1])
    gone_key = await create_api_key(session, principal, ws.id, "gone", [ApiScope.READ])
    gone_activity = await activity(tasks[1], "ENG-2", 5, actor_user_id=owner.id)
    deleted = {
        "Task": doomed.id,
        "Comment": gone_comment.id,
        "Label": gone_label.id,
        "Project": gone_project.id,
        "Workspace": gone_workspace.id,
        "User": ghost.id,
        "ApiKey": gone_key.row.id,
        "Activity": gone_activity,
    }
    tables = {
        "Task": Task,
        "Comment": Comment,
        "Label": Label,
        "Project": Project,
        "Workspace": Workspace,
        "User": User,
        "ApiKey": ApiKey,
        "Activity": Activity,
    }
    for type_name, db_id in deleted.items():
        model = tables[type_name]
        await session.execute(delete(model).where(model.id == db_id))  # type: ignore[attr-defined]
    await session.flush()

    async def all_ids(model: Any, type_name: str) -> list[str]:
        found = (await session.execute(select(model.id).order_by(model.id))).scalars()
        return [to_global_id(type_name, i) for i in found] + [
            to_global_id(type_name, deleted[type_name])
        ]

    ids = {name: await all_ids(model, name) for name, model in tables.items()}
    owner_token = token_for(owner.id)
    return World(
        tokens={
            "owner": owner_token,
            "viewer": token_for(users["viewer"].id),
            "outsider": token_for(users["outsider"].id),
            "api key": api_key,
            "anonymous": None,
        },
        ids=ids,
        tasks=[to_global_id("Task", x.id) for x in (*tasks, base.other_task)],
        slugs=[ws.slug, third.slug, other.slug, gone_workspace.slug, ws.slug.upper(), "nope"],
        project_keys=["ENG", " eng ", "OLD", "QA1", "qa1", "NIL", "OPS", "GONE", "NOPE", ""],
        task_keys=[
            "ENG-1",
            "eng-2",
            " ENG-6 ",
            "QA1-1",
            "OLD-1",
            "OPS-1",
            f"ENG-{doomed.number}",
            "ENG-999",
            "ENG-0",
            "E-1",
            "NOPE",
            "",
        ],
        workspace_slug=ws.slug,
        other_slug=other.slug,
        project=to_global_id("Project", base.project.id),
        foreign={name: to_global_id(name, i) for name, i in foreign.items()},
        deleted={name: to_global_id(name, i) for name, i in deleted.items()},
    )


# The queries -------------------------------------------------------------------------------


@dataclass
class Case:
    """A query of the corpus, for a principal; `theme` is what it was made to exercise."""

    name: str
    principal: str
    theme: str
    query: str
    variables: dict[str, Any] = field(default_factory=dict)
    operation_name: str | None = None

    @cached_property
    def shape(self) -> Shape:
        return Shape.of(self.query, self.variables, self.operation_name)


# Fields whose chance the theme raises, by "Type.field".
FOCUS: dict[str, frozenset[str]] = {
    "filter": frozenset({"Workspace.tasks", "Project.tasks"}),
    "order": frozenset({"Workspace.tasks", "Project.tasks"}),
    "paging": frozenset(
        {
            "Workspace.tasks",
            "Project.tasks",
            "Workspace.projects",
            "Workspace.members",
            "Task.comments",
            "Task.activity",
        }
    ),
    "workspace": frozenset(
        {
            "Workspace.members",
            "Workspace.labels",
            "Workspace.apiKeys",
            "Workspace.project",
            "Workspace.task",
            "Workspace.projects",
            "Membership.user",
            "ApiKey.createdBy",
            "Project.taskCounts",
        }
    ),
    "detail": frozenset(
        {
            "Task.activity",
            "Task.comments",
            "Activity.actor",
            "Activity.apiKey",
            "Activity.task",
            "Activity.changes",
            "Comment.author",
            "Comment.task",
            "Task.labels",
            "Task.assignee",
        }
    ),
}


class CorpusQueries(RandomQueries):
    """One query of the corpus, for one principal and theme."""

    def __init__(self, seed: int, world: World, principal: str, theme: str, turn: int) -> None:
        super().__init__(seed)
        self.world = world
        # Which of its theme's queries this one is: the theme's plans go through their
        # entries in turn.
        self.turn: int | None = turn
        self.admin = principal in ADMINS
        self.theme = theme
        self.focus = FOCUS.get(theme, frozenset())
        self.roots: set[str] = set()
        spread = theme == "fragments"
        self.spread_chance = 0.6 if spread else 0.2
        # A directive with a variable sends the whole query to the normal path (FALLS_BACK):
        # only some queries have them.
        uses = self.rng.random() < (0.5 if spread else 0.08)
        self.variable_directives = 0.25 if uses else 0.0
        self.variable_chance = 0.5 if spread else 0.3

    def arg(self, type_: str, value: Any) -> str:
        return self.argument(type_, value, self.variable_chance)

    # Selections

    def directive(self) -> str:
        roll = self.rng.random()
        if roll < self.variable_directives:
            value = self.rng.random() < 0.7
            name = self.rng.choice(["include", "skip"])
            given = self.variable("Boolean!", value if name == "include" else not value)
            return f" @{name}(if: {given})"
        roll -= self.variable_directives
        for limit, text in (
            (0.03, " @include(if: false)"),
            (0.06, " @skip(if: true)"),
            (0.09, " @include(if: true)"),
            (0.12, " @skip(if: false)"),
            (0.13, " @include(if: true) @skip(if: false)"),
        ):
            if roll < limit:
                return text
        return ""

    def scalars(self, type_name: str) -> list[str]:
        names = SCALARS[type_name]
        most = len(names) if self.rng.random() < 0.15 else min(len(names), 4)
        chosen = self.rng.sample(names, self.rng.randint(1, most))
        if self.rng.random() < 0.35:
            chosen.append("__typename")
        if self.rng.random() < 0.25:
            chosen.append(self.rng.choice(chosen))  # the same field twice is merged
        return [self.alias(name) + self.directive() for name in chosen]

    def key(self, name: str, clashing: bool = False) -> str:
        if clashing and name in CLASHING:
            return self.fresh_alias(name)
        return self.alias(name)

    def select(self, type_name: str, depth: int, clashing: bool = False) -> str:
        parts = self.scalars(type_name)
        if depth < MAX_DEPTH:
            for name, make in self.relations(type_name):
                focused = f"{type_name}.{name}" in self.focus
                chance = 0.6 if focused else (0.2 if depth < 2 else 0.06)
                if self.rng.random() < chance:
                    parts.append(make(self.key(name, clashing), depth + 1))
        if self.rng.random() < self.spread_chance:
            parts.append(self.spread(type_name))
        self.rng.shuffle(parts)
        return " ".join(parts)

    def spread(self, type_name: str, typed: bool = False) -> str:
        """A fragment of `type_name`'s fields: named, inline, without a type condition
        (unless `typed`), or on `Node`."""
        roll = self.rng.random()
        if typed and 0.55 <= roll < 0.7:
            roll = 0.4
        if type_name not in NODE_TYPES:
            roll = min(roll, 0.6)
        body = " ".join(self.scalars(type_name)) if roll < 0.7 else ""
        if roll < 0.3:
            name = f"F{len(self.fragments) + 1}"
            self.fragments.append(f"fragment {name} on {type_name} {{ {body} }}")
            return f"...{name}{self.directive()}"
        if roll < 0.55:
            return f"... on {type_name}{self.directive()} {{ {body} }}"
        if roll < 0.7:
            return f"...{self.directive() or ' @include(if: true)'} {{ {body} }}"
        inner = "id __typename" if self.rng.random() < 0.5 else "__typename id"
        if self.rng.random() < 0.4:
            inner += f" ... on {type_name} {{ {' '.join(self.scalars(type_name))} }}"
        if roll < 0.85:
            name = f"N{len(self.fragments) + 1}"
            self.fragments.append(f"fragment {name} on Node {{ {inner} }}")
            return f"...{name}"
        return f"... on Node {{ {inner} }}"

    def obj(self, type_name: str, arguments: str = "") -> Callable[[str, int], str]:
        def make(key: str, depth: int) -> str:
            text = f"{key}{arguments}{self.directive()} {{ {self.select(type_name, depth)} }}"
            if self.rng.random() < 0.1:
                # The field again, with other fields: graphql-core merges the two.
                scalars = " ".join(self.scalars(type_name))
                text += f" {key}{arguments} {{ {scalars} }}"
            return text

        return make

    def relations(self, type_name: str) -> list[tuple[str, Callable[[str, int], str]]]:
        if type_name == "Workspace":
            found = [
                ("projects", self.projects),
                ("project", self.project_by_key),
                ("labels", self.obj("Label")),
                ("tasks", self.tasks("Workspace")),
                ("task", self.task_by_key),
                ("members", self.members),
            ]
            return found + ([("apiKeys", self.obj("ApiKey"))] if self.admin else [])
        if type_name == "Project":
            return [
                ("workspace", self.obj("Workspace")),
                ("tasks", self.tasks("Project")),
                ("taskCounts", self.obj("TaskCounts")),
            ]
        if type_name == "Task":
            return [
                ("project", self.obj("Project")),
                ("assignee", self.obj("User")),
                ("creator", self.obj("User")),
                ("labels", self.obj("Label")),
                ("comments", self.child_list("Comment", "comments")),
                ("activity", self.child_list("Activity", "activity")),
            ]
        if type_name == "Label":
            return [("workspace", self.obj("Workspace"))]
        if type_name == "Comment":
            return [("author", self.obj("User")), ("task", self.obj("Task"))]
        if type_name == "Activity":
            return [
                ("actor", self.obj("User")),
                ("apiKey", self.obj("ApiKey")),
                ("task", self.obj("Task")),
                ("changes", self.obj("FieldChange")),
            ]
        if type_name == "ApiKey":
            return [("createdBy", self.obj("User"))]
        if type_name == "Membership":
            return [("user", self.obj("User"))]
        return []

    # Lists

    def connection(self, key: str, node_type: str, arguments: list[str], depth: int) -> str:
        self.rng.shuffle(arguments)
        given = f"({', '.join(arguments)})" if arguments else ""
        paging = self.theme == "paging"
        body = []
        roll = self.rng.random()
        if roll < 0.55:
            body.append(f"{self.alias('nodes')} {{ {self.select(node_type, depth)} }}")
        if 0.45 < roll < 0.9:
            names = self.rng.sample(["cursor", "__typename"], self.rng.randint(0, 2))
            edge = [self.alias(n) + self.directive() for n in names]
            if not edge or self.rng.random() < 0.7:
                edge.append(f"node {{ {self.select(node_type, depth)} }}")
            body.append(f"edges {{ {' '.join(edge)} }}")
        if self.rng.random() < (0.8 if paging else 0.4):
            info = SCALARS["PageInfo"] if paging and self.rng.random() < 0.6 else None
            fields = " ".join(info) if info else " ".join(self.scalars("PageInfo"))
            body.append(f"pageInfo {{ {fields} }}")
        if not body or self.rng.random() < (0.7 if paging else 0.35):
            body.append(self.alias("totalCount") + self.directive())
        if self.rng.random() < 0.15:
            body.append("__typename")
        self.rng.shuffle(body)
        return f"{key}{given}{self.directive()} {{ {' '.join(body)} }}"

    def page(self, pool: str, backwards: bool = False) -> list[str]:
        """first/after (or last/before) for a list whose cursors are `cursors[pool]`."""
        paging = self.theme == "paging"
        if self.rng.random() > (0.95 if paging else 0.45):
            return []
        cursors = self.world.cursors.get(pool, [])
        size = self.rng.choice(SIZES)
        cursor = self.rng.choice(cursors) if cursors and self.rng.random() < 0.6 else None
        if backwards and self.rng.random() < (0.35 if paging else 0.1):
            names = ("last", "before")
            size = 2 if size is None else size  # `before` needs a `last`, not null
        else:
            names = ("first", "after")
        given = []
        # `before` goes with `last`; `after` may come without `first`.
        if cursor is None or names[0] == "last" or self.rng.random() < 0.85:
            given.append(f"{names[0]}: {self.arg('Int', size)}")
        if cursor is not None:
            given.append(f"{names[1]}: {self.arg('String', cursor)}")
        elif self.rng.random() < 0.1:
            given.append(f"{names[1]}: null")
        return given

    def tasks(self, parent: str) -> Callable[[str, int], str]:
        def make(key: str, depth: int) -> str:
            arguments = []
            filters = 0.9 if self.theme == "filter" else 0.12
            if self.rng.random() < filters:
                arguments.append(f"filter: {self.arg('TaskFilter', self.task_filter())}")
            order = DEFAULT_ORDER[parent]
            orders = 0.9 if self.theme == "order" else 0.3
            if self.rng.random() < orders:
                chosen = self.rng.choice(ORDERS)
                value = [{"field": f, "direction": d} if d else {"field": f} for f, d in chosen]
                roll = self.rng.random()
                if roll < 0.06:
                    arguments.append(f"orderBy: {self.rng.choice(['[]', 'null'])}")
                elif roll < 0.15 and len(value) == 1:
                    # One TaskOrder where a list is expected stands for a list of one.
                    arguments.append(f"orderBy: {self.argument('TaskOrder', value[0], 0)}")
                    order = chosen
                else:
                    arguments.append(f"orderBy: {self.arg('[TaskOrder!]', value)}")
                    order = chosen
            arguments += self.page(_order_key(order), backwards=True)
            return self.connection(key, "Task", arguments, depth)

        return make

    def task_filter(self) -> dict[str, Any]:
        roll = self.rng.random()
        count = 0 if roll < 0.04 else 1 if roll < 0.55 else self.rng.randint(2, 5)
        chosen = self.rng.sample(CONDITIONS, count)
        given = {name: self.condition(name) for name in chosen}
        if self.theme == "filter" and self.turn is not None:
            # The first filter of the theme's queries goes through FILTER_PLAN in turn.
            lead, value = FILTER_PLAN[self.turn % len(FILTER_PLAN)]
            self.turn = None
            others = [c for c in chosen if c != lead][: 0 if value == "alone" else 3]
            if value == "combined" and not others:
                others = [self.rng.choice([c for c in CONDITIONS if c != lead])]
            given = {lead: self.condition(lead) if value in ("alone", "combined") else value}
            given |= {name: self.condition(name) for name in others}
        if self.rng.random() < 0.1:
            given[self.rng.choice(CONDITIONS)] = None  # an explicit null is no condition
        return given

    def condition(self, name: str) -> Any:
        ids = self.world.ids

        def some(values: list[Any], most: int) -> list[Any]:
            return self.rng.sample(values, self.rng.randint(0 if most > 1 else 1, most))

        if name == "status":
            return some(STATUSES, 3)
        if name == "priority":
            return some(PRIORITIES, 3)
        if name == "assigneeIds":
            return some(ids["User"], 3)
        if name == "labelIds":
            return some(ids["Label"], 3)
        if name == "projectIds":
            return some(ids["Project"], 2)
        if name in ("dueBefore", "dueAfter"):
            return self.rng.choice(DATES)
        if name in ("unassigned", "completed"):
            return self.rng.random() < 0.5
        return self.rng.choice(SEARCHES)

    def child_list(self, node_type: str, pool: str) -> Callable[[str, int], str]:
        def make(key: str, depth: int) -> str:
            return self.connection(key, node_type, self.page(pool), depth)

        return make

    def projects(self, key: str, depth: int) -> str:
        arguments = self.page("projects")
        if self.rng.random() < 0.5:
            archived = self.rng.choice([True, True, False, None])
            arguments.append(f"includeArchived: {self.arg('Boolean', archived)}")
        return self.connection(key, "Project", arguments, depth)

    def members(self, key: str, depth: int) -> str:
        return self.connection(key, "Membership", self.page("members"), depth)

    def project_by_key(self, key: str, depth: int) -> str:
        given = self.arg("String!", self.rng.choice(self.world.project_keys))
        return self.obj("Project", f"(key: {given})")(key, depth)

    def task_by_key(self, key: str, depth: int) -> str:
        given = self.arg("String!", self.rng.choice(self.world.task_keys))
        return self.obj("Task", f"(key: {given})")(key, depth)

    # Roots

    def root_key(self, name: str) -> str:
        if name in self.roots:
            return self.fresh_alias(name)
        self.roots.add(name)
        return self.alias(name)

    def root(self, name: str) -> str:
        if name == "typename":
            return "__typename"
        if name in ("project", "task"):
            # A project's board or a task's detail, by ID.
            type_name = name.capitalize()
            chosen = self.world.project if name == "project" else self.rng.choice(self.world.tasks)
            given = self.arg("ID!", chosen)
            alias = f"{name}{len(self.roots)}"
            self.roots.add(alias)
            body = self.select(type_name, 1)
            return f"{alias}: node(id: {given}) {{ ... on {type_name} {{ {body} }} }}"
        key = self.root_key(name)
        if name == "me":
            return f"{key}{self.directive()} {{ {self.select('User', 1)} }}"
        if name == "workspaces":
            return self.connection(key, "Workspace", self.page("workspaces"), 1)
        if name == "workspace":
            slug = self.world.workspace_slug if self.rng.random() < 0.6 else None
            slug = slug or self.rng.choice(self.world.slugs)
            given = self.arg("String!", slug)
            return f"{key}(slug: {given}){self.directive()} {{ {self.select('Workspace', 1)} }}"
        if name == "node":
            type_name = self.rng.choice(list(NODE_TYPES))
            given = self.arg("ID!", self.rng.choice(self.world.ids[type_name]))
            types = {type_name} if self.rng.random() < 0.8 else set()
            types |= set(self.rng.sample(NODE_TYPES, self.rng.randint(0, 2)))
            return f"{key}(id: {given}) {{ {self.node_body(sorted(types))} }}"
        if name == "nodes":
            every = [i for t in NODE_TYPES for i in self.world.ids[t]]
            chosen = self.rng.sample(every, self.rng.randint(0, 8))
            if chosen and self.rng.random() < 0.2:
                chosen.append(chosen[0])  # the same ID twice
            types = set(self.rng.sample(NODE_TYPES, self.rng.randint(1, 4)))
            given = self.arg("[ID!]!", chosen)
            return f"{key}(ids: {given}) {{ {self.node_body(sorted(types))} }}"
        raise ValueError(name)

    def node_body(self, types: list[str]) -> str:
        parts = [
            f"... on {t}{self.directive()} {{ {self.select(t, 1, clashing=True)} }}" for t in types
        ]
        if self.rng.random() < 0.5:
            parts.append(self.rng.choice(["__typename", "id", "id __typename"]))
        if not parts or self.rng.random() < 0.2:
            parts.append(self.spread(self.rng.choice(list(NODE_TYPES)), typed=True))
        self.rng.shuffle(parts)
        return " ".join(parts)

    def query(self) -> tuple[str, dict[str, Any], str | None]:
        main = {
            "filter": ["workspace", "project", "workspaces"],
            "order": ["workspace", "project", "workspaces"],
            "paging": ["workspace", "project", "workspaces", "task"],
            "workspace": ["workspace", "workspaces", "node"],
            "detail": ["task", "workspace"],
            "nodes": ["node", "nodes"],
        }.get(self.theme, ["me", "workspaces", "workspace", "project", "task", "node"])
        roots = [self.root(self.rng.choice(main))]
        extras = ["me", "workspaces", "workspace", "project", "task", "node", "nodes", "typename"]
        while self.rng.random() < 0.35:
            roots.append(self.root(self.rng.choice(extras)))
        if self.theme == "workspace" and "workspace" not in roots[0]:
            roots.append(self.root("workspace"))
        self.rng.shuffle(roots)
        body = " ".join(roots)
        roll = self.rng.random()
        if roll < 0.05:
            # Two operations in one document, the first chosen by name.
            return self.operation(body) + " query Other { __typename }", self.variables, "Q"
        if roll < 0.15 and not self.definitions:
            return "{ " + body + " } " + " ".join(self.fragments), self.variables, None
        return self.operation(body), self.variables, None


def _corpus(world: World) -> Iterator[Case]:
    for n in range(CORPUS_SIZE):
        principal = PRINCIPALS[n % len(PRINCIPALS)]
        # Principals take turns, and themes every five queries.
        rounds, theme = divmod(n // len(PRINCIPALS), len(THEMES))
        turn = rounds * len(PRINCIPALS) + n % len(PRINCIPALS)
        maker = CorpusQueries(SEED + n, world, principal, THEMES[theme], turn)
        query, variables, operation = maker.query()
        case = Case(f"query {n}", principal, THEMES[theme], query, variables, operation)
        yield case
        if n % 4 == 0:
            yield _again(case, world, maker.rng)


def _again(case: Case, world: World, rng: random.Random) -> Case:
    """The query once more, right after it ran, for another principal and with other IDs of
    the same types in its variables: the compiled path answers it with the statement it
    kept, given the new principal's values and IDs."""
    if case.shape.has("Workspace.apiKeys"):
        principal = next(p for p in ADMINS if p != case.principal)
    else:
        principal = PRINCIPALS[(PRINCIPALS.index(case.principal) + 1) % len(PRINCIPALS)]

    def swapped(value: Any) -> Any:
        if isinstance(value, list):
            return [swapped(v) for v in value]
        if isinstance(value, dict):
            return {k: swapped(v) for k, v in value.items()}
        type_name = type_of(value)
        return rng.choice(world.ids[type_name]) if type_name in world.ids else value

    variables = swapped(case.variables)
    return replace(case, name=f"{case.name} again", principal=principal, variables=variables)


def _fill(template: str, **values: str) -> str:
    """The template with each `<name>` replaced by its value."""
    for name, value in values.items():
        template = template.replace(f"<{name}>", value)
    return template


def _cursor_queries(world: World) -> list[tuple[str, Case]]:
    """Queries whose answers hold the cursors of every list: (pool, query)."""
    page = "(first: 100<more>) { edges { cursor } pageInfo { startCursor endCursor } }"
    whole = _fill(page, more="")
    slug = world.workspace_slug
    in_workspace = '{ workspace(slug: "<slug>") { list: <list> } }'
    found = [
        ("workspaces", "owner", f"{{ list: workspaces{whole} }}"),
        ("workspaces", "outsider", f"{{ list: workspaces{whole} }}"),
        ("members", "owner", _fill(in_workspace, slug=slug, list=f"members{whole}")),
        (
            "projects",
            "owner",
            _fill(
                in_workspace,
                slug=slug,
                list="projects" + _fill(page, more=", includeArchived: true"),
            ),
        ),
        (
            _order_key(DEFAULT_ORDER["Project"]),
            "owner",
            _fill(
                '{ node(id: "<id>") { ... on Project { list: tasks<page> } } }',
                id=world.project,
                page=whole,
            ),
        ),
        (
            _order_key(DEFAULT_ORDER["Workspace"]),
            "outsider",
            _fill(in_workspace, slug=world.other_slug, list=f"tasks{whole}"),
        ),
    ]
    for task in (world.tasks[0], world.tasks[5]):
        for pool in ("comments", "activity"):
            query = _fill(
                '{ node(id: "<id>") { ... on Task { list: <list> } } }', id=task, list=pool + whole
            )
            found.append((pool, "owner", query))
    for order in ORDERS:
        given = ", ".join(f"{{field: {f}{f', direction: {d}' if d else ''}}}" for f, d in order)
        listed = "tasks" + _fill(page, more=f", orderBy: [{given}]")
        found.append((_order_key(order), "owner", _fill(in_workspace, slug=slug, list=listed)))
    return [
        (pool, Case(f"cursors {n}: {pool}", who, "cursors", query))
        for n, (pool, who, query) in enumerate(found)
    ]


def _error_cases(world: World) -> Iterator[Case]:
    """Queries that end in errors, for the principals they end in errors for."""
    ids = world.ids
    task = world.tasks[0]
    cursors = world.cursors
    values = {
        "slug": world.workspace_slug,
        "task": task,
        "wrong": cursors[_order_key((("PRIORITY", "DESC"),))][0],
        "comment": cursors["comments"][0],
        "member": cursors["members"][0],
        "nope": _raw_id("Nope:1"),
        "zero": _raw_id("Task:0"),
        "long": "x" * 201,
    }

    def tasks_of(arguments: str) -> str:
        return '{ workspace(slug: "<slug>") { tasks' + arguments + " { nodes { id } } } }"

    everybody = PRINCIPALS
    readers = ("owner", "viewer", "api key")
    cases: list[tuple[str, tuple[str, ...], str, dict[str, Any]]] = [
        (
            "apiKeys for a reader who is no admin",
            ("viewer", "api key"),
            '{ workspace(slug: "<slug>") { name apiKeys { id name } } }',
            {},
        ),
        (
            "apiKeys of every workspace",
            ("viewer", "api key"),
            "{ me { id } workspaces { nodes { slug apiKeys { prefix } } } }",
            {},
        ),
        (
            "apiKeys through a task's project",
            ("viewer",),
            '{ node(id: "<task>") { ... on Task { project { workspace { apiKeys { id } } } } } }',
            {},
        ),
        ("no ID", everybody, '{ node(id: "not-an-id") { id } }', {}),
        ("an ID of no type", everybody, '{ node(id: "<nope>") { id } }', {}),
        ("an ID of id 0", everybody, '{ node(id: "<zero>") { id } }', {}),
        (
            "an ID variable that is no ID",
            everybody,
            "query($id: ID!) { node(id: $id) { id } }",
            {"id": "VGFzazp4"},
        ),
        (
            "a bad ID among good ones",
            everybody,
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            {"ids": [ids["Task"][0], "bad", ids["User"][0]]},
        ),
        (
            "more than 100 IDs",
            ("owner", "anonymous"),
            "query($ids: [ID!]!) { nodes(ids: $ids) { id } }",
            {"ids": [ids["Task"][0]] * 101},
        ),
        ("first: 101", readers, tasks_of("(first: 101)"), {}),
        ("first: -1", readers, tasks_of("(first: -1)"), {}),
        ("last: 101", readers, tasks_of("(last: 101)"), {}),
        ("workspaces(first: 101)", everybody, "{ workspaces(first: 101) { totalCount } }", {}),
        (
            "comments(first: -1)",
            readers,
            '{ node(id: "<task>") { ... on Task { comments(first: -1) { totalCount } } } }',
            {},
        ),
        ("first and last", readers, tasks_of("(first: 2, last: 2)"), {}),
        ("last after a cursor", readers, tasks_of('(last: 2, after: "<wrong>")'), {}),
        ("first before a cursor", readers, tasks_of('(first: 2, before: "<wrong>")'), {}),
        ("last: null before a cursor", readers, tasks_of('(last: null, before: "<wrong>")'), {}),
        ("a cursor that is no cursor", readers, tasks_of('(after: "bad")'), {}),
        (
            "a cursor of another ordering",
            readers,
            tasks_of('(orderBy: [{field: NUMBER}], after: "<wrong>")'),
            {},
        ),
        ("a cursor of another list", readers, tasks_of('(before: "<comment>", last: 1)'), {}),
        (
            "a members cursor for projects",
            ("owner",),
            '{ workspace(slug: "<slug>") { projects(after: "<member>") { totalCount } } }',
            {},
        ),
        (
            "a cursor variable of another ordering",
            ("owner", "viewer"),
            "query($c: String) { workspaces { nodes { tasks(first: 1, after: $c) "
            "{ totalCount } } } }",
            {"c": values["wrong"]},
        ),
        (
            "orderBy naming a field twice",
            readers,
            tasks_of("(orderBy: [{field: NUMBER}, {field: NUMBER, direction: DESC}])"),
            {},
        ),
        (
            "orderBy of seven keys",
            readers,
            tasks_of(
                "(orderBy: [{field: NUMBER}, {field: PRIORITY}, {field: DUE_DATE}, "
                "{field: POSITION}, {field: CREATED_AT}, {field: UPDATED_AT}, {field: NUMBER}])"
            ),
            {},
        ),
        ("an assignee ID of a task", readers, tasks_of('(filter: {assigneeIds: ["<task>"]})'), {}),
        ("a label ID that is no ID", readers, tasks_of('(filter: {labelIds: ["nope"]})'), {}),
        (
            "a project ID of a user, in a variable",
            readers,
            "query($f: TaskFilter) { workspaces { nodes { tasks(filter: $f) { totalCount } } } }",
            {"f": {"projectIds": [ids["User"][0]]}},
        ),
        ("a search of 201 characters", readers, tasks_of('(filter: {search: "<long>"})'), {}),
        (
            "a status list of 101 values",
            readers,
            "query($f: TaskFilter!) { workspaces { nodes { tasks(filter: $f) { totalCount } } } }",
            {"f": {"status": ["TODO"] * 101}},
        ),
        (
            "a variable of the wrong type",
            everybody,
            "query($n: Int) { workspaces(first: $n) { totalCount } }",
            {"n": "two"},
        ),
        (
            "a missing variable",
            everybody,
            "query($slug: String!) { workspace(slug: $slug) { id } }",
            {},
        ),
        (
            "null for a defaulted variable of a non-null argument",
            everybody,
            'query($s: String = "x") { workspace(slug: $s) { id } }',
            {"s": None},
        ),
        (
            "an error beside good fields",
            ("viewer",),
            '{ me { name } workspace(slug: "<slug>") { labels { name } apiKeys { id } } '
            "workspaces { totalCount } }",
            {},
        ),
    ]
    for name, principals, query, variables in cases:
        for principal in principals:
            yield Case(f"error: {name}", principal, "errors", _fill(query, **values), variables)


def _raw_id(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# Running them ------------------------------------------------------------------------------


@dataclass
class Answer:
    """A case's answers from the normal path and the compiled one; `compiled` when the
    compiled path gave the second, `faults` what it logged when its statement failed."""

    case: Case
    plain: str
    fast: str
    compiled: bool
    faults: list[str]


class Runner:
    """Runs a case both ways and tells whether the compiled path answered."""

    def __init__(
        self,
        api: Api,
        monkeypatch: pytest.MonkeyPatch,
        used: list[str],
        caplog: pytest.LogCaptureFixture,
        world: World,
    ) -> None:
        self.api = api
        self.monkeypatch = monkeypatch
        self.used = used
        self.caplog = caplog
        self.world = world

    async def __call__(self, case: Case) -> Answer:
        self.used.clear()
        self.caplog.clear()
        plain, fast = await both(
            self.api,
            self.monkeypatch,
            case.query,
            self.world.tokens[case.principal],
            case.variables,
            case.operation_name,
        )
        # A compiled statement that fails hands over to the normal path, and logs it.
        faults = [r.getMessage() for r in self.caplog.records if r.name == "graph.view"]
        return Answer(case, plain, fast, bool(self.used) and not faults, faults)


def _describe(answer: Answer) -> str:
    case = answer.case
    return (
        f"{case.name} ({case.theme}) for {case.principal}:\n  query: {case.query}\n"
        f"  variables: {json.dumps(case.variables, ensure_ascii=False)}\n"
        f"  operation: {case.operation_name}\n  normal:   {answer.plain}\n"
        f"  compiled: {answer.fast}"
    )


def _share(answers: list[Answer]) -> str:
    done = sum(a.compiled for a in answers)
    return f"{done}/{len(answers)}" if answers else "-"


def _per_principal(answers: list[Answer]) -> str:
    return "  ".join(
        f"{p} {_share([a for a in answers if a.case.principal == p])}" for p in PRINCIPALS
    )


def _report(answers: list[Answer]) -> str:
    """The share of the corpus that the compiled path answers, by theme and by the shapes
    of FALLS_BACK, per principal."""
    done = sum(a.compiled for a in answers)
    lines = [f"compiled: {done} of {len(answers)} queries ({done / len(answers):.0%})"]
    lines.append("compiled, by theme and principal:")
    for theme in ("cursors", *THEMES):
        group = [a for a in answers if a.case.theme == theme]
        lines.append(f"  {theme:10} {_share(group):>8}   {_per_principal(group)}")
    lines.append(
        "compiled, by shape of FALLS_BACK (queries of the shape; how many no other entry "
        "explains) and principal:"
    )
    for name in FALLS_BACK:
        group = [a for a in answers if name in _matches(a.case.shape)]
        alone = sum(_matches(a.case.shape) == [name] for a in group)
        lines.append(f"  {name:45} {_share(group):>8} {alone:4}   {_per_principal(group)}")
    rest = [a for a in answers if not _matches(a.case.shape)]
    lines.append(
        f"  {'(no shape of FALLS_BACK)':45} {_share(rest):>8}        {_per_principal(rest)}"
    )
    return "\n".join(lines)


def _matches(shape: Shape) -> list[str]:
    return [name for name, applies in FALLS_BACK.items() if applies(shape)]


def _problems(answers: list[Answer]) -> list[str]:
    """Differences between the two answers that KNOWN_DIFFERENCES does not name (or that it
    names and that are gone), errors where none belong (or none where they do), compiled
    statements that failed, fallbacks that FALLS_BACK does not explain, and entries of
    FALLS_BACK that explain nothing."""
    problems = []
    for answer in answers:
        name = answer.case.name
        if ("errors" in json.loads(answer.plain)) != (answer.case.theme == "errors"):
            problems.append(f"errors where none belong, or none where they do: {_describe(answer)}")
        if answer.faults:
            problems.append(f"the compiled statement failed {answer.faults}: {_describe(answer)}")
        differs = same(answer.fast) != same(answer.plain)
        if differs and name not in KNOWN_DIFFERENCES:
            problems.append(f"the answers differ: {_describe(answer)}")
        if not differs and name in KNOWN_DIFFERENCES:
            problems.append(f"the answers no longer differ (update KNOWN_DIFFERENCES): {name}")
        # Queries that end in errors go to the normal path, which produces them.
        errors = answer.case.theme == "errors"
        if not answer.compiled and not errors and not _matches(answer.case.shape):
            problems.append(f"fell back, but matches no entry of FALLS_BACK: {_describe(answer)}")
    names = {a.case.name for a in answers}
    problems += [
        f"KNOWN_DIFFERENCES names no query: {n}" for n in KNOWN_DIFFERENCES if n not in names
    ]
    for name in FALLS_BACK:
        matching = [a for a in answers if name in _matches(a.case.shape)]
        alone = [a for a in matching if _matches(a.case.shape) == [name]]
        if not matching:
            problems.append(f"FALLS_BACK[{name!r}] matches no query of the corpus")
        elif alone and all(a.compiled for a in alone):
            problems.append(
                f"FALLS_BACK[{name!r}]: the {len(alone)} queries that only it matches are "
                "compiled now; delete the entry (or narrow it)"
            )
    return problems


# The kinds of the variables the corpus must use (their types without `!`).
VARIABLE_KINDS = (
    "ID",
    "[ID]",
    "String",
    "Int",
    "Boolean",
    "Date",
    "TaskFilter",
    "TaskOrder",
    "[TaskOrder]",
    "TaskOrderField",
    "OrderDirection",
    "TaskStatus",
    "[TaskStatus]",
    "[TaskPriority]",
)


def _coverage(world: World, cases: list[Case]) -> list[str]:
    """What the corpus must hold and no query of it has."""
    shapes = [c.shape for c in cases]
    queries = [c.query for c in cases]
    fields = set().union(*(s.fields for s in shapes))
    wanted: dict[str, bool] = {}
    for condition in CONDITIONS:
        wanted[f"filter {condition} alone"] = any({condition} in s.filters for s in shapes)
        wanted[f"filter {condition} combined"] = any(
            condition in f and len(f) > 1 for s in shapes for f in s.filters
        )
    searches = set().union(*(s.searches for s in shapes))
    for term in ("%", "_", "\\"):
        wanted[f"search with {term!r}"] = any(term in s for s in searches)
    wanted["search in mixed case"] = any(s not in (s.lower(), s.upper()) for s in searches)
    wanted["empty search"] = "" in searches
    orders = set().union(*(s.orders for s in shapes))
    for f in ("CREATED_AT", "UPDATED_AT", "DUE_DATE", "PRIORITY", "POSITION", "NUMBER"):
        for direction in ("ASC", "DESC"):
            wanted[f"order {f} {direction}"] = f"{f} {direction}" in orders
    wanted["orders of several keys"] = any(max(s.order_lengths, default=0) > 2 for s in shapes)
    sizes = set().union(*(s.page_sizes for s in shapes))
    for size in ("first 0", "first 1", "first 2", "first 100", "last 0", "last 1", "last 100"):
        wanted[size] = size in sizes
    arguments = set().union(*(s.arguments for s in shapes))
    for name in ("Workspace.tasks", "Project.tasks"):
        for argument in ("after", "before"):
            wanted[f"{name}({argument})"] = f"{name}({argument})" in arguments
    for name in ("Query.workspaces", "Workspace.members", "Task.comments", "Task.activity"):
        wanted[f"{name}(after)"] = f"{name}(after)" in arguments
    for name in (
        *(f"PageInfo.{n}" for n in SCALARS["PageInfo"]),
        *(f"{c}Connection.totalCount" for c in ("Task", "Membership", "Workspace", "Comment")),
        "Membership.role",
        "Membership.joinedAt",
        "Membership.user",
        "Workspace.labels",
        "Workspace.apiKeys",
        "Workspace.project",
        "Workspace.task",
        "Activity.changes",
        "Activity.actor",
        "Activity.apiKey",
        "Activity.task",
        "Comment.author",
        "Comment.task",
        "ApiKey.createdBy",
        *(f"{t}.__typename" for t in (*NODE_TYPES, "Membership", "TaskConnection", "PageInfo")),
    ):
        wanted[name] = name in fields
    backwards = [s for s in shapes if s.has("Workspace.tasks(last)", "Project.tasks(last)")]
    for name in ("TaskConnection.totalCount", *(f"PageInfo.{n}" for n in SCALARS["PageInfo"])):
        wanted[f"{name} with last"] = any(name in s.fields for s in backwards)
    texts = [(c.shape, c.query + json.dumps(c.variables)) for c in cases]
    for type_name in NODE_TYPES:
        wanted[f"node of {type_name}"] = any(type_name in s.node_types for s in shapes)
        wanted[f"nodes of {type_name}"] = any(type_name in s.nodes_types for s in shapes)
        for kind, named in (("deleted", world.deleted), ("foreign", world.foreign)):
            wanted[f"node of a {kind} {type_name}"] = any(
                named[type_name] in t and s.has("Query.node") for s, t in texts
            )
            wanted[f"nodes of a {kind} {type_name}"] = any(
                named[type_name] in t and s.has("Query.nodes") for s, t in texts
            )
    wanted["variable directives"] = any(s.variable_directives for s in shapes)
    for text in ("fragment F", "fragment N", "... on Node", "@include(if: false)", "@skip(if: $"):
        wanted[text] = any(text in q for q in queries)
    wanted["variable defaults"] = any(" = " in q.split("{", 1)[0] for q in queries)
    kinds = {
        kind.replace("!", "")
        for q in queries
        for kind in re.findall(r"\$v\d+: (\[?\w+!?\]?)", q.split("{", 1)[0])
    }
    for kind in VARIABLE_KINDS:
        wanted[f"variables of {kind}"] = kind in kinds
    wanted["several operations"] = any(c.operation_name for c in cases)
    return [name for name, present in wanted.items() if not present]


async def test_the_corpus_gets_the_same_answers_compiled_and_not(
    api: Api,
    session: AsyncSession,
    monkeypatch: pytest.MonkeyPatch,
    used: list[str],
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    started = time.monotonic()
    caplog.set_level(logging.ERROR, logger="graph.view")
    world = await _world(session)
    run = Runner(api, monkeypatch, used, caplog, world)
    # An API key's first use records when it was used: not in the middle of the corpus.
    await api.data("{ workspaces { totalCount } }", token=world.tokens["api key"])

    answers: list[Answer] = []
    try:
        for pool, case in _cursor_queries(world):
            answer = await run(case)
            answers.append(answer)
            edges = _find_list(json.loads(answer.plain)["data"])
            world.cursors.setdefault(pool, []).extend(e["cursor"] for e in edges)
        cases = list(_corpus(world))
        for n, case in enumerate(cases):
            answers.append(await run(case))
            if n % 10 == 0:
                # The server keeps a thousand parsed documents twice (Strawberry's parser
                # cache and the compiled path's), most of a million objects: frozen, they
                # are not walked again by every collection, which took a fifth of the time.
                gc.freeze()
        errors = list(_error_cases(world))
        error_answers = [await run(case) for case in errors]
    finally:
        gc.unfreeze()

    elapsed = time.monotonic() - started
    report = _report(answers)
    with capsys.disabled():
        print(
            f"\n{len(answers)} queries and {len(errors)} error cases in {elapsed:.1f} s\n{report}"
        )
    assert len(cases) >= 1000
    missing = _coverage(world, cases + errors)
    assert not missing, f"the corpus lacks: {missing}"
    problems = _problems(answers + error_answers)
    shown = "\n\n".join(problems[:20])
    assert not problems, f"{len(problems)} problems:\n{shown}\n\n{report}"


def _find_list(data: Any) -> list[dict[str, Any]]:
    """The edges of the one list (aliased `list`) of an answer."""
    if isinstance(data, dict):
        if "list" in data:
            return data["list"]["edges"]  # type: ignore[no-any-return]
        for value in data.values():
            found = _find_list(value)
            if found:
                return found
    return []
