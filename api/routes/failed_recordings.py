"""`GET /api/recordings?status=failed` (ops, admin): the calls whose recording pipeline failed, and why,
newest first, for the dashboard's Failed recordings view. Replaying one is the existing
`POST /api/recordings/{call_id}/retry`; "retry all" in the dashboard calls it for each.

Read from PostgreSQL (`calls.recording_status`, `calls.recording_error`, which the pipeline
writes itself), not from Temporal visibility: cheap, and paginated with the calls' cursor.
`given_up` says ops gave up on it (nothing will retry it, and a retry is refused): the call's
latest failed `recording` report was made by a person (`by`), not by the pipeline itself. Its
error is the call's, else that report's (a give-up that kept stored segments clears the call's).

`retryable` says whether Retry can do anything: only a pipeline that exists (it has reported on
the call's log: a `recording` event with a `run_id`) and that ops have not given up on. A
recording that failed in the call itself (egress never started, ended without a file, LiveKit
lost it) has no pipeline to replay: `what_to_do` says what ops can do instead.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse
from sanic_ext import openapi

from api.auth import RECORDINGS_RETRY, require
from api.docs import Integer, String, endpoint, query_param
from api.domain import store
from api.schemas import Strict
from api.validation import parse_query
from core.models import RecordingStatus

bp = Blueprint("failed_recordings")

# Who makes a recording report that is not a person's decision (activities.database).
_PIPELINE_REPORTERS = ("pipeline", "ops_retry")
_FAILED = """
SELECT c.call_id, c.room_name, c.customer_name, c.status, c.created_at, c.ended_at,
    COALESCE(c.recording_error, e.data->>'error') AS recording_error,
    COALESCE(e.data->>'by' <> ALL($3::text[]), false) AS given_up,
    EXISTS (
        SELECT 1 FROM call_events
        WHERE call_id = c.call_id AND kind = 'recording' AND data ? 'run_id'
    ) AS has_pipeline
FROM calls c
LEFT JOIN LATERAL (
    SELECT data FROM call_events
    WHERE call_id = c.call_id AND kind = 'recording' AND data->>'status' = 'failed'
      AND data ? 'run_id'
    ORDER BY seq DESC LIMIT 1
) e ON true
WHERE {where} ORDER BY c.created_at DESC, c.call_id DESC LIMIT $2
"""


class FailedRecordingsQuery(Strict):
    status: Literal["failed"]  # the only list ops need; other statuses are on GET /api/calls
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, min_length=1, max_length=200)


class FailedRecording(BaseModel):
    call_id: str
    room_name: str
    customer_name: str | None
    status: str
    created_at: str | None
    ended_at: str | None
    recording_error: str | None
    given_up: bool
    has_pipeline: bool  # a recording pipeline ran for this call (Retry replays it)
    retryable: bool  # has_pipeline and not given_up: the Retry button is offered
    what_to_do: str  # one line for ops: what Retry does, or what to do instead


class FailedRecordings(BaseModel):
    recordings: list[FailedRecording]
    next_cursor: str | None


async def failed_recordings(
    pool: Any, limit: int, cursor: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    args: list[Any] = [RecordingStatus.FAILED.value, limit + 1, list(_PIPELINE_REPORTERS)]
    where = "c.recording_status = $1"
    if cursor:
        at, cid = store.decode_cursor(cursor)
        where += " AND (c.created_at, c.call_id) < ($4, $5)"
        args += [at, cid]
    rows = await pool.fetch(_FAILED.format(where=where), *args)
    page = rows[:limit]
    nxt = (
        store.encode_cursor(page[-1]["created_at"], page[-1]["call_id"])
        if len(rows) > limit
        else None
    )
    out = [
        {
            **dict(r),
            "created_at": store.iso_or_none(r["created_at"]),
            "ended_at": store.iso_or_none(r["ended_at"]),
            "retryable": r["has_pipeline"] and not r["given_up"],
            "what_to_do": what_to_do(r["has_pipeline"], r["given_up"]),
        }
        for r in page
    ]
    return out, nxt


def what_to_do(has_pipeline: bool, given_up: bool) -> str:
    """What ops can do about one failed recording (shown beside it in the dashboard)."""
    if given_up:
        return "Ops gave up on this recording: nothing will retry it."
    if has_pipeline:
        return "Retry once the cause (storage, the egress file) is fixed."
    return (
        "No recording pipeline ran: the call's egress left no file to store. Nothing to "
        "retry; check LiveKit Egress's logs and the staging bucket under conversations/<call id>/."
    )


@bp.get("/api/recordings")
@endpoint(
    "Calls whose recording pipeline failed, and why (newest first)",
    tag="recordings",
    response=FailedRecordings,
    errors=(422,),
    secured=True,
)
@openapi.parameter("status", String(enum=["failed"]), "query", required=True, description="failed")
@query_param("limit", Integer(minimum=1, maximum=500), "page size, default 100")
@query_param("cursor", String(minLength=1, maxLength=200), "next_cursor of the previous page")
@require(RECORDINGS_RETRY)
async def list_failed(request: Request) -> HTTPResponse:
    q = parse_query(request, FailedRecordingsQuery)
    rows, nxt = await failed_recordings(request.app.ctx.res.db, q.limit, q.cursor)
    return json({"recordings": rows, "next_cursor": nxt})
