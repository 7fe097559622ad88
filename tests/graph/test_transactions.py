"""Each top-level mutation field is one transaction: a fault leaves no trace, and does not
undo the fields before it in the same request."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from db import activities
from db.models import Activity, Project, Task, TaskLabel
from graph.ids import to_global_id
from tests import factories
from tests.graph.conftest import Api, token_for

CREATE = """
mutation($input: CreateTaskInput!) {
  createTask(input: $input) { task { key } userErrors { code } }
}"""

TWO_CREATES = """
mutation($a: CreateTaskInput!, $b: CreateTaskInput!) {
  a: createTask(input: $a) { task { key } userErrors { code } }
  b: createTask(input: $b) { task { key } userErrors { code } }
}"""


@pytest.fixture
def fault_on_second_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """The activity row is written after the task and its labels: failing there leaves a
    half-done change that only the transaction can undo."""
    real = activities.record
    calls = {"n": 0}

    async def flaky(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        await real(*args, **kwargs)
        if calls["n"] == 2:
            raise RuntimeError("disk full")

    monkeypatch.setattr(activities, "record", flaky)


async def _counts(session: AsyncSession, project_id: int) -> tuple[int, int, int, int]:
    tasks = await session.scalar(
        select(func.count()).select_from(Task).where(Task.project_id == project_id)
    )
    links = await session.scalar(select(func.count()).select_from(TaskLabel))
    history = await session.scalar(select(func.count()).select_from(Activity))
    next_number = await session.scalar(
        select(Project.next_task_number).where(Project.id == project_id)
    )
    return int(tasks or 0), int(links or 0), int(history or 0), int(next_number or 0)


@pytest.mark.usefixtures("fault_on_second_record")
async def test_failing_field_leaves_no_trace_and_keeps_earlier_fields(
    api: Api, session: AsyncSession
) -> None:
    w = await factories.world(session)
    await session.commit()
    before = await _counts(session, w.project.id)
    draft = {
        "projectId": to_global_id("Project", w.project.id),
        "labelIds": [to_global_id("Label", w.labels[0].id), to_global_id("Label", w.labels[1].id)],
    }
    body = await api(
        TWO_CREATES,
        {"a": {**draft, "title": "kept"}, "b": {**draft, "title": "lost"}},
        token=token_for(w.users["member"].id),
    )
    # The payloads are non-null, so the fault nulls the whole response; the database shows
    # what happened.
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["INTERNAL_SERVER_ERROR"]
    assert body["errors"][0]["path"] == ["b"]
    tasks, links, history, next_number = await _counts(session, w.project.id)
    # Only the first field's task, its two label links and its activity row remain; the
    # second field's number allocation was rolled back with the rest.
    assert (tasks, links, history, next_number) == (
        before[0] + 1,
        before[1] + 2,
        before[2] + 1,
        before[3] + 1,
    )
    titles = set(await session.scalars(select(Task.title).where(Task.project_id == w.project.id)))
    assert "kept" in titles and "lost" not in titles


async def test_next_request_after_a_fault_works(
    api: Api, session: AsyncSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = await factories.world(session)
    await session.commit()
    variables = {"input": {"projectId": to_global_id("Project", w.project.id), "title": "x"}}
    token = token_for(w.users["member"].id)

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(activities, "record", broken)
    failed = await api(CREATE, variables, token=token)
    assert failed["errors"][0]["extensions"]["code"] == "INTERNAL_SERVER_ERROR"
    monkeypatch.undo()
    ok = await api.data(CREATE, variables, token=token)
    assert ok["createTask"]["task"]["key"] == "ENG-6"
