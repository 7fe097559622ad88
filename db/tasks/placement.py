"""Where a task sits on its project's board: positions between neighbours, rebalancing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from db.problems import Problem, ProblemCode, Rejected, reject
from db.sql import any_id
from db.tasks.tables import T

# New tasks go to the end of the board, this far behind the last one; a rebalance spaces
# every task of the project this far apart again.
POSITION_STEP = 1024.0
# Below this gap between two neighbours a midpoint is no longer trusted to lie strictly
# between them (doubles carry ~16 significant digits), so the project is rebalanced first.
MIN_POSITION_GAP = 1e-9


def _order_key(row: Any) -> tuple[float, int]:
    # Boards order by (position, id); ties in position are broken by id.
    return (row.position, row.id)


def _between(lo: Any, hi: Any) -> float | None:
    """A position strictly between the neighbours, or None when they are too close."""
    if hi is None:
        return float(lo.position + POSITION_STEP)
    if lo is None:
        return float(hi.position - POSITION_STEP)
    mid = (lo.position + hi.position) / 2
    if hi.position - lo.position < MIN_POSITION_GAP or not lo.position < mid < hi.position:
        return None
    return float(mid)


async def _neighbour(session: AsyncSession, task: Any, of: Any, *, after: bool) -> Any:
    """The task right after (or before) `of` on the board, not counting `task` itself."""
    key = tuple_(T.c.position, T.c.id)
    mark = tuple_(literal(of.position), literal(of.id, BigInteger))
    stmt = (
        select(T.c.id, T.c.position)
        .where(
            T.c.project_id == task.project_id,
            T.c.id != task.id,
            key > mark if after else key < mark,
        )
        .order_by(*((T.c.position, T.c.id) if after else (T.c.position.desc(), T.c.id.desc())))
        .limit(1)
    )
    return (await session.execute(stmt)).first()


async def _positions(session: AsyncSession, project_id: int, ids: Sequence[int]) -> dict[int, Any]:
    stmt = select(T.c.id, T.c.position).where(any_id(T.c.id, ids), T.c.project_id == project_id)
    return {row.id: row for row in (await session.execute(stmt)).all()}


async def rebalance(session: AsyncSession, project_id: int) -> None:
    """Space the project's tasks POSITION_STEP apart, keeping their order.

    Not a change of any task (the order stays), so no version bump and no activity.
    """
    ranked = (
        select(
            T.c.id,
            (func.row_number().over(order_by=(T.c.position, T.c.id)) * POSITION_STEP).label("pos"),
        )
        .where(T.c.project_id == project_id)
        .subquery()
    )
    await session.execute(
        update(T)
        .where(T.c.id == ranked.c.id, T.c.position != ranked.c.pos)
        .values(position=ranked.c.pos)
    )


async def placement(
    session: AsyncSession, task: Any, after_id: int | None, before_id: int | None
) -> float | None:
    """The task's new position between the given neighbours, or None if it already is there.

    The caller holds the project's row lock.
    """
    found = await _positions(session, task.project_id, [i for i in (after_id, before_id) if i])
    problems = [
        Problem("Must be another task of the same project.", ProblemCode.INVALID, ("input", name))
        for name, wanted in (("afterTaskId", after_id), ("beforeTaskId", before_id))
        if wanted is not None and (wanted == task.id or wanted not in found)
    ]
    if problems:
        raise Rejected(problems)
    lo = found.get(after_id) if after_id is not None else None
    hi = found.get(before_id) if before_id is not None else None
    if lo is not None and hi is not None and _order_key(lo) >= _order_key(hi):
        raise reject(
            "afterTaskId must come before beforeTaskId on the board.",
            ProblemCode.INVALID,
            "input",
            "beforeTaskId",
        )
    if hi is None:
        hi = await _neighbour(session, task, lo, after=True)
    elif lo is None:
        lo = await _neighbour(session, task, hi, after=False)
    here = _order_key(task)
    if (lo is None or _order_key(lo) < here) and (hi is None or here < _order_key(hi)):
        return None
    position = _between(lo, hi)
    if position is None:
        await rebalance(session, task.project_id)
        found = await _positions(session, task.project_id, [lo.id, hi.id])
        position = _between(found[lo.id], found[hi.id])
        assert position is not None, "positions are far apart after a rebalance"
    return position
