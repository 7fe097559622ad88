"""The tables the task modules read and write, by the short names their statements use."""

from __future__ import annotations

from db.models import ApiKey, Label, Membership, Project, Task, TaskLabel

T = Task.__table__
P = Project.__table__
L = Label.__table__
TL = TaskLabel.__table__
M = Membership.__table__
K = ApiKey.__table__
