"""`ops telephony setup`: the LiveKit SIP objects the product answers and dials through.

Idempotent by name (core.telephony): a second run finds the same trunks and rule and changes
nothing; a setting that changed (numbers, trunk address) replaces the object it describes
(LiveKit's Update* is not on every server). Works the same against LiveKit Cloud, a
self-hosted livekit-server with livekit/sip, and the devstack emulator.

- Inbound trunk `callcenter inbound` with `SIP_INBOUND_NUMBERS`.
- Dispatch rule `callcenter agent` on it: individual (one room per call, `phone_<...>`), with
  `hide_phone_number` (the caller's number is in no room name, identity or attribute: the
  identity is a hash, the room carries the last four digits), and a `room_config` that
  dispatches our agent into the new room.
- Outbound trunk `callcenter outbound` to `SIP_OUTBOUND_ADDRESS` with `SIP_OUTBOUND_NUMBERS`
  (its credentials are sent to LiveKit, never printed).
"""

from __future__ import annotations

import json
from typing import Any

from livekit import api
from livekit.protocol import sip as sip_pb

from core.models import PHONE_ROOM_PREFIX
from core.settings import Settings
from core.telephony import (
    DISPATCH_RULE_NAME,
    INBOUND_TRUNK_NAME,
    OUTBOUND_TRUNK_NAME,
    mask_number,
)


def _rule(settings: Settings, trunk_id: str) -> sip_pb.SIPDispatchRuleInfo:
    agent = api.RoomAgentDispatch(
        agent_name=settings.AGENT_NAME, metadata=json.dumps({"channel": "phone"})
    )
    return sip_pb.SIPDispatchRuleInfo(
        name=DISPATCH_RULE_NAME,
        trunk_ids=[trunk_id],
        hide_phone_number=True,
        rule=sip_pb.SIPDispatchRule(
            dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(room_prefix=PHONE_ROOM_PREFIX)
        ),
        room_config=api.RoomConfiguration(agents=[agent]),
    )


def _same_rule(a: sip_pb.SIPDispatchRuleInfo, b: sip_pb.SIPDispatchRuleInfo) -> bool:
    return (
        list(a.trunk_ids) == list(b.trunk_ids)
        and a.hide_phone_number == b.hide_phone_number
        and a.rule == b.rule
        and [x.agent_name for x in a.room_config.agents]
        == [x.agent_name for x in b.room_config.agents]
    )


async def ensure_inbound(lk: api.LiveKitAPI, settings: Settings) -> dict[str, Any]:
    numbers = settings.sip_inbound_numbers
    report: dict[str, Any] = {"numbers": [mask_number(n) for n in numbers]}
    trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
    ours = [t for t in trunks if t.name == INBOUND_TRUNK_NAME]
    trunk = next((t for t in ours if sorted(t.numbers) == sorted(numbers)), None)
    for stale in [t for t in ours if t is not trunk]:
        await lk.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=stale.sip_trunk_id))
        report.setdefault("deleted", []).append(stale.sip_trunk_id)
    if not numbers:
        report["trunk"] = "none (SIP_INBOUND_NUMBERS is empty)"
        return report
    if trunk is None:
        info = sip_pb.SIPInboundTrunkInfo(name=INBOUND_TRUNK_NAME, numbers=numbers)
        trunk = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(trunk=info))
        report["trunk"] = f"created {trunk.sip_trunk_id}"
    else:
        report["trunk"] = f"present {trunk.sip_trunk_id}"
    want = _rule(settings, trunk.sip_trunk_id)
    rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
    mine = [r for r in rules if r.name == DISPATCH_RULE_NAME]
    rule = next((r for r in mine if _same_rule(r, want)), None)
    for old_rule in [r for r in mine if r is not rule]:
        await lk.sip.delete_dispatch_rule(
            api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=old_rule.sip_dispatch_rule_id)
        )
    if rule is None:
        rule = await lk.sip.create_dispatch_rule(
            api.CreateSIPDispatchRuleRequest(dispatch_rule=want)
        )
        report["dispatch_rule"] = f"created {rule.sip_dispatch_rule_id}"
    else:
        report["dispatch_rule"] = f"present {rule.sip_dispatch_rule_id}"
    return report


async def ensure_outbound(lk: api.LiveKitAPI, settings: Settings) -> dict[str, Any]:
    numbers = settings.sip_outbound_numbers
    report: dict[str, Any] = {"caller_ids": [mask_number(n) for n in numbers]}
    password = settings.SIP_OUTBOUND_PASSWORD
    want = sip_pb.SIPOutboundTrunkInfo(
        name=OUTBOUND_TRUNK_NAME,
        address=settings.SIP_OUTBOUND_ADDRESS,
        numbers=numbers,
        auth_username=settings.SIP_OUTBOUND_USERNAME,
        auth_password=password.get_secret_value() if password else "",
    )
    trunks = (await lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())).items
    ours = [t for t in trunks if t.name == OUTBOUND_TRUNK_NAME]
    # A server never answers the password back: a changed password needs a new address or
    # numbers, or deleting the trunk by hand (docs/deploy.md).
    trunk = next((t for t in ours if t.address == want.address
                  and sorted(t.numbers) == sorted(numbers)
                  and t.auth_username == want.auth_username), None)  # fmt: skip
    for stale in [t for t in ours if t is not trunk]:
        await lk.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=stale.sip_trunk_id))
        report.setdefault("deleted", []).append(stale.sip_trunk_id)
    if not settings.SIP_OUTBOUND_ADDRESS or not numbers:
        report["trunk"] = "none (SIP_OUTBOUND_ADDRESS or SIP_OUTBOUND_NUMBERS is empty)"
        return report
    if trunk is None:
        trunk = await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(trunk=want))
        report["trunk"] = f"created {trunk.sip_trunk_id}"
    else:
        report["trunk"] = f"present {trunk.sip_trunk_id}"
    return report


async def ensure_telephony(lk: api.LiveKitAPI, settings: Settings) -> dict[str, Any]:
    """Create or find the inbound trunk, its dispatch rule and the outbound trunk."""
    return {
        "inbound": await ensure_inbound(lk, settings),
        "outbound": await ensure_outbound(lk, settings),
    }
