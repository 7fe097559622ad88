"""Demo data: consistent with the domain rules, deterministic, refused on a non-empty database."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from db.demo_data import SeedError, seed
from db.engine import make_engine
from tests.conftest import _admin, fresh_database

SCALE = 0.02

# Each query counts rows that break a rule of the domain.
CHECKS = {
    "assignee or creator outside the task's workspace": """
        SELECT count(*) FROM tasks t WHERE NOT EXISTS (
          SELECT 1 FROM memberships m WHERE m.workspace_id = t.workspace_id AND m.user_id = t.creator_id)
        OR (t.assignee_id IS NOT NULL AND NOT EXISTS (
          SELECT 1 FROM memberships m WHERE m.workspace_id = t.workspace_id AND m.user_id = t.assignee_id))""",
    "workspace without exactly one owner": """
        SELECT count(*) FROM workspaces w WHERE (
          SELECT count(*) FROM memberships m WHERE m.workspace_id = w.id AND m.role = 'OWNER') <> 1""",
    "completed_at not set exactly for DONE/CANCELED": """
        SELECT count(*) FROM tasks
        WHERE (completed_at IS NOT NULL) <> (status IN ('DONE', 'CANCELED'))""",
    "task numbers not 1..n or next_task_number not n+1": """
        SELECT count(*) FROM projects p JOIN LATERAL (
          SELECT count(*) AS n, min(number) AS lo, max(number) AS hi, count(DISTINCT number) AS d
          FROM tasks t WHERE t.project_id = p.id) s ON true
        WHERE s.n > 0 AND (s.lo <> 1 OR s.hi <> s.n OR s.d <> s.n OR p.next_task_number <> s.n + 1)""",
    "task in another workspace than its project": """
        SELECT count(*) FROM tasks t JOIN projects p ON p.id = t.project_id
        WHERE p.workspace_id <> t.workspace_id""",
    "label of another workspace on a task": """
        SELECT count(*) FROM task_labels tl JOIN tasks t ON t.id = tl.task_id
        JOIN labels l ON l.id = tl.label_id WHERE l.workspace_id <> t.workspace_id""",
    "comment author outside the workspace or comment before its task": """
        SELECT count(*) FROM comments c JOIN tasks t ON t.id = c.task_id
        WHERE c.created_at < t.created_at OR NOT EXISTS (
          SELECT 1 FROM memberships m WHERE m.workspace_id = t.workspace_id AND m.user_id = c.author_id)""",
}

FINGERPRINT = """
SELECT md5(string_agg(concat_ws('|', id, project_id, number, title, status, priority, due_date,
       assignee_id, creator_id, created_at), ',' ORDER BY id)) FROM tasks"""


async def _scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar()


async def test_seed_is_consistent_and_refuses_a_second_run(empty_engine: AsyncEngine) -> None:
    result = await seed(empty_engine, scale=SCALE, password_hash="hash")
    assert result.tasks == 2000 and result.comments == 6000 and result.workspaces == 1
    for table, expected in [
        ("users", result.users),
        ("tasks", result.tasks),
        ("comments", result.comments),
        ("task_labels", result.task_labels),
        ("activities", result.tasks),
    ]:
        assert await _scalar(empty_engine, f"SELECT count(*) FROM {table}") == expected
    assert result.task_labels > result.tasks * 0.8  # labels on most tasks
    for problem, sql in CHECKS.items():
        assert await _scalar(empty_engine, sql) == 0, problem
    assert (
        await _scalar(
            empty_engine,
            f"SELECT count(*) FROM users WHERE email = '{result.demo_email}'",
        )
        == 1
    )
    # Identity sequences continue after the copied ids.
    async with empty_engine.begin() as conn:
        new_id = (
            await conn.execute(
                text(
                    "INSERT INTO labels (workspace_id, name, color) "
                    "VALUES (1, 'new', '#000000') RETURNING id"
                )
            )
        ).scalar()
    assert new_id == result.labels + 1
    with pytest.raises(SeedError):
        await seed(empty_engine, scale=SCALE, password_hash="hash")


async def test_same_scale_gives_the_same_data(
    empty_engine: AsyncEngine, server_url: str, template_url: str
) -> None:
    name, url = await fresh_database(server_url, template_url)
    other = make_engine(url)
    try:
        await seed(empty_engine, scale=SCALE, password_hash="hash")
        await seed(other, scale=SCALE, password_hash="hash")
        first = await _scalar(empty_engine, FINGERPRINT)
        assert first is not None
        assert first == await _scalar(other, FINGERPRINT)
    finally:
        await other.dispose()
        await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
