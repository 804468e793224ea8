"""WebSocket protocol that offers the `bearer` subprotocol only to clients that ask for one.

Browsers cannot set headers on a WebSocket, so they may send the token as the subprotocol pair
`bearer, <token>` and the server must answer `bearer`. Sanic negotiates the route's fixed
subprotocol list, and the `websockets` library then refuses clients that offer none; this
protocol negotiates only when the client offered something. Pass it as `protocol=` to
`app.run` / `app.create_server` (`python -m api` does).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sanic.server.protocols.websocket_protocol import WebSocketProtocol


class OptionalSubprotocolWebSocketProtocol(WebSocketProtocol):
    async def websocket_handshake(
        self, request: Any, subprotocols: Sequence[str] | None = None
    ) -> Any:
        if not request.headers.get("sec-websocket-protocol"):
            subprotocols = None
        return await super().websocket_handshake(request, subprotocols)
