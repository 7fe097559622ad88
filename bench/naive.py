"""REFERENCE, not product code: a *naive* GraphQL server, as a tutorial would build it.

Strawberry types over SQLAlchemy ORM objects; every relationship is a lazy load or a query of
its own, per object (no DataLoaders), each resolver with a session of its own. It answers the
benchmark's operations with the same schema subset and field names as Taskgraph.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import os
from datetime import date, datetime
from typing import Any

import jwt
import orjson
import strawberry
from sqlalchemy import BigInteger, Date, ForeignKey, func, literal, or_, select, tuple_
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.ext.asyncio import AsyncAttrs, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from strawberry.asgi import GraphQL

SECRET = os.environ.get("SECRET_KEY", "")
PRIORITIES = ("NONE", "LOW", "NORMAL", "HIGH", "URGENT")


def to_gid(type_name: str, pk: int) -> str:
    return base64.urlsafe_b64encode(f"{type_name}:{pk}".encode()).decode().rstrip("=")


def from_gid(value: str) -> int:
    return int(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split(":")[1])


def encode_cursor(fingerprint: str, values: list[Any]) -> str:
    """A cursor as Taskgraph writes it: the ordering and the row's sort-key values."""
    payload = [
        fingerprint,
        [v.isoformat() if isinstance(v, datetime | date) else v for v in values],
    ]
    return base64.urlsafe_b64encode(orjson.dumps(payload)).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, list[Any]]:
    fingerprint, values = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    return fingerprint, values


def escape_like(term: str) -> str:
    return term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class Base(AsyncAttrs, DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str]
    email: Mapped[str]


class WorkspaceRow(Base):
    __tablename__ = "workspaces"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    slug: Mapped[str]
    name: Mapped[str]
    projects: Mapped[list[ProjectRow]] = relationship(order_by="ProjectRow.key")


class MembershipRow(Base):
    __tablename__ = "memberships"
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    role: Mapped[str]
    created_at: Mapped[datetime]
    workspace: Mapped[WorkspaceRow] = relationship()


class ProjectRow(Base):
    __tablename__ = "projects"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int] = mapped_column(ForeignKey("workspaces.id"))
    key: Mapped[str]
    name: Mapped[str]
    next_task_number: Mapped[int]
    archived_at: Mapped[datetime | None]


class LabelRow(Base):
    __tablename__ = "labels"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str]
    color: Mapped[str]


class TaskLabelRow(Base):
    __tablename__ = "task_labels"
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), primary_key=True)
    label_id: Mapped[int] = mapped_column(ForeignKey("labels.id"), primary_key=True)


class TaskRow(Base):
    __tablename__ = "tasks"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int]
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    number: Mapped[int]
    title: Mapped[str]
    description: Mapped[str]
    status: Mapped[str]
    priority: Mapped[int]
    due_date: Mapped[date | None]
    position: Mapped[float]
    assignee_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    creator_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    version: Mapped[int]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    project: Mapped[ProjectRow] = relationship()
    assignee: Mapped[UserRow | None] = relationship(foreign_keys=[assignee_id])
    creator: Mapped[UserRow] = relationship(foreign_keys=[creator_id])
    labels: Mapped[list[LabelRow]] = relationship(
        secondary="task_labels", order_by=lambda: (func.lower(LabelRow.name), LabelRow.id)
    )


class CommentRow(Base):
    __tablename__ = "comments"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    author_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    body: Mapped[str]
    created_at: Mapped[datetime]
    author: Mapped[UserRow] = relationship()


class ActivityRow(Base):
    __tablename__ = "activities"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_id: Mapped[int]
    kind: Mapped[str]
    changes: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    created_at: Mapped[datetime]


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    workspace_id: Mapped[int]
    prefix: Mapped[str]
    secret_hash: Mapped[str]
    scopes: Mapped[list[str]] = mapped_column(ARRAY(BigInteger))


engine = create_async_engine(
    os.environ.get("DATABASE_URL", "postgresql+asyncpg://localhost/none"),
    pool_size=10,
    max_overflow=20,
)
Session = async_sessionmaker(engine, expire_on_commit=False)


@strawberry.type
class User:
    row: strawberry.Private[UserRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_gid("User", self.row.id))

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def email(self) -> str | None:
        return self.row.email


@strawberry.type
class Label:
    row: strawberry.Private[LabelRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_gid("Label", self.row.id))

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def color(self) -> str:
        return self.row.color


@strawberry.type
class Comment:
    row: strawberry.Private[CommentRow]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_gid("Comment", self.row.id))

    @strawberry.field
    def body(self) -> str:
        return self.row.body

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    async def author(self) -> User:
        async with Session() as session:
            return User(row=await session.get(UserRow, self.row.author_id))


@strawberry.type
class FieldChange:
    field: str
    from_: str | None = strawberry.field(name="from")
    to: str | None


@strawberry.type
class Activity:
    row: strawberry.Private[ActivityRow]

    @strawberry.field
    def kind(self) -> str:
        return self.row.kind

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def changes(self) -> list[FieldChange]:
        return [
            FieldChange(field=c["field"], from_=c.get("from"), to=c.get("to"))
            for c in self.row.changes
        ]


@strawberry.type
class CommentConnection:
    nodes: list[Comment]


@strawberry.type
class ActivityConnection:
    nodes: list[Activity]


@strawberry.type
class ProjectRef:
    key: str
    name: str


@strawberry.interface
class Node:
    id: strawberry.ID


@strawberry.type
class Task(Node):
    row: strawberry.Private[TaskRow]

    @strawberry.field
    async def key(self) -> str:
        async with Session() as session:
            project = await session.get(ProjectRow, self.row.project_id)
            return f"{project.key}-{self.row.number}"

    @strawberry.field
    def title(self) -> str:
        return self.row.title

    @strawberry.field
    def description(self) -> str:
        return self.row.description

    @strawberry.field
    def status(self) -> str:
        return self.row.status

    @strawberry.field
    def priority(self) -> str:
        return PRIORITIES[self.row.priority]

    @strawberry.field
    def position(self) -> float:
        return self.row.position

    @strawberry.field
    def version(self) -> int:
        return self.row.version

    @strawberry.field
    def due_date(self) -> date | None:
        return self.row.due_date

    @strawberry.field
    def created_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    def updated_at(self) -> datetime:
        return self.row.updated_at

    @strawberry.field
    async def project(self) -> ProjectRef:
        async with Session() as session:
            project = await session.get(ProjectRow, self.row.project_id)
            return ProjectRef(key=project.key, name=project.name)

    @strawberry.field
    async def assignee(self) -> User | None:
        if self.row.assignee_id is None:
            return None
        async with Session() as session:
            return User(row=await session.get(UserRow, self.row.assignee_id))

    @strawberry.field
    async def creator(self) -> User:
        async with Session() as session:
            return User(row=await session.get(UserRow, self.row.creator_id))

    @strawberry.field
    async def labels(self) -> list[Label]:
        async with Session() as session:
            task = await session.get(TaskRow, self.row.id)
            return [Label(row=label) for label in await task.awaitable_attrs.labels]

    @strawberry.field
    async def comment_count(self) -> int:
        async with Session() as session:
            stmt = (
                select(func.count())
                .select_from(CommentRow)
                .where(CommentRow.task_id == self.row.id)
            )
            return int(await session.scalar(stmt) or 0)

    @strawberry.field
    async def comments(self, first: int = 50) -> CommentConnection:
        async with Session() as session:
            stmt = (
                select(CommentRow)
                .where(CommentRow.task_id == self.row.id)
                .order_by(CommentRow.created_at, CommentRow.id)
                .limit(first)
            )
            return CommentConnection(nodes=[Comment(row=c) for c in await session.scalars(stmt)])

    @strawberry.field
    async def activity(self, first: int = 50) -> ActivityConnection:
        async with Session() as session:
            stmt = (
                select(ActivityRow)
                .where(ActivityRow.task_id == self.row.id)
                .order_by(ActivityRow.created_at.desc(), ActivityRow.id.desc())
                .limit(first)
            )
            return ActivityConnection(nodes=[Activity(row=a) for a in await session.scalars(stmt)])


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None
    has_previous_page: bool = False
    start_cursor: str | None = None


@strawberry.type
class TaskConnection:
    nodes: list[Task]
    page_info: PageInfo


@strawberry.enum
class TaskStatus(enum.Enum):
    BACKLOG = "BACKLOG"
    TODO = "TODO"
    IN_PROGRESS = "IN_PROGRESS"
    IN_REVIEW = "IN_REVIEW"
    DONE = "DONE"
    CANCELED = "CANCELED"


@strawberry.enum
class OrderDirection(enum.Enum):
    ASC = "ASC"
    DESC = "DESC"


@strawberry.enum
class TaskOrderField(enum.Enum):
    CREATED_AT = "CREATED_AT"
    UPDATED_AT = "UPDATED_AT"
    DUE_DATE = "DUE_DATE"
    PRIORITY = "PRIORITY"
    POSITION = "POSITION"
    NUMBER = "NUMBER"


@strawberry.input
class TaskOrder:
    field: TaskOrderField
    direction: OrderDirection = OrderDirection.ASC


@strawberry.input
class TaskFilter:
    status: list[TaskStatus] | None = None
    assignee_ids: list[strawberry.ID] | None = None
    label_ids: list[strawberry.ID] | None = None
    search: str | None = None


ORDER_COLUMNS: dict[TaskOrderField, Any] = {
    TaskOrderField.CREATED_AT: TaskRow.created_at,
    TaskOrderField.UPDATED_AT: TaskRow.updated_at,
    # Tasks without a due date come after every dated one.
    TaskOrderField.DUE_DATE: func.coalesce(TaskRow.due_date, literal("infinity").cast(Date)),
    TaskOrderField.PRIORITY: TaskRow.priority,
    TaskOrderField.POSITION: TaskRow.position,
    TaskOrderField.NUMBER: TaskRow.number,
}


def filtered(stmt: Any, flt: TaskFilter | None) -> Any:
    if flt is None:
        return stmt
    if flt.status is not None:
        stmt = stmt.where(TaskRow.status.in_([s.value for s in flt.status]))
    if flt.assignee_ids is not None:
        stmt = stmt.where(TaskRow.assignee_id.in_([from_gid(a) for a in flt.assignee_ids]))
    for label_id in {from_gid(label) for label in flt.label_ids or []}:
        carrying = select(TaskLabelRow.task_id).where(TaskLabelRow.label_id == label_id)
        stmt = stmt.where(TaskRow.id.in_(carrying))
    term = (flt.search or "").strip()
    if term:
        pattern = f"%{escape_like(term)}%"
        stmt = stmt.where(or_(TaskRow.title.ilike(pattern), TaskRow.description.ilike(pattern)))
    return stmt


def ordered(stmt: Any, order_by: list[TaskOrder] | None, default: TaskOrder) -> Any:
    """Order by the given keys, ties broken by id in the direction of the last key."""
    keys = order_by or [default]
    columns = []
    for key in keys:
        column = ORDER_COLUMNS[key.field]
        columns.append(column.desc() if key.direction == OrderDirection.DESC else column)
    last_desc = keys[-1].direction == OrderDirection.DESC
    return stmt.order_by(*columns, TaskRow.id.desc() if last_desc else TaskRow.id)


@strawberry.type
class Project(Node):
    row: strawberry.Private[ProjectRow]

    @strawberry.field
    def key(self) -> str:
        return self.row.key

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    async def tasks(
        self,
        first: int | None = None,
        last: int | None = None,
        before: str | None = None,
        filter: TaskFilter | None = None,
        order_by: list[TaskOrder] | None = None,
    ) -> TaskConnection:
        stmt = filtered(select(TaskRow).where(TaskRow.project_id == self.row.id), filter)
        if last is not None:
            # Backwards through the board: the tasks before the cursor, nearest first.
            assert before is not None and order_by is None
            fingerprint, (position, task_id) = decode_cursor(before)
            assert fingerprint == "POSITION:a,ID:a"
            stmt = (
                stmt.where(tuple_(TaskRow.position, TaskRow.id) < (float(position), task_id))
                .order_by(TaskRow.position.desc(), TaskRow.id.desc())
                .limit(last + 1)
            )
            async with Session() as session:
                rows = list(await session.scalars(stmt))
            page = rows[:last][::-1]
            tasks = [Task(id=strawberry.ID(to_gid("Task", r.id)), row=r) for r in page]
            start = encode_cursor(fingerprint, [page[0].position, page[0].id]) if page else None
            info = PageInfo(
                has_next_page=True,  # the task of the cursor comes next
                end_cursor=None,
                has_previous_page=len(rows) > last,
                start_cursor=start,
            )
            return TaskConnection(nodes=tasks, page_info=info)
        stmt = ordered(stmt, order_by, TaskOrder(field=TaskOrderField.POSITION)).limit(first or 50)
        async with Session() as session:
            rows = list(await session.scalars(stmt))
        tasks = [Task(id=strawberry.ID(to_gid("Task", r.id)), row=r) for r in rows]
        return TaskConnection(nodes=tasks, page_info=PageInfo(has_next_page=False, end_cursor=None))


@strawberry.type
class ProjectConnection:
    nodes: list[Project]


@strawberry.type
class Membership:
    row: strawberry.Private[MembershipRow]

    @strawberry.field
    def role(self) -> str:
        return self.row.role

    @strawberry.field
    def joined_at(self) -> datetime:
        return self.row.created_at

    @strawberry.field
    async def user(self) -> User:
        # The viewer is a member of the workspace, so every member's e-mail is visible to it.
        async with Session() as session:
            return User(row=await session.get(UserRow, self.row.user_id))


@strawberry.type
class MembershipConnection:
    nodes: list[Membership]
    total_count: int


@strawberry.type
class Workspace:
    row: strawberry.Private[WorkspaceRow]
    role: strawberry.Private[str | None]

    @strawberry.field
    def id(self) -> strawberry.ID:
        return strawberry.ID(to_gid("Workspace", self.row.id))

    @strawberry.field
    def slug(self) -> str:
        return self.row.slug

    @strawberry.field
    def name(self) -> str:
        return self.row.name

    @strawberry.field
    def viewer_role(self) -> str | None:
        return self.role

    @strawberry.field
    async def projects(self) -> ProjectConnection:
        async with Session() as session:
            ws = await session.get(WorkspaceRow, self.row.id)
            projects = await ws.awaitable_attrs.projects
            return ProjectConnection(
                nodes=[Project(id=strawberry.ID(to_gid("Project", p.id)), row=p) for p in projects]
            )

    @strawberry.field
    async def tasks(self, first: int = 50, filter: TaskFilter | None = None) -> TaskConnection:
        async with Session() as session:
            stmt = (
                filtered(select(TaskRow).where(TaskRow.workspace_id == self.row.id), filter)
                .order_by(TaskRow.created_at.desc(), TaskRow.id.desc())
                .limit(first + 1)
            )
            rows = list(await session.scalars(stmt))
        tasks = [Task(id=strawberry.ID(to_gid("Task", r.id)), row=r) for r in rows[:first]]
        last = rows[len(tasks) - 1] if tasks else None
        end = encode_cursor("CREATED_AT:d,ID:d", [last.created_at, last.id]) if last else None
        info = PageInfo(has_next_page=len(rows) > first, end_cursor=end)
        return TaskConnection(nodes=tasks, page_info=info)

    @strawberry.field
    async def members(self, first: int = 50) -> MembershipConnection:
        async with Session() as session:
            stmt = (
                select(MembershipRow)
                .where(MembershipRow.workspace_id == self.row.id)
                .order_by(MembershipRow.created_at, MembershipRow.user_id)
                .limit(first)
            )
            rows = list(await session.scalars(stmt))
            total = await session.scalar(
                select(func.count())
                .select_from(MembershipRow)
                .where(MembershipRow.workspace_id == self.row.id)
            )
        return MembershipConnection(nodes=[Membership(row=r) for r in rows], total_count=total or 0)


@strawberry.type
class WorkspaceConnection:
    nodes: list[Workspace]


def _bearer(info: strawberry.Info) -> str:
    return info.context["request"].headers.get("authorization", "").removeprefix("Bearer ")


def _user_id(info: strawberry.Info) -> int:
    return int(jwt.decode(_bearer(info), SECRET, algorithms=["HS256"], issuer="taskgraph")["sub"])


@strawberry.type
class Query:
    @strawberry.field
    async def node(self, info: strawberry.Info, id: strawberry.ID) -> Node | None:
        user_id = _user_id(info)
        padded = id + "=" * (-len(id) % 4)
        type_name = base64.urlsafe_b64decode(padded).decode().split(":")[0]
        async with Session() as session:
            model = TaskRow if type_name == "Task" else ProjectRow
            row = await session.get(model, from_gid(id))
            member = await session.get(MembershipRow, (row.workspace_id, user_id)) if row else None
        if row is None or member is None:
            return None
        return Task(id=id, row=row) if type_name == "Task" else Project(id=id, row=row)

    @strawberry.field
    async def me(self, info: strawberry.Info) -> User | None:
        async with Session() as session:
            return User(row=await session.get(UserRow, _user_id(info)))

    @strawberry.field
    async def workspaces(self, info: strawberry.Info) -> WorkspaceConnection:
        async with Session() as session:
            stmt = select(MembershipRow).where(MembershipRow.user_id == _user_id(info))
            memberships = list(await session.scalars(stmt))
            nodes = [
                Workspace(row=await m.awaitable_attrs.workspace, role=m.role) for m in memberships
            ]
        return WorkspaceConnection(nodes=sorted(nodes, key=lambda w: w.row.slug))

    @strawberry.field
    async def workspace(self, info: strawberry.Info, slug: str) -> Workspace | None:
        secret = _bearer(info)
        if not secret.startswith("tgk_"):
            # A signed-in user reads the workspaces they are a member of.
            user_id = _user_id(info)
            async with Session() as session:
                ws = await session.scalar(select(WorkspaceRow).where(WorkspaceRow.slug == slug))
                member = await session.get(MembershipRow, (ws.id, user_id)) if ws else None
            if ws is None or member is None:
                return None
            return Workspace(row=ws, role=member.role)
        async with Session() as session:
            key = await session.scalar(
                select(ApiKeyRow).where(ApiKeyRow.prefix == "_".join(secret.split("_")[:2]))
            )
            if key is None or key.secret_hash != hashlib.sha256(secret.encode()).hexdigest():
                return None
            ws = await session.scalar(select(WorkspaceRow).where(WorkspaceRow.slug == slug))
        if ws is None or ws.id != key.workspace_id:
            return None
        return Workspace(row=ws, role=None)


@strawberry.input
class CreateTaskInput:
    project_id: strawberry.ID
    title: str


@strawberry.input
class UpdateTaskInput:
    id: strawberry.ID
    title: str


@strawberry.type
class UserError:
    code: str


@strawberry.type
class TaskPayload:
    task: Task | None
    user_errors: list[UserError]


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def create_task(self, info: strawberry.Info, input: CreateTaskInput) -> TaskPayload:
        user_id = _user_id(info)
        async with Session() as session, session.begin():
            project = await session.get(
                ProjectRow, from_gid(input.project_id), with_for_update=True
            )
            number = project.next_task_number
            project.next_task_number = number + 1
            last = await session.scalar(
                select(func.max(TaskRow.position)).where(TaskRow.project_id == project.id)
            )
            task = TaskRow(
                workspace_id=project.workspace_id,
                project_id=project.id,
                number=number,
                title=input.title,
                description="",
                status="TODO",
                priority=0,
                position=(last or 0) + 1024,
                creator_id=user_id,
                version=1,
                created_at=func.now(),
                updated_at=func.now(),
            )
            session.add(task)
            await session.flush()
            await session.refresh(task)
        return TaskPayload(
            task=Task(id=strawberry.ID(to_gid("Task", task.id)), row=task), user_errors=[]
        )

    @strawberry.mutation
    async def update_task(self, info: strawberry.Info, input: UpdateTaskInput) -> TaskPayload:
        _user_id(info)
        async with Session() as session, session.begin():
            task = await session.get(TaskRow, from_gid(input.id), with_for_update=True)
            task.title = input.title
            task.version = task.version + 1
            await session.flush()
            await session.refresh(task)
        return TaskPayload(task=Task(id=input.id, row=task), user_errors=[])


schema = strawberry.Schema(query=Query, mutation=Mutation, types=[Task, Project])


def create_app() -> GraphQL:  # type: ignore[type-arg]
    """The Strawberry ASGI app alone; it serves /graphql (and any other path)."""
    return GraphQL(schema)
