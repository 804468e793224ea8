"""`POST /webhooks/livekit`: LiveKit's signed webhooks, routed to the call's workflow as signals.

Verification is livekit-api's `WebhookReceiver`: the `Authorization` header is a JWT signed with
the API secret, unexpired, whose `sha256` claim is the body's hash. Anything unsigned, tampered
with or stale is 401 and touches nothing. Verified events for rooms that are not calls (or calls
no longer running) are acknowledged and logged, so LiveKit does not resend them forever; when
Temporal is unreachable the answer is 503 so that LiveKit does resend.
"""

from __future__ import annotations

import binascii

import jwt
from google.protobuf.json_format import ParseError
from livekit.protocol.webhook import WebhookEvent
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse

from api.docs import endpoint
from api.domain.admission import Admission
from api.domain.webhook_mapping import participant_kind, route
from api.errors import DEPENDENCY_ERRORS, NotFound, Unauthorized
from api.metrics import WEBHOOK_VERIFICATION_FAILURES, WEBHOOKS
from core.log import get_logger
from core.models import call_id_from_room

log = get_logger("api.webhooks")
bp = Blueprint("webhooks", url_prefix="/webhooks")


def verify(request: Request) -> WebhookEvent:
    header = request.headers.get("authorization", "").strip()
    token = header[7:].strip() if header.lower().startswith("bearer ") else header
    if not token:
        raise Unauthorized("webhook is not signed", code="webhook_unsigned")
    try:
        body = request.body.decode("utf-8")
        return request.app.ctx.res.webhooks.receive(body, token)  # type: ignore[no-any-return]
    except (jwt.PyJWTError, ParseError, UnicodeDecodeError, ValueError, binascii.Error) as exc:
        raise Unauthorized("webhook signature is not valid", code="webhook_invalid") from exc
    except Exception as exc:
        # WebhookReceiver raises a bare Exception for a missing or mismatched body hash;
        # anything more specific is not a verification failure and propagates.
        if type(exc) is Exception:
            raise Unauthorized(
                "webhook body does not match its signature", code="webhook_invalid"
            ) from exc
        raise


async def note_for_admission(request: Request, event: WebhookEvent, room: str | None) -> None:
    """Note on `api.domain.admission`'s places what a verified event says: the customer is in
    (the call stops waiting) or the room is gone (the call stops counting). A customer who left
    may rejoin within the grace, so that call counts until the calls table says it ended. A
    database that cannot be reached loses nothing that matters: the place is freed anyway when
    the calls table says the call ended, or at the timeouts (logged, and the webhook still
    reaches the workflow)."""
    call_id = call_id_from_room(room) if room else None
    if call_id is None:
        return
    admission: Admission = request.app.ctx.admission
    db = request.app.ctx.res.db
    try:
        if (
            event.event == "participant_joined"
            and participant_kind(event.participant) == "customer"
        ):
            await admission.customer_joined(db, call_id)
        elif event.event == "room_finished":
            await admission.ended(db, call_id)
    except DEPENDENCY_ERRORS as exc:
        log.warning("admission_note_failed", call_id=call_id, webhook_event=event.event,
                    error=type(exc).__name__)  # fmt: skip


@bp.post("/livekit")
@endpoint(
    "LiveKit webhook receiver (signed by LiveKit)",
    tag="livekit",
    errors=(401, 503),
    description="Body is LiveKit's WebhookEvent JSON; `Authorization` is LiveKit's signed JWT.",
)
async def livekit_webhook(request: Request) -> HTTPResponse:
    try:
        event = verify(request)
    except Unauthorized as exc:
        WEBHOOK_VERIFICATION_FAILURES.labels(exc.code).inc()
        raise
    room, routed = route(event, request.body)
    await note_for_admission(request, event, room)
    if routed is None:
        WEBHOOKS.labels(event.event or "unknown", "ignored").inc()
        log.info("webhook_ignored", webhook_event=event.event, room=room, webhook_id=event.id)
        return json({"status": "ignored"})
    calls = request.app.ctx.res.calls
    try:
        if routed.start_phone_room:
            await calls.start_inbound_phone(routed.start_phone_room, routed.signal, routed.arg)
        else:
            await calls.signal(routed.call_id, routed.signal, routed.arg)
    except NotFound:
        WEBHOOKS.labels(event.event, "no_workflow").inc()
        log.info("webhook_for_closed_call", call_id=routed.call_id, webhook_event=event.event)
        return json({"status": "no_live_call"})
    WEBHOOKS.labels(event.event, "signalled").inc()
    log.info(
        "webhook_routed", call_id=routed.call_id, webhook_event=event.event, signal=routed.signal
    )
    return json({"status": "signalled"})
