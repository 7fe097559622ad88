"""Mutations of the comment domain."""

from __future__ import annotations

import strawberry


@strawberry.type
class CommentMutations:
    pass
