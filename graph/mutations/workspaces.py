"""Mutations of the workspace domain."""

from __future__ import annotations

import strawberry


@strawberry.type
class WorkspaceMutations:
    pass
