"""A callback call and the call that asked for it: the link (`call_links`, migration 0020) and
what the callback call opens with.

`start_callback_call` links each attempt's call to the callback's origin call before the call
starts. From the link:
- the call's detail and report say "callback of <call>" and "called back in <call>, ...";
- the agent asks `POST /internal/calls/{call_id}/opening` for a `CallOpening`: the callback's
  reason, the earlier call's summary (its stored analysis, else the local summariser of
  `core.analysis` over its lines) and its last lines, so Sarah opens with why she calls.

The opening is read from PostgreSQL when the agent asks, not carried in dispatch metadata:
LiveKit keeps that in clear (each agent worker it offers the job to gets it in the
AvailabilityRequest, and ListDispatch lists it), the room's own dispatch is made by CallWorkflow
(pinned: no new input there), a replacement agent finds it the same way, and an erased earlier
call (or callback) gives none.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core import analysis as an
from core.conversation import read_conversation

if TYPE_CHECKING:
    import asyncpg

EARLIER_LINES = 6  # the earlier call's last lines Sarah reads: enough to pick up the thread


@dataclass
class CallOpening:
    """Why a callback call happens (the body of `POST /internal/calls/{call_id}/opening`)."""

    origin_call_id: str
    callback_id: str
    reason: str = ""  # as the customer or Sarah put it ("the Silverado test drive")
    summary: str = ""  # of the earlier call
    earlier: list[str] = field(default_factory=list)  # its last lines, "Speaker: text"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> CallOpening:
        earlier = body.get("earlier") or []
        return cls(str(body.get("origin_call_id") or ""), str(body.get("callback_id") or ""),
                   str(body.get("reason") or ""), str(body.get("summary") or ""),
                   [str(x) for x in earlier if isinstance(x, str)])  # fmt: skip


async def link_callback_call(
    pool: asyncpg.Pool | asyncpg.Connection, call_id: str, origin_call_id: str, callback_id: str
) -> None:
    """Record that `call_id` calls back on behalf of `origin_call_id` (idempotent)."""
    await pool.execute(
        "INSERT INTO call_links (call_id, origin_call_id, callback_id) "
        "VALUES ($1, $2, $3) ON CONFLICT (call_id) DO NOTHING",
        call_id, origin_call_id, callback_id,
    )  # fmt: skip


async def links_of(pool: asyncpg.Pool, call_id: str) -> dict[str, Any]:
    """`{"callback_of": {call_id, callback_id} | None, "called_back_in": [{call_id,
    callback_id}, ...]}`: the callback that placed this call and the call it calls back for
    (`call_id` None when the callback was scheduled outside a call, or that call was erased),
    and the calls that called back for this one, oldest first (erased ones left out)."""
    async with pool.acquire() as conn:
        of = await conn.fetchrow(
            "SELECT NULLIF(origin_call_id, '') AS call_id, callback_id FROM call_links l "
            "WHERE l.call_id = $1",
            call_id,
        )
        back = await conn.fetch(
            "SELECT l.call_id, callback_id FROM call_links l "
            "WHERE origin_call_id = $1 AND origin_call_id <> '' "
            "AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.call_id = l.call_id) "
            "ORDER BY created_at, l.call_id",
            call_id,
        )
        callback_of = dict(of) if of else None
        if (
            callback_of
            and callback_of["call_id"]
            and await conn.fetchval(
                "SELECT 1 FROM erasures WHERE call_id = $1", callback_of["call_id"]
            )
        ):
            callback_of["call_id"] = None
    return {"callback_of": callback_of, "called_back_in": [dict(r) for r in back]}


async def opening_of(pool: asyncpg.Pool, call_id: str) -> CallOpening | None:
    """What the callback call `call_id` opens with; None when it is not a callback's call."""
    async with pool.acquire() as conn:
        link = await conn.fetchrow(
            "SELECT l.origin_call_id, l.callback_id, c.reason FROM call_links l "
            "LEFT JOIN callbacks c USING (callback_id) WHERE l.call_id = $1",
            call_id,
        )
        if link is None:
            return None
        summary = link["origin_call_id"] and await conn.fetchval(
            "SELECT document->>'summary' FROM call_analyses WHERE call_id = $1 AND status = 'done'",
            link["origin_call_id"],
        )
    opening = CallOpening(link["origin_call_id"], link["callback_id"],
                          " ".join((link["reason"] or "").split()).rstrip("."))  # fmt: skip
    if not link["origin_call_id"]:
        return opening
    conv = await read_conversation(pool, link["origin_call_id"])
    if conv is None:  # never stored, or erased: the reason alone
        return opening
    opening.summary = summary or (an.local_summary(conv, an.local_outcome(conv)) if conv.lines
                                  else "")  # fmt: skip
    opening.earlier = [f"{_speaker(line.speaker)}: {line.text}"
                       for line in conv.lines[-EARLIER_LINES:]]  # fmt: skip
    return opening


def _speaker(speaker: str) -> str:
    return {"assistant": "Sarah", "customer": "Customer"}.get(speaker, speaker.capitalize())
