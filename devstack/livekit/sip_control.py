"""The phone network's side of the control API, under /_emulator/sip/.

`POST /_emulator/sip/inbound` places a call from a phone to a trunk number, as a carrier
would send the INVITE; `PUT /_emulator/sip/outcomes/{number}` says how the phone at `number`
answers the calls LiveKit places to it (CreateSIPParticipant, or a transfer to it);
`GET /_emulator/sip/calls` lists every call placed or received. A caller hangs up with the
ordinary `DELETE /_emulator/rooms/{room}/participants/{identity}`.
"""

from __future__ import annotations

from aiohttp import web

from .control import EMULATOR, _body, _field
from .errors import ControlError
from .sip import OUTCOMES, Outcome
from .sip_rules import normalize_number

sip_routes = web.RouteTableDef()


@sip_routes.post("/_emulator/sip/inbound")
async def inbound(request: web.Request) -> web.Response:
    body = await _body(request)
    caller, called = _field(body, "from", str, ""), _field(body, "to", str, "")
    for name, value in (("from", caller), ("to", called)):
        if not value.strip():
            raise ControlError(
                400, "invalid_argument", f"{name} is required (a phone number)", name
            )
    call = request.app[EMULATOR].inbound_call(caller, called)  # 404 when refused
    return web.json_response(
        {"room": call.room, "identity": call.identity, "sip_call_id": call.sip_call_id,
         "status": call.status}, status=201)  # fmt: skip


@sip_routes.get("/_emulator/sip/outcomes")
async def list_outcomes(request: web.Request) -> web.Response:
    outcomes = request.app[EMULATOR].sip_outcomes
    return web.json_response(
        {"outcomes": {n: {"outcome": o.outcome, "ring_s": o.ring_s} for n, o in outcomes.items()}}
    )


@sip_routes.put("/_emulator/sip/outcomes/{number}")
async def set_outcome(request: web.Request) -> web.Response:
    body = await _body(request)
    outcome = _field(body, "outcome", str, "answer")
    if outcome not in OUTCOMES:
        raise ControlError(400, "invalid_argument", f"outcome must be one of {OUTCOMES}", "outcome")
    ring_s = _field(body, "ring_s", (int, float), 1.0)
    if ring_s < 0:
        raise ControlError(400, "invalid_argument", "ring_s must not be negative", "ring_s")
    number = normalize_number(request.match_info["number"])
    request.app[EMULATOR].sip_outcomes[number] = Outcome(outcome, float(ring_s))
    return web.json_response({"number": number, "outcome": outcome, "ring_s": float(ring_s)})


@sip_routes.delete("/_emulator/sip/outcomes/{number}")
async def clear_outcome(request: web.Request) -> web.Response:
    number = normalize_number(request.match_info["number"])
    if request.app[EMULATOR].sip_outcomes.pop(number, None) is None:
        raise ControlError(404, "not_found", "no outcome set for this number", "number")
    return web.json_response({"cleared": number})


@sip_routes.get("/_emulator/sip/calls")
async def list_calls(request: web.Request) -> web.Response:
    calls = request.app[EMULATOR].sip_calls.values()
    return web.json_response({"calls": [c.to_dict() for c in calls]})
