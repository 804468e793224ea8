"""Campaigns from the API's side: the checks a request must pass (422 naming the field), the
list written to `campaign_numbers` before `campaign-<id>` starts, and what the lists read.

A number already on the do-not-call list is not refused: it is stored and skipped when its turn
comes (the list is checked right before every dial anyway, and one listed number should not
send back a 10,000-number upload). The answer says how many were listed then.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

import core.callbacks as cb
import core.campaigns as cp
from api.domain.callbacks import check_phone, check_zone
from api.errors import Conflict, NotFound, Unavailable, ValidationFailed
from core.settings import Settings
from workflows.campaign import CampaignWorkflow


def numbers_from_csv(text: str) -> list[str]:
    """One number a row, the first column; a header row (no digits) is skipped."""
    rows = [r for r in csv.reader(io.StringIO(text)) if r and r[0].strip()]
    if rows and not any(c.isdigit() for c in rows[0][0]):
        rows = rows[1:]
    return [r[0].strip() for r in rows]


def check(body: Any, settings: Settings) -> tuple[cb.Window, datetime]:
    if len(body.numbers) > settings.CAMPAIGN_MAX_NUMBERS:
        raise ValidationFailed(f"numbers: more than {settings.CAMPAIGN_MAX_NUMBERS} "
                               "(CAMPAIGN_MAX_NUMBERS)", field="numbers")  # fmt: skip
    for i, phone in enumerate(body.numbers):
        try:
            check_phone(phone, settings)
        except ValidationFailed as exc:
            raise ValidationFailed(f"numbers[{i}]: {exc.message.removeprefix('phone: ')}",
                                   field="numbers") from None  # fmt: skip
    if len(set(body.numbers)) != len(body.numbers):
        raise ValidationFailed("numbers: a number appears twice", field="numbers")
    try:
        window = cb.Window.parse(body.window)
    except ValueError as exc:
        raise ValidationFailed(f"window: {exc}", field="window") from None
    check_zone(body.timezone)
    now = datetime.now(UTC)
    start = now
    if body.start_at:
        try:
            start = datetime.fromisoformat(body.start_at)
        except ValueError:
            raise ValidationFailed("start_at: must be ISO 8601 with an offset",
                                   field="start_at") from None  # fmt: skip
        if start.tzinfo is None:
            raise ValidationFailed("start_at: needs an offset (Z or +hh:mm)", field="start_at")
        if start > now + timedelta(days=settings.CALLBACK_MAX_DAYS):
            raise ValidationFailed(f"start_at: more than {settings.CALLBACK_MAX_DAYS} days "
                                   "ahead (CALLBACK_MAX_DAYS)", field="start_at")  # fmt: skip
    return window, max(start, now)


async def create(client: Client, pool: asyncpg.Pool, settings: Settings, body: Any,
                 by: str) -> dict[str, Any]:  # fmt: skip
    window, start = check(body, settings)
    campaign_id = f"cp{uuid.uuid4().hex[:20]}"
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO campaigns (campaign_id, name, timezone, hours, max_concurrent, start_at,"
            " reason, total, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            campaign_id, body.name, body.timezone, str(window), body.max_concurrent, start,
            body.reason or "", len(body.numbers), by,
        )  # fmt: skip
        await conn.copy_records_to_table(
            "campaign_numbers", columns=["campaign_id", "seq", "phone"],
            records=[(campaign_id, i + 1, n) for i, n in enumerate(body.numbers)],
        )  # fmt: skip
    req = cp.CampaignRequest(
        campaign_id, body.timezone, len(body.numbers), hours=str(window),
        max_concurrent=body.max_concurrent, start_at=start.timestamp(), reason=body.reason or "",
        ringing_timeout_s=settings.SIP_RINGING_TIMEOUT_S,
    )  # fmt: skip
    try:
        await client.start_workflow(CampaignWorkflow.run, req,
                                    id=cp.campaign_workflow_id(campaign_id),
                                    task_queue=settings.TEMPORAL_TASK_QUEUE)  # fmt: skip
    except BaseException as exc:
        async with pool.acquire() as conn:  # nothing half made: the list goes with it
            await conn.execute("DELETE FROM campaigns WHERE campaign_id = $1", campaign_id)
        if isinstance(exc, RPCError):
            raise Unavailable("temporal is not reachable", code="temporal_unavailable") from exc
        raise
    return await view(client, pool, campaign_id)


def _progress(p: cp.Progress | dict[str, Any], total: int) -> dict[str, Any]:
    d = dict(p) if isinstance(p, dict) else {**p.__dict__, "remaining": p.remaining}
    keys = ("dialled", "answered", "busy", "no_answer", "failed", "skipped")
    out = {k: int(d.get(k, 0)) for k in keys}
    out["total"] = total
    out["remaining"] = int(d.get("remaining", total - out["dialled"] - out["skipped"]))
    return out


async def _dnc_count(pool: asyncpg.Pool, campaign_id: str) -> int:
    async with pool.acquire() as conn:
        return int(await conn.fetchval(
            "SELECT count(*) FROM campaign_numbers n JOIN do_not_call d USING (phone)"
            " WHERE n.campaign_id = $1", campaign_id))  # fmt: skip


def _from_row(row: asyncpg.Record, dnc: int = 0) -> dict[str, Any]:
    progress = row["progress"]  # the API's pool decodes jsonb; a plain connection does not
    progress = json.loads(progress) if isinstance(progress, str) else progress
    return {
        "id": row["campaign_id"], "name": row["name"], "status": row["status"],
        "timezone": row["timezone"], "window": row["hours"],
        "max_concurrent": row["max_concurrent"], "start_at": row["start_at"].isoformat(),
        "reason": row["reason"], "on_do_not_call": dnc,
        "progress": _progress(progress, row["total"]),
    }  # fmt: skip


async def view(client: Client, pool: asyncpg.Pool, campaign_id: str) -> dict[str, Any]:
    """The row, with the status and counts the running workflow gives (the row's once ended)."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow("SELECT * FROM campaigns WHERE campaign_id = $1", campaign_id)
    if row is None:
        raise NotFound("id: no such campaign", code="not_found")
    out = _from_row(row, await _dnc_count(pool, campaign_id))
    if row["status"] in cp.FINAL:
        return out
    try:
        st = await client.get_workflow_handle(cp.campaign_workflow_id(campaign_id)).query(
            CampaignWorkflow.progress, rpc_timeout=timedelta(seconds=5))  # fmt: skip
    except RPCError:
        return out  # the row is what is known
    out["status"], out["progress"] = st.status, _progress(st.progress, row["total"])
    return out


async def rows(pool: asyncpg.Pool) -> list[dict[str, Any]]:
    async with pool.acquire() as conn:
        found = await conn.fetch("SELECT * FROM campaigns ORDER BY created_at DESC LIMIT 200")
    return [_from_row(r) for r in found]


async def signal(client: Client, pool: asyncpg.Pool, campaign_id: str,
                 what: str) -> dict[str, Any]:  # fmt: skip
    """pause | resume | cancel; 409 once the campaign has ended."""
    current = await view(client, pool, campaign_id)
    if current["status"] in cp.FINAL:
        raise Conflict(f"the campaign is {current['status']}", code="campaign_finished")
    handle = client.get_workflow_handle(cp.campaign_workflow_id(campaign_id))
    try:
        await handle.signal(what)
    except RPCError as exc:
        if exc.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the campaign has ended", code="campaign_finished") from exc
        raise Unavailable("temporal is not reachable", code="temporal_unavailable") from exc
    current["status"] = {cp.SIGNAL_PAUSE: "paused", cp.SIGNAL_RESUME: "running",
                         cp.SIGNAL_CANCEL: "cancelled"}[what]  # fmt: skip
    return current
