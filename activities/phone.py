"""The phone line's activities: dial a number into a call's room, and hand a caller on.

`dial_outbound` is the one way this product places a phone call (outbound calls now,
callbacks next): LiveKit `CreateSIPParticipant` with `wait_until_answered` through the
outbound trunk `ops telephony setup` made, with `hide_phone_number` (no number in the
participant's attributes). It answers a `DialResult`; busy, no answer, a decline and an
unreachable phone are outcomes, not errors, so Temporal never dials twice for them. Only a
LiveKit that cannot be reached raises (`LiveKitUnavailable`); no trunk is `LiveKitRejected`.
The number never goes into a log line: only the call id and the outcome do.
"""

from __future__ import annotations

import aiohttp
from google.protobuf.duration_pb2 import Duration
from livekit import api
from livekit.protocol import sip as sip_pb
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import types as act
from core import models as m
from core.log import get_logger
from core.telephony import OUTBOUND_TRUNK_NAME

log = get_logger("activities.phone")

# SIP response codes -> outcomes (RFC 3261 §21; livekit/sip passes the far end's code on).
_BUSY = frozenset({486, 600})
_REJECTED = frozenset({403, 603})
_NO_ANSWER = frozenset({408, 487})  # request timeout, request terminated
_UNAVAILABLE = frozenset({404, 410, 480, 484, 502, 503, 604})


def dial_outcome(exc: api.TwirpError) -> m.DialResult:
    """What a failed CreateSIPParticipant means for the call."""
    code = exc.metadata.get("sip_status_code") if exc.metadata else None
    status = int(code) if code and code.isdigit() else 0
    detail = f"{exc.code}: {exc.message}"[:300]
    if status in _BUSY:
        return m.DialResult("busy", status, detail)
    if status in _REJECTED:
        return m.DialResult("rejected", status, detail)
    if status in _NO_ANSWER or (not status and exc.code in ("canceled", "deadline_exceeded")):
        return m.DialResult("no_answer", status, detail)
    if status in _UNAVAILABLE:
        return m.DialResult("unavailable", status, detail)
    return m.DialResult("dial_failed", status, detail)


class PhoneActivities:
    """Bound to one LiveKit client. The outbound trunk is looked up by its name on every dial
    (one small request): a trunk `ops telephony setup` replaced is never dialled through."""

    def __init__(self, lk: api.LiveKitAPI) -> None:
        self.lk = lk

    async def outbound_trunk_id(self) -> str:
        trunks = await self.lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        return next((t.sip_trunk_id for t in trunks.items if t.name == OUTBOUND_TRUNK_NAME), "")

    @activity.defn(name=act.DIAL_OUTBOUND)
    async def dial_outbound(self, inp: act.DialInput) -> m.DialResult:
        """Dial `inp.to` into the room; returns once it answered or did not."""
        try:
            trunk = await self.outbound_trunk_id()
            if not trunk:
                raise ApplicationError(
                    f"no outbound trunk named {OUTBOUND_TRUNK_NAME!r}: run `ops telephony setup`",
                    type=act.ERR_LIVEKIT_REJECTED,
                    non_retryable=True,
                )
            req = api.CreateSIPParticipantRequest(
                sip_trunk_id=trunk,
                sip_call_to=inp.to,
                room_name=inp.room_name,
                participant_identity=inp.identity,
                participant_name=inp.name,
                hide_phone_number=True,
                wait_until_answered=True,
                ringing_timeout=Duration(seconds=int(inp.ringing_timeout_s)),
            )
            info: sip_pb.SIPParticipantInfo = await self.lk.sip.create_sip_participant(
                req, timeout=inp.ringing_timeout_s + 10
            )
        except api.TwirpError as exc:
            if exc.status >= 500 and exc.code not in ("canceled", "deadline_exceeded"):
                raise ApplicationError(f"LiveKit failed the dial: {exc.code}",
                                       type=act.ERR_LIVEKIT_UNAVAILABLE) from exc  # fmt: skip
            result = dial_outcome(exc)
            log.info("dial_ended", call_id=inp.call_id, outcome=result.outcome,
                     sip_status=result.sip_status)  # fmt: skip
            return result
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApplicationError(f"LiveKit is not reachable: {type(exc).__name__}",
                                   type=act.ERR_LIVEKIT_UNAVAILABLE) from exc  # fmt: skip
        log.info("dial_answered", call_id=inp.call_id, sip_call_id=info.sip_call_id)
        return m.DialResult(
            "answered", sip_call_id=info.sip_call_id, identity=info.participant_identity
        )

    @activity.defn(name=act.TRANSFER_CALL)
    async def transfer_call(self, inp: act.TransferInput) -> str:
        """Cold transfer (SIP REFER); "" once done, else why it failed (SIP status, reason)."""
        try:
            await self.lk.sip.transfer_sip_participant(
                api.TransferSIPParticipantRequest(
                    room_name=inp.room_name,
                    participant_identity=inp.identity,
                    transfer_to=inp.to,
                ),
                timeout=60,
            )
        except api.TwirpError as exc:
            if exc.status >= 500 and exc.code not in ("canceled", "deadline_exceeded"):
                raise ApplicationError(f"LiveKit failed the transfer: {exc.code}",
                                       type=act.ERR_LIVEKIT_UNAVAILABLE) from exc  # fmt: skip
            log.info("transfer_failed", call_id=inp.call_id, code=exc.code)
            return dial_outcome(exc).outcome + f" ({exc.code})"
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApplicationError(f"LiveKit is not reachable: {type(exc).__name__}",
                                   type=act.ERR_LIVEKIT_UNAVAILABLE) from exc  # fmt: skip
        log.info("transferred", call_id=inp.call_id)
        return ""
