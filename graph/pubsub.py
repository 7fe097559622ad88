"""The process's hub of live events: one listening connection, the subscribers grouped by
what they see, and every event rendered once per group.

Subscribers whose answers to an event must be the same form a group, as Hasura's cohorts
do: the same document and variables, the same workspace and project, and the same view of
the workspace (`Seen`: a user's role in it, or an API key's scopes). An event of a workspace
costs one statement per group of that workspace: the subscription's compiled statement
(graph/compiled.py), run for the event's activity row with the group's principal, whose
answer every subscriber of the group is sent.

A group's principal can read its workspace only, with the role of its subscribers in it.
Everything an event reaches (the task, its project, labels, comments, people) belongs to
that workspace, so each subscriber sees what its own principal would, except one thing: the
e-mail of a person who is no member of the workspace (who left it) stays hidden in events,
even from a subscriber who shares another workspace with them.

Events of one process arrive in the order their transactions committed and are handled one
after another, so a change of access (`AccessChanged`) takes effect before every event that
committed after it: a member who was removed, or a key that was revoked, gets nothing more.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from contextlib import AbstractAsyncContextManager, suppress
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any

import orjson
from graphql import GraphQLError, GraphQLSchema
from strawberry.types import ExecutionResult

from db import live_events, prepared
from db.activities import EVENT_PARAM
from db.live_events import AccessChanged, Backoff, Notice, Reconnected, TaskChanged
from db.models import ApiScope, Role
from db.principals import Principal
from graph import compiled
from graph.errors import ErrorCode

log = logging.getLogger(__name__)

# Events waiting to be sent to one subscriber: a client that reads slower than events come
# is told it missed events (and to refetch), not queued for without end.
MAX_QUEUED = 256
# After the listening connection was lost, at most this many events are read and sent again;
# with more, subscribers are told they missed events.
MAX_CATCH_UP = 1000
# Events already handled, remembered so that catching up does not send one twice.
REMEMBERED = 10_000


@dataclass(frozen=True, slots=True)
class Seen:
    """How a principal sees one workspace: what decides its answers to that workspace's events."""

    role: Role | None = None
    scopes: frozenset[ApiScope] | None = None

    @classmethod
    def of(cls, principal: Principal, workspace_id: int) -> Seen | None:
        """None when the principal cannot read the workspace."""
        if not principal.can_read(workspace_id):
            return None
        if principal.is_api_key:
            return cls(scopes=principal.scopes)
        return cls(role=principal.role_in(workspace_id))

    def principal(self, workspace_id: int) -> Principal:
        """A principal that sees the workspace this way, and nothing else."""
        if self.scopes is not None:
            return Principal(api_key_id=-1, api_key_workspace_id=workspace_id, scopes=self.scopes)
        assert self.role is not None
        return Principal(roles=MappingProxyType({workspace_id: self.role}))


def _error(message: str, code: ErrorCode) -> ExecutionResult:
    return ExecutionResult(data=None, errors=[GraphQLError(message, extensions={"code": code})])


EVENTS_MISSED = _error(
    "Events were missed; refetch what you show, then go on receiving.", ErrorCode.EVENTS_MISSED
)


class Subscriber:
    """One subscription: what it listens to, and the queue of what it is sent (None ends it)."""

    __slots__ = ("group", "principal", "project_id", "queue", "who", "workspace_id")

    def __init__(
        self, principal: Principal, workspace_id: int, project_id: int | None, who: Hashable
    ) -> None:
        self.principal = principal
        self.workspace_id = workspace_id
        self.project_id = project_id
        # The principal's key, for the cap of subscriptions per principal.
        self.who = who
        self.queue: asyncio.Queue[ExecutionResult | None] = asyncio.Queue()
        self.group: Group | None = None

    def send(self, result: ExecutionResult) -> None:
        queue = self.queue
        if queue.qsize() >= MAX_QUEUED:
            # Fell behind: what is queued is dropped and replaced by the one message.
            while not queue.empty():
                queue.get_nowait()
            result = EVENTS_MISSED
        queue.put_nowait(result)

    def end(self, result: ExecutionResult | None = None) -> None:
        if result is not None:
            self.queue.put_nowait(result)
        self.queue.put_nowait(None)


@dataclass(eq=False, slots=True)
class Group:
    key: Hashable
    workspace_id: int
    project_id: int | None
    operation: compiled.Operation
    variables: dict[str, Any] | None
    principal: Principal
    subscribers: set[Subscriber]


class Hub:
    """The live events of one process. Started by its first subscriber; `close` stops it."""

    def __init__(
        self,
        schema: GraphQLSchema,
        dsn: str,
        open_pooled: Callable[[], AbstractAsyncContextManager[prepared.Pooled]],
        backoff: Backoff = Backoff(),
    ) -> None:
        self.schema = schema
        self.open_pooled = open_pooled
        self.listener = live_events.Listener(dsn, self._notice, backoff)
        self.groups: dict[Hashable, Group] = {}
        self.by_workspace: dict[int, set[Group]] = {}
        self.per_principal: dict[Hashable, int] = {}
        self.subscribers = 0
        self._notices: asyncio.Queue[Notice | Reconnected] = asyncio.Queue()
        self._handled: OrderedDict[int, None] = OrderedDict()
        self._started = False
        self._starting = asyncio.Lock()
        self._worker: asyncio.Task[None] | None = None

    # -- subscribers ---------------------------------------------------------------------

    async def join(
        self,
        subscriber: Subscriber,
        operation: compiled.Operation,
        query_key: Hashable,
        variables: dict[str, Any] | None,
    ) -> None:
        """Add a subscriber whose principal may read its workspace (checked by the caller)."""
        await self._start()
        seen = Seen.of(subscriber.principal, subscriber.workspace_id)
        assert seen is not None
        self._place(subscriber, seen, operation, query_key, variables)
        self.subscribers += 1

    def reserve(self, who: Hashable) -> None:
        """Count a subscription of principal `who` (before it joins); `leave` gives it back."""
        self.per_principal[who] = self.per_principal.get(who, 0) + 1

    def leave(self, subscriber: Subscriber) -> None:
        """The subscriber's end (whether it joined or was ended by the hub already)."""
        if subscriber.group is not None:
            self._unplace(subscriber)
            self.subscribers -= 1
        left = self.per_principal[subscriber.who] - 1
        if left:
            self.per_principal[subscriber.who] = left
        else:
            del self.per_principal[subscriber.who]

    def count_of(self, who: Hashable) -> int:
        return self.per_principal.get(who, 0)

    def _place(
        self,
        subscriber: Subscriber,
        seen: Seen,
        operation: compiled.Operation,
        query_key: Hashable,
        variables: dict[str, Any] | None,
    ) -> None:
        workspace_id, project_id = subscriber.workspace_id, subscriber.project_id
        key = (query_key, workspace_id, project_id, seen)
        group = self.groups.get(key)
        if group is None:
            group = Group(
                key,
                workspace_id,
                project_id,
                operation,
                variables,
                seen.principal(workspace_id),
                set(),
            )
            self.groups[key] = group
            self.by_workspace.setdefault(workspace_id, set()).add(group)
        group.subscribers.add(subscriber)
        subscriber.group = group

    def _unplace(self, subscriber: Subscriber) -> None:
        group = subscriber.group
        assert group is not None
        subscriber.group = None
        group.subscribers.discard(subscriber)
        if not group.subscribers:
            del self.groups[group.key]
            groups = self.by_workspace[group.workspace_id]
            groups.discard(group)
            if not groups:
                del self.by_workspace[group.workspace_id]

    # -- the listening connection ----------------------------------------------------------

    async def _start(self) -> None:
        if self._started:
            return
        async with self._starting:
            if self._started:
                return
            await self.listener.start()
            self._worker = asyncio.create_task(self._work(), name="live-events-hub")
            self._started = True

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        await self.listener.stop()
        for group in list(self.groups.values()):
            for subscriber in list(group.subscribers):
                subscriber.end()
        self._started = False

    def _notice(self, notice: Notice | Reconnected) -> None:
        # Handled in order by one task: a reconnect's catching up before the notices after it.
        self._notices.put_nowait(notice)

    async def _work(self) -> None:
        while True:
            notice = await self._notices.get()
            try:
                if isinstance(notice, TaskChanged):
                    await self._task_changed(notice)
                elif isinstance(notice, AccessChanged):
                    await self._access_changed([notice])
                else:
                    await self._reconnected(notice.down_since)
            except Exception:
                # One event's failure (the database went away mid-render) is not the hub's end.
                log.exception("a live event could not be handled")

    # -- events ----------------------------------------------------------------------------

    async def _task_changed(self, notice: TaskChanged) -> None:
        if notice.activity_id in self._handled:
            return
        self._handled[notice.activity_id] = None
        if len(self._handled) > REMEMBERED:
            self._handled.popitem(last=False)
        groups = [
            group
            for group in self.by_workspace.get(notice.workspace_id, ())
            if group.project_id is None or group.project_id == notice.project_id
        ]
        if not groups:
            return
        rendered = await asyncio.gather(
            *(self._render(group, notice.activity_id) for group in groups), return_exceptions=True
        )
        for group, result in zip(groups, rendered, strict=True):
            if isinstance(result, BaseException):
                log.error("a live event was not rendered", exc_info=result)
                continue
            if result is None:
                continue
            for subscriber in group.subscribers:
                subscriber.send(result)

    async def _render(self, group: Group, activity_id: int) -> ExecutionResult | None:
        sql, args = compiled.statement(
            self.schema,
            group.operation,
            group.principal,
            group.variables,
            extra={EVENT_PARAM: activity_id},
        )
        async with self.open_pooled() as pooled:
            text = await pooled.value(sql, args)
        if text is None:
            return None
        data = orjson.loads(text)
        if next(iter(data.values()), None) is None:
            # The event's row is not there for this principal (not of its workspace).
            return None
        return ExecutionResult(data=data, errors=None)

    async def _access_changed(self, notices: Iterable[AccessChanged]) -> None:
        """Subscribers whose access may have changed: their workspace and role read anew."""
        users: set[tuple[int, int]] = set()
        keys: set[int] = set()
        for notice in notices:
            if notice.user_id is not None:
                users.add((notice.workspace_id, notice.user_id))
            if notice.api_key_id is not None:
                keys.add(notice.api_key_id)
        affected = [
            subscriber
            for group in list(self.groups.values())
            for subscriber in list(group.subscribers)
            if (subscriber.workspace_id, subscriber.principal.user_id) in users
            or subscriber.principal.api_key_id in keys
        ]
        if affected:
            await self._recheck(affected)

    async def _recheck(self, subscribers: list[Subscriber]) -> None:
        pairs = sorted(
            {(s.workspace_id, s.principal.user_id) for s in subscribers if s.principal.user_id}
        )
        keys = sorted({s.principal.api_key_id for s in subscribers if s.principal.api_key_id})
        async with self.open_pooled() as pooled:
            roles = await live_events.roles(pooled, pairs) if pairs else {}
            live = await live_events.live_keys(pooled, keys) if keys else set()
        for subscriber in subscribers:
            principal = subscriber.principal
            group = subscriber.group
            if group is None:
                continue
            if principal.api_key_id is not None:
                if principal.api_key_id not in live:
                    self._end(subscriber, "The API key was revoked.")
                continue
            assert principal.user_id is not None
            role = roles.get((subscriber.workspace_id, principal.user_id))
            if role is None:
                self._end(subscriber, "Workspace not found.")
                continue
            if role is principal.role_in(subscriber.workspace_id):
                continue
            subscriber.principal = Principal(
                user_id=principal.user_id,
                roles=MappingProxyType({**principal.roles, subscriber.workspace_id: role}),
            )
            operation, variables = group.operation, group.variables
            query_key = group.key[0]  # type: ignore[index]
            self._unplace(subscriber)
            seen = Seen(role=role)
            self._place(subscriber, seen, operation, query_key, variables)

    def _end(self, subscriber: Subscriber, message: str) -> None:
        # Out of its group now; its count goes when its stream is closed (`leave`).
        self._unplace(subscriber)
        self.subscribers -= 1
        subscriber.end(_error(message, ErrorCode.NOT_FOUND))

    async def _reconnected(self, down_since: datetime) -> None:
        """After the listening connection was lost: access is checked again for everyone, then
        the events committed meanwhile are handled (or everyone is told they missed some)."""
        subscribers = [s for g in list(self.groups.values()) for s in list(g.subscribers)]
        if not subscribers:
            return
        try:
            await self._recheck(subscribers)
            workspaces = sorted(self.by_workspace)
            since = down_since - live_events.CATCH_UP_MARGIN
            async with self.open_pooled() as pooled:
                found = await live_events.missed(pooled, workspaces, since, MAX_CATCH_UP + 1)
        except Exception:
            log.exception("live events missed while not listening could not be read")
            self._missed_by_all()
            return
        if len(found) > MAX_CATCH_UP:
            self._missed_by_all()
            return
        for notice in found:
            await self._task_changed(notice)

    def _missed_by_all(self) -> None:
        for group in self.groups.values():
            for subscriber in group.subscribers:
                subscriber.send(EVENTS_MISSED)
