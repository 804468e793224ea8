"""The human desk: reps set their state, see and answer offers; supervisors watch the queue.

- `GET/PUT /api/desk/me` (reps, supervisors, admins): the rep's state (`offline`, `available`,
  `break`; `wrap_up` after a call; `busy` and `away` are the desk's to set) and skills (within
  those of their token, `name:token:rep:sales+service`).
- `GET /api/desk/offers`: the signed-in rep's current offer with its briefing;
  `POST /api/desk/offers/{offer_id}/accept` → `{"room", "url", "token", "briefing", ...}` (the
  rep joins the customer's room, audited on the call as `rep_joined`); `.../decline`.
- `POST /api/desk/me/back-to-sarah`: the rep's part is over, Sarah carries on; the rep wraps up.
- `POST /api/desk/me/end-call`: the rep ends the call they are on (the call's `end_call`).
- `GET /api/desk/queue`, `GET /api/desk/stats` (reps, supervisors, admins).
- `POST /api/calls/{call_id}/handoff {"reason", "skill"?}` (supervisors): hand a call to the desk.
- `WS /ws/desk`: a `desk` message (queue, stats, the rep's own state and offer) whenever the
  desk changes.

The desk itself is a workflow (workflows/desk.py); a refusal of its (an offer no longer yours,
a state you cannot choose now) is a 409 that changes nothing.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from sanic import Blueprint, Request
from sanic.response import HTTPResponse
from sanic.response import json as json_response
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.exceptions import ConnectionClosed

import core.desk as d
from api.auth import (
    ACT_ON_CALLS,
    DESK,
    DESK_WATCH,
    WS_SUBPROTOCOL,
    Principal,
    authenticate,
    require,
)
from api.docs import endpoint
from api.domain.desk import briefing, rep_token
from api.errors import ApiError, Conflict, NotFound, ValidationFailed
from api.routes.calls import live_call, record_action
from api.schemas import DeskMeRequest, Empty, HandoffRequest
from api.validation import call_id_path, parse_body
from core.log import get_logger
from core.models import SIGNAL_AGENT_ALERT, AgentAlert, EventKind, room_name_for
from workflows.desk_client import DeskClient, DeskRefused

log = get_logger("api.desk")
bp = Blueprint("desk", url_prefix="/api/desk")
handoff_bp = Blueprint("desk_handoff", url_prefix="/api/calls")
ws_bp = Blueprint("desk_live", url_prefix="/ws/desk")


def _desk(request: Request) -> DeskClient:
    return request.app.ctx.res.desk  # type: ignore[no-any-return]


def _me(request: Request) -> Principal:
    return request.ctx.principal  # type: ignore[no-any-return]


def _refused(exc: DeskRefused) -> Conflict:
    return Conflict(str(exc), code="desk_refused")


def rep_view(p: Principal, rep: d.Rep | None, offer: d.Offer | None = None) -> dict[str, Any]:
    view = {"rep_id": p.id, "name": p.id, "state": d.RepState.OFFLINE.value,
            "skills": list(p.skills), "allowed_skills": list(p.skills), "call_id": "",
            "offer_id": ""}  # fmt: skip
    if rep is not None:
        view |= {"name": rep.name, "state": rep.state, "skills": rep.skills, "call_id": rep.call_id,
                 "offer_id": rep.offer_id}  # fmt: skip
    return view


def _rep(snap: d.Snapshot, rep_id: str) -> d.Rep | None:
    return next((r for r in snap.reps if r.id == rep_id), None)


@bp.get("/me")
@endpoint("The signed-in rep's state at the desk", tag="desk", secured=True, errors=(503,))
@require(DESK)
async def get_me(request: Request) -> HTTPResponse:
    snap = await _desk(request).snapshot()
    return json_response(rep_view(_me(request), _rep(snap, _me(request).id)))


@bp.put("/me")
@endpoint("Set the rep's state (and skills)", tag="desk", body=DeskMeRequest, secured=True,
          errors=(409, 503))  # fmt: skip
@require(DESK)
async def put_me(request: Request) -> HTTPResponse:
    body = parse_body(request, DeskMeRequest)
    me = _me(request)
    skills = body.skills if body.skills is not None else list(me.skills)
    if not set(skills) <= set(me.skills):
        raise ValidationFailed(f"skills: you may take calls for {', '.join(me.skills)} only",
                               field="skills")  # fmt: skip
    try:
        rep = await _desk(request).set_rep(d.SetRep(me.id, me.id, body.state, skills))
    except DeskRefused as exc:
        raise _refused(exc) from exc
    log.info("desk_rep_state", rep=me.id, state=rep.state)
    return json_response(rep_view(me, rep))


@bp.get("/queue")
@endpoint("Calls waiting for a rep, oldest first", tag="desk", secured=True, errors=(503,))
@require(DESK_WATCH)
async def get_queue(request: Request) -> HTTPResponse:
    snap = await _desk(request).snapshot()
    return json_response({"queue": [dataclasses.asdict(q) for q in snap.queue]})


@bp.get("/stats")
@endpoint("The desk's figures (service level, abandon rate, waits, reps by state)", tag="desk",
          secured=True, errors=(503,))  # fmt: skip
@require(DESK_WATCH)
async def get_stats(request: Request) -> HTTPResponse:
    snap = await _desk(request).snapshot()
    return json_response(dataclasses.asdict(snap.stats))


async def offer_view(request: Request, offer: d.Offer, at: float) -> dict[str, Any]:
    return {"offer_id": offer.id, "call_id": offer.call_id, "skill": offer.skill,
            "reason": offer.reason, "expires_in_s": round(max(0.0, offer.expires_at - at), 1),
            "waited_s": round(at - offer.enqueued_at, 1),
            "briefing": await briefing(request.app.ctx.res.db, offer.call_id, offer.reason)}  # fmt: skip


@bp.get("/offers")
@endpoint("The signed-in rep's current offer, with its briefing", tag="desk", secured=True,
          errors=(503,))  # fmt: skip
@require(DESK)
async def get_offers(request: Request) -> HTTPResponse:
    snap = await _desk(request).snapshot()
    mine = [o for o in snap.offers if o.rep_id == _me(request).id]
    return json_response({"offers": [await offer_view(request, o, snap.at) for o in mine]})


def _check_offer_id(offer_id: str) -> None:
    try:
        uuid.UUID(offer_id)
    except ValueError:
        raise ValidationFailed("offer_id: is not an offer id", field="offer_id") from None


@bp.post("/offers/<offer_id:str>/accept")
@endpoint("Accept an offer: a token to join the customer's room, and the briefing", tag="desk",
          ok=201, secured=True, errors=(404, 409, 503))  # fmt: skip
@require(DESK)
async def accept(request: Request, offer_id: str) -> HTTPResponse:
    _check_offer_id(offer_id)
    parse_body(request, Empty, allow_empty=True)
    me = _me(request)
    try:
        got = await _desk(request).answer(d.AnswerOffer(me.id, offer_id, True))
    except DeskRefused as exc:
        raise _refused(exc) from exc
    assert got is not None
    settings = request.app.ctx.settings
    room = got.room or room_name_for(got.call_id)
    token, identity, expires_at = rep_token(settings, room, me.id, me.id)
    await record_action(request, got.call_id, "rep_joined", detail=identity)
    brief = await briefing(request.app.ctx.res.db, got.call_id, got.reason)
    log.info("desk_offer_accepted", call_id=got.call_id, rep=me.id, waited_s=got.waited_s)
    return json_response({"offer_id": offer_id, "call_id": got.call_id, "room": room,
                          "url": settings.livekit_public_url, "token": token,
                          "participant_identity": identity, "expires_at": expires_at,
                          "briefing": brief}, status=201)  # fmt: skip


@bp.post("/offers/<offer_id:str>/decline")
@endpoint("Decline an offer: it goes to the next rep", tag="desk", secured=True,
          errors=(409, 503))  # fmt: skip
@require(DESK)
async def decline(request: Request, offer_id: str) -> HTTPResponse:
    _check_offer_id(offer_id)
    parse_body(request, Empty, allow_empty=True)
    try:
        await _desk(request).answer(d.AnswerOffer(_me(request).id, offer_id, False))
    except DeskRefused as exc:
        raise _refused(exc) from exc
    return json_response({"offer_id": offer_id, "status": "declined"})


async def _my_call(request: Request) -> tuple[Principal, str]:
    """The signed-in rep and the call they are on; 409 when they are on none."""
    parse_body(request, Empty, allow_empty=True)
    me = _me(request)
    rep = _rep(await _desk(request).snapshot(), me.id)
    if rep is None or rep.state != d.RepState.BUSY:
        raise Conflict("you are not on a call", code="desk_refused")
    return me, rep.call_id


@bp.post("/me/back-to-sarah")
@endpoint("The rep hands the call back to Sarah (who carries on) and wraps up", tag="desk",
          secured=True, errors=(409, 503))  # fmt: skip
@require(DESK)
async def back_to_sarah(request: Request) -> HTTPResponse:
    me, call_id = await _my_call(request)
    with_call = True
    try:
        await record_action(request, call_id, "back_to_sarah", detail=me.id)
    except ApiError:
        with_call = False  # the call ended meanwhile: only the wrap-up is left
    try:
        out = await _desk(request).set_rep(d.SetRep(me.id, me.id, d.RepState.WRAP_UP))
    except DeskRefused as exc:
        raise _refused(exc) from exc
    return json_response(rep_view(me, out) | {"returned_call_id": call_id if with_call else ""})


@bp.post("/me/end-call")
@endpoint("The rep ends the call they are on (audited, like a supervisor's end)", tag="desk",
          secured=True, errors=(409, 503))  # fmt: skip
@require(DESK)
async def end_my_call(request: Request) -> HTTPResponse:
    me, call_id = await _my_call(request)
    try:
        status = await request.app.ctx.res.calls.end(call_id, "ended by the rep", me.id)
    except NotFound as exc:
        raise Conflict(f"call {call_id} has ended", code="call_ended") from exc
    log.info("call_end_requested", call_id=call_id, by=me.id)
    return json_response({"call_id": call_id, "action": "end", "status": status})


@handoff_bp.post("/<call_id:str>/handoff")
@endpoint("Hand a live call to the desk's queue for a skill (audited)", tag="supervisor", ok=202,
          body=HandoffRequest, secured=True, errors=(404, 409))  # fmt: skip
@require(ACT_ON_CALLS)
@call_id_path
async def handoff(request: Request, call_id: str) -> HTTPResponse:
    body = parse_body(request, HandoffRequest)
    await live_call(request, call_id)
    by = _me(request).id
    await record_action(request, call_id, "handoff", detail=f"{body.skill}: {body.reason}")
    alert = AgentAlert(id=f"handoff-{uuid.uuid4().hex}", kind=EventKind.HANDOFF_REQUESTED.value,
                       detail=body.reason, at=datetime.now(UTC).isoformat(), skill=body.skill,
                       by=by)  # fmt: skip
    try:
        await request.app.ctx.res.calls.signal(call_id, SIGNAL_AGENT_ALERT, alert)
    except NotFound as exc:
        raise Conflict(f"call {call_id} has ended", code="call_ended") from exc
    return json_response({"call_id": call_id, "action": "handoff", "skill": body.skill,
                          "status": "queued"}, status=202)  # fmt: skip


# --- live -----------------------------------------------------------------------------------


def desk_message(snap: d.Snapshot, me: Principal) -> dict[str, Any]:
    """What one desk page sees: the queue and figures, its own state and offer (a rep never
    sees another rep's offer)."""
    offer = next((o for o in snap.offers if o.rep_id == me.id), None)
    return {"type": "desk", "at": snap.at, "queue": [dataclasses.asdict(q) for q in snap.queue],
            "stats": dataclasses.asdict(snap.stats),
            "me": rep_view(me, _rep(snap, me.id)),
            "offer": ({"offer_id": offer.id, "call_id": offer.call_id, "skill": offer.skill,
                       "reason": offer.reason,
                       "expires_in_s": round(max(0.0, offer.expires_at - snap.at), 1)}
                      if offer else None)}  # fmt: skip


@ws_bp.websocket("", subprotocols=[WS_SUBPROTOCOL])
async def desk_socket(request: Request, ws: WebsocketImplProtocol) -> None:
    """Sends a `desk` message at once and again whenever what this page sees changes (the
    figures' clock-driven longest wait alone does not count as a change)."""
    try:
        me = await authenticate(request, DESK_WATCH, websocket=True)
    except ApiError as err:
        await ws.send(json.dumps(err.body() | {"type": "error"}))
        await ws.close(code=4000 + err.status, reason=err.message[:120])
        return
    feed = request.app.ctx.res.desk_feed
    sub = feed.subscribe()
    last = ""
    try:
        while True:
            snap = await sub.get()
            if isinstance(snap, ApiError):
                await ws.send(json.dumps(snap.body() | {"type": "error"}))
                continue
            if isinstance(snap, Exception):
                raise snap
            msg = desk_message(snap, me)
            stats = {k: v for k, v in msg["stats"].items() if k != "longest_wait_s"}
            queue = [{k: v for k, v in q.items() if k not in ("waited_s", "estimate_s")}
                     for q in msg["queue"]]  # fmt: skip
            offer = msg["offer"] and {k: v for k, v in msg["offer"].items() if k != "expires_in_s"}
            key = json.dumps([msg["me"], offer, stats, queue], sort_keys=True, default=str)
            if key != last:
                await ws.send(json.dumps(msg, default=str))
                last = key
    except ConnectionClosed:
        return
    finally:
        feed.unsubscribe(sub)
