"""How Sarah's `schedule_callback` reaches the API: `POST /internal/calls/{call_id}/callback`
with the call's roomAdmin token (agent/api_client.py). The API checks the number, the time and
the do-not-call list as for `POST /api/callbacks`, and one call asking twice gets one callback.
A callback the customer accepts after the desk offered one (agent/desk.py) goes the same way,
marked `via: queue`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from agent.api_client import AgentApi


class CallbackRefused(Exception):
    """The API would not schedule it; the message says why, for the customer."""


class CallbackBooker(Protocol):
    async def schedule(self, phone: str, at: datetime, timezone: str, reason: str,
                       via: str = "") -> str: ...  # fmt: skip


class ApiCallbacks:
    def __init__(self, api: AgentApi) -> None:
        self.api = api

    async def schedule(self, phone: str, at: datetime, timezone: str, reason: str,
                       via: str = "") -> str:  # fmt: skip
        """The callback's id; `CallbackRefused` with the API's reason for a 4xx. `via="queue"`:
        the customer accepted the callback the desk offered (the API records `by=queue`)."""
        req = {"phone": phone, "at": at.isoformat(), "timezone": timezone, "reason": reason}
        status, body = await self.api.post("callback", {**req, "via": via} if via else req,
                                           timeout_s=10)  # fmt: skip
        if status in (200, 201):
            return str(body["id"])
        err = (body or {}).get("error", {}) if isinstance(body, dict) else {}
        raise CallbackRefused(err.get("message") or f"the API answered {status}")
