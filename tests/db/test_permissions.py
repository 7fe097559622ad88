"""The commands' checks for each kind of principal, without a database."""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Any

import pytest

from db import permissions
from db.errors import Unauthenticated
from db.models import ApiScope, Role
from db.principals import ANONYMOUS, Principal
from db.problems import ProblemCode, Rejected

WORKSPACE = 7
CHECKS: list[Callable[..., Any]] = [
    permissions.require_readable,
    permissions.require_task_editor,
    permissions.require_admin,
    permissions.require_owner,
]


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_anonymous_is_asked_to_sign_in(check: Callable[..., Any]) -> None:
    with pytest.raises(Unauthenticated):
        check(ANONYMOUS, WORKSPACE, "Workspace", ("input", "id"))
    with pytest.raises(Unauthenticated):
        permissions.require_user(ANONYMOUS)


@pytest.mark.parametrize("check", CHECKS, ids=lambda c: c.__name__)
def test_known_principals_get_user_errors(check: Callable[..., Any]) -> None:
    outsider = Principal(user_id=1, roles=MappingProxyType({WORKSPACE + 1: Role.OWNER}))
    viewer = Principal(user_id=2, roles=MappingProxyType({WORKSPACE: Role.VIEWER}))
    key = Principal(api_key_id=3, api_key_workspace_id=WORKSPACE, scopes=frozenset({ApiScope.READ}))
    for principal, code in ((outsider, ProblemCode.NOT_FOUND), (viewer, None), (key, None)):
        if check is permissions.require_readable and code is None:
            check(principal, WORKSPACE, "Workspace", None)
            continue
        with pytest.raises(Rejected) as refused:
            check(principal, WORKSPACE, "Workspace", None)
        assert refused.value.problems[0].code is (code or ProblemCode.FORBIDDEN)
    with pytest.raises(Rejected) as refused:
        permissions.require_user(key)
    assert refused.value.problems[0].code is ProblemCode.FORBIDDEN
