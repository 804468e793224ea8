"""One call's conversation as PostgreSQL holds it: its lines, the hand-offs asked for and the
test drives its tools booked. Read by the post-call analysis (activities/analysis.py) and by
the desk's briefing for the rep who takes the call (api/domain/desk.py)."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from core import analysis as an


async def read_conversation(pool: asyncpg.Pool, call_id: str) -> an.Conversation | None:
    """The call's conversation; None for a call never stored, or erased."""
    async with pool.acquire() as conn:
        call = await conn.fetchrow(
            "SELECT end_reason FROM calls c WHERE call_id = $1 "
            "AND NOT EXISTS (SELECT 1 FROM erasures e WHERE e.call_id = c.call_id)",
            call_id,
        )
        if call is None:
            return None
        events = await conn.fetch(
            "SELECT seq, kind, data::text AS data FROM call_events WHERE call_id = $1 "
            "AND kind IN ('final_transcript', 'handoff_requested') ORDER BY seq",
            call_id,
        )
        drives = await conn.fetch(
            "SELECT d.vin, d.scheduled_at, d.reference, d.status, i.year, i.make, i.model "
            "FROM test_drives d LEFT JOIN inventory i USING (vin) WHERE d.call_id = $1 "
            "ORDER BY d.created_at",
            call_id,
        )
    lines, handoffs = [], []
    for e in events:
        data: dict[str, Any] = json.loads(e["data"])
        if e["kind"] == "final_transcript":
            lines.append(an.Line(str(data.get("id") or e["seq"]), e["seq"],
                                 str(data.get("speaker")), str(data.get("text") or "")))  # fmt: skip
        else:
            handoffs.append({"reason": data.get("reason") or data.get("detail"), "seq": e["seq"]})
    return an.Conversation(
        call_id=call_id,
        lines=lines,
        end_reason=call["end_reason"] or "",
        handoffs=handoffs,
        test_drives=[{**dict(d), "scheduled_at": d["scheduled_at"].isoformat()} for d in drives],
    )
