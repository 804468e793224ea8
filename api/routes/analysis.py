"""After the call: its analysis and the webhooks that delivered it (workflows/analysis.py).

- `GET /api/calls/{id}/analysis` (supervisor, ops, admin): the analysis from PostgreSQL (summary,
  outcome, sentiment, fields, scorecard, the method that made it) and its webhook deliveries.
- `POST /api/calls/{id}/analysis/rerun` (ops, admin): a new run of `analysis-<id>`.
- `POST /api/webhooks/{message id}/replay` (ops, admin): deliver a stored message again, under
  the same `webhook-id`.
"""

from __future__ import annotations

import json as jsonlib
import re
from typing import Any

from pydantic import BaseModel
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import READ_CALLS, RECORDINGS_RETRY, require
from api.docs import endpoint
from api.domain import store
from api.errors import Conflict, NotFound, ValidationFailed
from api.schemas import Accepted, Empty
from api.validation import call_id_path, parse_body
from core.log import get_logger
from workflows.analysis import AnalysisRunning, replay_webhook, rerun_analysis

log = get_logger("api.analysis")
bp = Blueprint("analysis")
MSG_ID = re.compile(r"^msg_[a-z0-9]{12,40}_call_(ended|analyzed)_[0-9]{1,6}$")
LIVE = ("waiting_for_agent", "in_progress", "ending")


class Delivery(BaseModel):
    id: str
    event_type: str
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: str | None
    delivered_at: str | None


class CallAnalysis(BaseModel):
    call_id: str
    status: str  # done | failed
    method: str  # llm | local
    outcome: str | None
    sentiment: str | None
    score: float | None
    runs: int
    analyzed_at: str | None
    error: str | None
    analysis: dict[str, Any] | None
    deliveries: list[Delivery]


async def _deliveries(pool: Any, call_id: str) -> list[dict[str, Any]]:
    rows = await pool.fetch(
        "SELECT id, event_type, attempts, last_status, last_error, last_attempt_at, delivered_at "
        "FROM webhook_deliveries WHERE call_id = $1 ORDER BY created_at, id",
        call_id,
    )
    stamps = ("last_attempt_at", "delivered_at")
    return [{k: store.iso_or_none(v) if k in stamps else v for k, v in dict(r).items()}
            for r in rows]  # fmt: skip


@bp.get("/api/calls/<call_id:str>/analysis")
@endpoint(
    "The call's analysis: summary, outcome, sentiment, fields, QA scorecard, deliveries",
    tag="analysis",
    response=CallAnalysis,
    errors=(404, 422),
    secured=True,
)
@require(READ_CALLS)
@call_id_path
async def get_analysis(request: Request, call_id: str) -> HTTPResponse:
    pool = request.app.ctx.res.db
    row = await pool.fetchrow(
        "SELECT call_id, status, method, outcome, sentiment, score, runs, analyzed_at, error, "
        "document::text AS document FROM call_analyses WHERE call_id = $1",
        call_id,
    )
    if row is None:
        raise NotFound(f"call {call_id} has no analysis (yet)", code="analysis_not_found")
    out = dict(row)
    out["analysis"] = jsonlib.loads(out.pop("document")) if row["document"] else None
    out["analyzed_at"] = store.iso_or_none(row["analyzed_at"])
    out["deliveries"] = await _deliveries(pool, call_id)
    return json(out)


@bp.post("/api/calls/<call_id:str>/analysis/rerun")
@endpoint(
    "Analyse an ended call again (a new run of analysis-<id>)",
    tag="analysis",
    ok=202,
    response=Accepted,
    errors=(404, 409, 422),
    secured=True,
)
@require(RECORDINGS_RETRY)
@call_id_path
async def rerun(request: Request, call_id: str) -> HTTPResponse:
    parse_body(request, Empty, allow_empty=True)
    pool, settings = request.app.ctx.res.db, request.app.ctx.settings
    status = await pool.fetchval("SELECT status FROM calls WHERE call_id = $1", call_id)
    if status is None:
        raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
    if status in LIVE:
        raise Conflict(f"call {call_id} has not ended", code="call_live")
    runs = await pool.fetchval("SELECT runs FROM call_analyses WHERE call_id = $1", call_id)
    try:
        await rerun_analysis(
            request.app.ctx.res.temporal, call_id, (runs or 0) + 1,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            webhook_for_s=settings.ANALYSIS_WEBHOOK_FOR_S,
        )  # fmt: skip
    except AnalysisRunning as exc:
        raise Conflict(f"call {call_id} is being analysed", code="analysis_running") from exc
    log.info("analysis_rerun", call_id=call_id, by=request.ctx.principal.id)
    return json({"call_id": call_id, "action": "rerun_analysis", "status": "started"}, status=202)


@bp.post("/api/webhooks/<msg_id:str>/replay")
@endpoint(
    "Deliver a stored webhook message again (same webhook-id)",
    tag="analysis",
    ok=202,
    response=Accepted,
    errors=(404, 409, 422),
    secured=True,
)
@require(RECORDINGS_RETRY)
async def replay(request: Request, msg_id: str) -> HTTPResponse:
    parse_body(request, Empty, allow_empty=True)
    if not MSG_ID.match(msg_id):
        raise ValidationFailed("msg_id: not a webhook message id", field="msg_id")
    pool, settings = request.app.ctx.res.db, request.app.ctx.settings
    call_id = await pool.fetchval("SELECT call_id FROM webhook_deliveries WHERE id = $1", msg_id)
    if call_id is None:
        raise NotFound(f"no webhook message {msg_id}", code="webhook_not_found", field="msg_id")
    try:
        await replay_webhook(request.app.ctx.res.temporal, msg_id,
                             task_queue=settings.TEMPORAL_TASK_QUEUE,
                             for_s=settings.ANALYSIS_WEBHOOK_FOR_S)  # fmt: skip
    except AnalysisRunning as exc:
        raise Conflict(f"{msg_id} is being delivered", code="webhook_running") from exc
    log.info("webhook_replayed", msg_id=msg_id, call_id=call_id, by=request.ctx.principal.id)
    return json({"call_id": call_id, "action": "replay_webhook", "status": "started"}, status=202)
