from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from graph.ids import to_global_id
from graph.types.common import Node


@strawberry.type
class User(Node):
    name: str
    created_at: datetime
    db_id: strawberry.Private[int]
    _email: strawberry.Private[str | None]

    @strawberry.field(
        description="Visible to the user and to members of a workspace the user belongs to; "
        "null otherwise."
    )
    def email(self) -> str | None:
        return self._email

    @classmethod
    def from_row(cls, row: Any) -> User:
        return cls(
            id=strawberry.ID(to_global_id("User", row.id)),
            db_id=row.id,
            name=row.name,
            created_at=row.created_at,
            _email=row.email,
        )
