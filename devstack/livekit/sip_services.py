"""Twirp `livekit.SIP`: trunks, dispatch rules, CreateSIPParticipant, TransferSIPParticipant.

Grants, validation messages and error codes are livekit-server's (pkg/service/sip.go, and
livekit/protocol `livekit/sip.go` ValidateResult): trunks and rules need `sip.admin`; a call
needs `sip.call` (admin does not imply it); a transfer needs `sip.call` plus `roomAdmin` on
the room. ids: `ST_` trunks, `SDR_` rules, `SCL_` calls, `STR_` transfers. Deleting an
unknown trunk succeeds (the server's store deletes nothing); an unknown rule is `not_found`.
"""

from __future__ import annotations

import random
from typing import Any

from google.protobuf.message import Message
from livekit.protocol import sip as sip_pb

from .auth import Grants, require_admin, require_sip
from .emulator import Emulator
from .ids import new_id
from .sip_rules import check_rule_conflicts, check_trunk_conflicts, normalize_number
from .twirp import TwirpError

_TRUNK_GONE = "requested sip trunk does not exist"
DEFAULT_TRANSFER_TIMEOUT_S = 30.0  # pkg/service/sip.go TransferSIPParticipant


def _invalid(msg: str) -> TwirpError:
    return TwirpError("invalid_argument", msg)


def _new_trunk(g: Grants | None, req: Any) -> Any:
    """A copy of the request's trunk, validated as every trunk is; the caller stores it."""
    require_sip(g, "admin")
    if not req.HasField("trunk"):
        raise _invalid("missing trunk")
    if req.trunk.sip_trunk_id:
        raise _invalid("trunk id must not be set")
    info = type(req.trunk)()
    info.CopyFrom(req.trunk)
    return info


def _store(store: dict[str, Any], info: Any) -> Message:
    info.sip_trunk_id = new_id("ST_")
    store[info.sip_trunk_id] = info
    return info


def create_inbound_trunk(
    emu: Emulator, req: sip_pb.CreateSIPInboundTrunkRequest, g: Grants | None
) -> Message:
    t = _new_trunk(g, req)
    if not ((t.auth_username or t.auth_password) or t.allowed_addresses or t.numbers):
        raise _invalid("for security, one of the fields must be set: "
                       "AuthUsername+AuthPassword, AllowedAddresses or Numbers")  # fmt: skip
    check_trunk_conflicts(list(emu.sip_inbound.values()), t)
    return _store(emu.sip_inbound, t)


def create_outbound_trunk(
    emu: Emulator, req: sip_pb.CreateSIPOutboundTrunkRequest, g: Grants | None
) -> Message:
    t = _new_trunk(g, req)
    if not t.numbers:
        raise _invalid("no trunk numbers specified")
    if not t.address:
        raise _invalid("no outbound address specified")
    return _store(emu.sip_outbound, t)


def _by_ids(items: dict[str, Any], ids: list[str]) -> list[Any]:
    return [items[i] for i in ids if i in items] if ids else list(items.values())


def list_inbound_trunk(
    emu: Emulator, req: sip_pb.ListSIPInboundTrunkRequest, g: Grants | None
) -> Message:
    require_sip(g, "admin")
    wanted = {normalize_number(n) for n in req.numbers}
    items = [
        t for t in _by_ids(emu.sip_inbound, list(req.trunk_ids))
        if not wanted or not t.numbers or wanted & {normalize_number(n) for n in t.numbers}
    ]  # fmt: skip
    return sip_pb.ListSIPInboundTrunkResponse(items=items)


def list_outbound_trunk(
    emu: Emulator, req: sip_pb.ListSIPOutboundTrunkRequest, g: Grants | None
) -> Message:
    require_sip(g, "admin")
    items = [
        t for t in _by_ids(emu.sip_outbound, list(req.trunk_ids))
        if not req.numbers or not t.numbers or set(req.numbers) & set(t.numbers)
    ]  # fmt: skip
    return sip_pb.ListSIPOutboundTrunkResponse(items=items)


def _trunk(g: Grants | None, store: dict[str, Any], trunk_id: str) -> Any:
    require_sip(g, "admin")
    if not trunk_id:
        raise _invalid("trunk ID is required")
    if trunk_id not in store:
        raise TwirpError("not_found", _TRUNK_GONE)
    return store[trunk_id]


def get_inbound_trunk(
    emu: Emulator, req: sip_pb.GetSIPInboundTrunkRequest, g: Grants | None
) -> Message:
    trunk = _trunk(g, emu.sip_inbound, req.sip_trunk_id)
    return sip_pb.GetSIPInboundTrunkResponse(trunk=trunk)


def get_outbound_trunk(
    emu: Emulator, req: sip_pb.GetSIPOutboundTrunkRequest, g: Grants | None
) -> Message:
    trunk = _trunk(g, emu.sip_outbound, req.sip_trunk_id)
    return sip_pb.GetSIPOutboundTrunkResponse(trunk=trunk)


def delete_trunk(emu: Emulator, req: sip_pb.DeleteSIPTrunkRequest, g: Grants | None) -> Message:
    require_sip(g, "admin")
    if not req.sip_trunk_id:
        raise _invalid("trunk ID is required")
    emu.sip_inbound.pop(req.sip_trunk_id, None)
    emu.sip_outbound.pop(req.sip_trunk_id, None)
    return sip_pb.SIPTrunkInfo(sip_trunk_id=req.sip_trunk_id)


def create_dispatch_rule(
    emu: Emulator, req: sip_pb.CreateSIPDispatchRuleRequest, g: Grants | None
) -> Message:
    require_sip(g, "admin")
    info = sip_pb.SIPDispatchRuleInfo()
    if req.HasField("dispatch_rule"):
        if req.dispatch_rule.sip_dispatch_rule_id:
            raise _invalid("rule id must not be set")
        info.CopyFrom(req.dispatch_rule)
    else:  # the legacy flat fields (CreateSIPDispatchRuleRequest.DispatchRuleInfo)
        for name in ("rule", "room_config"):
            if req.HasField(name):
                getattr(info, name).CopyFrom(getattr(req, name))
        info.trunk_ids.extend(req.trunk_ids)
        info.inbound_numbers.extend(req.inbound_numbers)
        info.attributes.update(req.attributes)
        info.hide_phone_number, info.name = req.hide_phone_number, req.name
        info.metadata, info.room_preset = req.metadata, req.room_preset
    if not info.HasField("rule") or not info.rule.WhichOneof("rule"):
        raise _invalid("missing rule")
    check_rule_conflicts(list(emu.sip_rules.values()), info)
    info.sip_dispatch_rule_id = new_id("SDR_")
    emu.sip_rules[info.sip_dispatch_rule_id] = info
    return info


def list_dispatch_rule(
    emu: Emulator, req: sip_pb.ListSIPDispatchRuleRequest, g: Grants | None
) -> Message:
    require_sip(g, "admin")
    trunks = set(req.trunk_ids)
    items = [
        r for r in _by_ids(emu.sip_rules, list(req.dispatch_rule_ids))
        if not trunks or not r.trunk_ids or trunks & set(r.trunk_ids)
    ]  # fmt: skip
    return sip_pb.ListSIPDispatchRuleResponse(items=items)


def delete_dispatch_rule(
    emu: Emulator, req: sip_pb.DeleteSIPDispatchRuleRequest, g: Grants | None
) -> Message:
    require_sip(g, "admin")
    if not req.sip_dispatch_rule_id:
        raise _invalid("dispatch rule ID is required")
    rule = emu.sip_rules.pop(req.sip_dispatch_rule_id, None)
    if rule is None:
        raise TwirpError("not_found", "requested sip dispatch rule does not exist")
    return rule


async def create_sip_participant(
    emu: Emulator, req: sip_pb.CreateSIPParticipantRequest, g: Grants | None
) -> Message:
    require_sip(g, "call")
    if not req.sip_trunk_id and not req.HasField("trunk") and not req.sip_number:
        raise _invalid("missing sip trunk id and sip number")
    if req.HasField("trunk") and not req.trunk.hostname:
        raise _invalid("no outbound hostname specified")
    if not req.sip_call_to:
        raise _invalid("missing sip callee number")
    if "@" in req.sip_call_to:
        raise _invalid("SipCallTo should be a phone number or SIP user, not a full SIP URI")
    if not req.room_name:
        raise _invalid("missing room name")
    trunk = None
    if req.sip_trunk_id:
        trunk = emu.sip_outbound.get(req.sip_trunk_id)
        if trunk is None:
            raise TwirpError("not_found", _TRUNK_GONE)
    number = req.sip_number
    if not number:
        if trunk is None or not trunk.numbers:
            raise TwirpError("failed_precondition", "no numbers on outbound trunk")
        number = random.choice(list(trunk.numbers))
    call = emu.dial(req, number)
    if call.answered is not None:
        await call.answered  # raises the Twirp error of a call that was not answered
    p = emu.get_participant(call.room, call.identity)
    return sip_pb.SIPParticipantInfo(participant_id=p.info.sid, room_name=call.room,
                                     participant_identity=call.identity,
                                     sip_call_id=call.sip_call_id)  # fmt: skip


async def transfer_sip_participant(
    emu: Emulator, req: sip_pb.TransferSIPParticipantRequest, g: Grants | None
) -> Message:
    if not req.room_name:
        raise _invalid("Missing room name")
    if not req.participant_identity:
        raise _invalid("Missing participant identity")
    require_sip(g, "call")
    require_admin(g, req.room_name)
    to = req.transfer_to
    if not to:
        raise _invalid("missing transfer to")
    inner = to[1:-1] if to.startswith("<") and to.endswith(">") else to
    if not inner.startswith(("sip:", "sips:", "tel:")):
        raise _invalid("transfer_to must be a valid SIP(s) or TEL URI (sip:, sips: or tel:)")
    to = f"<{inner}>" if inner.startswith(("sip:", "sips:")) else inner
    p = emu.get_participant(req.room_name, req.participant_identity)
    call_id = p.info.attributes.get("sip.callID")
    if call_id is None:
        raise _invalid("no SIP session associated with participant")
    call = emu.sip_calls.get(call_id)
    if call is None:
        raise TwirpError("not_found", "unknown call")
    timeout = req.ringing_timeout.ToTimedelta().total_seconds() or DEFAULT_TRANSFER_TIMEOUT_S
    await emu.transfer(call, to, timeout)
    return sip_pb.TransferSIPParticipantResponse(
        transfer_id=new_id("STR_"),
        status=sip_pb.STS_TRANSFER_SUCCESSFUL,
        reason=sip_pb.STR_COMPLETED,
    )


SIP_HANDLERS: dict[str, Any] = {
    "livekit.SIP/CreateSIPInboundTrunk": create_inbound_trunk,
    "livekit.SIP/CreateSIPOutboundTrunk": create_outbound_trunk,
    "livekit.SIP/GetSIPInboundTrunk": get_inbound_trunk,
    "livekit.SIP/GetSIPOutboundTrunk": get_outbound_trunk,
    "livekit.SIP/ListSIPInboundTrunk": list_inbound_trunk,
    "livekit.SIP/ListSIPOutboundTrunk": list_outbound_trunk,
    "livekit.SIP/DeleteSIPTrunk": delete_trunk,
    "livekit.SIP/CreateSIPDispatchRule": create_dispatch_rule,
    "livekit.SIP/ListSIPDispatchRule": list_dispatch_rule,
    "livekit.SIP/DeleteSIPDispatchRule": delete_dispatch_rule,
    "livekit.SIP/CreateSIPParticipant": create_sip_participant,
    "livekit.SIP/TransferSIPParticipant": transfer_sip_participant,
}
