"""Mutations of the task domain."""

from __future__ import annotations

import strawberry


@strawberry.type
class TaskMutations:
    pass
