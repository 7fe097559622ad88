"""Mutations of the label domain."""

from __future__ import annotations

import strawberry


@strawberry.type
class LabelMutations:
    pass
