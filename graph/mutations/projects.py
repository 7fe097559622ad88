"""createProject, updateProject, archiveProject (workspace admins). Deleting a project is not
offered: archiving keeps its tasks and history."""

from __future__ import annotations

from typing import Any

import strawberry
from sqlalchemy.ext.asyncio import AsyncSession

from db import projects as project_db
from db.principals import Principal
from graph.mutations.common import UserError, given, input_id, perform
from graph.types.project import Project


@strawberry.input
class CreateProjectInput:
    workspace_id: strawberry.ID
    key: str
    name: str
    description: str | None = ""


@strawberry.input(description="Only the fields present are changed; the key never changes.")
class UpdateProjectInput:
    id: strawberry.ID
    name: str | None = strawberry.UNSET
    description: str | None = strawberry.UNSET


@strawberry.input
class ArchiveProjectInput:
    id: strawberry.ID
    archived: bool = True


@strawberry.type
class ProjectPayload:
    project: Project | None = None
    user_errors: list[UserError] = strawberry.field(default_factory=list)


def _payload(row: Any, errors: list[UserError]) -> ProjectPayload:
    return ProjectPayload(
        project=Project.from_row(row) if row is not None else None, user_errors=errors
    )


@strawberry.type
class ProjectMutations:
    @strawberry.mutation(description="Create a project (workspace admins).")
    async def create_project(
        self, info: strawberry.Info, input: CreateProjectInput
    ) -> ProjectPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await project_db.create_project(
                session,
                principal,
                input_id(input.workspace_id, "Workspace", "input", "workspaceId"),
                input.key,
                input.name,
                input.description if input.description is not None else "",
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(description="Rename a project or change its description.")
    async def update_project(
        self, info: strawberry.Info, input: UpdateProjectInput
    ) -> ProjectPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await project_db.update_project(
                session,
                principal,
                input_id(input.id, "Project", "input", "id"),
                name=given(input.name),
                description=given(input.description),
            )

        return _payload(*await perform(info, work))

    @strawberry.mutation(
        description="Archive a project (hidden from project lists) or bring it back."
    )
    async def archive_project(
        self, info: strawberry.Info, input: ArchiveProjectInput
    ) -> ProjectPayload:
        async def work(session: AsyncSession, principal: Principal) -> Any:
            return await project_db.archive_project(
                session, principal, input_id(input.id, "Project", "input", "id"), input.archived
            )

        return _payload(*await perform(info, work))
