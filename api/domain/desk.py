"""The desk's API side: the rep's join token and the briefing for a call on offer.

The rep joins the customer's own room (no MoveParticipant: that is LiveKit Cloud only), as a
visible participant with a published microphone and their own identity `rep-<id>-<hex>`, so
the recording, the transcript and the audit name them; the token is signed here from the
accepted offer, never stored in Temporal.

The briefing is an extract, labelled as one: who the customer is, why a person was asked for,
what the tools recorded (test drives booked), and the last lines, quoted, never paraphrased
(core/analysis.py's local method). It is read from PostgreSQL when the offer is shown, so
accepting costs no model call.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar

import asyncpg
from temporalio.service import RPCError, RPCStatusCode

import core.desk as d
from api.domain.livekit_room import room_token
from api.errors import Unavailable
from core import analysis as an
from core.conversation import read_conversation
from core.livekit import REP_IDENTITY_PREFIX
from core.settings import Settings
from workflows.desk_client import DeskClient

T = TypeVar("T")

REP_TOKEN_TTL = timedelta(hours=2)
BRIEFING_LINES = 6


def rep_token(settings: Settings, room_name: str, rep_id: str, name: str) -> tuple[str, str, str]:
    """(jwt, identity, expires_at ISO): the rep speaks and listens in `room_name`, visibly."""
    identity = f"{REP_IDENTITY_PREFIX}{rep_id}-{secrets.token_hex(3)}"
    token, expires_at = room_token(settings, room_name, identity, name, can_publish=True,
                                   ttl=REP_TOKEN_TTL)  # fmt: skip
    return token, identity, expires_at


async def briefing(pool: asyncpg.Pool, call_id: str, reason: str) -> dict[str, Any]:
    """What the rep reads before and while taking the call (see the module's docstring)."""
    conv = await read_conversation(pool, call_id)
    name = await pool.fetchval("SELECT customer_name FROM calls WHERE call_id = $1", call_id)
    if conv is None:
        conv = an.Conversation(call_id=call_id, lines=[])
    reasons = [str(h["reason"]) for h in conv.handoffs if h.get("reason")] or [reason]
    done = [f"Test drive booked: {an.vehicle(drive)} at {drive['scheduled_at']}"
            for drive in conv.test_drives]  # fmt: skip
    return {
        "method": "extract",
        "label": "Extract of the call so far (quotes and tool records, not a summary)",
        "customer": name or "unknown",
        "why": [r for r in reasons if r],
        "done": done,
        "summary": an.local_summary(conv, "handed_off"),
        "last_lines": [
            {"speaker": line.speaker, "text": line.text} for line in conv.lines[-BRIEFING_LINES:]
        ],  # fmt: skip
    }


class ApiDeskClient(DeskClient):
    """The desk client as the API uses it: Temporal out of reach is a 503, not a traceback."""

    async def snapshot(self) -> d.Snapshot:
        return await _reachable(super().snapshot())

    async def _update(self, name: str, arg: object, result_type: type[T]) -> T:
        return await _reachable(super()._update(name, arg, result_type))


async def _reachable(op: Awaitable[T]) -> T:
    try:
        return await op
    except RPCError as exc:
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED,
                          RPCStatusCode.RESOURCE_EXHAUSTED):  # fmt: skip
            raise Unavailable("temporal is not reachable", code="temporal_unavailable") from exc
        raise


class DeskFeed:
    """One snapshot query per `interval_s` per API instance, only while a desk page is open,
    fanned out to every open desk socket of this instance (each sees the newest, never a
    backlog). The desk is one workflow: querying it per socket would multiply its load by the
    number of reps."""

    def __init__(self, fetch: Callable[[], Awaitable[d.Snapshot]], interval_s: float) -> None:
        self._fetch = fetch
        self.interval_s = interval_s
        self._subs: set[asyncio.Queue[d.Snapshot | Exception]] = set()
        self._task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[d.Snapshot | Exception]:
        q: asyncio.Queue[d.Snapshot | Exception] = asyncio.Queue(maxsize=1)
        self._subs.add(q)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return q

    def unsubscribe(self, q: asyncio.Queue[d.Snapshot | Exception]) -> None:
        self._subs.discard(q)

    async def _run(self) -> None:
        while self._subs:
            try:
                item: d.Snapshot | Exception = await self._fetch()
            except Exception as exc:  # passed to the sockets, which close with it
                item = exc
            for q in list(self._subs):
                if q.full():
                    q.get_nowait()  # the newest replaces what the socket has not read
                q.put_nowait(item)
            await asyncio.sleep(self.interval_s)
