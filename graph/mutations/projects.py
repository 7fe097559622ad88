"""Mutations of the project domain."""

from __future__ import annotations

import strawberry


@strawberry.type
class ProjectMutations:
    pass
