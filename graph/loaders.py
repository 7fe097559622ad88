"""The per-request DataLoader registry.

Every relationship and every per-parent list or count is loaded through here, so that a
query costs one statement per relationship and level, whatever the page size.
Loaders for lists with arguments (page size, cursor, filter, order) are keyed by those
arguments: parents asking for the same page shape share one batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Iterable, Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from strawberry.dataloader import DataLoader

from db import read_types
from db.descriptions import ListArgs
from db.pagination import Page, PageArgs
from graph.tracing import within

if TYPE_CHECKING:
    from graph.context import Context

Batch = Callable[..., Awaitable[dict[Any, Any]]]


class Loader(DataLoader[Any, Any]):
    async def _collect(self, futures: list[asyncio.Future[Any]]) -> list[Any]:
        try:
            return [await future for future in futures]
        except BaseException:
            # A failed batch fails all its futures; the others' errors count as seen.
            for future in futures:
                if future.done() and not future.cancelled():
                    future.exception()
            raise

    def load_many(self, keys: Iterable[Any]) -> Awaitable[list[Any]]:
        # The futures of one batch complete together: awaiting them in turn costs one
        # suspension, where `asyncio.gather` adds a callback and a result slot per key (a
        # page of 100 tasks loads three relationships this way).
        return self._collect([self.load(key) for key in keys])  # type: ignore[misc]


class Loaders:
    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._keyed: dict[Hashable, DataLoader[Any, Any]] = {}

    def clear(self) -> None:
        """Forget everything loaded so far (after a mutation commits)."""
        for name in [k for k, v in vars(self).items() if isinstance(v, DataLoader)]:
            delattr(self, name)
        self._keyed.clear()

    def _loader(
        self, name: str, fn: Batch, *leading: Any, default: Any = None
    ) -> DataLoader[Any, Any]:
        ctx = self._ctx
        tracer = ctx.resources.tracer
        span = f"loader {name}"

        async def load(keys: Sequence[Any]) -> list[Any]:
            found = await within(tracer, span, ctx.db(fn, *leading, list(keys)))
            return [found.get(key, default) for key in keys]

        return Loader(load_fn=load)

    # Objects by id, scoped to what the principal may read (db.read_types.rows_by_ids).
    def _by_id(self, type_name: str) -> DataLoader[int, Any]:
        return self._loader(type_name, read_types.rows_by_ids, type_name, self._ctx.principal)

    @cached_property
    def user(self) -> DataLoader[int, Any]:
        return self._by_id("User")

    @cached_property
    def workspace(self) -> DataLoader[int, Any]:
        return self._by_id("Workspace")

    @cached_property
    def project(self) -> DataLoader[int, Any]:
        return self._by_id("Project")

    @cached_property
    def task(self) -> DataLoader[int, Any]:
        return self._by_id("Task")

    @cached_property
    def label(self) -> DataLoader[int, Any]:
        return self._by_id("Label")

    @cached_property
    def comment(self) -> DataLoader[int, Any]:
        return self._by_id("Comment")

    @cached_property
    def activity(self) -> DataLoader[int, Any]:
        return self._by_id("Activity")

    @cached_property
    def api_key(self) -> DataLoader[int, Any]:
        return self._by_id("ApiKey")

    # Relationships and values per parent, read as their descriptions say (db.read_types).
    def related(self, type_name: str, field: str) -> DataLoader[tuple[int, Any], Any]:
        """Rows of the relationship `type_name.field` by (parent id, the field's converted
        arguments or None): a row or None (`One`), a list (`Many`)."""
        key = ("related", type_name, field)
        return self.keyed(key, read_types.related, self._ctx.principal, type_name, field)

    def values(self, type_name: str, field: str) -> DataLoader[int, Any]:
        """The value `type_name.field` by parent id."""
        key = ("values", type_name, field)
        return self.keyed(key, read_types.values, self._ctx.principal, type_name, field)

    # Lists per parent, keyed by their arguments.
    def keyed(
        self, key: tuple[Any, ...], fn: Batch, *leading: Any, default: Any = None
    ) -> DataLoader[Any, Any]:
        """The loader of `key`: (what it loads, the type's name, the field's name, ...)."""
        loader = self._keyed.get(key)
        if loader is None:
            name = f"{key[1]}.{key[2]}" if key[0] == "related" else f"{key[1]}.{key[2]} {key[0]}"
            loader = self._keyed[key] = self._loader(name, fn, *leading, default=default)
        return loader

    def pages(self, type_name: str, field: str, args: ListArgs) -> DataLoader[int, Page]:
        """Pages of the list `type_name.field` by parent id (0 for a list of the root)."""
        principal = self._ctx.principal

        async def batch(session: Any, ids: list[int]) -> dict[int, Page]:
            return await read_types.listing_pages(session, principal, type_name, field, ids, args)

        return self.keyed(("pages", type_name, field, args), batch)

    def counts(self, type_name: str, field: str, args: ListArgs) -> DataLoader[int, int]:
        """The number of rows of the list `type_name.field` by parent id."""
        principal = self._ctx.principal
        whole = ListArgs(PageArgs(), args.rest)

        async def batch(session: Any, ids: list[int]) -> dict[int, int]:
            return await read_types.listing_counts(session, principal, type_name, field, ids, whole)

        return self.keyed(("counts", type_name, field, whole), batch, default=0)
