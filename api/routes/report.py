"""The post-call report: `GET /api/calls/{call_id}/report`, one JSON document per call (a thin
route: `api/domain/report.py` shapes what it gathers here)."""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import READ_CALLS, require
from api.docs import endpoint
from api.domain import store
from api.domain.analysis import stored_analysis
from api.domain.report import build_report
from api.errors import Unavailable
from api.schemas import CallReport, Empty
from api.validation import call_id_path, parse_query
from core.call_links import links_of
from core.log import get_logger

log = get_logger("api.report")
bp = Blueprint("report", url_prefix="/api/calls")


@bp.get("/<call_id:str>/report")
@endpoint(
    "The call's report: transcript, alerts, supervisor actions, tool calls, latency, recording, "
    "analysis",
    tag="supervisor",
    response=CallReport,
    errors=(404, 422),
    secured=True,
)
@require(READ_CALLS)
@call_id_path
async def report(request: Request, call_id: str) -> HTTPResponse:
    parse_query(request, Empty)
    db = request.app.ctx.res.db
    call = await store.stored_call(db, call_id)
    events = await store.events_after(db, call_id, 0)
    segments = await store.get_recording_segments(db, call_id)
    drives = await store.test_drives_of(db, call_id)
    analysis = await stored_analysis(db, call_id)
    links = await links_of(db, call_id)
    try:
        calls = request.app.ctx.res.calls
    except Unavailable as exc:
        # The stored call is the report; what only Temporal knows is marked missing, not a 503.
        workflow = {"source": "unavailable", "status": None, "result": None, "error": str(exc)}
    else:
        workflow = await calls.outcome(call_id)
    log.info("report_built", call_id=call_id, events=len(events), by=request.ctx.principal.id)
    return json(build_report(call, events, segments, drives, workflow, analysis, links))
