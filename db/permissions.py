"""Authorisation checks of the commands, phrased as user errors.

Every command acts for someone: an anonymous caller is asked to sign in (UNAUTHENTICATED, an
error of the operation rather than a user error). A workspace a known principal cannot read
does not exist for it (NOT_FOUND); one it can read but may not change gives FORBIDDEN.
"""

from __future__ import annotations

from db.errors import Unauthenticated
from db.models import Role
from db.principals import Principal
from db.problems import Problem, ProblemCode, Rejected


def _refuse(code: ProblemCode, message: str, field: tuple[str, ...] | None) -> Rejected:
    return Rejected([Problem(message, code, field)])


def require_principal(principal: Principal) -> None:
    """A user or an API key, not an anonymous caller.

    Checked before a command looks anything up (graph/mutations/common.py `perform`), so that
    the answer to an anonymous caller never depends on what exists."""
    if principal.is_anonymous:
        raise Unauthenticated("Sign in to do this.")


def require_readable(
    principal: Principal, workspace_id: int, what: str, field: tuple[str, ...] | None
) -> None:
    require_principal(principal)
    if not principal.can_read(workspace_id):
        raise _refuse(ProblemCode.NOT_FOUND, f"{what} not found.", field)


def require_task_editor(
    principal: Principal, workspace_id: int, what: str, field: tuple[str, ...] | None
) -> None:
    """Tasks, task labels and comments: MEMBER and above, or a WRITE API key."""
    require_readable(principal, workspace_id, what, field)
    if not principal.can_edit_tasks(workspace_id):
        raise _refuse(
            ProblemCode.FORBIDDEN, "You may read this workspace but not change tasks in it.", field
        )


def require_admin(
    principal: Principal, workspace_id: int, what: str, field: tuple[str, ...] | None
) -> None:
    """Projects, labels, members below OWNER, API keys: ADMIN and above (users only)."""
    require_readable(principal, workspace_id, what, field)
    if not principal.can_manage(workspace_id):
        raise _refuse(ProblemCode.FORBIDDEN, "Only workspace admins may do this.", field)


def require_owner(
    principal: Principal, workspace_id: int, what: str, field: tuple[str, ...] | None
) -> None:
    require_readable(principal, workspace_id, what, field)
    if not principal.has_role(workspace_id, Role.OWNER):
        raise _refuse(ProblemCode.FORBIDDEN, "Only workspace owners may do this.", field)


def require_user(principal: Principal, field: tuple[str, ...] | None = None) -> int:
    """Commands only a signed-in user can run (API keys act for a workspace, not a person)."""
    require_principal(principal)
    if principal.user_id is None:
        raise _refuse(ProblemCode.FORBIDDEN, "Sign in as a user to do this.", field)
    return principal.user_id
