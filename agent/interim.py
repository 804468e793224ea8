"""`InterimPoster`: the agent's interim customer lines to the API's live path
(`POST /internal/calls/{call_id}/interim`, never stored), newest first, best-effort."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from agent.api_client import AgentApi
from core.log import get_logger

log = get_logger(__name__)

INTERIM_MAX_CHARS = 1000  # the API's limit (it NOTIFYs the line through PostgreSQL)


class InterimPoster:
    """Sends the newest interim customer line to the API's live path.

    Only the latest line matters (each interim supersedes the last), so while one POST is in
    flight newer lines replace each other and the next POST carries the newest. Failures are
    counted and logged, never raised: the live view is best-effort; finals go through the
    write-ahead spool (agent/lines.py).

    Contract (the API's `POST /internal/calls/{call_id}/interim`, through `AgentApi`'s roomAdmin
    token): JSON `{"speaker": "customer", "text": str (<= 1000 chars), "id": str}`; 2xx = success.
    """

    def __init__(self, api: AgentApi, *, timeout_s: float = 2.0) -> None:
        self.api = api
        self.url = api.url("interim")
        self.call_id = api.call_id
        self._timeout_s = timeout_s
        self._latest: dict[str, Any] | None = None
        self._task: asyncio.Task[None] | None = None
        self._seq = 0
        self.sent = 0
        self.failures = 0

    def post(self, text: str, *, speaker: str = "customer") -> None:
        self._seq += 1
        self._latest = {
            "speaker": speaker,
            "text": text[:INTERIM_MAX_CHARS],
            "id": f"interim-{self._seq}",
        }
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name=f"interim:{self.call_id}")

    async def _run(self) -> None:
        while self._latest is not None:
            body, self._latest = self._latest, None
            try:
                status, _ = await self.api.post("interim", body, timeout_s=self._timeout_s)
                if status >= 300:
                    self._failed(f"HTTP {status}")
                    continue
                self.sent += 1
            except (aiohttp.ClientError, TimeoutError) as exc:
                self._failed(type(exc).__name__)

    def _failed(self, why: str) -> None:
        self.failures += 1
        if self.failures == 1 or self.failures % 50 == 0:
            log.warning(
                "interim_post_failed", call_id=self.call_id, failures=self.failures, error=why
            )

    async def aclose(self) -> None:
        """Let the last interim go (2 s at most). The `AgentApi` is its owner's to close."""
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=2.0)
            if not self._task.done():
                self._task.cancel()
