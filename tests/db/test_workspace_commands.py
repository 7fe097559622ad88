"""Workspace and membership commands: validation, roles, the last owner, removal, races."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db import workspaces
from db.engine import make_engine, make_session_factory
from db.errors import Unauthenticated
from db.models import Activity, ApiScope, Membership, Role, Task, Workspace
from db.principals import Principal, user_principal
from db.problems import ProblemCode, Rejected
from tests import factories
from tests.conftest import StatementCounter, _admin, fresh_database
from tests.factories import BASE_TIME

OWNER, ADMIN, MEMBER, VIEWER = Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER


async def principal_of(session: AsyncSession, user: Any) -> Principal:
    principal = await user_principal(session, user.id)
    assert principal is not None
    return principal


async def refused(command: Awaitable[Any]) -> tuple[ProblemCode, tuple[str, ...] | None]:
    with pytest.raises(Rejected) as caught:
        await command
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    return problem.code, problem.field


async def role_of(session: AsyncSession, workspace_id: int, user_id: int) -> Role | None:
    role = await session.scalar(
        select(Membership.role).where(
            Membership.workspace_id == workspace_id, Membership.user_id == user_id
        )
    )
    return Role(role) if role is not None else None


@pytest.fixture
async def world(session: AsyncSession) -> factories.World:
    return await factories.world(session)


@pytest.fixture
async def as_(
    session: AsyncSession, world: factories.World
) -> Callable[[str], Awaitable[Principal]]:
    async def principal(name: str) -> Principal:
        return await principal_of(session, world.users[name])

    return principal


# ---------------------------------------------------------------- createWorkspace


async def test_create_workspace_makes_the_creator_owner(
    session: AsyncSession, world: factories.World
) -> None:
    outsider = await principal_of(session, world.users["outsider"])
    row = await workspaces.create_workspace(session, outsider, "  Initech  ", "initech")
    assert (row.slug, row.name) == ("initech", "Initech")
    assert await role_of(session, row.id, world.users["outsider"].id) is OWNER
    members = await session.scalar(
        select(func.count()).select_from(Membership).where(Membership.workspace_id == row.id)
    )
    assert members == 1


async def test_create_workspace_needs_a_user(session: AsyncSession) -> None:
    key = Principal(api_key_id=1, api_key_workspace_id=1, scopes=frozenset(ApiScope))
    code, _ = await refused(workspaces.create_workspace(session, key, "X", "x-corp"))
    assert code is ProblemCode.FORBIDDEN
    # Nobody signed in: asked to sign in, not told that it is forbidden.
    with pytest.raises(Unauthenticated):
        await workspaces.create_workspace(session, Principal(), "X", "x-corp")


@pytest.mark.parametrize(
    "slug",
    ["a", "-ab", "Ab", "ab_c", "ab c", "ab\n", "a\x00b", "é-corp", "a" * 40, "a" * 100_000],
)
async def test_create_workspace_refuses_bad_slugs(
    session: AsyncSession, world: factories.World, slug: str
) -> None:
    owner = await principal_of(session, world.users["owner"])
    assert await refused(workspaces.create_workspace(session, owner, "Fine", slug)) == (
        ProblemCode.INVALID,
        ("input", "slug"),
    )


@pytest.mark.parametrize("name", ["", "   ", "x" * 101, "a\x00b", "bad \ud800", "y" * 1_000_000])
async def test_create_workspace_refuses_bad_names(
    session: AsyncSession, world: factories.World, name: str
) -> None:
    owner = await principal_of(session, world.users["owner"])
    assert await refused(workspaces.create_workspace(session, owner, name, "fine-slug")) == (
        ProblemCode.INVALID,
        ("input", "name"),
    )


async def test_create_workspace_reports_every_problem_at_once(
    session: AsyncSession, world: factories.World
) -> None:
    owner = await principal_of(session, world.users["owner"])
    with pytest.raises(Rejected) as caught:
        await workspaces.create_workspace(session, owner, " ", "NO")
    assert [p.field for p in caught.value.problems] == [("input", "name"), ("input", "slug")]


async def test_create_workspace_with_a_taken_slug_writes_nothing(
    session: AsyncSession, world: factories.World
) -> None:
    owner = await principal_of(session, world.users["owner"])
    before = await session.scalar(select(func.count()).select_from(Workspace))
    assert await refused(
        workspaces.create_workspace(session, owner, "Copy", world.workspace.slug)
    ) == (ProblemCode.TAKEN, ("input", "slug"))
    assert await session.scalar(select(func.count()).select_from(Workspace)) == before


# ---------------------------------------------------------------- updateWorkspace


async def test_update_workspace_renames_for_admins(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    await session.execute(
        update(Workspace).where(Workspace.id == world.workspace.id).values(updated_at=BASE_TIME)
    )
    row = await workspaces.update_workspace(
        session, await as_("admin"), world.workspace.id, " New "
    )
    assert row.name == "New"
    assert row.updated_at > BASE_TIME
    unchanged = await workspaces.update_workspace(
        session, await as_("owner"), world.workspace.id, None
    )
    assert unchanged.name == "New"


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("member", ProblemCode.FORBIDDEN),
        ("viewer", ProblemCode.FORBIDDEN),
        ("outsider", ProblemCode.NOT_FOUND),
    ],
)
async def test_update_workspace_refuses_lower_roles(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    who: str,
    code: ProblemCode,
) -> None:
    assert await refused(
        workspaces.update_workspace(session, await as_(who), world.workspace.id, "Hijacked")
    ) == (code, ("input", "id"))
    assert (
        await session.scalar(select(Workspace.name).where(Workspace.id == world.workspace.id))
        == "Acme"
    )


async def test_update_workspace_validates_the_name(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    for name in ("  ", "n" * 101, "nul\x00"):
        assert await refused(
            workspaces.update_workspace(session, await as_("owner"), world.workspace.id, name)
        ) == (ProblemCode.INVALID, ("input", "name"))


# ---------------------------------------------------------------- addMember


async def test_add_member_by_email_case_insensitively(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    newcomer = await factories.user(session, "newcomer", "New.Comer@Example.com")
    row = await workspaces.add_member(
        session, await as_("admin"), world.workspace.id, "  new.comer@EXAMPLE.com ", VIEWER
    )
    assert (row.workspace_id, row.user_id, row.role) == (world.workspace.id, newcomer.id, "VIEWER")


@pytest.mark.parametrize(
    ("actor", "role", "allowed"),
    [
        ("owner", OWNER, True),
        ("owner", ADMIN, True),
        ("owner", MEMBER, True),
        ("admin", MEMBER, True),
        ("admin", VIEWER, True),
        ("admin", ADMIN, False),
        ("admin", OWNER, False),
    ],
)
async def test_add_member_roles_an_actor_may_grant(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    actor: str,
    role: Role,
    allowed: bool,
) -> None:
    newcomer = await factories.user(session)
    command = workspaces.add_member(
        session, await as_(actor), world.workspace.id, newcomer.email, role
    )
    if allowed:
        assert (await command).role == role.value
    else:
        assert await refused(command) == (ProblemCode.FORBIDDEN, ("input", "role"))
        assert await role_of(session, world.workspace.id, newcomer.id) is None


@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("member", ProblemCode.FORBIDDEN),
        ("viewer", ProblemCode.FORBIDDEN),
        ("outsider", ProblemCode.NOT_FOUND),
    ],
)
async def test_add_member_refuses_lower_roles(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    who: str,
    code: ProblemCode,
) -> None:
    newcomer = await factories.user(session)
    assert await refused(
        workspaces.add_member(session, await as_(who), world.workspace.id, newcomer.email, VIEWER)
    ) == (code, ("input", "workspaceId"))


async def test_add_member_refuses_api_keys(session: AsyncSession, world: factories.World) -> None:
    key = Principal(
        api_key_id=1, api_key_workspace_id=world.workspace.id, scopes=frozenset(ApiScope)
    )
    newcomer = await factories.user(session)
    assert await refused(
        workspaces.add_member(session, key, world.workspace.id, newcomer.email, VIEWER)
    ) == (ProblemCode.FORBIDDEN, ("input", "workspaceId"))


@pytest.mark.parametrize(
    ("email", "code"),
    [
        ("nobody@example.com", ProblemCode.NOT_FOUND),
        ("not-an-email", ProblemCode.INVALID),
        ("nul\x00@example.com", ProblemCode.INVALID),
        ("x" * 100_000 + "@example.com", ProblemCode.INVALID),
    ],
)
async def test_add_member_refuses_unknown_or_bad_emails(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    email: str,
    code: ProblemCode,
) -> None:
    assert await refused(
        workspaces.add_member(session, await as_("owner"), world.workspace.id, email, MEMBER)
    ) == (code, ("input", "email"))


async def test_add_member_twice_is_taken(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    email = world.users["viewer"].email.upper()
    assert await refused(
        workspaces.add_member(session, await as_("owner"), world.workspace.id, email, MEMBER)
    ) == (ProblemCode.TAKEN, ("input", "email"))
    assert await role_of(session, world.workspace.id, world.users["viewer"].id) is VIEWER


async def test_commands_use_the_actors_current_role_not_the_one_loaded_earlier(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    admin = await as_("admin")
    await workspaces.update_member_role(
        session, await as_("owner"), world.workspace.id, world.users["admin"].id, MEMBER
    )
    newcomer = await factories.user(session)
    assert await refused(
        workspaces.add_member(session, admin, world.workspace.id, newcomer.email, VIEWER)
    ) == (ProblemCode.FORBIDDEN, ("input", "workspaceId"))


# ---------------------------------------------------------------- updateMemberRole

# (actor, target, new role, expected refusal or None)
ROLE_CHANGES = [
    ("owner", "admin", MEMBER, None),
    ("owner", "member", ADMIN, None),
    ("owner", "viewer", OWNER, None),
    ("admin", "member", VIEWER, None),
    ("admin", "viewer", MEMBER, None),
    ("admin", "member", ADMIN, (ProblemCode.FORBIDDEN, ("input", "role"))),
    ("admin", "viewer", OWNER, (ProblemCode.FORBIDDEN, ("input", "role"))),
    ("admin", "owner", MEMBER, (ProblemCode.FORBIDDEN, ("input", "userId"))),
    ("admin", "admin", MEMBER, (ProblemCode.FORBIDDEN, ("input", "userId"))),
    ("member", "viewer", MEMBER, (ProblemCode.FORBIDDEN, ("input", "workspaceId"))),
    ("viewer", "viewer", MEMBER, (ProblemCode.FORBIDDEN, ("input", "workspaceId"))),
    ("outsider", "viewer", MEMBER, (ProblemCode.NOT_FOUND, ("input", "workspaceId"))),
    ("owner", "owner", ADMIN, (ProblemCode.INVALID, ("input", "role"))),
    ("owner", "outsider", MEMBER, (ProblemCode.NOT_FOUND, ("input", "userId"))),
]


@pytest.mark.parametrize(("actor", "target", "role", "refusal"), ROLE_CHANGES)
async def test_update_member_role_rules(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    actor: str,
    target: str,
    role: Role,
    refusal: tuple[ProblemCode, tuple[str, ...]] | None,
) -> None:
    target_id = world.users[target].id
    before = await role_of(session, world.workspace.id, target_id)
    command = workspaces.update_member_role(
        session, await as_(actor), world.workspace.id, target_id, role
    )
    if refusal is None:
        row = await command
        assert (row.user_id, row.role) == (target_id, role.value)
        assert await role_of(session, world.workspace.id, target_id) is role
    else:
        assert await refused(command) == refusal
        assert await role_of(session, world.workspace.id, target_id) is before


async def test_an_owner_may_step_down_when_another_owner_remains(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    owner = await as_("owner")
    ws, owner_id = world.workspace.id, world.users["owner"].id
    await workspaces.update_member_role(session, owner, ws, world.users["admin"].id, OWNER)
    row = await workspaces.update_member_role(session, owner, ws, owner_id, ADMIN)
    assert row.role == "ADMIN"


async def test_the_last_owner_cannot_be_demoted_and_is_told_why(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    with pytest.raises(Rejected) as caught:
        await workspaces.update_member_role(
            session, await as_("owner"), world.workspace.id, world.users["owner"].id, VIEWER
        )
    assert "at least one owner" in caught.value.problems[0].message


# ---------------------------------------------------------------- removeMember


async def test_remove_member_unassigns_their_tasks_and_records_it(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    member_id = world.users["member"].id
    # The same user keeps an assignment in another workspace they also belong to.
    await factories.member(session, world.other_workspace.id, member_id, MEMBER)
    elsewhere = await factories.task(
        session, world.other_project, world.users["outsider"].id, assignee_id=member_id
    )
    assigned = [t for t in world.tasks if t.assignee_id == member_id]
    assert len(assigned) == 3

    admin = await as_("admin")
    removed = await workspaces.remove_member(session, admin, world.workspace.id, member_id)

    assert removed == member_id
    assert await role_of(session, world.workspace.id, member_id) is None
    rows = (
        await session.execute(select(Task.id, Task.assignee_id, Task.version).order_by(Task.id))
    ).all()
    by_id = {r.id: r for r in rows}
    for t in assigned:
        assert by_id[t.id].assignee_id is None
        assert by_id[t.id].version == t.version + 1
    assert by_id[elsewhere.id].assignee_id == member_id
    history = (
        (
            await session.execute(
                select(Activity)
                .where(Activity.workspace_id == world.workspace.id)
                .order_by(Activity.task_id)
            )
        )
        .scalars()
        .all()
    )
    assert [(a.task_id, a.task_key, a.kind) for a in history] == [
        (t.id, f"ENG-{t.number}", "TASK_UPDATED") for t in assigned
    ]
    assert all(
        a.changes == [{"field": "assigneeId", "from": str(member_id), "to": None}]
        and a.actor_user_id == admin.user_id
        for a in history
    )


@pytest.mark.parametrize("who", ["admin", "member", "viewer"])
async def test_any_member_may_leave(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    who: str,
) -> None:
    user_id = world.users[who].id
    assert (
        await workspaces.remove_member(session, await as_(who), world.workspace.id, user_id)
        == user_id
    )
    assert await role_of(session, world.workspace.id, user_id) is None


# (actor, target, expected refusal or None)
REMOVALS = [
    ("owner", "admin", None),
    ("admin", "member", None),
    ("admin", "viewer", None),
    ("admin", "owner", (ProblemCode.FORBIDDEN, ("input", "userId"))),
    ("member", "viewer", (ProblemCode.FORBIDDEN, ("input", "workspaceId"))),
    ("viewer", "member", (ProblemCode.FORBIDDEN, ("input", "workspaceId"))),
    ("outsider", "viewer", (ProblemCode.NOT_FOUND, ("input", "workspaceId"))),
    ("owner", "outsider", (ProblemCode.NOT_FOUND, ("input", "userId"))),
    ("owner", "owner", (ProblemCode.INVALID, ("input", "userId"))),
]


@pytest.mark.parametrize(("actor", "target", "refusal"), REMOVALS)
async def test_remove_member_rules(
    session: AsyncSession,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
    actor: str,
    target: str,
    refusal: tuple[ProblemCode, tuple[str, ...]] | None,
) -> None:
    target_id = world.users[target].id
    before = await role_of(session, world.workspace.id, target_id)
    command = workspaces.remove_member(session, await as_(actor), world.workspace.id, target_id)
    if refusal is None:
        await command
        assert await role_of(session, world.workspace.id, target_id) is None
    else:
        assert await refused(command) == refusal
        assert await role_of(session, world.workspace.id, target_id) is before


async def test_an_admin_cannot_remove_another_admin(
    session: AsyncSession, world: factories.World, as_: Callable[[str], Awaitable[Principal]]
) -> None:
    second = await factories.user(session)
    await factories.member(session, world.workspace.id, second.id, ADMIN)
    assert await refused(
        workspaces.remove_member(session, await as_("admin"), world.workspace.id, second.id)
    ) == (ProblemCode.FORBIDDEN, ("input", "userId"))


# ---------------------------------------------------------------- races (real commits)


@pytest.fixture
async def committed_db(
    engine: AsyncEngine, server_url: str, template_url: str
) -> AsyncIterator[str]:
    """The shared fixture, after closing the pooled connections of the rollback tests' engine:
    they are connected to the template, and PostgreSQL refuses to copy a database that other
    sessions use (CREATE DATABASE ... TEMPLATE waits 5 s, then fails)."""
    await engine.dispose()
    name, url = await fresh_database(server_url, template_url)
    yield url
    await _admin(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
async def sessions(committed_db: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = make_engine(committed_db)
    yield make_session_factory(engine)
    await engine.dispose()


async def two_owners(
    sessions: async_sessionmaker[AsyncSession],
) -> tuple[int, Principal, Principal]:
    async with sessions() as s:
        a, b = await factories.user(s, "a"), await factories.user(s, "b")
        ws = await factories.workspace(s)
        await factories.member(s, ws.id, a.id, OWNER)
        await factories.member(s, ws.id, b.id, OWNER)
        await s.commit()
        return ws.id, await principal_of(s, a), await principal_of(s, b)


async def owners_of(sessions: async_sessionmaker[AsyncSession], workspace_id: int) -> int:
    async with sessions() as s:
        return await s.scalar(  # type: ignore[return-value]
            select(func.count())
            .select_from(Membership)
            .where(Membership.workspace_id == workspace_id, Membership.role == "OWNER")
        )


async def outcome(
    sessions: async_sessionmaker[AsyncSession],
    command: Callable[[AsyncSession], Awaitable[Any]],
) -> ProblemCode | None:
    """Run a command in its own session and commit; None on success, else the refusal code."""
    async with sessions() as s:
        try:
            await command(s)
        except Rejected as rejected:
            await s.rollback()
            return rejected.problems[0].code
        await s.commit()
        return None


async def test_concurrent_creates_of_one_slug_one_wins(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as s:
        users = [await factories.user(s), await factories.user(s)]
        await s.commit()
        principals = [await principal_of(s, u) for u in users]

    results = await asyncio.gather(
        *(
            outcome(sessions, lambda s, p=p: workspaces.create_workspace(s, p, "Race", "race"))
            for p in principals
        )
    )
    assert sorted(results, key=str) == [None, ProblemCode.TAKEN]

    # The same race with the loser's insert forced to wait on the winner's uncommitted row.
    async with sessions() as first, sessions() as second:
        await workspaces.create_workspace(first, principals[0], "Race", "race-two")
        waiting = asyncio.ensure_future(
            workspaces.create_workspace(second, principals[1], "Race", "race-two")
        )
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await first.commit()
        assert await refused(waiting) == (ProblemCode.TAKEN, ("input", "slug"))
        await second.rollback()
    async with sessions() as s:
        slugs = (await s.execute(select(Workspace.slug).order_by(Workspace.slug))).scalars().all()
        owners = await s.scalar(select(func.count()).select_from(Membership))
    assert slugs == ["race", "race-two"]
    assert owners == 2


async def test_two_owners_demoting_each_other_leave_one_owner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ws, a, b = await two_owners(sessions)
    results = await asyncio.gather(
        outcome(sessions, lambda s: workspaces.update_member_role(s, a, ws, b.user_id, MEMBER)),  # type: ignore[arg-type]
        outcome(sessions, lambda s: workspaces.update_member_role(s, b, ws, a.user_id, MEMBER)),  # type: ignore[arg-type]
    )
    assert results.count(None) == 1
    assert await owners_of(sessions, ws) == 1


async def test_two_owners_leaving_at_once_leave_one_owner(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ws, a, b = await two_owners(sessions)
    async with sessions() as first, sessions() as second:
        assert a.user_id is not None and b.user_id is not None
        await workspaces.remove_member(first, a, ws, a.user_id)
        # The second leave waits for the workspace lock, then counts the committed owners.
        waiting = asyncio.ensure_future(workspaces.remove_member(second, b, ws, b.user_id))
        await asyncio.sleep(0.2)
        assert not waiting.done()
        await first.commit()
        assert await refused(waiting) == (ProblemCode.INVALID, ("input", "userId"))
        await second.rollback()
    assert await owners_of(sessions, ws) == 1


async def test_membership_lock_does_not_block_task_writes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    ws, a, b = await two_owners(sessions)
    async with sessions() as s:
        proj = await factories.project(s, ws, "LOCK")
        await s.commit()
    async with sessions() as holder, sessions() as other:
        assert b.user_id is not None
        await workspaces.update_member_role(holder, a, ws, b.user_id, ADMIN)
        # Inserting rows that reference the locked workspace only takes a key-share lock.
        await asyncio.wait_for(factories.task(other, proj, b.user_id), timeout=2)
        await other.commit()
        await holder.commit()


# ---------------------------------------------------------------- statements


async def test_statements_per_command(
    session: AsyncSession,
    engine: AsyncEngine,
    world: factories.World,
    as_: Callable[[str], Awaitable[Principal]],
) -> None:
    owner, newcomer = await as_("owner"), await factories.user(session)
    ws, member_id = world.workspace.id, world.users["member"].id
    counted: dict[str, int] = {}
    commands: dict[str, Callable[[], Awaitable[Any]]] = {
        "create": lambda: workspaces.create_workspace(session, owner, "Counted", "counted"),
        "rename": lambda: workspaces.update_workspace(session, owner, ws, "Renamed"),
        "add": lambda: workspaces.add_member(session, owner, ws, newcomer.email, VIEWER),
        "change": lambda: workspaces.update_member_role(session, owner, ws, newcomer.id, MEMBER),
        # The member has 3 tasks here: one UPDATE unassigns them all, then one row of history each.
        "remove": lambda: workspaces.remove_member(session, owner, ws, member_id),
    }
    for name, command in commands.items():
        with StatementCounter(engine) as counter:
            await command()
        counted[name] = counter.count
    assert counted == {"create": 2, "rename": 1, "add": 3, "change": 3, "remove": 4 + 3}
