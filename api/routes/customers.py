"""Customer endpoints: no login, rate-limited per client address, admitted within the caps of
`api.domain.admission` (calls waiting for their customer; live calls per client).

Both start a `CallWorkflow` by update-with-start and answer with the token the workflow issued;
`/api/get-token` keeps the seed widget's request and response shape. `/api/calls/{id}/rejoin`
gives a customer whose connection dropped a fresh token for the same call in exchange for the
latest one (signed by us, that call's room and customer identity): the call's workflow accepts
only its latest token, so a proof works once; an expired one only within the rejoin grace of
its expiry or of the customer's drop; it records `customer_rejoined`, and refuses once the
call has ended. The workflow decides each grant; `api.domain.join_tokens` signs it.
"""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api import ratelimit
from api.docs import endpoint
from api.domain.admission import Admission
from api.domain.join_tokens import rejoin_proof
from api.errors import ApiError
from api.metrics import CALLS_STARTED
from api.ratelimit import rate_limited
from api.schemas import (
    CallCreated,
    CreateCallRequest,
    GetTokenRequest,
    RejoinRequest,
    SeedTokenResponse,
)
from api.validation import call_id_path, parse_body
from core.log import get_logger
from core.models import TokenGrant, new_call_id

log = get_logger("api.customers")
bp = Blueprint("customers", url_prefix="/api")


async def _start_call(request: Request, customer_name: str | None) -> TokenGrant:
    res = request.app.ctx.res
    call_id = new_call_id()
    admission: Admission = request.app.ctx.admission
    await admission.admit(res.db, ratelimit.client_key(ratelimit.client_address(request)), call_id)
    try:
        grant = await res.calls.issue_token(call_id, customer_name)
    except ApiError:
        # Temporal unreachable or the room refused: no agent holds a job for this call.
        await admission.release(res.db, call_id)
        raise
    # Anything else (a client that hung up mid-request cancels this handler) keeps the place:
    # the call may have started, and hanging up must not be a way around the caps.
    CALLS_STARTED.inc()
    log.info("call_started", call_id=call_id)
    return grant


@bp.post("/calls")
@endpoint(
    "Start a call",
    tag="customer",
    ok=201,
    body=CreateCallRequest,
    body_required=False,
    response=CallCreated,
    errors=(429, 503),
    description="Starts the call's workflow and returns the LiveKit token it issued.",
)
@rate_limited
async def create_call(request: Request) -> HTTPResponse:
    body = parse_body(request, CreateCallRequest, allow_empty=True)
    grant = await _start_call(request, body.customer_name)
    return _created(grant)


def _created(grant: TokenGrant) -> HTTPResponse:
    return json(
        CallCreated(
            call_id=grant.call_id,
            room_name=grant.room_name,
            token=grant.token,
            livekit_url=grant.livekit_url,
            participant_identity=grant.participant_identity,
            expires_at=grant.expires_at,
        ).model_dump(),
        status=201,
    )


@bp.post("/get-token")
@endpoint(
    "Start a call (seed widget contract)",
    tag="customer",
    body=GetTokenRequest,
    body_required=False,
    response=SeedTokenResponse,
    errors=(429, 503),
    description="The seed widget's request. `roomName` is checked but the server chooses the room.",
)
@rate_limited
async def get_token(request: Request) -> HTTPResponse:
    body = parse_body(request, GetTokenRequest, allow_empty=True)
    grant = await _start_call(request, body.participantName)
    return json(
        SeedTokenResponse(
            token=grant.token,
            roomName=grant.room_name,
            room_name=grant.room_name,
            participant_identity=grant.participant_identity,
            call_id=grant.call_id,
            livekit_url=grant.livekit_url,
            expires_at=grant.expires_at,
        ).model_dump()
    )


@bp.post("/calls/<call_id:str>/rejoin")
@endpoint(
    "Rejoin a call after a dropped connection",
    tag="customer",
    ok=201,
    body=RejoinRequest,
    response=CallCreated,
    errors=(403, 404, 409, 422, 429, 503),
    description="A fresh token for the same call, in exchange for the latest one (once).",
)
@rate_limited
@call_id_path
async def rejoin(request: Request, call_id: str) -> HTTPResponse:
    body = parse_body(request, RejoinRequest)
    settings = request.app.ctx.settings
    oldest = settings.MAX_CALL_DURATION_S + settings.CUSTOMER_REJOIN_GRACE_S
    proof = rejoin_proof(settings, body.token, call_id, oldest)
    grant = await request.app.ctx.res.calls.reissue_token(call_id, proof)
    log.info("customer_rejoin_token", call_id=call_id)
    return _created(grant)
