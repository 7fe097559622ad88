"""The app served by uvicorn inside the test's own event loop, on a free loopback port and a
committed database: for tests of WebSockets, whose hub and statements they inspect."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine
from websockets.asyncio.client import ClientConnection, connect

from graph.app import create_app
from graph.cli import websocket_options
from graph.pubsub import Hub
from graph.settings import Settings
from tests import factories

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"

# A subscription with a bit of everything an event carries.
EVENTS = """
subscription Events($workspace: ID!, $project: ID) {
  taskEvents(workspaceId: $workspace, projectId: $project) {
    kind taskId changedFields occurredAt
    actor { name }
    task { key title status viewerCanEdit assignee { name email } labels { name } }
  }
}
"""


@dataclass
class Seeded:
    """tests/factories.py's world, committed, with its ids and credentials as the API has them."""

    world: factories.World
    workspace: str
    project: str
    other_workspace: str
    tokens: dict[str, str]
    read_key: str
    read_key_id: str


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveApp:
    app: FastAPI
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql"

    @property
    def hub(self) -> Hub | None:
        return self.app.state.graphql_view.live.started  # type: ignore[no-any-return]

    async def until_subscribed(self, count: int) -> None:
        """Wait until the hub holds `count` subscriptions (a subscribe message is answered by
        nothing until an event comes)."""
        for _ in range(500):
            hub = self.hub
            if (hub.subscribers if hub is not None else 0) == count:
                return
            await asyncio.sleep(0.01)
        hub = self.hub
        raise AssertionError(f"{hub.subscribers if hub else 0} subscriptions, not {count}")

    async def post(
        self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(
                self.http, json={"query": query, "variables": variables or {}}, headers=headers
            )
        return response.json()  # type: ignore[no-any-return]


@asynccontextmanager
async def served(settings: Settings, engine: AsyncEngine, **config: Any) -> AsyncIterator[LiveApp]:
    """The app as `taskgraph serve` serves it (its WebSocket options from the settings)."""
    app = create_app(settings, engine=engine)
    port = free_port()
    options = {**websocket_options(settings), **config}
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on", **options)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield LiveApp(app, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


class Socket:
    """A graphql-transport-ws (or legacy graphql-ws) client connection, message by message."""

    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self.connection = connection
        self.protocol = protocol

    async def send(self, message: dict[str, Any]) -> None:
        await self.connection.send(json.dumps(message))

    async def receive(self, within: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.connection.recv(), within))  # type: ignore[no-any-return]

    async def next_message(self, within: float = 5) -> dict[str, Any]:
        """The next message that is not a keep-alive (legacy `ka`, `ping`/`pong`)."""
        while True:
            message = await self.receive(within)
            if message.get("type") not in ("ka", "ping", "pong"):
                return message

    async def init(self, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        await self.send({"type": "connection_init", "payload": payload or {}})
        return await self.next_message()

    async def subscribe(self, id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        await self.send(
            {"id": id, "type": kind, "payload": {"query": query, "variables": variables or {}}}
        )

    async def stop(self, id: str) -> None:
        kind = "complete" if self.protocol == TRANSPORT_WS else "stop"
        await self.send({"id": id, "type": kind})


@asynccontextmanager
async def socket_to(
    url: str, protocol: str = TRANSPORT_WS, headers: dict[str, str] | None = None
) -> AsyncIterator[Socket]:
    async with connect(
        url,
        subprotocols=[protocol],
        additional_headers=headers,
        open_timeout=5,  # type: ignore[list-item]
    ) as connection:
        yield Socket(connection, protocol)
