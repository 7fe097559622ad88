"""Problems with input that the user can fix, returned as `userErrors` by the API."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class ProblemCode(enum.StrEnum):
    INVALID = "INVALID"
    TAKEN = "TAKEN"
    NOT_FOUND = "NOT_FOUND"
    FORBIDDEN = "FORBIDDEN"
    STALE = "STALE"
    LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    code: ProblemCode = ProblemCode.INVALID
    field: tuple[str, ...] | None = None


class Rejected(Exception):
    """A command refused its input; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        super().__init__("; ".join(p.message for p in problems))
        self.problems = list(problems)


def reject(message: str, code: ProblemCode = ProblemCode.INVALID, *field: str) -> Rejected:
    return Rejected([Problem(message, code, tuple(field) or None)])
