"""SIP: phone calls in and out of rooms, as livekit/sip (the SIP bridge) places them.

Inbound (`inbound_call`, what the phone network does through POST /_emulator/sip/inbound):
the called number picks a trunk (none: SIP 404, the call never reaches a room), the dispatch
rules pick a room (none: the bridge drops the call), the room is created with the rule's
`room_config` (its agents are dispatched), and the caller joins as a SIP participant with
`sip.callStatus=ringing` and its audio track. The call turns `active` when the caller can
hear someone: another participant's audio track in the room (or a second SIP participant),
as the bridge waits for its first subscription (pkg/sip/inbound.go `waitSubscribe`, room.go).
No one within the trunk's `ringing_timeout` (default 3 min) and the caller leaves.

Outbound (`dial`, CreateSIPParticipant): the participant joins at `dialing` before the phone
rings, turns `ringing` on 180 Ringing, `active` on answer. The far end's behaviour is set per
number (`set_outcome`); a failure ends the participant with LiveKit's disconnect reason and,
for `wait_until_answered`, is the Twirp error the server returns: SIPStatus mapped by
livekit/protocol `sipCodeToGRPCCode` with `sip_status_code`/`sip_status` metadata, or for no
answer within `ringing_timeout` `canceled` "sip request timed out" without a SIP status.

Transfer (`transfer`, SIP REFER) goes to a number whose outcome is looked up the same way; on
success the participant leaves the room. Logs show numbers masked (last four digits).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from google.protobuf import any_pb2
from google.rpc import status_pb2
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from core.log import get_logger

from .config import EmulatorConfig
from .errors import ControlError
from .ids import new_id
from .sip_rules import evaluate_rule, mask_number, match_trunk, normalize_number, select_rule
from .twirp import TwirpError

if TYPE_CHECKING:
    from .emulator import Room

log = get_logger("devstack.livekit")

OUTCOMES = ("answer", "busy", "no_answer", "reject", "unavailable")
# outcome -> (SIP code, reason phrase, Twirp code, disconnect reason)
_FAILURES = {
    "busy": (486, "Busy Here", "resource_exhausted", models.USER_REJECTED),
    "reject": (603, "Decline", "permission_denied", models.USER_REJECTED),
    "unavailable": (480, "Temporarily Unavailable", "resource_exhausted", models.USER_UNAVAILABLE),
}
_GRPC = {"resource_exhausted": 8, "permission_denied": 7}  # google.rpc.Code
DEFAULT_RINGING_TIMEOUT_S = 180.0  # livekit/sip participant.go defaultRingingTimeout


@dataclass
class Outcome:
    outcome: str = "answer"
    ring_s: float = 1.0


@dataclass
class SipCall:
    """One call through the emulated bridge; `to_dict` is what GET /_emulator/sip/calls lists."""

    sip_call_id: str
    direction: str  # "inbound" | "outbound"
    number: str  # the phone's number: the caller (inbound) or the callee (outbound)
    trunk_number: str
    trunk_id: str = ""
    rule_id: str = ""
    room: str = ""
    identity: str = ""
    status: str = "ringing"  # dialing, ringing, active, ended, failed, rejected
    outcome: str = ""  # answer, busy, no_answer, reject, unavailable, canceled,
    # or why the bridge refused it: no_trunk, no_rule, room_full
    sip_status: int = 0
    transferred_to: str = ""
    created_at: float = field(default_factory=time.time)
    ringing_at: float | None = None
    answered_at: float | None = None
    ended_at: float | None = None
    answered: asyncio.Future[None] | None = None
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def to_dict(self) -> dict[str, Any]:
        skip = ("answered", "tasks")
        return {k: v for k, v in self.__dict__.items() if k not in skip}


def sip_error(outcome: str) -> TwirpError:
    """The Twirp error livekit-server returns when the far end answers `outcome`."""
    if outcome == "no_answer":
        return TwirpError("canceled", "sip request timed out")
    code, reason, twirp_code, _ = _FAILURES[outcome]
    # xtwirp.ToError: SIPStatus.TwirpErrorMeta() plus the gRPC status as `error_details`.
    status = sip_pb.SIPStatus(code=code, status=reason)  # type: ignore[arg-type]
    detail = any_pb2.Any()
    detail.Pack(status)
    grpc = status_pb2.Status(code=_GRPC[twirp_code], message=f"sip status {code}: {reason}",
                             details=[detail])  # fmt: skip
    meta = {"sip_status_code": str(code), "sip_status": reason,
            "error_details": base64.b64encode(grpc.SerializeToString()).decode()}  # fmt: skip
    return TwirpError(twirp_code, f"sip status: {code}: {reason}", meta)


class SipMixin:
    """The SIP half of the Emulator (which provides the attributes declared here)."""

    config: EmulatorConfig
    rooms: dict[str, Room]
    sip_inbound: dict[str, sip_pb.SIPInboundTrunkInfo]
    sip_outbound: dict[str, sip_pb.SIPOutboundTrunkInfo]
    sip_rules: dict[str, sip_pb.SIPDispatchRuleInfo]
    sip_calls: dict[str, SipCall]
    sip_outcomes: dict[str, Outcome]

    def _spawn(self, coro: Coroutine[Any, Any, Any], *owners: set[asyncio.Task[Any]]) -> None:
        raise NotImplementedError

    def create_room(self, req: room_pb.CreateRoomRequest) -> tuple[Room, bool]:
        raise NotImplementedError

    join: Callable[..., models.ParticipantInfo]  # Emulator.join

    def leave(self, room_name: str, identity: str, reason: int, *, closing: bool = False) -> None:
        raise NotImplementedError

    def sip_reset(self) -> None:
        for call in self.sip_calls.values():
            _cancel(call)  # a ringing timeout of a call forgotten here rings for nobody
        for store in (self.sip_inbound, self.sip_outbound, self.sip_rules, self.sip_calls):
            store.clear()
        self.sip_outcomes.clear()

    def outcome_for(self, number: str) -> Outcome:
        return self.sip_outcomes.get(normalize_number(number), Outcome())

    def _log(self, event: str, call: SipCall, **kw: Any) -> None:
        log.info(event, sip_call_id=call.sip_call_id, direction=call.direction,
                 number=mask_number(call.number), room=call.room, **kw)  # fmt: skip

    # -- inbound ------------------------------------------------------------------------------

    def inbound_call(self, caller: str, called: str) -> SipCall:
        """A phone calls `called` from `caller`; raises ControlError 404 when it is refused."""
        call = SipCall(new_id("SCL_"), "inbound", caller, called)
        self.sip_calls[call.sip_call_id] = call
        trunk = match_trunk(list(self.sip_inbound.values()), caller, called)
        if trunk is None:
            self._end(call, "rejected", "no_trunk", sip_status=404)
            raise ControlError(404, "no_trunk", "No trunk found (SIP 404)", "to")
        call.trunk_id = trunk.sip_trunk_id
        rule = select_rule(list(self.sip_rules.values()), trunk, caller, called)
        if rule is None:  # livekit-server answers DROP: the bridge sends nothing back
            self._end(call, "rejected", "no_rule")
            msg = f"No SIP Dispatch Rules matched for {called!r}: the call is dropped unanswered"
            raise ControlError(404, "no_dispatch_rule", msg, "to")
        call.rule_id = rule.sip_dispatch_rule_id
        d = evaluate_rule(rule, trunk, call.sip_call_id, caller, called, "sip.emulator.invalid")
        call.room, call.identity = str(d["room"]), str(d["identity"])
        cfg = rule.room_config
        room, _ = self.create_room(room_pb.CreateRoomRequest(
            name=call.room, empty_timeout=cfg.empty_timeout,
            departure_timeout=cfg.departure_timeout, max_participants=cfg.max_participants,
            metadata=cfg.metadata, egress=cfg.egress, agents=cfg.agents))  # fmt: skip
        attrs = {**d["attributes"], "sip.callStatus": "ringing"}  # type: ignore[dict-item]
        call.ringing_at = time.time()
        self._log("sip_inbound_ringing", call, trunk_id=call.trunk_id, rule_id=call.rule_id)
        self._join(call, name=str(d["name"]), metadata=str(d["metadata"]), attributes=attrs)
        if call.status == "ringing":  # nobody to hear yet (join may have made it active)
            timeout = trunk.ringing_timeout.ToTimedelta().total_seconds()
            coro = self._ring_inbound(call, timeout or DEFAULT_RINGING_TIMEOUT_S)
            self._spawn(coro, call.tasks, room.tasks)
        return call

    async def _ring_inbound(self, call: SipCall, timeout_s: float) -> None:
        await asyncio.sleep(timeout_s)
        if call.status == "ringing":
            self._end(call, "failed", "no_answer")
            self._leave(call, models.UNKNOWN_REASON)

    def sip_room_changed(self, room_name: str) -> None:
        """An audio track was published or a participant joined: ringing callers may hear it."""
        room = self.rooms.get(room_name)
        if room is None:
            return
        for call in list(self.sip_calls.values()):
            if call.room != room_name or call.direction != "inbound" or call.status != "ringing":
                continue
            others = [p for i, p in room.participants.items() if i != call.identity]
            if any(p.info.kind == models.ParticipantInfo.SIP for p in others) or any(
                t.type == models.AUDIO for p in others for t in p.info.tracks
            ):
                self._set_status(call, "active")
                call.outcome = call.outcome or "answer"

    # -- outbound -----------------------------------------------------------------------------

    def dial(self, req: sip_pb.CreateSIPParticipantRequest, trunk_number: str) -> SipCall:
        """Join the callee's participant at `dialing` and start calling (see `_ring_outbound`)."""
        call = SipCall(new_id("SCL_"), "outbound", req.sip_call_to, trunk_number,
                       trunk_id=req.sip_trunk_id, room=req.room_name,
                       identity=req.participant_identity or "sip_" + req.sip_call_to,
                       status="dialing")  # fmt: skip
        attrs = dict(req.participant_attributes)
        attrs.update({"sip.callID": call.sip_call_id, "sip.trunkID": req.sip_trunk_id})
        if not req.hide_phone_number:
            trunk = self.sip_outbound.get(req.sip_trunk_id)
            attrs["sip.phoneNumber"] = req.sip_call_to
            attrs["sip.hostname"] = trunk.address if trunk else req.trunk.hostname
            attrs["sip.trunkPhoneNumber"] = trunk_number
        attrs["sip.callStatus"] = "dialing"
        if req.wait_until_answered:
            call.answered = asyncio.get_running_loop().create_future()
        self.sip_calls[call.sip_call_id] = call
        self._log("sip_outbound_dialing", call, trunk_id=call.trunk_id)
        try:
            self._join(call, name=req.participant_name, metadata=req.participant_metadata,
                       attributes=attrs)  # fmt: skip
        except ControlError as e:  # a 4xx, so that livekit-api does not dial again
            raise TwirpError("failed_precondition", str(e)) from None
        ring_timeout = req.ringing_timeout.ToTimedelta().total_seconds()
        room = self.rooms[call.room]
        outcome = self.outcome_for(req.sip_call_to)
        coro = self._ring_outbound(call, outcome, ring_timeout or DEFAULT_RINGING_TIMEOUT_S)
        self._spawn(coro, call.tasks, room.tasks)
        return call

    async def _ring_outbound(self, call: SipCall, outcome: Outcome, timeout_s: float) -> None:
        await asyncio.sleep(self.config.sip_dial_delay_s)
        self._set_status(call, "ringing")
        result = await _far_end(outcome, timeout_s)
        if result == "answer":
            call.outcome = "answer"
            self._set_status(call, "active")
            _resolve(call.answered, None)
            return
        reason = _FAILURES[result][3] if result in _FAILURES else models.USER_UNAVAILABLE
        self._end(call, "failed", result, sip_status=_FAILURES.get(result, (0,))[0])
        _resolve(call.answered, sip_error(result))
        self._leave(call, reason)

    # -- transfer -----------------------------------------------------------------------------

    async def transfer(self, call: SipCall, transfer_to: str, timeout_s: float) -> None:
        """REFER the active call to `transfer_to`; the participant leaves once it is done."""
        if call.status in ("ended", "failed", "rejected"):
            raise TwirpError("not_found", "unknown call")
        if call.status != "active":
            raise TwirpError("failed_precondition", "can't transfer non established call")
        if call.transferred_to:
            if call.transferred_to != transfer_to:
                raise TwirpError("invalid_argument", "call already being transferred elsewhere")
        call.transferred_to = transfer_to
        target = _uri_user(transfer_to)
        outcome = self.outcome_for(target)
        self._log("sip_transfer", call, to=mask_number(target))
        result = await _far_end(outcome, timeout_s)
        if result != "answer":
            call.transferred_to = ""
            raise sip_error(result)
        if call.status == "active":
            self._end(call, "ended", call.outcome, transferred=True)
            self._leave(call, models.CLIENT_INITIATED)

    # -- shared -------------------------------------------------------------------------------

    def sip_participant_left(
        self, room_name: str, info: models.ParticipantInfo, reason: int
    ) -> None:
        """A SIP participant is leaving (hang-up, transfer, failure, RemoveParticipant, room
        closed): its call ends. A hang-up leaves `sip.callStatus=hangup` (CallHangup)."""
        if reason == models.CLIENT_INITIATED:
            info.attributes["sip.callStatus"] = "hangup"
        for call in self.sip_calls.values():
            if call.room == room_name and call.identity == info.identity and not call.ended_at:
                before_answer = call.status in ("dialing", "ringing")
                self._end(call, "ended", "canceled" if before_answer else call.outcome)
                _resolve(call.answered, TwirpError("canceled", "call ended before it was answered"))
                _cancel(call)

    def _join(self, call: SipCall, **kw: Any) -> None:
        """The bridge joins the call's participant and publishes its audio track."""
        try:
            self.join(call.room, call.identity, "sip", publish_audio=True, **kw)
        except ControlError:  # the room is full: the call never reaches anyone
            self._end(call, "rejected", "room_full")
            raise

    def _set_status(self, call: SipCall, status: str) -> None:
        call.status = status
        if status == "ringing":
            call.ringing_at = time.time()
        elif status == "active":
            call.answered_at = time.time()
            _cancel(call)  # no more ringing timeout
        room = self.rooms.get(call.room)
        p = room.participants.get(call.identity) if room else None
        if p is not None:
            p.info.attributes["sip.callStatus"] = status
            p.info.version += 1
        self._log("sip_call_" + status, call)

    def _end(self, call: SipCall, status: str, outcome: str, sip_status: int = 0,
             transferred: bool = False) -> None:  # fmt: skip
        call.status, call.outcome, call.ended_at = status, outcome, time.time()
        call.sip_status = sip_status or call.sip_status
        _cancel(call)  # an ended call rings no more (its ringing timeout is moot)
        self._log("sip_call_ended", call, status=status, outcome=outcome, transferred=transferred)

    def _leave(self, call: SipCall, reason: int) -> None:
        room = self.rooms.get(call.room)
        if room is not None and call.identity in room.participants:
            self.leave(call.room, call.identity, reason)


async def _far_end(outcome: Outcome, timeout_s: float) -> str:
    """What the ringing phone does: its outcome after `ring_s`, or no answer at the timeout."""
    if outcome.outcome != "no_answer" and outcome.ring_s < timeout_s:
        await asyncio.sleep(outcome.ring_s)
        return outcome.outcome
    await asyncio.sleep(timeout_s)
    return "no_answer"


def _cancel(call: SipCall) -> None:
    for t in list(call.tasks):
        if t is not asyncio.current_task():
            t.cancel()


def _resolve(fut: asyncio.Future[None] | None, error: Exception | None) -> None:
    if fut is None or fut.done():
        return
    if error is None:
        fut.set_result(None)
    else:
        fut.set_exception(error)


def _uri_user(uri: str) -> str:
    """`<sip:+1555@host>`, `sips:...`, `tel:+1555` -> "+1555"."""
    inner = uri[1:-1] if uri.startswith("<") and uri.endswith(">") else uri
    inner = inner.split(":", 1)[1] if ":" in inner else inner
    return inner.split("@", 1)[0].split(";", 1)[0]
