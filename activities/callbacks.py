"""The callback workflow's side effects: place an attempt's call, check the do-not-call list,
write the `callbacks` row.

`start_callback_call` places the call as `POST /api/calls/outbound` does (an outbound phone
call workflow that dials), with the attempt's call id fixed by the callback, so a retried start
finds the call it started (never a second ring), and links that call to its callback and to
the call the customer asked on (`call_links`: its agent opens with why it calls, the dashboard
links the two calls). The call reports its dial outcome back by signal
(`DialRequest.report_to`). The number is never logged: log lines carry ids and the masked
number.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from temporalio import activity
from temporalio.exceptions import WorkflowAlreadyStartedError

import core.callbacks as cb
from activities import types as act
from core.call_links import link_callback_call
from core.log import get_logger
from core.telephony import claim_outbound, mask_number

if TYPE_CHECKING:
    import asyncpg
    from temporalio.client import Client

    from core.settings import Settings

log = get_logger("activities.callbacks")


class CallbackActivities:
    def __init__(self, pool: asyncpg.Pool, settings: Settings, client: Client | None) -> None:
        self.pool = pool
        self.settings = settings
        self.client = client

    def activities(self) -> list[Callable[..., Any]]:
        acts: list[Callable[..., Any]] = [self.on_do_not_call, self.record_callback]
        return acts + ([self.start_callback_call] if self.client is not None else [])

    @activity.defn(name=act.START_CALLBACK_CALL)
    async def start_callback_call(self, req: cb.StartCallbackCall) -> bool:
        """True once the call is started (or was); False when this hour's outbound calls are
        used up (SIP_OUTBOUND_MAX_PER_HOUR counts callbacks too): nothing dialled."""
        from core.models import CallConfig, DialRequest
        from workflows import client as wclient

        assert self.client is not None
        per_hour = self.settings.SIP_OUTBOUND_MAX_PER_HOUR
        if not await claim_outbound(self.pool, req.call_id, f"callback:{req.callback_id}",
                                    per_hour):  # fmt: skip
            log.info("callback_capped", callback_id=req.callback_id, call_id=req.call_id)
            return False
        # Before the call starts: its agent reads why it calls through this link.
        await link_callback_call(self.pool, req.call_id, req.origin_call_id, req.callback_id)
        dial = DialRequest(req.phone, reason=req.reason, ringing_timeout_s=req.ringing_timeout_s,
                           report_to=req.report_to)  # fmt: skip
        try:
            await wclient.start_outbound_phone_call(
                self.client, req.call_id, req.customer_name,
                CallConfig.from_settings(self.settings), dial,
                task_queue=activity.info().task_queue,
                pinned_to=self.settings.new_calls_pinned_to,
            )  # fmt: skip
        except WorkflowAlreadyStartedError:
            pass  # this attempt's call was started by an earlier try of this activity
        log.info("callback_call_started", callback_id=req.callback_id, call_id=req.call_id,
                 to=mask_number(req.phone))  # fmt: skip
        return True

    @activity.defn(name=act.ON_DO_NOT_CALL)
    async def on_do_not_call(self, phone: str) -> bool:
        async with self.pool.acquire() as conn:
            return bool(await conn.fetchval("SELECT 1 FROM do_not_call WHERE phone = $1", phone))

    @activity.defn(name=act.RECORD_CALLBACK)
    async def record_callback(self, st: cb.CallbackState) -> None:
        """Upsert the row (idempotent: the state replaces what was there)."""
        attempts = json.dumps([dataclasses.asdict(a) for a in st.attempts])
        async with self.pool.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO callbacks (callback_id, phone, timezone, reason, origin_call_id,
                    status, end_reason, at, due_at, attempts)
                VALUES ($1, $2, $3, $4, $5, $6, $7, to_timestamp($8), to_timestamp($9), $10)
                ON CONFLICT (callback_id) DO UPDATE SET timezone = EXCLUDED.timezone,
                    status = EXCLUDED.status, end_reason = EXCLUDED.end_reason,
                    at = EXCLUDED.at, due_at = EXCLUDED.due_at, attempts = EXCLUDED.attempts,
                    updated_at = now()
                """,
                st.callback_id, st.phone, st.timezone, st.reason, st.call_id, st.status,
                st.end_reason, st.at, st.due_at, attempts,
            )  # fmt: skip
