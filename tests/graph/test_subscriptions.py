"""`Subscription.taskEvents` over both WebSocket protocols and multipart HTTP, on a real
server (uvicorn in the test's loop) and a committed database: events after commit only, read
with the subscriber's permissions, access changes taking effect at once, credentials."""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from websockets.exceptions import ConnectionClosed

from db import activities
from db.engine import make_engine
from db.models import ActivityKind, Role
from db.principals import Principal
from graph.ids import to_global_id
from graph.settings import Settings
from tests.conftest import StatementCounter
from tests.graph.live_app import (
    EVENTS,
    LEGACY_WS,
    TRANSPORT_WS,
    LiveApp,
    Seeded,
    bearer,
    served,
    socket_to,
)

CREATE = """
mutation Create($project: ID!, $title: String!) {
  createTask(input: {projectId: $project, title: $title}) {
    task { id key } userErrors { message }
  }
}
"""

UPDATE = """
mutation Update($id: ID!, $title: String) {
  updateTask(input: {id: $id, title: $title}) { task { id } userErrors { message } }
}
"""


async def _create(live: LiveApp, seeded: Seeded, title: str, who: str = "member") -> dict[str, Any]:
    body = await live.post(
        CREATE, {"project": seeded.project, "title": title}, token=seeded.tokens[who]
    )
    assert body["data"]["createTask"]["userErrors"] == [], body
    return body["data"]["createTask"]["task"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("protocol", [TRANSPORT_WS, LEGACY_WS])
async def test_a_committed_change_reaches_a_subscriber_over_either_protocol(
    live: LiveApp, seeded: Seeded, protocol: str
) -> None:
    async with socket_to(live.ws, protocol) as ws:
        assert (await ws.init(bearer(seeded.tokens["viewer"])))["type"] == "connection_ack"
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)
        created = await _create(live, seeded, "Ship the live board")
        message = await ws.next_message()
        assert message["type"] in ("next", "data") and message["id"] == "1", message
        event = message["payload"]["data"]["taskEvents"]
        member = seeded.world.users["member"]
        assert event["kind"] == "CREATED"
        assert event["taskId"] == created["id"]
        assert event["actor"] == {"name": member.name}
        assert event["task"] == {
            "key": created["key"],
            "title": "Ship the live board",
            "status": "TODO",
            # The viewer's own view: a VIEWER may not edit.
            "viewerCanEdit": False,
            "assignee": None,
            "labels": [],
        }
        assert event["changedFields"] == ["title", "status", "priority"]
        occurred = datetime.fromisoformat(event["occurredAt"])
        assert abs((datetime.now(UTC) - occurred).total_seconds()) < 30

        await live.post(
            UPDATE, {"id": created["id"], "title": "Renamed"}, token=seeded.tokens["owner"]
        )
        event = (await ws.next_message())["payload"]["data"]["taskEvents"]
        assert (event["kind"], event["changedFields"], event["task"]["title"]) == (
            "UPDATED",
            ["title"],
            "Renamed",
        )
        await ws.stop("1")
        if protocol == TRANSPORT_WS:
            # Completed by the client: the server says nothing more of it.
            with pytest.raises(TimeoutError):
                await ws.next_message(within=0.3)
    await live.until_subscribed(0)


async def test_a_rolled_back_change_sends_no_event(
    live: LiveApp, seeded: Seeded, live_engine: AsyncEngine
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["member"]))
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)
        # A title too long: the mutation writes nothing and its transaction rolls back.
        body = await live.post(
            CREATE, {"project": seeded.project, "title": "x" * 500}, token=seeded.tokens["member"]
        )
        assert body["data"]["createTask"]["userErrors"], body
        async with live_engine.connect() as connection:
            # The activity row and its notice in one transaction, rolled back.
            session = AsyncSession(bind=connection)
            task = seeded.world.tasks[0]
            await activities.record_for(
                session,
                Principal(user_id=seeded.world.users["owner"].id),
                task,
                "ENG-1",
                ActivityKind.TASK_UPDATED,
            )
            await connection.rollback()
        with pytest.raises(TimeoutError):
            await ws.next_message(within=0.5)
        # A committed one after it arrives: the hub was listening all along.
        await _create(live, seeded, "After")
        assert (await ws.next_message())["payload"]["data"]["taskEvents"]["kind"] == "CREATED"


async def test_credentials_in_the_payload_or_header_and_bad_ones_close_4403(
    live: LiveApp, seeded: Seeded
) -> None:
    # The upgrade request's header.
    async with socket_to(live.ws, headers=bearer(seeded.tokens["viewer"])) as ws:
        assert (await ws.init())["type"] == "connection_ack"
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)
    await live.until_subscribed(0)
    # GraphiQL sends its headers as the payload.
    async with socket_to(live.ws) as ws:
        init = await ws.init({"headers": {"Authorization": f"Bearer {seeded.tokens['viewer']}"}})
        assert init["type"] == "connection_ack"
    for payload in ({"authorization": "Bearer not-a-token"}, {"authorization": 7}):
        async with socket_to(live.ws) as ws:
            await ws.send({"type": "connection_init", "payload": payload})
            with pytest.raises(ConnectionClosed):
                await ws.receive()
            assert ws.connection.close_code == 4403
    # The legacy protocol's error message, then the close.
    async with socket_to(live.ws, LEGACY_WS) as ws:
        message = await ws.init({"authorization": "Bearer not-a-token"})
        assert message["type"] == "connection_error"
        assert message["payload"]["extensions"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize(
    ("who", "workspace", "code"),
    [
        ("outsider", "workspace", "NOT_FOUND"),
        ("viewer", "other_workspace", "NOT_FOUND"),
        (None, "workspace", "UNAUTHENTICATED"),
    ],
)
async def test_a_principal_that_cannot_read_the_workspace_gets_an_error_not_a_stream(
    live: LiveApp, seeded: Seeded, who: str | None, workspace: str, code: str
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens[who]) if who else {})
        await ws.subscribe("1", EVENTS, {"workspace": getattr(seeded, workspace)})
        message = await ws.next_message()
        assert message["type"] == "error", message
        assert [e["extensions"]["code"] for e in message["payload"]] == [code]
    assert live.hub is None or live.hub.subscribers == 0


async def test_bad_arguments_are_bad_user_input(live: LiveApp, seeded: Seeded) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["viewer"]))
        for n, variables in enumerate(
            [{"workspace": seeded.project}, {"workspace": "nonsense"}, {"workspace": None}]
        ):
            await ws.subscribe(str(n), EVENTS, variables)
            message = await ws.next_message()
            assert message["type"] == "error", message
            assert message["payload"][0]["extensions"]["code"] in (
                "BAD_USER_INPUT",
                "GRAPHQL_VALIDATION_FAILED",
            ), message
        # A project of another workspace.
        other = to_global_id("Project", seeded.world.other_project.id)
        await ws.subscribe("p", EVENTS, {"workspace": seeded.workspace, "project": other})
        message = await ws.next_message()
        assert message["payload"][0]["extensions"]["code"] == "NOT_FOUND", message


async def test_api_keys_with_read_subscribe_to_their_own_workspace(
    live: LiveApp, seeded: Seeded
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.read_key))
        await ws.subscribe("own", EVENTS, {"workspace": seeded.workspace})
        await ws.subscribe("other", EVENTS, {"workspace": seeded.other_workspace})
        refused = await ws.next_message()
        assert (refused["id"], refused["type"]) == ("other", "error")
        await live.until_subscribed(1)
        await _create(live, seeded, "Seen by the key")
        event = (await ws.next_message())["payload"]["data"]["taskEvents"]
        # An API key is no member: no e-mails, and READ may not edit.
        assert event["task"]["viewerCanEdit"] is False
        assert event["actor"] == {"name": seeded.world.users["member"].name}


async def test_a_removed_member_and_a_revoked_key_stop_at_once(
    live: LiveApp, seeded: Seeded
) -> None:
    world = seeded.world
    async with (
        socket_to(live.ws) as member_ws,
        socket_to(live.ws) as key_ws,
        socket_to(live.ws) as viewer_ws,
    ):
        for ws, credentials in (
            (member_ws, seeded.tokens["member"]),
            (key_ws, seeded.read_key),
            (viewer_ws, seeded.tokens["viewer"]),
        ):
            await ws.init(bearer(credentials))
            await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(3)
        removed = await live.post(
            """mutation($w: ID!, $u: ID!) { removeMember(input: {workspaceId: $w, userId: $u}) {
                 userErrors { message } } }""",
            {"w": seeded.workspace, "u": to_global_id("User", world.users["member"].id)},
            token=seeded.tokens["owner"],
        )
        assert removed["data"]["removeMember"]["userErrors"] == [], removed
        revoked = await live.post(
            "mutation($id: ID!) { revokeApiKey(input: {id: $id}) { userErrors { message } } }",
            {"id": seeded.read_key_id},
            token=seeded.tokens["owner"],
        )
        assert revoked["data"]["revokeApiKey"]["userErrors"] == [], revoked
        await _create(live, seeded, "After the removal", who="owner")
        # The member hears nothing after its removal, not even its own unassignments; the key
        # hears those (committed before it was revoked), then nothing more.
        for ws, before in ((member_ws, set()), (key_ws, {"UPDATED"})):
            heard = set()
            while (ended := await ws.next_message())["payload"].get("data"):
                heard.add(ended["payload"]["data"]["taskEvents"]["kind"])
            assert heard <= before and heard == before, heard
            assert ended["type"] == "next", ended
            assert ended["payload"]["errors"][0]["extensions"]["code"] == "NOT_FOUND", ended
            assert (await ws.next_message())["type"] == "complete"
        # The viewer's role is unchanged: it gets the unassignments and the new task.
        kinds = []
        while True:
            event = (await viewer_ws.next_message())["payload"]["data"]["taskEvents"]
            kinds.append(event["kind"])
            if event["kind"] == "CREATED":
                break
        assert set(kinds) == {"UPDATED", "CREATED"}
        assert live.hub is not None and live.hub.subscribers == 1


async def test_a_role_change_moves_the_subscriber_to_its_new_view(
    live: LiveApp, seeded: Seeded
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["viewer"]))
        await ws.subscribe("1", EVENTS, {"workspace": seeded.workspace})
        await live.until_subscribed(1)
        changed = await live.post(
            """mutation($w: ID!, $u: ID!) {
                 updateMemberRole(input: {workspaceId: $w, userId: $u, role: MEMBER}) {
                   userErrors { message } } }""",
            {"w": seeded.workspace, "u": to_global_id("User", seeded.world.users["viewer"].id)},
            token=seeded.tokens["owner"],
        )
        assert changed["data"]["updateMemberRole"]["userErrors"] == [], changed
        await _create(live, seeded, "Editable now", who="owner")
        event = (await ws.next_message())["payload"]["data"]["taskEvents"]
        assert event["task"]["viewerCanEdit"] is True


async def test_multipart_subscription_over_http(live: LiveApp, seeded: Seeded) -> None:
    headers = {
        **bearer(seeded.tokens["viewer"]),
        "accept": 'multipart/mixed;subscriptionSpec="1.0", application/json',
        "content-type": "application/json",
    }
    body = {"query": EVENTS, "variables": {"workspace": seeded.workspace}}
    async with (
        httpx.AsyncClient(timeout=10) as client,
        client.stream("POST", live.http, json=body, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("multipart/mixed")
        await live.until_subscribed(1)
        await _create(live, seeded, "Over HTTP")
        received = ""
        async for chunk in response.aiter_text():
            received += chunk
            if '"taskEvents"' in received:
                break
    assert '"kind":"CREATED"' in received.replace(" ", ""), received
    await live.until_subscribed(0)
    # Without a streaming Accept, a subscription over HTTP is refused with the reason.
    async with httpx.AsyncClient(timeout=10) as client:
        refused = await client.post(live.http, json=body, headers=bearer(seeded.tokens["viewer"]))
    assert refused.status_code == 406
    assert refused.json()["errors"][0]["extensions"]["code"] == "BAD_REQUEST"


async def test_queries_and_mutations_over_a_websocket_run_as_over_http(
    live: LiveApp, seeded: Seeded, live_engine: AsyncEngine
) -> None:
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["member"]))
        await ws.subscribe("q", "{ me { name } }")
        message = await ws.next_message()
        assert message["payload"]["data"] == {"me": {"name": "member"}}
        assert (await ws.next_message())["type"] == "complete"
        await ws.subscribe("bad", "{ nope }")
        message = await ws.next_message()
        assert message["type"] == "error"
        assert message["payload"][0]["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
        # Each operation's session is closed at its end: none is held by the connection.
        async with live_engine.connect() as connection:
            held = await connection.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'taskgraph' AND state LIKE 'idle in transaction%'"
                )
            )
        assert held == 0
    _ = Role


GROUPS_SELECTION = """
subscription Board($workspace: ID!) {
  taskEvents(workspaceId: $workspace) {
    kind task { title viewerCanEdit assignee { email } } actor { email }
  }
}
"""


async def test_an_event_costs_one_statement_per_group_not_per_subscriber(
    settings: Settings, live_engine: AsyncEngine, seeded: Seeded, committed_db: str
) -> None:
    """500 subscriptions in 3 groups (members, viewers, a read-only API key, all with the same
    document): one event, 3 statements; an event of a workspace nobody listens to: none."""
    roomy = settings.model_copy(update={"max_subscriptions_per_connection": 100})
    world = seeded.world
    writer = make_engine(committed_db)
    async with served(roomy, live_engine) as live, AsyncExitStack() as stack:
        sockets = []
        for who, count in [("member", 200), ("viewer", 200), ("key", 100)]:
            credentials = seeded.read_key if who == "key" else seeded.tokens[who]
            for first in range(0, count, 100):
                ws = await stack.enter_async_context(socket_to(live.ws))
                sockets.append(ws)
                await ws.init(bearer(credentials))
                for n in range(first, first + 100):
                    await ws.subscribe(
                        f"{who}{n}", GROUPS_SELECTION, {"workspace": seeded.workspace}
                    )
        await live.until_subscribed(500)
        assert live.hub is not None and len(live.hub.groups) == 3
        with StatementCounter(live_engine) as counted:
            async with AsyncSession(writer) as session:
                await activities.record_for(
                    session,
                    Principal(user_id=world.users["owner"].id),
                    world.tasks[0],
                    "ENG-1",
                    ActivityKind.TASK_UPDATED,
                    [activities.change("title", "a", "b")],
                )
                await activities.record_for(
                    session,
                    Principal(user_id=world.users["outsider"].id),
                    world.other_task,
                    "OPS-1",
                    ActivityKind.TASK_UPDATED,
                    [activities.change("title", "a", "b")],
                )
                await session.commit()
            received: dict[str, int] = {}
            for ws in sockets:
                for _ in range(100):
                    message = await ws.next_message()
                    event = message["payload"]["data"]["taskEvents"]
                    key = f"{event['task']['viewerCanEdit']}/{event['actor']['email']}"
                    received[key] = received.get(key, 0) + 1
        # One statement per group, for the one event that any group listens to.
        assert counted.count == 3, counted.statements
        owner_email = world.users["owner"].email
        assert received == {
            f"True/{owner_email}": 200,  # members: may edit, see members' e-mails
            f"False/{owner_email}": 200,  # viewers: may not edit
            "False/None": 100,  # the API key: no member, no e-mails
        }
    await writer.dispose()


async def test_variables_shape_the_event_and_make_their_own_group(
    live: LiveApp, seeded: Seeded
) -> None:
    document = """
    subscription Maybe($workspace: ID!, $withTask: Boolean!) {
      taskEvents(workspaceId: $workspace) {
        kind
        ... on TaskEvent @include(if: $withTask) { task { title } }
        __typename
      }
    }"""
    async with socket_to(live.ws) as ws:
        await ws.init(bearer(seeded.tokens["viewer"]))
        for flag in (True, False):
            variables = {"workspace": seeded.workspace, "withTask": flag}
            await ws.subscribe(str(flag), document, variables)
        await live.until_subscribed(2)
        assert live.hub is not None and len(live.hub.groups) == 2
        await _create(live, seeded, "Shaped")
        received = {}
        for _ in range(2):
            message = await ws.next_message()
            received[message["id"]] = message["payload"]["data"]["taskEvents"]
    assert received == {
        "True": {"kind": "CREATED", "task": {"title": "Shaped"}, "__typename": "TaskEvent"},
        "False": {"kind": "CREATED", "__typename": "TaskEvent"},
    }
