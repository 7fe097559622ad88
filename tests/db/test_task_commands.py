"""Task commands: permissions, validation, numbering, partial updates, versions, board
ordering, status semantics, activity, labels and deletion; races on real concurrent sessions."""

from __future__ import annotations

import asyncio
import itertools
from datetime import date
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from db import read_types, tasks
from db.api_keys import create_api_key
from db.engine import make_engine
from db.models import (
    Activity,
    ApiScope,
    Comment,
    Project,
    Task,
    TaskLabel,
    TaskPriority,
    TaskStatus,
)
from db.principals import Principal, user_principal
from db.problems import ProblemCode, Rejected
from db.tasks import placement
from tests import factories

A = Activity.__table__
T = Task.__table__
KEEP = tasks.KEEP


@pytest.fixture
async def world(session: AsyncSession) -> factories.World:
    return await factories.world(session)


async def as_user(session: AsyncSession, world: factories.World, name: str) -> Principal:
    principal = await user_principal(session, world.users[name].id)
    assert principal is not None
    return principal


async def as_key(session: AsyncSession, world: factories.World, *scopes: ApiScope) -> Principal:
    owner = await as_user(session, world, "owner")
    key = await create_api_key(session, owner, world.workspace.id, "ci", list(scopes))
    return Principal(
        api_key_id=key.row.id,
        api_key_workspace_id=world.workspace.id,
        scopes=frozenset(key.row.scopes),
    )


def problems(rejected: pytest.ExceptionInfo[Rejected]) -> list[tuple[tuple[str, ...] | None, str]]:
    return [(p.field, p.code.value) for p in rejected.value.problems]


async def activity(session: AsyncSession, task_id: int) -> list[Any]:
    stmt = select(A).where(A.c.task_id == task_id).order_by(A.c.id)
    return list((await session.execute(stmt)).all())


async def label_names(session: AsyncSession, task_id: int) -> list[str]:
    rows = await read_types.related(session, Principal(), "Task", "labels", [(task_id, None)])
    return [row.name for row in rows[(task_id, None)]]


async def fetch(session: AsyncSession, task_id: int) -> Any:
    return (await session.execute(select(T).where(T.c.id == task_id))).one()


async def snapshot(session: AsyncSession, project_id: int) -> tuple[Any, ...]:
    """Everything a refused command must leave untouched."""
    counts = [
        (await session.execute(select(func.count()).select_from(table))).scalar_one()
        for table in (T, A, TaskLabel.__table__)
    ]
    next_number = (
        await session.execute(select(Project.next_task_number).where(Project.id == project_id))
    ).scalar_one()
    versions = (await session.execute(select(func.sum(T.c.version)))).scalar_one()
    return (*counts, next_number, versions)


# ---------------------------------------------------------------- createTask


async def test_create_allocates_number_key_end_position_and_records_activity(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    bug, feature = world.labels[0], world.labels[1]
    created = await tasks.create_task(
        session,
        member,
        project_id=world.project.id,
        title="  Fix the login page  ",
        description="It fails on Safari.",
        priority=TaskPriority.HIGH,
        due_date=date(2027, 1, 31),
        assignee_id=world.users["admin"].id,
        label_ids=[feature.id, bug.id, bug.id],
    )
    row = created.row
    assert row.number == 6 and row.title == "Fix the login page"
    assert row.position == max(t.position for t in world.tasks) + tasks.POSITION_STEP
    assert (row.creator_id, row.assignee_id) == (member.user_id, world.users["admin"].id)
    assert (row.version, row.status, row.priority, row.completed_at) == (1, "TODO", 3, None)
    assert await label_names(session, row.id) == ["bug", "feature"]
    assert [label.name for label in created.labels] == ["bug", "feature"]
    assert created.project.key == "ENG"

    [entry] = await activity(session, row.id)
    assert (entry.kind, entry.task_key, entry.actor_user_id) == (
        "TASK_CREATED",
        "ENG-6",
        member.user_id,
    )
    assert {c["field"]: c["to"] for c in entry.changes} == {
        "title": "Fix the login page",
        "status": "TODO",
        "priority": "HIGH",
        "description": "It fails on Safari.",
        "dueDate": "2027-01-31",
        "assigneeId": str(world.users["admin"].id),
        "labels": "bug, feature",
    }
    assert all(c["from"] is None for c in entry.changes)


async def test_create_as_done_sets_completed_at(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    created = await tasks.create_task(
        session, member, project_id=world.project.id, title="Done", status=TaskStatus.DONE
    )
    assert created.row.completed_at is not None


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("owner", None),
        ("admin", None),
        ("member", None),
        ("viewer", "FORBIDDEN"),
        ("outsider", "NOT_FOUND"),
        ("write key", None),
        ("read key", "FORBIDDEN"),
    ],
)
async def test_create_permissions(
    session: AsyncSession, world: factories.World, who: str, code: str | None
) -> None:
    if who == "write key":
        principal = await as_key(session, world, ApiScope.READ, ApiScope.WRITE)
    elif who == "read key":
        principal = await as_key(session, world, ApiScope.READ)
    else:
        principal = await as_user(session, world, who)
    before = await snapshot(session, world.project.id)
    call = tasks.create_task(session, principal, project_id=world.project.id, title="T")
    if code is None:
        created = await call
        if principal.api_key_id is not None:
            # Tasks name a user as creator: the key's creator stands in for the key.
            assert created.row.creator_id == world.users["owner"].id
            [entry] = await activity(session, created.row.id)
            assert (entry.actor_user_id, entry.actor_api_key_id) == (None, principal.api_key_id)
        return
    with pytest.raises(Rejected) as rejected:
        await call
    assert problems(rejected) == [(("input", "projectId"), code)]
    assert await snapshot(session, world.project.id) == before


async def test_create_in_archived_project_is_invalid(
    session: AsyncSession, world: factories.World
) -> None:
    await session.execute(
        update(Project).where(Project.id == world.project.id).values(archived_at=func.now())
    )
    member = await as_user(session, world, "member")
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.create_task(session, member, project_id=world.project.id, title="T")
    assert problems(rejected) == [(("input", "projectId"), "INVALID")]
    assert await snapshot(session, world.project.id) == before


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"title": ""}, [("title", "INVALID")]),
        ({"title": " \t\n "}, [("title", "INVALID")]),
        ({"title": "x" * 201}, [("title", "INVALID")]),
        ({"title": "x" * 10_000_000}, [("title", "INVALID")]),
        ({"title": "a\x00b"}, [("title", "INVALID")]),
        ({"title": "a\ud800b"}, [("title", "INVALID")]),
        ({"description": "x" * 50_001}, [("description", "INVALID")]),
        ({"description": "nul \x00"}, [("description", "INVALID")]),
        ({"title": "", "description": "\x00"}, [("title", "INVALID"), ("description", "INVALID")]),
        ({"assignee_id": "outsider"}, [("assigneeId", "INVALID")]),
        ({"assignee_id": 2**62}, [("assigneeId", "INVALID")]),
        ({"label_ids": "other"}, [("labelIds", "NOT_FOUND")]),
        ({"label_ids": [2**62]}, [("labelIds", "NOT_FOUND")]),
        ({"label_ids": list(range(1, 102))}, [("labelIds", "LIMIT_EXCEEDED")]),
        ({"project_id": "other"}, [("projectId", "NOT_FOUND")]),
        ({"project_id": 2**62}, [("projectId", "NOT_FOUND")]),
    ],
)
async def test_create_refuses_bad_input_and_writes_nothing(
    session: AsyncSession,
    world: factories.World,
    values: dict[str, Any],
    expected: list[tuple[str, str]],
) -> None:
    member = await as_user(session, world, "member")
    special = {
        "outsider": world.users["outsider"].id,
        "other": [world.other_label.id, world.labels[0].id],
    }
    args: dict[str, Any] = {"project_id": world.project.id, "title": "Fine"}
    args.update(values)
    if args.get("assignee_id") == "outsider":
        args["assignee_id"] = special["outsider"]
    if args.get("label_ids") == "other":
        args["label_ids"] = special["other"]
    if args["project_id"] == "other":
        args["project_id"] = world.other_project.id
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.create_task(session, member, **args)
    assert problems(rejected) == [(("input", f), code) for f, code in expected]
    assert await snapshot(session, world.project.id) == before


async def test_create_accepts_edge_values(session: AsyncSession, world: factories.World) -> None:
    member = await as_user(session, world, "member")
    created = await tasks.create_task(
        session,
        member,
        project_id=world.project.id,
        title="é" * 200,
        description="ü" * 50_000,
        due_date=date(9999, 12, 31),
        label_ids=[world.labels[0].id] * 100,
    )
    row = await fetch(session, created.row.id)
    assert (len(row.title), len(row.description), row.due_date) == (200, 50_000, date(9999, 12, 31))
    assert await label_names(session, row.id) == ["bug"]


async def test_concurrent_creates_get_distinct_numbers(committed_db: str) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as setup:
            world = await factories.world(setup)
            await setup.commit()
            member = await as_user(setup, world, "member")

        async def create(i: int) -> Any:
            async with AsyncSession(engine, expire_on_commit=False) as s:
                created = await tasks.create_task(
                    s, member, project_id=world.project.id, title=f"Parallel {i}"
                )
                await s.commit()
                return created.row

        rows = await asyncio.gather(*(create(i) for i in range(50)))
        async with AsyncSession(engine) as check:
            numbers = (
                await check.execute(
                    select(T.c.number, T.c.position).where(
                        T.c.project_id == world.project.id, T.c.number > 5
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    assert sorted(r.number for r in rows) == list(range(6, 56))
    assert sorted(n.number for n in numbers) == list(range(6, 56))
    # Creators are serialised, so each one saw the previous one's task: no shared position.
    assert len({n.position for n in numbers}) == 50


# ---------------------------------------------------------------- updateTask


async def test_partial_update_changes_only_given_fields_and_bumps_version_once(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    row = await tasks.update_task(
        session,
        member,
        task.id,
        tasks.TaskChanges(title=" New title ", priority=TaskPriority.URGENT),
    )
    assert (row.title, row.priority, row.version) == ("New title", 4, task.version + 1)
    assert (row.description, row.status, row.due_date, row.assignee_id) == (
        task.description,
        task.status,
        task.due_date,
        task.assignee_id,
    )
    assert row.updated_at > task.updated_at
    [entry] = await activity(session, task.id)
    assert entry.kind == "TASK_UPDATED" and entry.task_key == "ENG-1"
    assert entry.changes == [
        {"field": "title", "from": "Task 1", "to": "New title"},
        {"field": "priority", "from": "NONE", "to": "URGENT"},
    ]


async def test_explicit_null_clears_due_date_and_assignee(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    assert task.due_date is not None and task.assignee_id is not None
    row = await tasks.update_task(
        session, member, task.id, tasks.TaskChanges(due_date=None, assignee_id=None)
    )
    assert (row.due_date, row.assignee_id, row.version) == (None, None, task.version + 1)
    [entry] = await activity(session, task.id)
    assert entry.changes == [
        {"field": "dueDate", "from": task.due_date.isoformat(), "to": None},
        {"field": "assigneeId", "from": str(task.assignee_id), "to": None},
    ]


async def test_update_records_every_changed_field(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[1]
    await tasks.update_task(
        session,
        member,
        task.id,
        tasks.TaskChanges(
            title="T",
            description="D",
            status=TaskStatus.IN_REVIEW,
            priority=TaskPriority.HIGH,
            due_date=date(2027, 3, 1),
            assignee_id=world.users["viewer"].id,
        ),
    )
    [entry] = await activity(session, task.id)
    assert entry.changes == [
        {"field": "title", "from": "Task 2", "to": "T"},
        {"field": "description", "from": "", "to": "D"},
        {"field": "status", "from": "IN_PROGRESS", "to": "IN_REVIEW"},
        {"field": "priority", "from": "LOW", "to": "HIGH"},
        {"field": "dueDate", "from": "2026-12-02", "to": "2027-03-01"},
        {"field": "assigneeId", "from": None, "to": str(world.users["viewer"].id)},
    ]


async def test_no_op_update_writes_nothing(session: AsyncSession, world: factories.World) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    before = await snapshot(session, world.project.id)
    row = await tasks.update_task(
        session,
        member,
        task.id,
        tasks.TaskChanges(
            title=f"  {task.title}",
            status=TaskStatus(task.status),
            priority=TaskPriority(task.priority),
            due_date=task.due_date,
            assignee_id=task.assignee_id,
            expected_version=task.version,
        ),
    )
    assert row.version == task.version
    assert await snapshot(session, world.project.id) == before
    assert (await fetch(session, task.id)).updated_at == task.updated_at


@pytest.mark.parametrize("field", ["title", "description", "status", "priority"])
async def test_null_for_a_required_field_is_invalid(
    session: AsyncSession, world: factories.World, field: str
) -> None:
    member = await as_user(session, world, "member")
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.update_task(
            session, member, world.tasks[0].id, tasks.TaskChanges(**{field: None})
        )
    assert problems(rejected) == [(("input", field), "INVALID")]
    assert await snapshot(session, world.project.id) == before


@pytest.mark.parametrize(
    ("who", "task", "code"),
    [
        ("viewer", "own", "FORBIDDEN"),
        ("outsider", "own", "NOT_FOUND"),
        ("member", "other", "NOT_FOUND"),
        ("member", "missing", "NOT_FOUND"),
        ("read key", "own", "FORBIDDEN"),
    ],
)
async def test_update_refusals(
    session: AsyncSession, world: factories.World, who: str, task: str, code: str
) -> None:
    if who == "read key":
        principal = await as_key(session, world, ApiScope.READ)
    else:
        principal = await as_user(session, world, who)
    task_id = {"own": world.tasks[0].id, "other": world.other_task.id, "missing": 2**62}[task]
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.update_task(session, principal, task_id, tasks.TaskChanges(title="X"))
    assert problems(rejected) == [(("input", "id"), code)]
    assert await snapshot(session, world.project.id) == before


async def test_update_validation(session: AsyncSession, world: factories.World) -> None:
    member = await as_user(session, world, "member")
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.update_task(
            session, member, world.tasks[0].id, tasks.TaskChanges(title="  ", description="\x00")
        )
    assert problems(rejected) == [
        (("input", "title"), "INVALID"),
        (("input", "description"), "INVALID"),
    ]
    with pytest.raises(Rejected) as rejected:
        await tasks.update_task(
            session,
            member,
            world.tasks[0].id,
            tasks.TaskChanges(assignee_id=world.users["outsider"].id, title="OK"),
        )
    assert problems(rejected) == [(("input", "assigneeId"), "INVALID")]
    assert await snapshot(session, world.project.id) == before


async def test_stale_expected_version_changes_nothing(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    await tasks.update_task(session, member, task.id, tasks.TaskChanges(title="First"))
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.update_task(
            session,
            member,
            task.id,
            tasks.TaskChanges(title="Second", expected_version=task.version),
        )
    assert problems(rejected) == [(("input", "expectedVersion"), "STALE")]
    assert await snapshot(session, world.project.id) == before
    row = await tasks.update_task(
        session,
        member,
        task.id,
        tasks.TaskChanges(title="Second", expected_version=task.version + 1),
    )
    assert (row.title, row.version) == ("Second", task.version + 2)


async def test_concurrent_updates_with_the_same_expected_version(committed_db: str) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as setup:
            world = await factories.world(setup)
            await setup.commit()
            member = await as_user(setup, world, "member")
        task = world.tasks[0]

        async def attempt(i: int) -> str | None:
            async with AsyncSession(engine, expire_on_commit=False) as s:
                try:
                    await tasks.update_task(
                        s,
                        member,
                        task.id,
                        tasks.TaskChanges(
                            title=f"Writer {i}",
                            priority=TaskPriority(i % 5),
                            expected_version=task.version,
                        ),
                    )
                except Rejected as rejected:
                    await s.rollback()
                    assert [p.code for p in rejected.problems] == [ProblemCode.STALE]
                    return None
                await s.commit()
                return f"Writer {i}"

        outcomes = await asyncio.gather(*(attempt(i) for i in range(20)))
        async with AsyncSession(engine) as check:
            row = await fetch(check, task.id)
            entries = await activity(check, task.id)
    finally:
        await engine.dispose()
    winners = [o for o in outcomes if o is not None]
    assert len(winners) == 1 and outcomes.count(None) == 19
    winner = int(winners[0].split()[1])
    assert (row.title, row.priority, row.version) == (winners[0], winner % 5, task.version + 1)
    assert len(entries) == 1


@pytest.mark.parametrize(
    ("path", "completed"),
    [
        (["DONE"], "set"),
        (["CANCELED"], "set"),
        (["DONE", "CANCELED"], "kept"),
        (["DONE", "TODO"], None),
        (["CANCELED", "IN_PROGRESS"], None),
        (["IN_REVIEW"], None),
    ],
)
async def test_status_sets_and_clears_completed_at(
    session: AsyncSession, world: factories.World, path: list[str], completed: str | None
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    assert task.completed_at is None
    first_completed = None
    row = task
    for status in path:
        row = await tasks.update_task(
            session, member, task.id, tasks.TaskChanges(status=TaskStatus(status))
        )
        first_completed = first_completed or row.completed_at
    if completed is None:
        assert row.completed_at is None
    else:
        assert row.completed_at is not None
        if completed == "kept":
            assert row.completed_at == first_completed


async def test_done_to_canceled_keeps_the_original_completion_time(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    done = world.tasks[2]  # created DONE, completed at BASE_TIME
    row = await tasks.update_task(
        session, member, done.id, tasks.TaskChanges(status=TaskStatus.CANCELED)
    )
    assert row.completed_at == factories.BASE_TIME
    row = await tasks.update_task(
        session, member, done.id, tasks.TaskChanges(status=TaskStatus.TODO)
    )
    assert row.completed_at is None


# ---------------------------------------------------------------- board ordering


async def board(session: AsyncSession, project_id: int) -> list[int]:
    stmt = select(T.c.id).where(T.c.project_id == project_id).order_by(T.c.position, T.c.id)
    return list((await session.execute(stmt)).scalars())


async def place(
    session: AsyncSession, principal: Principal, task_id: int, after: int | None, before: int | None
) -> Any:
    changes = tasks.TaskChanges(after_task_id=after, before_task_id=before)
    return await tasks.update_task(session, principal, task_id, changes)


async def test_placement_after_before_and_between(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    t1, t2, t3, t4, t5 = (t.id for t in world.tasks)

    row = await place(session, member, t5, t1, None)  # after t1: between t1 and t2
    assert row.position == (1024 + 2048) / 2 and row.version == world.tasks[4].version + 1
    assert await board(session, world.project.id) == [t1, t5, t2, t3, t4]

    await place(session, member, t1, None, t4)  # before t4: between t3 and t4
    assert await board(session, world.project.id) == [t5, t2, t3, t1, t4]

    await place(session, member, t4, t5, t2)  # both neighbours
    assert await board(session, world.project.id) == [t5, t4, t2, t3, t1]

    await place(session, member, t5, t1, None)  # after the last task: to the end
    await place(session, member, t3, None, t4)  # before the first task: to the front
    assert await board(session, world.project.id) == [t3, t4, t2, t1, t5]

    [*_, entry] = await activity(session, t3)
    assert [c["field"] for c in entry.changes] == ["position"]


async def test_placement_where_the_task_already_is_changes_nothing(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    t1, t2, t3 = (t.id for t in world.tasks[:3])
    before = await snapshot(session, world.project.id)
    for after, before_id in ((t1, None), (None, t3), (t1, t3)):
        row = await place(session, member, t2, after, before_id)
        assert row.version == world.tasks[1].version
    assert await snapshot(session, world.project.id) == before


async def test_placement_refuses_foreign_or_inconsistent_neighbours(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    other_project = await factories.project(session, world.workspace.id, "WEB")
    neighbour = await factories.task(session, other_project, world.users["owner"].id)
    t1, t2, t3 = (t.id for t in world.tasks[:3])
    before = await snapshot(session, world.project.id)
    cases = [
        ((neighbour.id, None), [("afterTaskId", "INVALID")]),  # same workspace, other project
        ((None, world.other_task.id), [("beforeTaskId", "INVALID")]),  # other workspace
        ((t1, t1), [("afterTaskId", "INVALID"), ("beforeTaskId", "INVALID")]),  # itself
        ((2**62, None), [("afterTaskId", "INVALID")]),
        ((t3, t2), [("beforeTaskId", "INVALID")]),  # after must come before `before`
    ]
    for (after, before_id), expected in cases:
        with pytest.raises(Rejected) as rejected:
            await place(session, member, t1, after, before_id)
        assert problems(rejected) == [(("input", f), code) for f, code in expected]
    assert await snapshot(session, world.project.id) == before


async def test_rebalance_when_neighbours_are_too_close(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    t1, t2, t3, t4, t5 = (t.id for t in world.tasks)
    # Three tasks squeezed together: no room left between t2 and t3, and t1/t2 share a position.
    for task_id, position in ((t1, 5.0), (t2, 5.0), (t3, 5.0 + 1e-12)):
        await session.execute(update(T).where(T.c.id == task_id).values(position=position))
    versions = {t.id: (await fetch(session, t.id)).version for t in world.tasks}
    await place(session, member, t5, t2, t3)
    assert await board(session, world.project.id) == [t1, t2, t5, t3, t4]
    positions = [(await fetch(session, t)).position for t in (t1, t2, t5, t3, t4)]
    assert positions == [1024, 2048, 2560, 3072, 4096]
    # A rebalance keeps the order: it is no change of the other tasks.
    for t in (t1, t2, t3, t4):
        assert (await fetch(session, t)).version == versions[t]


async def test_a_thousand_inserts_at_the_same_spot_keep_a_strict_order(
    session: AsyncSession, world: factories.World, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebalances = 0
    original = placement.rebalance

    async def counted(s: AsyncSession, project_id: int) -> None:
        nonlocal rebalances
        rebalances += 1
        await original(s, project_id)

    monkeypatch.setattr(placement, "rebalance", counted)
    member = await as_user(session, world, "member")
    anchor = world.tasks[0].id
    inserted = []
    for i in range(1000):
        created = await tasks.create_task(
            session, member, project_id=world.project.id, title=f"n{i}"
        )
        await place(session, member, created.row.id, anchor, None)
        inserted.append(created.row.id)
    expected = [anchor, *reversed(inserted), *(t.id for t in world.tasks[1:])]
    assert await board(session, world.project.id) == expected
    positions = (
        await session.execute(
            select(T.c.position).where(T.c.project_id == world.project.id).order_by(T.c.position)
        )
    ).scalars()
    ordered = list(positions)
    assert all(a < b for a, b in itertools.pairwise(ordered))
    # Each insert halves the gap after the anchor: from 1024 below 1e-9 in about 40 steps.
    assert 20 <= rebalances <= 30


# ---------------------------------------------------------------- labels


async def test_add_and_remove_labels_are_idempotent_and_recorded(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    bug, feature, urgent = world.labels
    task = world.tasks[1]  # carries "bug"
    ui = await factories.label(session, world.workspace.id, "UI")

    row = await tasks.add_labels_to_task(session, member, task.id, [ui.id, bug.id, ui.id])
    assert row.version == task.version + 1
    assert await label_names(session, task.id) == ["bug", "UI"]

    unchanged = await tasks.add_labels_to_task(session, member, task.id, [bug.id, ui.id])
    assert unchanged.version == row.version
    unchanged = await tasks.remove_labels_from_task(session, member, task.id, [feature.id])
    assert unchanged.version == row.version
    unchanged = await tasks.add_labels_to_task(session, member, task.id, [])
    assert unchanged.version == row.version

    row = await tasks.remove_labels_from_task(session, member, task.id, [bug.id, urgent.id])
    assert row.version == task.version + 2
    assert await label_names(session, task.id) == ["UI"]

    entries = await activity(session, task.id)
    assert [(e.kind, e.changes) for e in entries] == [
        ("LABELS_CHANGED", [{"field": "labels", "from": "bug", "to": "bug, UI"}]),
        ("LABELS_CHANGED", [{"field": "labels", "from": "bug, UI", "to": "UI"}]),
    ]
    row = await tasks.remove_labels_from_task(session, member, task.id, [ui.id])
    assert (await activity(session, task.id))[-1].changes == [
        {"field": "labels", "from": "UI", "to": None}
    ]


async def test_label_commands_refuse_bad_input(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    viewer = await as_user(session, world, "viewer")
    task = world.tasks[0]
    before = await snapshot(session, world.project.id)
    for command in (tasks.add_labels_to_task, tasks.remove_labels_from_task):
        with pytest.raises(Rejected) as rejected:
            await command(session, member, task.id, [world.labels[2].id, world.other_label.id])
        assert problems(rejected) == [(("input", "labelIds"), "NOT_FOUND")]
        with pytest.raises(Rejected) as rejected:
            await command(session, member, task.id, list(range(1, 102)))
        assert problems(rejected) == [(("input", "labelIds"), "LIMIT_EXCEEDED")]
        with pytest.raises(Rejected) as rejected:
            await command(session, viewer, task.id, [world.labels[2].id])
        assert problems(rejected) == [(("input", "taskId"), "FORBIDDEN")]
        with pytest.raises(Rejected) as rejected:
            await command(session, member, world.other_task.id, [world.other_label.id])
        assert problems(rejected) == [(("input", "taskId"), "NOT_FOUND")]
    assert await snapshot(session, world.project.id) == before


async def test_concurrent_adds_of_the_same_label(committed_db: str) -> None:
    engine = make_engine(committed_db)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as setup:
            world = await factories.world(setup)
            await setup.commit()
            member = await as_user(setup, world, "member")
        task, urgent = world.tasks[0], world.labels[2]

        async def add() -> int:
            async with AsyncSession(engine, expire_on_commit=False) as s:
                row = await tasks.add_labels_to_task(s, member, task.id, [urgent.id])
                await s.commit()
                return int(row.version)

        versions = await asyncio.gather(*(add() for _ in range(10)))
        async with AsyncSession(engine) as check:
            names = await label_names(check, task.id)
            entries = await activity(check, task.id)
    finally:
        await engine.dispose()
    assert names == ["bug", "feature", "urgent"]
    assert set(versions) == {task.version + 1}
    assert [e.kind for e in entries] == ["LABELS_CHANGED"]


# ---------------------------------------------------------------- deleteTask


async def test_delete_removes_comments_and_links_and_keeps_history(
    session: AsyncSession, world: factories.World
) -> None:
    member = await as_user(session, world, "member")
    task = world.tasks[0]
    await factories.comment(session, task.id, world.users["owner"].id)
    await tasks.update_task(session, member, task.id, tasks.TaskChanges(title="Renamed"))

    row = await tasks.delete_task(session, member, task.id)
    assert row.id == task.id
    assert (await session.execute(select(T).where(T.c.id == task.id))).first() is None
    for table, column in ((Comment.__table__, "task_id"), (TaskLabel.__table__, "task_id")):
        remaining = select(func.count()).select_from(table).where(table.c[column] == task.id)
        assert (await session.execute(remaining)).scalar_one() == 0
    entries = await activity(session, task.id)
    assert [(e.kind, e.task_key) for e in entries] == [
        ("TASK_UPDATED", "ENG-1"),
        ("TASK_DELETED", "ENG-1"),
    ]
    assert entries[-1].changes == [{"field": "title", "from": "Renamed", "to": None}]
    assert entries[-1].actor_user_id == member.user_id


@pytest.mark.parametrize(("who", "code"), [("viewer", "FORBIDDEN"), ("outsider", "NOT_FOUND")])
async def test_delete_refusals(
    session: AsyncSession, world: factories.World, who: str, code: str
) -> None:
    principal = await as_user(session, world, who)
    before = await snapshot(session, world.project.id)
    with pytest.raises(Rejected) as rejected:
        await tasks.delete_task(session, principal, world.tasks[0].id)
    assert problems(rejected) == [(("input", "id"), code)]
    assert await snapshot(session, world.project.id) == before
