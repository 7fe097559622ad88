from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from db.errors import Forbidden
from db.models import Role as DbRole
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.api_key import ApiKey
from graph.types.common import Connection, Node, Role, listing, related
from graph.types.label import Label
from graph.types.project import Project
from graph.types.task import Task, TaskFilter, TaskOrder, task_connection
from graph.types.user import User


@strawberry.type
class Membership:
    role: Role
    joined_at: datetime
    user_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Membership:
        return cls(role=DbRole(row.role), joined_at=row.created_at, user_id=row.user_id)

    @strawberry.field
    async def user(self, info: strawberry.Info) -> User:
        return User.from_row(await context_of(info).loaders.user.load(self.user_id))


@strawberry.type
class Workspace(Node):
    slug: str
    name: str
    created_at: datetime
    db_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> Workspace:
        return cls(
            id=strawberry.ID(to_global_id("Workspace", row.id)),
            db_id=row.id,
            slug=row.slug,
            name=row.name,
            created_at=row.created_at,
        )

    @strawberry.field(description="The viewer's role here; null when the viewer is an API key.")
    def viewer_role(self, info: strawberry.Info) -> Role | None:
        return context_of(info).principal.role_in(self.db_id)

    @strawberry.field(description="Members, in the order they joined.")
    async def members(
        self, info: strawberry.Info, first: int | None = None, after: str | None = None
    ) -> Connection[Membership]:
        return await listing(
            info, "Workspace", "members", self.db_id, Membership.from_row, first=first, after=after
        )

    @strawberry.field(description="Projects ordered by key; archived ones only when asked for.")
    async def projects(
        self,
        info: strawberry.Info,
        first: int | None = None,
        after: str | None = None,
        include_archived: bool | None = False,
    ) -> Connection[Project]:
        return await listing(
            info,
            "Workspace",
            "projects",
            self.db_id,
            Project.from_row,
            first=first,
            after=after,
            include_archived=include_archived,
        )

    @strawberry.field
    async def project(self, info: strawberry.Info, key: str) -> Project | None:
        row = await related(info, "Workspace", "project", self.db_id, key=key)
        if row is None:
            return None
        context_of(info).loaders.project.prime(row.id, row)
        return Project.from_row(row)

    @strawberry.field(description="Labels ordered by name.")
    async def labels(self, info: strawberry.Info) -> list[Label]:
        rows = await related(info, "Workspace", "labels", self.db_id)
        return [Label.from_row(row) for row in rows]

    @strawberry.field(description="Tasks of every project; by default newest first.")
    async def tasks(
        self,
        info: strawberry.Info,
        filter: TaskFilter | None = None,
        order_by: list[TaskOrder] | None = None,
        first: int | None = None,
        after: str | None = None,
        last: int | None = None,
        before: str | None = None,
    ) -> Connection[Task]:
        return await task_connection(
            info,
            "Workspace",
            self.db_id,
            filter=filter,
            order_by=order_by,
            first=first,
            after=after,
            last=last,
            before=before,
        )

    @strawberry.field(description='A task by its human key, e.g. "ENG-42".')
    async def task(self, info: strawberry.Info, key: str) -> Task | None:
        row = await related(info, "Workspace", "task", self.db_id, key=key)
        return Task.from_row(row) if row is not None else None

    @strawberry.field(description="The workspace's API keys; for workspace admins only.")
    async def api_keys(self, info: strawberry.Info) -> list[ApiKey]:
        ctx = context_of(info)
        if not ctx.principal.can_manage(self.db_id):
            raise Forbidden("Only workspace admins can list API keys.")
        rows = await related(info, "Workspace", "api_keys", self.db_id)
        return [ApiKey.from_row(row) for row in rows]
