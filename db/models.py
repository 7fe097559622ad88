"""The data model: one declarative class per table.

Enumerations are stored as text with CHECK constraints (cheap to extend in a migration,
readable in psql); priority is a smallint so that ordering by it means ordering by urgency.
"""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Double,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Role(enum.StrEnum):
    OWNER = "OWNER"
    ADMIN = "ADMIN"
    MEMBER = "MEMBER"
    VIEWER = "VIEWER"


class TaskStatus(enum.StrEnum):
    BACKLOG = "BACKLOG"
    TODO = "TODO"
    IN_PROGRESS = "IN_PROGRESS"
    IN_REVIEW = "IN_REVIEW"
    DONE = "DONE"
    CANCELED = "CANCELED"


class TaskPriority(enum.IntEnum):
    NONE = 0
    LOW = 1
    NORMAL = 2
    HIGH = 3
    URGENT = 4


class ApiScope(enum.StrEnum):
    READ = "READ"
    WRITE = "WRITE"


class ActivityKind(enum.StrEnum):
    TASK_CREATED = "TASK_CREATED"
    TASK_UPDATED = "TASK_UPDATED"
    TASK_DELETED = "TASK_DELETED"
    COMMENT_ADDED = "COMMENT_ADDED"
    COMMENT_UPDATED = "COMMENT_UPDATED"
    COMMENT_DELETED = "COMMENT_DELETED"
    LABELS_CHANGED = "LABELS_CHANGED"


class TaskEventKind(enum.StrEnum):
    """What a live event of a task says happened (each stands for kinds of activity)."""

    CREATED = "CREATED"
    UPDATED = "UPDATED"
    DELETED = "DELETED"
    COMMENTED = "COMMENTED"


EVENT_KIND_OF = {
    ActivityKind.TASK_CREATED: TaskEventKind.CREATED,
    ActivityKind.TASK_UPDATED: TaskEventKind.UPDATED,
    ActivityKind.LABELS_CHANGED: TaskEventKind.UPDATED,
    ActivityKind.TASK_DELETED: TaskEventKind.DELETED,
    ActivityKind.COMMENT_ADDED: TaskEventKind.COMMENTED,
    ActivityKind.COMMENT_UPDATED: TaskEventKind.COMMENTED,
    ActivityKind.COMMENT_DELETED: TaskEventKind.COMMENTED,
}


def _in(column: str, values: type[enum.Enum]) -> str:
    return f"{column} IN ({', '.join(repr(v.value) for v in values)})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def _pk() -> Mapped[int]:
    return mapped_column(BigInteger, Identity(always=False), primary_key=True)


def _created() -> Mapped[datetime]:
    return mapped_column(DateTime(timezone=True), nullable=False, server_default=func.now())


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # Log-in looks users up by e-mail regardless of case.
        Index("uq_users_email_lower", func.lower(text("email")), unique=True),
    )

    id: Mapped[int] = _pk()
    email: Mapped[str] = mapped_column(String(320), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    password_hash: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Workspace(Base):
    __tablename__ = "workspaces"

    id: Mapped[int] = _pk()
    slug: Mapped[str] = mapped_column(String(40), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (
        CheckConstraint(_in("role", Role), name="role"),
        # A user's workspaces are looked up on every authenticated request.
        Index("ix_memberships_user_id", "user_id"),
    )

    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(10), nullable=False)
    created_at: Mapped[datetime] = _created()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (
        UniqueConstraint("workspace_id", "key"),
        CheckConstraint("key ~ '^[A-Z][A-Z0-9]{1,9}$'", name="key_format"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    key: Mapped[str] = mapped_column(String(10), nullable=False)
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    next_task_number: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    archived_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Task(Base):
    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("project_id", "number"),
        CheckConstraint(_in("status", TaskStatus), name="status"),
        CheckConstraint("priority BETWEEN 0 AND 4", name="priority"),
        # Workspace-wide task lists are ordered by creation then id (the default order).
        Index("ix_tasks_workspace_id_created_at", "workspace_id", "created_at", "id"),
        # Boards list a project's tasks by position.
        Index("ix_tasks_project_id_position", "project_id", "position", "id"),
        # "Assigned to me" lists and assignee filters.
        Index("ix_tasks_assignee_id", "assignee_id"),
        # Foreign key to users: deleting a user must not scan tasks.
        Index("ix_tasks_creator_id", "creator_id"),
        # The search filter (`title ILIKE '%term%' OR description ILIKE '%term%'`): trigram
        # indexes serve ILIKE with a leading wildcard, which no b-tree can (pg_trgm).
        Index(
            "ix_tasks_title_trgm",
            "title",
            postgresql_using="gin",
            postgresql_ops={"title": "gin_trgm_ops"},
        ),
        Index(
            "ix_tasks_description_trgm",
            "description",
            postgresql_using="gin",
            postgresql_ops={"description": "gin_trgm_ops"},
        ),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    number: Mapped[int] = mapped_column(Integer, nullable=False)
    title: Mapped[str] = mapped_column(String(200), nullable=False)
    description: Mapped[str] = mapped_column(Text, nullable=False, server_default="")
    status: Mapped[str] = mapped_column(String(12), nullable=False, server_default="TODO")
    priority: Mapped[int] = mapped_column(SmallInteger, nullable=False, server_default="0")
    due_date: Mapped[date | None] = mapped_column(Date)
    position: Mapped[float] = mapped_column(Double, nullable=False)
    assignee_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    creator_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (
        # Label names are unique per workspace regardless of case.
        Index(
            "uq_labels_workspace_id_name_lower",
            "workspace_id",
            func.lower(text("name")),
            unique=True,
        ),
        CheckConstraint("color ~ '^#[0-9a-fA-F]{6}$'", name="color_hex"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    color: Mapped[str] = mapped_column(String(7), nullable=False)


class TaskLabel(Base):
    __tablename__ = "task_labels"
    __table_args__ = (
        # The primary key serves task -> labels; label filters and label deletion go the other way.
        Index("ix_task_labels_label_id", "label_id", "task_id"),
    )

    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True
    )
    label_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("labels.id", ondelete="CASCADE"), primary_key=True
    )


class Comment(Base):
    __tablename__ = "comments"
    __table_args__ = (
        # A task's comments are listed oldest first, with id as the tie-break.
        Index("ix_comments_task_id_created_at", "task_id", "created_at", "id"),
        Index("ix_comments_author_id", "author_id"),
    )

    id: Mapped[int] = _pk()
    task_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("tasks.id", ondelete="CASCADE"), nullable=False
    )
    author_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    body: Mapped[str] = mapped_column(Text, nullable=False)
    created_at: Mapped[datetime] = _created()
    updated_at: Mapped[datetime] = _created()


class Activity(Base):
    __tablename__ = "activities"
    __table_args__ = (
        CheckConstraint(_in("kind", ActivityKind), name="kind"),
        # A task's history is listed newest first; task_id is not a foreign key so that the
        # history outlives the task.
        Index("ix_activities_task_id_created_at", "task_id", "created_at", "id"),
        Index("ix_activities_workspace_id_created_at", "workspace_id", "created_at"),
        Index("ix_activities_project_id", "project_id"),
        Index("ix_activities_actor_user_id", "actor_user_id"),
        Index("ix_activities_actor_api_key_id", "actor_api_key_id"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    project_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("projects.id", ondelete="CASCADE"), nullable=False
    )
    task_id: Mapped[int] = mapped_column(BigInteger, nullable=False)
    task_key: Mapped[str] = mapped_column(String(24), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    actor_user_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="SET NULL")
    )
    actor_api_key_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("api_keys.id", ondelete="SET NULL")
    )
    changes: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, nullable=False, server_default=text("'[]'::jsonb")
    )
    created_at: Mapped[datetime] = _created()


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (
        Index("ix_api_keys_workspace_id", "workspace_id"),
        Index("ix_api_keys_created_by_id", "created_by_id"),
        CheckConstraint("scopes <@ ARRAY['READ', 'WRITE']::varchar[]", name="scopes"),
    )

    id: Mapped[int] = _pk()
    workspace_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("workspaces.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(100), nullable=False)
    prefix: Mapped[str] = mapped_column(String(32), nullable=False, unique=True)
    secret_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(5)), nullable=False)
    created_by_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    created_at: Mapped[datetime] = _created()
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"
    __table_args__ = (
        Index("ix_refresh_tokens_user_id", "user_id"),
        # Reuse of a rotated token revokes every token of its family.
        Index("ix_refresh_tokens_family_id", "family_id"),
    )

    id: Mapped[int] = _pk()
    user_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("users.id", ondelete="CASCADE"), nullable=False
    )
    token_hash: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    # Rotation links each token to the one it replaced, so that reuse of an old token
    # can revoke the whole chain (family).
    family_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = _created()
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
