"""`AgentApi`: one call's client of the API's internal endpoints (`/internal/calls/{call_id}/...`).

The API trusts the agent by a LiveKit JWT signed with our API key/secret granting `roomAdmin`
on the call's room (`core.livekit.room_admin_token` mints one and renews it before it expires).
The interim poster (agent/interim.py) and the final lines' spool (agent/lines.py) both speak
through this client: one HTTP session, one way to authenticate.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp


class AgentApi:
    """POSTs JSON to `<api_url>/internal/calls/<call_id>/<what>` with the call's roomAdmin token."""

    def __init__(self, api_url: str, token: Callable[[], str], *, call_id: str) -> None:
        self.call_id = call_id
        self.base = f"{api_url.rstrip('/')}/internal/calls/{call_id}"
        self._token = token
        self._http: aiohttp.ClientSession | None = None

    def url(self, what: str) -> str:
        return f"{self.base}/{what}"

    async def post(self, what: str, body: Any, *, timeout_s: float) -> tuple[int, Any]:
        """(status, JSON body or None). Connection failures raise `aiohttp.ClientError` or
        `TimeoutError`: the caller decides whether to retry."""
        if self._http is None:
            self._http = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {self._token()}"}
        timeout = aiohttp.ClientTimeout(total=timeout_s)
        async with self._http.post(
            self.url(what), json=body, headers=headers, timeout=timeout
        ) as resp:
            if resp.content_type == "application/json":
                return resp.status, await resp.json()
            await resp.read()
            return resp.status, None

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None
