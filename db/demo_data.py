"""Deterministic demo data, written with COPY.

Scale 1 is 20 workspaces, 200 users, 100 projects, 100,000 tasks, 300,000 comments and labels
on most tasks; every count scales linearly. The same scale always gives the same rows (ids
included), so benchmarks and screenshots can be compared. Rows are plain tuples built in
loops: at this size, per-row objects would cost more than the database does.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db import wire

Progress = Callable[[str, int, int], None]

DEMO_EMAIL = "demo@taskgraph.dev"
CHUNK = 20_000
STATUSES = ("BACKLOG", "TODO", "IN_PROGRESS", "IN_REVIEW", "DONE", "CANCELED")
STATUS_WEIGHTS = (15, 25, 15, 10, 30, 5)
ROLE_MIX = ("ADMIN", "MEMBER", "MEMBER", "MEMBER", "MEMBER", "VIEWER")
PROJECT_KEYS = ("ENG", "WEB", "OPS", "MOB", "DATA", "SEC", "DES", "QA", "API", "INFRA")
WORKSPACE_NAMES = (
    "acme",
    "globex",
    "initech",
    "umbrella",
    "hooli",
    "stark",
    "wayne",
    "wonka",
    "tyrell",
    "cyberdyne",
    "soylent",
    "aperture",
    "oscorp",
    "vandelay",
    "pied-piper",
    "dunder",
    "gringotts",
    "monsters",
    "oceanic",
    "duff",
)
LABELS = (
    ("bug", "#d73a4a"),
    ("feature", "#a2eeef"),
    ("docs", "#0075ca"),
    ("ui", "#e4e669"),
    ("backend", "#5319e7"),
    ("urgent", "#b60205"),
    ("tech-debt", "#fbca04"),
    ("good-first", "#7057ff"),
)
VERBS = ("Fix", "Add", "Refactor", "Document", "Remove", "Speed up", "Test", "Design", "Review")
THINGS = (
    "login flow",
    "billing page",
    "search index",
    "API rate limits",
    "onboarding e-mails",
    "dark mode",
    "export to CSV",
    "audit log",
    "mobile layout",
    "webhooks",
    "SSO settings",
    "notification centre",
    "task board drag and drop",
    "date picker",
    "error pages",
)
WORDS = (
    "we",
    "should",
    "check",
    "the",
    "edge",
    "case",
    "when",
    "users",
    "retry",
    "after",
    "timeout",
    "and",
    "make",
    "sure",
    "it",
    "works",
    "on",
    "staging",
    "before",
    "release",
    "looks",
    "good",
)
NOW = datetime(2026, 11, 1, tzinfo=UTC)
YEAR = timedelta(days=365)


class SeedError(Exception):
    """The database cannot take demo data (it is not empty)."""


@dataclass(frozen=True, slots=True)
class SeedResult:
    users: int
    workspaces: int
    memberships: int
    projects: int
    tasks: int
    labels: int
    task_labels: int
    comments: int
    activities: int
    demo_email: str = DEMO_EMAIL

    def __str__(self) -> str:
        return (
            f"{self.users:,} users, {self.workspaces:,} workspaces, {self.projects:,} projects, "
            f"{self.tasks:,} tasks, {self.comments:,} comments, {self.task_labels:,} task labels"
        )


def _count(base: int, scale: float) -> int:
    return max(1, round(base * scale))


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."


@dataclass
class _Plan:
    """Everything but tasks and comments, which are streamed in chunks."""

    users: list[tuple[Any, ...]]
    workspaces: list[tuple[Any, ...]]
    memberships: list[tuple[Any, ...]]
    members_of: dict[int, list[int]]
    projects: list[tuple[Any, ...]]
    labels: list[tuple[Any, ...]]
    labels_of: dict[int, list[int]]


def _plan(rng: random.Random, scale: float, password_hash: str) -> _Plan:
    n_users = _count(200, scale)
    n_workspaces = _count(20, scale)
    users = []
    for uid in range(1, n_users + 1):
        email = DEMO_EMAIL if uid == 1 else f"user{uid}@example.com"
        name = "Demo User" if uid == 1 else f"User {uid}"
        created = NOW - YEAR - timedelta(days=rng.randint(0, 60))
        users.append((uid, email, name, password_hash, created, created))
    workspaces = []
    for wid in range(1, n_workspaces + 1):
        base = WORKSPACE_NAMES[(wid - 1) % len(WORKSPACE_NAMES)]
        slug = base if wid <= len(WORKSPACE_NAMES) else f"{base}-{wid}"
        created = NOW - YEAR + timedelta(days=rng.randint(0, 30))
        workspaces.append((wid, slug, slug.replace("-", " ").title(), created, created))
    # Every user joins 1-3 workspaces; each workspace's first member is its only OWNER.
    members_of: dict[int, list[int]] = {wid: [] for wid in range(1, n_workspaces + 1)}
    for uid in range(1, n_users + 1):
        count = min(n_workspaces, rng.randint(1, 3))
        chosen = {1, 2, 3} & set(range(1, n_workspaces + 1)) if uid == 1 else set()
        while len(chosen) < count:
            chosen.add(rng.randint(1, n_workspaces))
        for wid in sorted(chosen):
            members_of[wid].append(uid)
    memberships = []
    for wid, uids in members_of.items():
        if not uids:
            uids.append(1 + (wid - 1) % n_users)
        # The demo user owns workspace 1 and is a plain member elsewhere.
        owner = 1 if wid == 1 else next((u for u in uids if u != 1), uids[0])
        for uid in uids:
            role = "OWNER" if uid == owner else ("MEMBER" if uid == 1 else rng.choice(ROLE_MIX))
            memberships.append((wid, uid, role, workspaces[wid - 1][3] + timedelta(hours=uid)))
    projects = []
    per_workspace = max(1, _count(100, scale) // n_workspaces)
    pid = 0
    for wid in range(1, n_workspaces + 1):
        for i in range(per_workspace):
            pid += 1
            key = PROJECT_KEYS[i % len(PROJECT_KEYS)] + (
                str(i // len(PROJECT_KEYS)) if i >= 10 else ""
            )
            created = workspaces[wid - 1][3] + timedelta(days=i)
            projects.append(
                [pid, wid, key, f"{key} project", _sentence(rng, 12), 1, None, created, created]
            )
    labels = []
    labels_of: dict[int, list[int]] = {}
    lid = 0
    for wid in range(1, n_workspaces + 1):
        labels_of[wid] = []
        for name, color in LABELS:
            lid += 1
            labels.append((lid, wid, name, color))
            labels_of[wid].append(lid)
    return _Plan(users, workspaces, memberships, members_of, projects, labels, labels_of)


TASK_COLUMNS = (
    "id",
    "workspace_id",
    "project_id",
    "number",
    "title",
    "description",
    "status",
    "priority",
    "due_date",
    "position",
    "assignee_id",
    "creator_id",
    "version",
    "completed_at",
    "created_at",
    "updated_at",
)
ACTIVITY_COLUMNS = (
    "id",
    "workspace_id",
    "project_id",
    "task_id",
    "task_key",
    "kind",
    "actor_user_id",
    "actor_api_key_id",
    "changes",
    "created_at",
)


async def seed(
    engine: AsyncEngine,
    *,
    scale: float = 1.0,
    password_hash: str,
    progress: Progress | None = None,
) -> SeedResult:
    """Fill an empty, migrated database. Everything is one transaction."""
    if scale <= 0:
        raise SeedError("Scale must be positive.")
    report = progress or (lambda stage, done, total: None)
    rng = random.Random(42)  # noqa: S311 - reproducible demo data, not secrets
    plan = _plan(rng, scale, password_hash)
    n_tasks = _count(100_000, scale)
    n_comments = _count(300_000, scale)
    # One SQLAlchemy transaction; COPY goes through its asyncpg connection and is committed
    # with it at the end of the block.
    async with engine.begin() as conn:
        if (await conn.execute(text("SELECT EXISTS (SELECT 1 FROM users)"))).scalar():
            raise SeedError("The database already holds data; seed only an empty database.")
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection

        async def copy(table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> None:
            await pg.copy_records_to_table(table, records=rows, columns=list(columns))

        report("users", 0, len(plan.users))
        await copy(
            "users",
            ("id", "email", "name", "password_hash", "created_at", "updated_at"),
            plan.users,
        )
        report("users", len(plan.users), len(plan.users))
        await copy(
            "workspaces", ("id", "slug", "name", "created_at", "updated_at"), plan.workspaces
        )
        await copy(
            "memberships", ("workspace_id", "user_id", "role", "created_at"), plan.memberships
        )
        await copy("labels", ("id", "workspace_id", "name", "color"), plan.labels)

        # Tasks go round-robin over projects, so each project's count is known up front
        # (projects must exist before their tasks).
        projects = plan.projects
        for index, project in enumerate(projects):
            share = n_tasks // len(projects) + (1 if index < n_tasks % len(projects) else 0)
            project[5] = share + 1
        await copy(
            "projects",
            (
                "id",
                "workspace_id",
                "key",
                "name",
                "description",
                "next_task_number",
                "archived_at",
                "created_at",
                "updated_at",
            ),
            [tuple(p) for p in projects],
        )
        next_number = {p[0]: 1 for p in projects}
        task_labels: list[tuple[int, int]] = []
        comment_id = 0
        comments_done = 0
        comments_per_task = n_comments / n_tasks
        pending_tasks: list[tuple[Any, ...]] = []
        pending_activities: list[tuple[Any, ...]] = []
        pending_comments: list[tuple[Any, ...]] = []
        for tid in range(1, n_tasks + 1):
            project = projects[(tid - 1) % len(projects)]
            pid, wid, key = project[0], project[1], project[2]
            number = next_number[pid]
            next_number[pid] = number + 1
            members = plan.members_of[wid]
            status = rng.choices(STATUSES, STATUS_WEIGHTS)[0]
            created = NOW - YEAR + timedelta(seconds=rng.randint(0, 360 * 86400))
            updated = created + timedelta(hours=rng.randint(0, 500))
            completed = updated if status in ("DONE", "CANCELED") else None
            due = (
                (created.date() + timedelta(days=rng.randint(3, 90)))
                if rng.random() < 0.4
                else None
            )
            assignee = rng.choice(members) if rng.random() < 0.8 else None
            creator = rng.choice(members)
            title = f"{rng.choice(VERBS)} {rng.choice(THINGS)}"
            pending_tasks.append(
                (
                    tid,
                    wid,
                    pid,
                    number,
                    title,
                    _sentence(rng, rng.randint(5, 25)),
                    status,
                    rng.randint(0, 4),
                    due,
                    number * 1024.0,
                    assignee,
                    creator,
                    1,
                    completed,
                    created,
                    updated,
                )
            )
            pending_activities.append(
                (
                    tid,
                    wid,
                    pid,
                    tid,
                    wire.task_key(key, number),
                    "TASK_CREATED",
                    creator,
                    None,
                    "[]",
                    created,
                )
            )
            if rng.random() < 0.8:
                for lid in rng.sample(plan.labels_of[wid], rng.randint(1, 3)):
                    task_labels.append((tid, lid))
            wanted = round(tid * comments_per_task) - comments_done
            for c in range(max(0, min(wanted, n_comments - comments_done))):
                comment_id += 1
                at = created + timedelta(hours=1 + c * 7 + rng.randint(0, 6))
                pending_comments.append(
                    (
                        comment_id,
                        tid,
                        rng.choice(members),
                        _sentence(rng, rng.randint(4, 30)),
                        at,
                        at,
                    )
                )
            comments_done = comment_id
            if len(pending_tasks) >= CHUNK or tid == n_tasks:
                await copy("tasks", TASK_COLUMNS, pending_tasks)
                await copy("activities", ACTIVITY_COLUMNS, pending_activities)
                await copy(
                    "comments",
                    ("id", "task_id", "author_id", "body", "created_at", "updated_at"),
                    pending_comments,
                )
                pending_tasks, pending_activities, pending_comments = [], [], []
                report("tasks", tid, n_tasks)
        await copy("task_labels", ("task_id", "label_id"), task_labels)
        for table in (
            "users",
            "workspaces",
            "projects",
            "tasks",
            "labels",
            "comments",
            "activities",
        ):
            await pg.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "  # noqa: S608
                f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
            )
    # Fresh statistics matter for the plans of the first queries.
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    return SeedResult(
        users=len(plan.users),
        workspaces=len(plan.workspaces),
        memberships=len(plan.memberships),
        projects=len(plan.projects),
        tasks=n_tasks,
        labels=len(plan.labels),
        task_labels=len(task_labels),
        comments=comment_id,
        activities=n_tasks,
    )
