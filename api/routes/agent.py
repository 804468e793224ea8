"""The agent's entry points, authenticated with a LiveKit JWT signed by our API key/secret
granting `roomAdmin` on the call's room:

- `POST /internal/calls/{call_id}/interim` fans an interim transcript out to the call's live
  WebSockets (never stored; `seq: null`);
- `POST /internal/calls/{call_id}/opening` answers why a callback's call happens (the callback's
  reason, the earlier call's summary and last lines: `core.call_links`), null for other calls;
- `POST /internal/calls/{call_id}/lines` stores final lines (`core.eventlog.store_line`): the
  system of record for what was said. The agent keeps each line in its write-ahead spool until
  this answers 200 (agent/lines.py), so a line is stored once however often it is sent, and the
  dashboards get it from PostgreSQL's NOTIFY without waiting for the call's workflow.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.docs import endpoint
from api.domain import callbacks
from api.domain.fanout import publish_interim
from api.errors import Gone, Unauthorized, Unavailable, ValidationFailed
from api.schemas import (
    AgentCallbackRequest,
    CallOpeningResponse,
    Empty,
    FinalLine,
    FinalLinesRequest,
    InterimRequest,
    LinesStored,
)
from api.validation import call_id_path, parse_body, parse_query
from core import eventlog
from core.call_links import opening_of
from core.events import InterimTranscript
from core.log import get_logger
from core.models import AgentMetrics, TranscriptLine, call_id_from_room

log = get_logger("api.agent")

# Named "internal" as before: route names (`internal.interim`) stay what they were.
bp = Blueprint("internal", url_prefix="/internal/calls")


def authenticate_agent(request: Request, call_id: str) -> str:
    """The agent proves itself with a LiveKit JWT signed by our API key/secret whose video grant
    is `roomAdmin` for this call's room (customers' tokens never carry roomAdmin)."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("a LiveKit bearer token is required")
    try:
        claims = request.app.ctx.res.token_verifier.verify(token.strip())
    except jwt.PyJWTError as exc:
        raise Unauthorized("the LiveKit token is not valid") from exc
    video = claims.video
    # The call's room: `call-<id>`, or an inbound phone call's room whose name hashes to the id.
    if video is None or not video.room_admin or call_id_from_room(video.room or "") != call_id:
        raise Unauthorized(f"the token does not grant roomAdmin on call {call_id}'s room")
    return (claims.identity or "agent")[:128]  # bounded: it travels in a pg_notify payload


@bp.post("/<call_id:str>/interim")
@endpoint(
    "Interim transcript from the agent (fanned out live, never stored)",
    tag="internal",
    ok=202,
    body=InterimRequest,
    errors=(401, 404),
    description="Authenticated with a LiveKit JWT (API key/secret) granting roomAdmin on the call's room.",
)
@call_id_path
async def interim(request: Request, call_id: str) -> HTTPResponse:
    by = authenticate_agent(request, call_id)
    parse_query(request, Empty)
    body = parse_body(request, InterimRequest)
    message = {
        "type": InterimTranscript.KIND.value,
        "call_id": call_id,
        "seq": None,
        "at": datetime.now(UTC).isoformat(),
        "data": InterimTranscript(
            speaker=body.speaker, text=body.text, confidence=body.confidence, id=body.id, by=by
        ).to_dict(),
    }
    await publish_interim(request.app.ctx.res.db, message)
    return HTTPResponse(status=202)


@bp.post("/<call_id:str>/lines")
@endpoint(
    "Final transcript lines from the agent, stored once each (the system of record)",
    tag="internal",
    body=FinalLinesRequest,
    response=LinesStored,
    errors=(401, 410, 503),
    description=(
        "Authenticated with a LiveKit JWT (API key/secret) granting roomAdmin on the call's "
        "room. Each line is stored in order, idempotent by its `id` (a resend answers "
        "`seq: null` and stores nothing), with its keyword alert for a customer line naming a "
        "configured keyword; the dashboards see it through PostgreSQL NOTIFY. NUL and unpaired "
        "surrogates in the text are stored as U+FFFD. 503 while PostgreSQL is unreachable "
        "(retry the same lines); 410 for an erased call (nothing is stored, do not retry)."
    ),
)
@call_id_path
async def lines(request: Request, call_id: str) -> HTTPResponse:
    authenticate_agent(request, call_id)
    parse_query(request, Empty)
    body = parse_body(request, FinalLinesRequest, repair=True)
    keywords = request.app.ctx.settings.keywords
    stored: list[dict[str, Any]] = []
    try:
        for i, line in enumerate(body.lines):
            try:
                done = await eventlog.store_line(
                    request.app.ctx.res.db, call_id, final_line(line), keywords
                )
            except ValueError as exc:  # PostgreSQL refused it even cleaned: never storable
                raise ValidationFailed(f"lines.{i}: {exc}", field=f"lines.{i}") from None
            stored.append({"id": line.id, "seq": done.seq})
    except eventlog.CallErased:
        raise Gone("the call was erased; its lines are not stored", code="call_erased") from None
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
        # Any database failure here is an outage to the agent, which resends the same lines.
        log.warning(
            "lines_not_stored", call_id=call_id, stored=len(stored), error=type(exc).__name__
        )
        raise Unavailable(
            "the database is unavailable; send the same lines again",
            code="database_unavailable",
            headers={"Retry-After": "1"},
        ) from None
    log.info(
        "lines_stored",
        call_id=call_id,
        lines=len(stored),
        new=sum(1 for s in stored if s["seq"] is not None),
    )
    return json({"stored": stored})


def final_line(line: FinalLine) -> TranscriptLine:
    """The request's line as `core.models` has it (its figures as `AgentMetrics`)."""
    data = line.model_dump(exclude={"metrics"})
    figures = AgentMetrics(**line.metrics.model_dump()) if line.metrics is not None else None
    return TranscriptLine(**data, metrics=figures)


@bp.post("/<call_id:str>/callback")
@endpoint(
    "Sarah's schedule_callback: a callback for the customer of this call",
    tag="internal",
    ok=201,
    body=AgentCallbackRequest,
    errors=(401, 409, 422),
    description=(
        "Authenticated with a LiveKit JWT granting roomAdmin on the call's room. The same checks "
        "as POST /api/callbacks; one callback a call (asking again answers the same one)."
    ),
)
@call_id_path
async def schedule_callback(request: Request, call_id: str) -> HTTPResponse:
    by = authenticate_agent(request, call_id)
    parse_query(request, Empty)
    body = parse_body(request, AgentCallbackRequest)
    res = request.app.ctx.res
    st = await callbacks.schedule(
        res.temporal, res.db, request.app.ctx.settings, phone=body.phone, at=body.at,
        timezone=body.timezone, by="queue" if body.via == "queue" else f"agent:{by}",
        reason=body.reason or "", call_id=call_id,
    )  # fmt: skip
    log.info("callback_scheduled_by_agent", call_id=call_id, callback_id=st.callback_id,
             via=body.via or "agent")  # fmt: skip
    return json(callbacks.masked(callbacks.from_state(st), False), status=201)


@bp.post("/<call_id:str>/opening")
@endpoint(
    "Why a callback's call happens, for the agent's first line",
    tag="internal",
    response=CallOpeningResponse,
    errors=(401,),
    description=(
        "Authenticated with a LiveKit JWT granting roomAdmin on the call's room. The callback's "
        "reason and the earlier call's summary and last lines; `opening` null for a call no "
        "callback placed."
    ),
)
@call_id_path
async def opening(request: Request, call_id: str) -> HTTPResponse:
    authenticate_agent(request, call_id)
    parse_query(request, Empty)
    found = await opening_of(request.app.ctx.res.db, call_id)
    log.info("opening_read", call_id=call_id, callback=found is not None)
    return json({"opening": found.to_json() if found else None})
