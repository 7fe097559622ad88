from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from db.models import ApiScope as DbScope
from graph.context import context_of
from graph.ids import to_global_id
from graph.types.common import ApiScope, Node
from graph.types.user import User


@strawberry.type
class ApiKey(Node):
    name: str
    prefix: str = strawberry.field(
        description="Non-secret leading characters of the key, for recognising it."
    )
    scopes: list[ApiScope]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    db_id: strawberry.Private[int]
    workspace_id: strawberry.Private[int]
    created_by_id: strawberry.Private[int]

    @classmethod
    def from_row(cls, row: Any) -> ApiKey:
        return cls(
            id=strawberry.ID(to_global_id("ApiKey", row.id)),
            db_id=row.id,
            workspace_id=row.workspace_id,
            created_by_id=row.created_by_id,
            name=row.name,
            prefix=row.prefix,
            scopes=[DbScope(s) for s in row.scopes],
            created_at=row.created_at,
            last_used_at=row.last_used_at,
            revoked_at=row.revoked_at,
        )

    @strawberry.field
    async def created_by(self, info: strawberry.Info) -> User:
        return User.from_row(await context_of(info).loaders.user.load(self.created_by_id))
