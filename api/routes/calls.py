"""Supervisor endpoints on calls: list, detail, transcript, end, monitor, whisper, barge,
take over and release.

Closed calls are answered from PostgreSQL; live ones from the workflow's query. Every
supervisor action is recorded on the call itself (signal `supervisor_action`), so it shows in
the call's event log, its dashboard stream and its Temporal history.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import aiohttp
from livekit.api import TwirpError
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import ACT_ON_CALLS, READ_CALLS, Principal, require
from api.docs import Float, Integer, String, endpoint, query_param
from api.domain import store
from api.domain.commands import Claim, claim_command
from api.domain.livekit_room import agent_identities, send_command, supervisor_token
from api.domain.workflows_client import CallsClient
from api.errors import Conflict, NotFound, Unavailable, ValidationFailed
from api.schemas import (
    TRANSCRIPT_PAGE,
    TRANSCRIPT_PAGE_MAX,
    Accepted,
    CallDetail,
    CallList,
    Empty,
    EndCallRequest,
    FoundCalls,
    ListCallsQuery,
    LiveKitGrant,
    SearchCallsQuery,
    SupervisorCommandRequest,
    Transcript,
    TranscriptQuery,
    WhisperRequest,
)
from api.validation import call_id_path, parse_body, parse_query
from core.call_links import links_of
from core.log import get_logger
from core.models import (
    SIGNAL_SUPERVISOR_ACTION,
    CallStatus,
    SupervisorAction,
    call_workflow_id,
    room_name_for,
)
from core.telephony import mask_number

log = get_logger("api.calls")
FULL_NUMBER = frozenset({"admin"})  # who sees a phone number unmasked (a call's detail only)
# The supervisor_action a refused command leaves on the call (its detail says what and why).
COMMAND_REFUSED = "command_refused"
bp = Blueprint("calls", url_prefix="/api/calls")

_FROM_STATE = (
    "customer_name",
    "channel",
    "direction",
    "status",
    "recording_status",
    "created_at",
    "agent_joined_at",
    "ended_at",
    "end_reason",
    "silence_alerts",
    "keyword_alerts",
    "last_seq",
)


def _calls(request: Request) -> CallsClient:
    return request.app.ctx.res.calls  # type: ignore[no-any-return]


def _principal(request: Request) -> Principal:
    return request.ctx.principal  # type: ignore[no-any-return]


async def live_call(request: Request, call_id: str) -> dict[str, Any]:
    """The call's row if it is live; 404 when there is no such call, 409 when it has ended."""
    row = await store.get_call(request.app.ctx.res.db, call_id)
    if row is not None:
        if not row["live"]:
            raise Conflict(f"call {call_id} has ended ({row['status']})", code="call_ended")
        return row
    if await store.get_erasure(request.app.ctx.res.db, call_id) is not None:
        raise NotFound(f"call {call_id} was erased", code="call_erased", field="call_id")
    # The workflow writes the row in its first step: a call seconds old may not have one yet.
    running = await _calls(request).is_running(call_workflow_id(call_id))
    if running is None:
        raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
    if not running:
        raise Conflict(f"call {call_id} has ended", code="call_ended")
    return {"call_id": call_id, "room_name": room_name_for(call_id), "status": "unknown"}


async def record_action(
    request: Request, call_id: str, action: str, detail: str = "", command_id: str = ""
) -> None:
    """Record a supervisor action on the call (signal); 409 if the call ended meanwhile.
    With a `command_id`, a retried action is recorded once (the signal id is derived from it)."""
    principal = _principal(request)
    sid = f"sa-{action}-{command_id}" if command_id else f"sa-{uuid.uuid4().hex}"
    try:
        await _calls(request).signal(
            call_id,
            SIGNAL_SUPERVISOR_ACTION,
            SupervisorAction(
                id=sid,
                action=action,
                by=principal.id,
                detail=detail,
                at=datetime.now(UTC).isoformat(),
            ),
        )
    except NotFound as exc:
        raise Conflict(f"call {call_id} has ended", code="call_ended") from exc
    log.info("supervisor_action", call_id=call_id, action=action, by=principal.id)


@bp.get("")
@endpoint("List calls", tag="supervisor", response=CallList, errors=(422,), secured=True)
@query_param("status", String(enum=["active", "ended", "all"]), "default active")
@query_param("limit", Integer(minimum=1, maximum=200), "page size, default 50")
@query_param("cursor", String(minLength=1, maxLength=200), "next_cursor of the previous page")
@require(READ_CALLS)
async def list_calls(request: Request) -> HTTPResponse:
    q = parse_query(request, ListCallsQuery)
    calls, next_cursor = await store.list_calls(request.app.ctx.res.db, q.status, q.limit, q.cursor)
    return json({"calls": calls, "next_cursor": next_cursor})


@bp.get("/search")
@endpoint(
    "Search calls by name, date range, status, end reason, alerts, recording status and analysis "
    "(outcome, sentiment, minimum score)",
    tag="supervisor",
    response=FoundCalls,
    errors=(422,),
    secured=True,
)
@query_param("q", String(minLength=1, maxLength=100), "any part of the customer name or call id")
@query_param("from", String(format="date-time"), "created at or after")
@query_param("to", String(format="date-time"), "created before")
@query_param("status", String(), "call statuses, comma-separated")
@query_param("end_reason", String(minLength=1, maxLength=100), "any part of the end reason")
@query_param("alerts", String(enum=["any", "none", "silence", "keyword"]), "alerts raised")
@query_param("recording", String(), "recording statuses, comma-separated")
@query_param("outcome", String(), "analysis outcomes, comma-separated")
@query_param("sentiment", String(), "customer sentiments (analysis), comma-separated")
@query_param("score", Float(minimum=0, maximum=1), "minimum QA score of the analysis (0 to 1)")
@query_param("limit", Integer(minimum=1, maximum=200), "page size, default 50")
@query_param("cursor", String(minLength=1, maxLength=200), "next_cursor of the previous page")
@require(READ_CALLS)
async def search_calls(request: Request) -> HTTPResponse:
    q = parse_query(request, SearchCallsQuery)
    if q.from_ and q.to and q.to <= q.from_:
        raise ValidationFailed("to: must be after from", field="to")
    filters = {
        "q": q.q,
        "from": q.from_,
        "to": q.to,
        "statuses": q.status.split(",") if q.status else None,
        "end_reason": q.end_reason,
        "alerts": q.alerts,
        "recordings": q.recording.split(",") if q.recording else None,
        "outcomes": q.outcome.split(",") if q.outcome else None,
        "sentiments": q.sentiment.split(",") if q.sentiment else None,
        "score": q.score,
    }
    calls, next_cursor = await store.search_calls(
        request.app.ctx.res.db, filters, q.limit, q.cursor
    )
    return json({"calls": calls, "next_cursor": next_cursor})


@bp.get("/<call_id:str>")
@endpoint("One call", tag="supervisor", response=CallDetail, errors=(404, 422), secured=True)
@require(READ_CALLS)
@call_id_path
async def get_call(request: Request, call_id: str) -> HTTPResponse:
    parse_query(request, Empty)
    row = await store.get_call(request.app.ctx.res.db, call_id)
    if row is not None and not row["live"]:
        return await _with_phone(request, call_id, {**row, "source": "database", "state": None})
    if row is None and await store.get_erasure(request.app.ctx.res.db, call_id) is not None:
        # Temporal deletes an erased call's history asynchronously: never answer from it.
        raise NotFound(f"call {call_id} was erased", code="call_erased", field="call_id")
    state = await _calls(request).state(call_id)
    if state is None:
        if row is None:
            raise NotFound(f"no call {call_id}", code="call_not_found", field="call_id")
        return await _with_phone(request, call_id, {**row, "source": "database", "state": None})
    base = row or {
        "call_id": call_id,
        "room_name": room_name_for(call_id),
        "customer_name": None,
        "status": CallStatus.WAITING_FOR_AGENT.value,
        "recording_status": "none",
        "created_at": None,
    }
    # The workflow is fresher than its row (rows are written in batches): prefer its values.
    for key in _FROM_STATE:
        value = state.get(key)
        if value not in (None, ""):
            base[key] = value
    base["live"] = base["status"] in store.ACTIVE_STATUSES
    full = state.get("phone") or ""
    state["phone"] = mask_number(full)  # the workflow holds the number in full
    base["phone"] = mask_number(full) or base.get("phone")
    detail = {**base, "source": "workflow", "state": state}
    return await _with_phone(request, call_id, detail, full)


async def _with_phone(
    request: Request, call_id: str, detail: dict[str, Any], full: str = ""
) -> HTTPResponse:
    """The call's detail with its callback links; an admin sees the phone number in full
    (supervisors: masked)."""
    detail["links"] = await links_of(request.app.ctx.res.db, call_id)
    if detail.get("phone") and _principal(request).may(FULL_NUMBER):
        full = full or await request.app.ctx.res.db.fetchval(
            "SELECT phone FROM calls WHERE call_id = $1", call_id
        )
        if full:
            detail["phone"] = full
            if detail.get("state"):
                detail["state"]["phone"] = full
    return json(detail, default=str)


@bp.get("/<call_id:str>/transcript")
@endpoint(
    "Final transcript lines after a sequence number",
    tag="supervisor",
    response=Transcript,
    errors=(404, 422),
    secured=True,
)
@query_param("after", Integer(minimum=0), "only lines with seq > after (default 0)")
@query_param(
    "limit",
    Integer(minimum=1, maximum=TRANSCRIPT_PAGE_MAX),
    f"page size, default {TRANSCRIPT_PAGE}; `next_after` says where the next page starts",
)
@require(READ_CALLS)
@call_id_path
async def transcript(request: Request, call_id: str) -> HTTPResponse:
    q = parse_query(request, TranscriptQuery)
    db = request.app.ctx.res.db
    row = await store.stored_call(db, call_id)
    # One more than asked tells whether another page follows, without a count.
    events = await store.transcript_after(db, call_id, q.after, limit=q.limit + 1)
    page = events[: q.limit]
    next_after = page[-1]["seq"] if len(events) > q.limit else None
    lines = [
        {
            "seq": e["seq"],
            "at": e["at"],
            "speaker": e["data"].get("speaker") if isinstance(e["data"], dict) else None,
            "text": e["data"].get("text") if isinstance(e["data"], dict) else None,
            "data": e["data"],
        }
        for e in page
    ]
    return json(
        {"call_id": call_id, "lines": lines, "last_seq": row["last_seq"], "next_after": next_after}
    )


@bp.post("/<call_id:str>/end")
@endpoint(
    "End a live call",
    tag="supervisor",
    body=EndCallRequest,
    body_required=False,
    response=Accepted,
    errors=(404, 409),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def end_call(request: Request, call_id: str) -> HTTPResponse:
    body = parse_body(request, EndCallRequest, allow_empty=True)
    await live_call(request, call_id)
    try:
        status = await _calls(request).end(
            call_id, body.reason or "ended by supervisor", _principal(request).id
        )
    except NotFound as exc:
        # It existed a moment ago (live_call): it finished in between.
        raise Conflict(f"call {call_id} has ended", code="call_ended") from exc
    log.info("call_end_requested", call_id=call_id, by=_principal(request).id)
    return json({"call_id": call_id, "action": "end", "status": status})


async def _grant(request: Request, call_id: str, *, can_publish: bool) -> HTTPResponse:
    parse_body(request, Empty, allow_empty=True)
    row = await live_call(request, call_id)
    settings = request.app.ctx.settings
    token, identity, expires_at = supervisor_token(
        settings, row["room_name"], _principal(request).id, can_publish=can_publish
    )
    action = "barge" if can_publish else "monitor"
    await record_action(request, call_id, action, detail=identity)
    return json(
        {
            "call_id": call_id,
            "room_name": row["room_name"],
            "token": token,
            "livekit_url": settings.livekit_public_url,
            "participant_identity": identity,
            "expires_at": expires_at,
            "can_publish": can_publish,
            "hidden": not can_publish,
        },
        status=201,
    )


@bp.post("/<call_id:str>/monitor")
@endpoint(
    "Listen to a live call (hidden, subscribe-only token)",
    tag="supervisor",
    ok=201,
    response=LiveKitGrant,
    errors=(404, 409),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def monitor(request: Request, call_id: str) -> HTTPResponse:
    return await _grant(request, call_id, can_publish=False)


@bp.post("/<call_id:str>/barge")
@endpoint(
    "Join a live call and speak (token that may publish)",
    tag="supervisor",
    ok=201,
    response=LiveKitGrant,
    errors=(404, 409),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def barge(request: Request, call_id: str) -> HTTPResponse:
    return await _grant(request, call_id, can_publish=True)


@bp.post("/<call_id:str>/whisper")
@endpoint(
    "Pass an instruction to the AI agent (the customer does not receive it)",
    tag="supervisor",
    ok=202,
    body=WhisperRequest,
    response=Accepted,
    errors=(404, 409, 503),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def whisper(request: Request, call_id: str) -> HTTPResponse:
    body = parse_body(request, WhisperRequest)
    return await _command(request, call_id, "whisper", body.id, text=body.text)


async def _command(
    request: Request, call_id: str, action: str, command_id: str | None, text: str = ""
) -> HTTPResponse:
    """Record the action on the call, then send it to the agent (never the other way round).
    A command without an id gets a fresh one; the 202 answer names it. A retry (same id,
    action, caller and text) goes through again and is applied once; an id that already names
    another command on this call is refused (409) and the refusal recorded (api.domain.commands)."""
    command_id = command_id or uuid.uuid4().hex
    row = await live_call(request, call_id)
    lk = request.app.ctx.res.lk
    by = _principal(request).id
    try:
        agents = await agent_identities(lk, row["room_name"])
        if not agents:
            raise Conflict(f"no agent is in call {call_id}'s room", code="agent_not_in_room")
        claim = await claim_command(request.app.ctx.res.db, call_id, command_id, action, by, text)
        if claim is Claim.REUSED:
            await record_action(request, call_id, COMMAND_REFUSED,
                                detail=_refusal(action, command_id, text))  # fmt: skip
            raise Conflict(
                f"id {command_id} already names another command on call {call_id}: "
                "send this one with a new id",
                code="command_id_reused",
                field="id",
            )
        # Audit first: a command must never reach the agent without being on the record.
        await record_action(request, call_id, action, detail=text, command_id=command_id)
        payload = {"text": text, "by": by, "id": command_id}
        await send_command(lk, row["room_name"], agents, f"supervisor.{action}", payload)
    except TwirpError as exc:
        if exc.status == 404:
            raise Conflict(f"call {call_id}'s room is not open", code="room_not_open") from exc
        raise Unavailable(
            f"livekit refused the {action} ({exc.code})", code="livekit_unavailable"
        ) from exc
    except aiohttp.ClientError as exc:
        raise Unavailable("livekit is not reachable", code="livekit_unavailable") from exc
    return json({"call_id": call_id, "action": action, "status": "sent", "id": command_id},
                status=202)  # fmt: skip


def _refusal(action: str, command_id: str, text: str) -> str:
    """The refused command as the call's log shows it: what was asked, with which id."""
    return f"{action} refused (id {command_id} already names another command)" + (
        f": {text}" if text else ""
    )


@bp.post("/<call_id:str>/takeover")
@endpoint(
    "Take over the call: the AI agent stops speaking and keeps listening (audited)",
    tag="supervisor",
    ok=202,
    body=SupervisorCommandRequest,
    response=Accepted,
    errors=(404, 409, 503),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def takeover(request: Request, call_id: str) -> HTTPResponse:
    return await _switch(request, call_id, "takeover")


@bp.post("/<call_id:str>/release")
@endpoint(
    "Hand the call back to the AI agent, which continues with what was said (audited)",
    tag="supervisor",
    ok=202,
    body=SupervisorCommandRequest,
    response=Accepted,
    errors=(404, 409, 503),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def release(request: Request, call_id: str) -> HTTPResponse:
    return await _switch(request, call_id, "release")


async def _switch(request: Request, call_id: str, action: str) -> HTTPResponse:
    body = parse_body(request, SupervisorCommandRequest, allow_empty=True)
    return await _command(request, call_id, action, body.id)
