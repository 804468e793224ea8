"""Phone calls a supervisor places and hands on: `POST /api/calls/outbound` (the agent dials
a number) and `POST /api/calls/{call_id}/transfer` (a cold transfer of a phone caller).

Toll fraud is the risk of a dialling API: a number must be E.164 and start with one of
`SIP_OUTBOUND_ALLOWED_PREFIXES` (422 naming `to` otherwise, nothing dialled), and no more than
`SIP_OUTBOUND_MAX_PER_HOUR` calls go out in any hour across every API instance (429): the count
and the claim are one PostgreSQL transaction under an advisory lock (`outbound_dials`). The
number is never logged: log lines carry the call id and the masked number.
"""

from __future__ import annotations

from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.auth import ACT_ON_CALLS, Principal, require
from api.docs import endpoint
from api.domain.workflows_client import CallsClient
from api.errors import Conflict, RateLimited, ValidationFailed
from api.routes.calls import live_call
from api.schemas import Accepted, OutboundCall, OutboundCallRequest, TransferRequest
from api.validation import call_id_path, parse_body
from core.log import get_logger
from core.models import CallStatus, Channel, DialRequest, Direction, new_call_id, room_name_for
from core.telephony import allowed, claim_outbound, is_e164, mask_number

log = get_logger("api.phone")
bp = Blueprint("phone", url_prefix="/api/calls")


@bp.post("/outbound")
@endpoint(
    "Call a number: the agent dials it (E.164, an allowed prefix; capped per hour)",
    tag="supervisor",
    ok=201,
    body=OutboundCallRequest,
    response=OutboundCall,
    errors=(422, 429, 503),
    secured=True,
)
@require(ACT_ON_CALLS)
async def place_call(request: Request) -> HTTPResponse:
    body = parse_body(request, OutboundCallRequest)
    settings = request.app.ctx.settings
    if not is_e164(body.to):
        raise ValidationFailed("to: must be an E.164 number (+ and 7 to 15 digits)", field="to")
    if not allowed(body.to, settings.sip_allowed_prefixes):
        raise ValidationFailed(
            "to: this number may not be called (SIP_OUTBOUND_ALLOWED_PREFIXES)", field="to"
        )
    principal: Principal = request.ctx.principal
    call_id = new_call_id()
    per_hour = settings.SIP_OUTBOUND_MAX_PER_HOUR
    if not await claim_outbound(request.app.ctx.res.db, call_id, principal.id, per_hour):
        raise RateLimited(
            f"at most {per_hour} outbound calls an hour (SIP_OUTBOUND_MAX_PER_HOUR)",
            code="outbound_cap",
            headers={"Retry-After": "300"},
        )
    dial = DialRequest(
        to=body.to, reason=body.reason or "", ringing_timeout_s=settings.SIP_RINGING_TIMEOUT_S
    )
    calls: CallsClient = request.app.ctx.res.calls
    await calls.start_outbound_phone(call_id, body.customer_name, dial)
    log.info("outbound_call_placed", call_id=call_id, to=mask_number(body.to), by=principal.id)
    return json(
        {
            "call_id": call_id,
            "room_name": room_name_for(call_id),
            "status": CallStatus.DIALING.value,
            "channel": Channel.PHONE.value,
            "direction": Direction.OUTBOUND.value,
            "phone": mask_number(body.to),
        },
        status=201,
    )


@bp.post("/<call_id:str>/transfer")
@endpoint(
    "Cold-transfer a phone caller to another number (SIP REFER); the call ends `transferred`",
    tag="supervisor",
    body=TransferRequest,
    response=Accepted,
    errors=(404, 409, 422),
    secured=True,
)
@require(ACT_ON_CALLS)
@call_id_path
async def transfer(request: Request, call_id: str) -> HTTPResponse:
    body = parse_body(request, TransferRequest)
    row = await live_call(request, call_id)
    if row.get("channel", Channel.PHONE.value) != Channel.PHONE.value:
        raise Conflict(f"call {call_id} is not a phone call", code="not_a_phone_call")
    principal: Principal = request.ctx.principal
    calls: CallsClient = request.app.ctx.res.calls
    status = await calls.transfer(call_id, body.to, principal.id)
    log.info("call_transferred", call_id=call_id, by=principal.id)
    return json({"call_id": call_id, "action": "transfer", "status": status})
