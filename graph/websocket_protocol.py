"""The WebSocket protocol of `taskgraph serve`: uvicorn's, but saying 1001 when it stops."""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# RFC 6455, 7.4.1: "an endpoint is going away, such as a server going down". Uvicorn says
# 1012 (service restart), which is not true of a server that is being stopped; clients of
# graphql-ws (and Apollo's) reconnect after either.
GOING_AWAY = 1001


class GoingAwayWebSocketProtocol(WebSocketsSansIOProtocol):
    """Uvicorn's WebSocket protocol (the one it picks with the websockets library), closing
    open WebSockets with 1001 when the server shuts down."""

    def shutdown(self) -> None:
        if not self.handshake_complete or self.close_sent:
            super().shutdown()
            return
        # As uvicorn's own shutdown, with the other code: the application hears the
        # disconnect, the client gets the close frame, then the connection ends.
        self.stop_keepalive()
        self.queue.put_nowait({"type": "websocket.disconnect", "code": GOING_AWAY})
        self.conn.send_close(GOING_AWAY)
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.transport.close()
