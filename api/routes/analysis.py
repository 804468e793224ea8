"""After the call: its analysis and the webhooks that delivered it (workflows/analysis.py).

- `GET /api/calls/{id}/analysis` (supervisor, ops, admin): the analysis from PostgreSQL (summary,
  outcome, sentiment, fields, scorecard, the method that made it) and its webhook deliveries.
- `POST /api/calls/{id}/analysis/rerun` (ops, admin): a new run of `analysis-<id>`.
- `POST /api/webhooks/{message id}/replay` (ops, admin): deliver a stored message again, under
  the same `webhook-id`.
- `GET /api/analysis.csv?from=&to=` (supervisor, ops, admin): the analyses of the calls created
  in a range, for QA, streamed from a server-side cursor (columns: `api/domain/analysis.py`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import READ_CALLS, RECORDINGS_RETRY, require
from api.docs import String, endpoint, query_param
from api.domain import analysis as domain
from api.domain.analysis import csv_text, export_columns, export_rows, stored_analysis
from api.errors import Conflict, NotFound, ValidationFailed
from api.schemas import Accepted, AnalysisExportQuery, Empty
from api.validation import call_id_path, parse_body, parse_query
from core import analysis as an
from core.log import get_logger
from workflows.analysis import AnalysisRunning, replay_webhook, rerun_analysis

log = get_logger("api.analysis")
bp = Blueprint("analysis")
MSG_ID = re.compile(r"^msg_[a-z0-9]{12,40}_call_(ended|analyzed)_[0-9]{1,6}$")
EXPORT_SPAN_DAYS = 366


class Delivery(BaseModel):
    id: str
    call_id: str
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
    parse_query(request, Empty)
    out = await stored_analysis(request.app.ctx.res.db, call_id)
    if out is None:
        raise NotFound(f"call {call_id} has no analysis (yet)", code="analysis_not_found")
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
    try:
        run = await domain.next_run(pool, call_id)
        await rerun_analysis(
            request.app.ctx.res.temporal, call_id, run,
            task_queue=settings.TEMPORAL_TASK_QUEUE, webhook_for_s=settings.ANALYSIS_WEBHOOK_FOR_S,
        )  # fmt: skip
    except domain.NoSuchCall as exc:
        raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id") from exc
    except domain.CallLive as exc:
        raise Conflict(f"call {call_id} has not ended", code="call_live") from exc
    except AnalysisRunning as exc:
        raise Conflict(f"call {call_id} is being analysed", code="analysis_running") from exc
    log.info("analysis_rerun", call_id=call_id, run=run, by=request.ctx.principal.id)
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
    call_id = await domain.message_call(pool, msg_id)
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


@bp.get("/api/analysis.csv")
@endpoint(
    "Export the analyses of the calls created in [from, to) as CSV, for QA (streamed)",
    tag="analysis",
    errors=(422,),
    secured=True,
    media="text/csv",
    description=(
        "Columns: call_id, created_at, ended_at, analyzed_at, status, method, outcome, "
        "sentiment, score, runs, one `scorecard.<item>` per rubric item (pass, fail or empty: "
        "not judged) and one `field.<name>` per configured field (nested ones with dots). "
        f"`to` after `from`, at most {EXPORT_SPAN_DAYS} days apart."
    ),
)
@query_param("from", String(format="date-time"), "calls created at or after (required)")
@query_param("to", String(format="date-time"), "calls created before (required)")
@require(READ_CALLS)
async def export_csv(request: Request) -> None:
    q = parse_query(request, AnalysisExportQuery)
    if q.to <= q.from_:
        raise ValidationFailed("to: must be after from", field="to")
    if q.to - q.from_ > timedelta(days=EXPORT_SPAN_DAYS):
        raise ValidationFailed(f"to: at most {EXPORT_SPAN_DAYS} days after from", field="to")
    settings = request.app.ctx.settings
    columns = export_columns(an.fields_schema(settings.ANALYSIS_SCHEMA),
                             an.rubric(settings.ANALYSIS_RUBRIC))  # fmt: skip
    name = f"analysis-{q.from_:%Y%m%d}-{q.to:%Y%m%d}.csv"
    async with request.app.ctx.res.db.acquire() as conn, conn.transaction(readonly=True):
        response = await request.respond(
            content_type="text/csv; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{name}"',
                     "cache-control": "no-store"},
        )  # fmt: skip
        await response.send(csv_text([columns]))
        rows = 0
        batch: list[list[str]] = []
        async for line in export_rows(conn, q.from_, q.to, columns):
            batch.append(line)
            if len(batch) == 100:
                await response.send(csv_text(batch))
                rows, batch = rows + len(batch), []
        await response.send(csv_text(batch))
        await response.eof()
    log.info("analysis_exported", rows=rows + len(batch), by=request.ctx.principal.id)
