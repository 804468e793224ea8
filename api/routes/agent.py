"""The agent's entry point: `POST /internal/calls/{call_id}/interim` fans an interim transcript
out to the call's live WebSockets (never stored; `seq: null`). The agent authenticates with a
LiveKit JWT signed by our API key/secret granting `roomAdmin` on the call's room.
"""

from __future__ import annotations

from datetime import UTC, datetime

import jwt
from sanic import Blueprint, Request
from sanic.response import HTTPResponse

from api.docs import endpoint
from api.domain.fanout import publish_interim
from api.errors import Unauthorized
from api.schemas import Empty, InterimRequest
from api.validation import call_id_path, parse_body, parse_query
from core.events import InterimTranscript
from core.models import room_name_for

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
    if video is None or not video.room_admin or video.room != room_name_for(call_id):
        raise Unauthorized(f"the token does not grant roomAdmin on {room_name_for(call_id)}")
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
