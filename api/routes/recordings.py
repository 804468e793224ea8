"""Recordings: a short-lived download link for a stored recording; replay of a failed pipeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import RECORDINGS_READ, RECORDINGS_RETRY, require
from api.docs import endpoint
from api.domain import store
from api.errors import Conflict
from api.schemas import Accepted, Empty, RecordingLink
from api.validation import call_id_path, parse_body, parse_query
from core.log import get_logger

log = get_logger("api.recordings")
bp = Blueprint("recordings", url_prefix="/api")

MAX_URL_TTL = timedelta(minutes=15)


@bp.get("/calls/<call_id:str>/recording")
@endpoint(
    "Download link for the call's recording (valid at most 15 minutes)",
    tag="recordings",
    response=RecordingLink,
    errors=(404, 409, 422),
    secured=True,
)
@require(RECORDINGS_READ)
@call_id_path
async def recording(request: Request, call_id: str) -> HTTPResponse:
    parse_query(request, Empty)
    res = request.app.ctx.res
    call = await store.stored_call(res.db, call_id)
    segments = await store.get_recording_segments(res.db, call_id)
    if not segments:
        raise Conflict(
            f"the recording of call {call_id} is not stored yet ({call['recording_status']})",
            code="recording_not_stored",
        )
    ttl_s = request.app.ctx.settings.RECORDING_URL_TTL_S  # validated <= 900
    ttl = min(timedelta(seconds=ttl_s), MAX_URL_TTL)
    # Presigning is local computation (the client has a fixed region): no I/O on the loop.
    shown = [
        {
            "index": i,
            "url": res.presigner.presigned_get_object(s["bucket"], s["object_key"], expires=ttl),
            "size_bytes": s["size_bytes"],
            "duration_s": s["duration_s"],
            "sha256": s["sha256"],
            "incomplete": s["incomplete"],
            "started_at": s["started_at"],
        }
        for i, s in enumerate(segments)
    ]
    first = shown[0]
    log.info("recording_link_issued", call_id=call_id, by=request.ctx.principal.id)
    return json(
        {
            "call_id": call_id,
            "url": first["url"],
            "expires_at": (datetime.now(UTC) + ttl).isoformat(),
            "size_bytes": sum(s["size_bytes"] for s in shown),
            "duration_s": sum(s["duration_s"] for s in shown),
            "sha256": first["sha256"],
            "incomplete": any(s["incomplete"] for s in shown),
            "started_at": first["started_at"],
            "clock": segments[0]["clock"],
            "segments": shown,
        }
    )


@bp.post("/recordings/<call_id:str>/retry")
@endpoint(
    "Replay a failed recording pipeline",
    tag="recordings",
    ok=202,
    response=Accepted,
    errors=(404, 409, 422),
    secured=True,
)
@require(RECORDINGS_RETRY)
@call_id_path
async def retry(request: Request, call_id: str) -> HTTPResponse:
    parse_body(request, Empty, allow_empty=True)
    run_id = await request.app.ctx.res.calls.retry_recording(call_id)
    log.info("recording_retried", call_id=call_id, run_id=run_id, by=request.ctx.principal.id)
    return json({"call_id": call_id, "action": "retry_recording", "status": "started"}, status=202)
