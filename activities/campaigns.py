"""The campaign workflow's side effects: read the list a batch at a time, dial numbers, write
outcomes and the campaign's row.

`start_campaign_calls` dials each number the way a callback's attempt is dialled
(`CallbackActivities.start_callback_call`: the hour's outbound cap, an outbound phone call
workflow that reports its dial outcome by signal to `report_to`), after two checks made right
then: the do-not-call list (skipped; so is a number erased since its batch was read) and the capacity kept for inbound calls (held back while
`MAX_LIVE_AI_CALLS - RESERVED_INBOUND` calls are live). Numbers are never logged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from temporalio import activity

import core.callbacks as cb
import core.campaigns as cp
from activities import types as act
from core.log import get_logger
from core.models import CallStatus

if TYPE_CHECKING:
    import asyncpg

    from activities.callbacks import CallbackActivities
    from core.settings import Settings

log = get_logger("activities.campaigns")
_ACTIVE = [s.value for s in CallStatus if s.is_active]


class CampaignActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, dialer: CallbackActivities) -> None:
        self.pool = pool
        self.settings = settings
        self.dialer = dialer

    def activities(self) -> list[Callable[..., Any]]:
        acts: list[Callable[..., Any]] = [self.next_campaign_numbers, self.record_campaign]
        return acts + ([self.start_campaign_calls] if self.dialer.client is not None else [])

    @activity.defn(name=act.NEXT_CAMPAIGN_NUMBERS)
    async def next_campaign_numbers(self, req: cp.NextNumbers) -> list[cp.CampaignNumber]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT seq, phone FROM campaign_numbers WHERE campaign_id = $1 AND seq > $2"
                " ORDER BY seq LIMIT $3", req.campaign_id, req.after, req.limit,
            )  # fmt: skip
        return [cp.CampaignNumber(r["seq"], r["phone"]) for r in rows]

    @activity.defn(name=act.START_CAMPAIGN_CALLS)
    async def start_campaign_calls(self, req: cp.StartCampaignCalls) -> list[str]:
        await self._write(req.campaign_id, req.done)
        got: list[str] = []
        for n in req.numbers:
            if got and got[-1] == cp.HELD_BACK:
                got.append(cp.HELD_BACK)
                continue
            got.append(await self._start(req, n))
        return got

    async def _start(self, req: cp.StartCampaignCalls, n: cp.CampaignNumber) -> str:
        async with self.pool.acquire() as conn:
            # Listed now, or erased since the batch was read (its row is gone): never dialled.
            if await conn.fetchval(
                "SELECT EXISTS (SELECT 1 FROM do_not_call WHERE phone = $1) OR NOT EXISTS"
                " (SELECT 1 FROM campaign_numbers WHERE campaign_id = $2 AND seq = $3)",
                n.phone, req.campaign_id, n.seq,
            ):  # fmt: skip
                return cp.DO_NOT_CALL
            live = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE status = ANY($1::text[])", _ACTIVE
            )
        if live >= self.settings.MAX_LIVE_AI_CALLS - self.settings.RESERVED_INBOUND:
            log.info("campaign_held_back", campaign_id=req.campaign_id, live=live)
            return cp.HELD_BACK
        call = cb.StartCallbackCall(
            callback_id=req.campaign_id, call_id=cp.number_call_id(req.campaign_id, n.seq),
            phone=n.phone, reason=req.reason, origin_call_id="", customer_name=None,
            report_to=req.report_to, ringing_timeout_s=req.ringing_timeout_s,
        )  # fmt: skip
        if not await self.dialer.start_callback_call(call):
            return cp.HELD_BACK  # the hour's outbound calls are used up
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE campaign_numbers SET call_id = $3, updated_at = now()"
                " WHERE campaign_id = $1 AND seq = $2", req.campaign_id, n.seq, call.call_id,
            )  # fmt: skip
        return cp.STARTED

    async def _write(self, campaign_id: str, done: list[cp.NumberOutcome]) -> None:
        if not done:
            return
        async with self.pool.acquire() as conn:
            await conn.executemany(
                "UPDATE campaign_numbers SET outcome = $3, updated_at = now()"
                " WHERE campaign_id = $1 AND seq = $2",
                [(campaign_id, d.seq, d.outcome) for d in done],
            )  # fmt: skip

    @activity.defn(name=act.RECORD_CAMPAIGN)
    async def record_campaign(self, st: cp.CampaignState) -> None:
        await self._write(st.campaign_id, st.done)
        progress = {**asdict(st.progress), "remaining": st.progress.remaining}
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE campaigns SET status = $2, progress = $3, updated_at = now()"
                " WHERE campaign_id = $1", st.campaign_id, st.status, json.dumps(progress),
            )  # fmt: skip
