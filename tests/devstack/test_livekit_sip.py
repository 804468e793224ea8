"""livekit-api's own `api.sip` client against the emulator's SIP, as a user of LiveKit drives
it: trunks and dispatch rules, a phone calling in (POST /_emulator/sip/inbound), calls out
(CreateSIPParticipant) with each outcome the phone network can give, and transfers."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import status_pb2
from livekit import api
from livekit.protocol import agent_dispatch as dispatch_pb
from livekit.protocol import models
from livekit.protocol import room as room_pb
from livekit.protocol import sip as sip_pb

from tests.fixtures.livekit import ControlCallError, LiveKitEmulator, WebhookSink

CALLER = "+15551230001"


def number() -> str:
    return "+1555" + str(uuid.uuid4().int)[:7]


def room_name() -> str:
    return f"call-{uuid.uuid4().hex[:10]}"


@pytest.fixture(autouse=True)
async def forget_sip(livekit_emulator: LiveKitEmulator) -> AsyncIterator[None]:
    """Trunks and rules live in the session's emulator: each test starts without any."""
    livekit_emulator.handle.emulator.sip_reset()
    yield
    livekit_emulator.handle.emulator.sip_reset()


async def inbound_setup(
    lk: api.LiveKitAPI, rule: sip_pb.SIPDispatchRule, **rule_kw
) -> tuple[str, sip_pb.SIPInboundTrunkInfo, sip_pb.SIPDispatchRuleInfo]:
    called = number()
    trunk = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
        trunk=sip_pb.SIPInboundTrunkInfo(name="main line", numbers=[called])))  # fmt: skip
    info = sip_pb.SIPDispatchRuleInfo(rule=rule, trunk_ids=[trunk.sip_trunk_id], **rule_kw)
    created = await lk.sip.create_dispatch_rule(
        api.CreateSIPDispatchRuleRequest(dispatch_rule=info)
    )
    return called, trunk, created


async def participant(lk: api.LiveKitAPI, room: str, identity: str) -> models.ParticipantInfo:
    return await lk.room.get_participant(room_pb.RoomParticipantIdentity(room=room,
                                                                         identity=identity))  # fmt: skip


async def wait_status(lk: api.LiveKitAPI, room: str, identity: str, status: str) -> None:
    for _ in range(500):
        p = await participant(lk, room, identity)
        if p.attributes.get("sip.callStatus") == status:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{identity} never reached {status}")


async def calls(emu: LiveKitEmulator) -> dict[str, dict]:
    return {c["sip_call_id"]: c for c in (await emu.control("GET", "sip/calls"))["calls"]}


async def test_trunks_and_rules_round_trip(livekit_emulator: LiveKitEmulator):
    a, b = number(), number()
    async with livekit_emulator.api() as lk:
        t1 = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
            trunk=sip_pb.SIPInboundTrunkInfo(name="a", numbers=[a])))  # fmt: skip
        t2 = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
            trunk=sip_pb.SIPInboundTrunkInfo(name="b", numbers=[b], allowed_numbers=[CALLER])))  # fmt: skip
        out = await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(
            trunk=sip_pb.SIPOutboundTrunkInfo(name="o", address="sip.carrier.example",
                                              numbers=[a])))  # fmt: skip
        assert all(t.sip_trunk_id.startswith("ST_") for t in (t1, t2, out))
        listed = await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest(numbers=[b]))
        assert [t.sip_trunk_id for t in listed.items] == [t2.sip_trunk_id]
        by_id = await lk.sip.list_inbound_trunk(
            api.ListSIPInboundTrunkRequest(trunk_ids=[t1.sip_trunk_id])
        )
        assert [t.name for t in by_id.items] == ["a"]
        outs = await lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())
        assert [t.address for t in outs.items] == ["sip.carrier.example"]

        with pytest.raises(api.TwirpError) as e:  # the same number for the same callers
            await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
                trunk=sip_pb.SIPInboundTrunkInfo(numbers=[a])))  # fmt: skip
        assert (e.value.code, e.value.status) == ("invalid_argument", 400)
        with pytest.raises(api.TwirpError) as e:  # open to anyone: refused for security
            await lk.sip.create_inbound_trunk(
                api.CreateSIPInboundTrunkRequest(trunk=sip_pb.SIPInboundTrunkInfo(name="x"))
            )
        assert e.value.code == "invalid_argument" and "for security" in e.value.message
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(
                trunk=sip_pb.SIPOutboundTrunkInfo(address="sip.carrier.example")))  # fmt: skip
        assert e.value.message == "no trunk numbers specified"

        individual = sip_pb.SIPDispatchRule(
            dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(room_prefix="call")
        )
        r1 = await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            dispatch_rule=sip_pb.SIPDispatchRuleInfo(rule=individual, name="r1",
                                                     trunk_ids=[t1.sip_trunk_id])))  # fmt: skip
        r2 = await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            rule=individual, trunk_ids=[t2.sip_trunk_id], name="legacy fields"))  # fmt: skip
        assert r1.sip_dispatch_rule_id.startswith("SDR_") and r2.name == "legacy fields"
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
                rule=individual, trunk_ids=[t1.sip_trunk_id]))  # fmt: skip
        assert e.value.code == "invalid_argument" and "already exists" in e.value.message
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(name="no rule"))
        assert (e.value.code, e.value.message) == ("invalid_argument", "missing rule")
        mine = await lk.sip.list_dispatch_rule(
            api.ListSIPDispatchRuleRequest(trunk_ids=[t2.sip_trunk_id])
        )
        assert [r.sip_dispatch_rule_id for r in mine.items] == [r2.sip_dispatch_rule_id]

        deleted = await lk.sip.delete_dispatch_rule(
            api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=r1.sip_dispatch_rule_id)
        )
        assert deleted.name == "r1"
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.delete_dispatch_rule(
                api.DeleteSIPDispatchRuleRequest(sip_dispatch_rule_id=r1.sip_dispatch_rule_id)
            )
        assert (e.value.code, e.value.status) == ("not_found", 404)
        gone = await lk.sip.delete_trunk(api.DeleteSIPTrunkRequest(sip_trunk_id=t1.sip_trunk_id))
        assert gone.sip_trunk_id == t1.sip_trunk_id
        left = await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())
        assert [t.sip_trunk_id for t in left.items] == [t2.sip_trunk_id]


def sip_token(emu: LiveKitEmulator, video: api.VideoGrants, sip: api.SIPGrants) -> str:
    return (
        api.AccessToken(emu.api_key, emu.api_secret)
        .with_grants(video)
        .with_sip_grants(sip)
        .to_jwt()
    )


async def twirp(emu: LiveKitEmulator, method: str, body: dict, tok: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{emu.url}/twirp/livekit.SIP/{method}", json=body,
                          headers={"Authorization": f"Bearer {tok}"}) as r:  # fmt: skip
            return r.status, await r.json()


async def test_grants_are_the_servers(livekit_emulator: LiveKitEmulator):
    emu, room = livekit_emulator, room_name()
    admin = sip_token(emu, api.VideoGrants(), api.SIPGrants(admin=True))
    caller = sip_token(emu, api.VideoGrants(), api.SIPGrants(call=True))
    trunk = {"trunk": {"numbers": [number()]}}
    status, body = await twirp(emu, "CreateSIPInboundTrunk", trunk, caller)
    assert (status, body["code"]) == (401, "unauthenticated")  # call does not imply admin
    status, body = await twirp(emu, "ListSIPDispatchRule", {}, caller)
    assert status == 401
    status, _ = await twirp(emu, "CreateSIPInboundTrunk", trunk, admin)
    assert status == 200
    dial = {"sip_number": "+15550000000", "sip_call_to": number(), "room_name": room}
    status, body = await twirp(emu, "CreateSIPParticipant", dial, admin)
    assert (status, body["code"]) == (401, "unauthenticated")  # admin does not imply call
    transfer = {"room_name": room, "participant_identity": "x", "transfer_to": "tel:+1555"}
    status, body = await twirp(emu, "TransferSIPParticipant", transfer, caller)
    assert (status, body["code"]) == (401, "unauthenticated")  # roomAdmin on the room too
    other_room = sip_token(emu, api.VideoGrants(room_admin=True, room="other"),
                           api.SIPGrants(call=True))  # fmt: skip
    status, _ = await twirp(emu, "TransferSIPParticipant", transfer, other_room)
    assert status == 401
    both = sip_token(emu, api.VideoGrants(room_admin=True, room=room), api.SIPGrants(call=True))
    status, body = await twirp(emu, "TransferSIPParticipant", transfer, both)
    assert (status, body["code"]) == (404, "not_found")  # allowed; there is no such participant


async def test_a_phone_calls_in_and_is_answered_by_the_agent(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    emu = livekit_emulator
    rule = sip_pb.SIPDispatchRule(
        dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(room_prefix="call")
    )
    config = room_pb.RoomConfiguration(
        agents=[dispatch_pb.RoomAgentDispatch(agent_name="sarah-cme", metadata="m")]
    )
    async with emu.api() as lk:
        called, trunk, created = await inbound_setup(
            lk, rule, metadata='{"line":"sales"}', attributes={"channel": "phone"},
            room_config=config)  # fmt: skip
        answer = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": called},
                                   expect=201)  # fmt: skip
        room, identity = answer["room"], answer["identity"]
        assert room.startswith(f"call_{CALLER}_") and identity == f"sip_{CALLER}"
        assert answer["sip_call_id"].startswith("SCL_") and answer["status"] == "ringing"

        joined = await livekit_webhooks.wait_for(
            "participant_joined", room, where=lambda e: e.participant.identity == identity
        )
        p = joined.participant
        assert p.kind == models.ParticipantInfo.SIP and p.state == models.ParticipantInfo.ACTIVE
        assert p.name == f"Phone {CALLER}" and p.metadata == '{"line":"sales"}'
        assert p.attributes["sip.callStatus"] == "ringing"  # nobody has answered yet
        assert {k: v for k, v in p.attributes.items() if k != "sip.callStatus"} == {
            "channel": "phone", "sip.callID": answer["sip_call_id"],
            "sip.trunkID": trunk.sip_trunk_id, "sip.ruleID": created.sip_dispatch_rule_id,
            "sip.phoneNumber": CALLER, "sip.hostname": "sip.emulator.invalid",
            "sip.trunkPhoneNumber": called,
        }  # fmt: skip
        # The rule's room_config dispatched the agent; its microphone makes the call active.
        (dispatch,) = await lk.agent_dispatch.list_dispatch(room)
        assert dispatch.agent_name == "sarah-cme"
        await wait_status(lk, room, identity, "active")
        call = (await calls(emu))[answer["sip_call_id"]]
        assert (call["direction"], call["number"], call["outcome"]) == ("inbound", CALLER, "answer")
        assert call["answered_at"] >= call["ringing_at"] >= call["created_at"]

        await emu.leave(room, identity)  # the caller hangs up
        left = await livekit_webhooks.wait_for(
            "participant_left", room, where=lambda e: e.participant.identity == identity
        )
        assert left.participant.attributes["sip.callStatus"] == "hangup"
        assert left.participant.disconnect_reason == models.CLIENT_INITIATED
        await livekit_webhooks.wait_for("room_finished", room)
        call = (await calls(emu))[answer["sip_call_id"]]
        assert call["status"] == "ended" and call["ended_at"] >= call["answered_at"]
        names = livekit_webhooks.names(room)
        assert names.index("room_started") < names.index("participant_joined")


async def test_the_caller_rings_until_someone_can_be_heard(livekit_emulator: LiveKitEmulator):
    emu, room = livekit_emulator, room_name()
    await emu.set_auto_agent(enabled=False, room=room)
    rule = sip_pb.SIPDispatchRule(dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=room))
    async with emu.api() as lk:
        called, _, _ = await inbound_setup(lk, rule, hide_phone_number=True)
        answer = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": called},
                                   expect=201)  # fmt: skip
        identity = answer["identity"]
        assert answer["room"] == room and CALLER not in identity and identity.startswith("sip_")
        p = await participant(lk, room, identity)
        assert p.name == "Phone 0001" and "sip.phoneNumber" not in p.attributes
        await emu.join(room, "listener", "customer")  # joined, but silent
        assert (await participant(lk, room, identity)).attributes["sip.callStatus"] == "ringing"
        await emu.publish(room, "listener")
        p = await participant(lk, room, identity)
        assert p.attributes["sip.callStatus"] == "active"
        await emu.end_room(room)
        await emu.wait_idle()


async def test_a_call_nothing_routes_is_refused_and_joins_nothing(
    livekit_emulator: LiveKitEmulator,
):
    emu = livekit_emulator
    rooms_before = len((await emu.state())["rooms"])
    refused = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": number()},
                                expect=404)  # fmt: skip
    assert refused["error"]["code"] == "no_trunk" and refused["error"]["field"] == "to"
    async with emu.api() as lk:
        called = number()
        await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
            trunk=sip_pb.SIPInboundTrunkInfo(numbers=[called])))  # fmt: skip
        refused = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": called},
                                    expect=404)  # fmt: skip
        assert refused["error"]["code"] == "no_dispatch_rule"
    assert len((await emu.state())["rooms"]) == rooms_before
    outcomes = sorted(c["outcome"] for c in (await calls(emu)).values())
    assert outcomes == ["no_rule", "no_trunk"]
    bad = await emu.control("POST", "sip/inbound", {"to": called}, expect=400)
    assert bad["error"]["field"] == "from"


async def outbound(lk: api.LiveKitAPI, room: str, to: str, **kw) -> sip_pb.SIPParticipantInfo:
    trunk = await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(
        trunk=sip_pb.SIPOutboundTrunkInfo(address="sip.carrier.example",
                                          numbers=["+15550000000"])))  # fmt: skip
    return await lk.sip.create_sip_participant(api.CreateSIPParticipantRequest(
        sip_trunk_id=trunk.sip_trunk_id, sip_call_to=to, room_name=room, **kw))  # fmt: skip


async def test_a_call_out_dials_rings_and_is_answered(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    emu, room, to = livekit_emulator, room_name(), number()
    await emu.control("PUT", f"sip/outcomes/{to}", {"outcome": "answer", "ring_s": 0.2})
    async with emu.api() as lk:
        info = await outbound(lk, room, to, participant_identity="callee")
        assert info.sip_call_id.startswith("SCL_") and info.participant_id.startswith("PA_")
        p = await participant(lk, room, "callee")  # back before the phone even rings
        assert p.kind == models.ParticipantInfo.SIP and p.attributes["sip.callStatus"] == "dialing"
        assert p.attributes["sip.phoneNumber"] == to
        assert p.attributes["sip.trunkPhoneNumber"] == "+15550000000"
        await wait_status(lk, room, "callee", "ringing")
        await wait_status(lk, room, "callee", "active")
        call = (await calls(emu))[info.sip_call_id]
        assert (call["direction"], call["outcome"], call["status"]) == ("outbound", "answer",
                                                                        "active")  # fmt: skip
        assert call["answered_at"] >= call["ringing_at"]

        waited = await outbound(lk, room, to, participant_identity="callee-2",
                                wait_until_answered=True)  # fmt: skip
        p = await participant(lk, room, waited.participant_identity)
        assert p.attributes["sip.callStatus"] == "active"
        await emu.end_room(room)


@pytest.mark.parametrize(
    ("outcome", "code", "twirp_code", "reason"),
    [("busy", 486, "resource_exhausted", models.USER_REJECTED),
     ("reject", 603, "permission_denied", models.USER_REJECTED),
     ("unavailable", 480, "resource_exhausted", models.USER_UNAVAILABLE)],
)  # fmt: skip
async def test_a_failed_call_out_is_the_servers_sip_error(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink,
    outcome: str, code: int, twirp_code: str, reason: int,
):  # fmt: skip
    emu, room, to = livekit_emulator, room_name(), number()
    await emu.join(room, "agent-1", "agent")
    await emu.control("PUT", f"sip/outcomes/{to}", {"outcome": outcome, "ring_s": 0.05})
    async with emu.api() as lk:
        with pytest.raises(api.SipCallError) as e:
            await outbound(lk, room, to, participant_identity="callee", wait_until_answered=True)
    assert e.value.sip_status_code == code and e.value.code == twirp_code
    assert e.value.status < 500  # a 5xx would make livekit-api dial again
    details = status_pb2.Status.FromString(base64.b64decode(e.value.metadata["error_details"]))
    sip_status = sip_pb.SIPStatus()
    assert details.details[0].Unpack(sip_status) and sip_status.code == code
    left = await livekit_webhooks.wait_for(
        "participant_left", room, where=lambda ev: ev.participant.identity == "callee"
    )
    assert left.participant.disconnect_reason == reason
    assert left.participant.attributes["sip.callStatus"] == "ringing"  # no status for failures
    (call,) = (await calls(emu)).values()
    assert (call["status"], call["outcome"], call["sip_status"]) == ("failed", outcome, code)
    await emu.wait_idle()  # the room closed with its last caller, as the agent's room does


async def test_no_answer_within_the_ringing_timeout_is_canceled_without_sip_status(
    livekit_emulator: LiveKitEmulator,
):
    emu, room, to = livekit_emulator, room_name(), number()
    await emu.join(room, "agent-1", "agent")
    await emu.control("PUT", f"sip/outcomes/{to}", {"outcome": "no_answer"})
    async with emu.api() as lk:
        with pytest.raises(api.TwirpError) as e:
            await outbound(lk, room, to, wait_until_answered=True,
                           ringing_timeout=Duration(seconds=1))  # fmt: skip
        assert not isinstance(e.value, api.SipCallError)
        assert (e.value.code, e.value.status) == ("canceled", 408)
        res = await lk.room.list_participants(room_pb.ListParticipantsRequest(room=room))
        assert f"sip_{to}" not in [p.identity for p in res.participants]  # hung up
    (call,) = (await calls(emu)).values()
    assert call["outcome"] == "no_answer"
    await emu.wait_idle()


async def test_transfer_refers_an_active_call_and_the_participant_leaves(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    emu, room, to, desk = livekit_emulator, room_name(), number(), number()
    await emu.join(room, "agent-1", "agent")
    await emu.control("PUT", f"sip/outcomes/{to}", {"ring_s": 0.5})
    await emu.control("PUT", f"sip/outcomes/{desk}", {"ring_s": 0.05})
    async with emu.api() as lk:
        info = await outbound(lk, room, to, participant_identity="callee")

        def transfer(target: str, identity: str = "callee") -> api.TransferSIPParticipantRequest:
            return api.TransferSIPParticipantRequest(room_name=room, transfer_to=target,
                                                     participant_identity=identity)  # fmt: skip

        with pytest.raises(api.TwirpError) as e:  # still ringing
            await lk.sip.transfer_sip_participant(transfer(f"tel:{desk}"))
        assert e.value.code == "failed_precondition"
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.transfer_sip_participant(transfer(f"https://x/{desk}"))
        assert e.value.code == "invalid_argument" and "sip:, sips: or tel:" in e.value.message
        with pytest.raises(api.TwirpError) as e:  # not a phone call
            await lk.sip.transfer_sip_participant(transfer(f"tel:{desk}", "agent-1"))
        assert (e.value.code, e.value.message) == (
            "invalid_argument", "no SIP session associated with participant")  # fmt: skip

        await wait_status(lk, room, "callee", "active")
        done = await lk.sip.transfer_sip_participant(transfer(f"sip:{desk}@pbx.example"))
        assert done.transfer_id.startswith("STR_")
        assert done.status == sip_pb.STS_TRANSFER_SUCCESSFUL
        left = await livekit_webhooks.wait_for(
            "participant_left", room, where=lambda ev: ev.participant.identity == "callee"
        )
        assert left.participant.kind == models.ParticipantInfo.SIP
        assert left.participant.attributes["sip.callStatus"] == "hangup"
    call = (await calls(emu))[info.sip_call_id]
    assert call["transferred_to"] == f"<sip:{desk}@pbx.example>" and call["status"] == "ended"
    await emu.wait_idle()


async def test_outcome_control_validates_its_input(livekit_emulator: LiveKitEmulator):
    emu = livekit_emulator
    bad = await emu.control("PUT", "sip/outcomes/+1555", {"outcome": "maybe"}, expect=400)
    assert bad["error"]["field"] == "outcome"
    bad = await emu.control("PUT", "sip/outcomes/+1555", {"ring_s": -1}, expect=400)
    assert bad["error"]["field"] == "ring_s"
    set_ = await emu.control("PUT", "sip/outcomes/1 555 000", {"outcome": "busy"})
    assert set_ == {"number": "+1555000", "outcome": "busy", "ring_s": 1.0}
    assert "+1555" not in (await emu.control("GET", "sip/outcomes"))["outcomes"]
    with pytest.raises(ControlCallError):
        await emu.control("DELETE", "sip/outcomes/+1999")


async def test_a_caller_nobody_answers_hangs_up_after_the_trunks_ringing_timeout(
    livekit_emulator: LiveKitEmulator, livekit_webhooks: WebhookSink
):
    emu, room, called = livekit_emulator, room_name(), number()
    await emu.set_auto_agent(enabled=False, room=room)
    async with emu.api() as lk:
        trunk = await lk.sip.create_inbound_trunk(api.CreateSIPInboundTrunkRequest(
            trunk=sip_pb.SIPInboundTrunkInfo(numbers=[called],
                                             ringing_timeout=Duration(nanos=200_000_000))))  # fmt: skip
        rule = sip_pb.SIPDispatchRule(
            dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=room)
        )
        await lk.sip.create_dispatch_rule(api.CreateSIPDispatchRuleRequest(
            rule=rule, trunk_ids=[trunk.sip_trunk_id]))  # fmt: skip
        answer = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": called})
    await livekit_webhooks.wait_for("room_finished", room)
    call = (await calls(emu))[answer["sip_call_id"]]
    assert (call["status"], call["outcome"], call["answered_at"]) == ("failed", "no_answer", None)


async def test_logs_show_phone_numbers_masked(
    livekit_emulator: LiveKitEmulator, caplog: pytest.LogCaptureFixture
):
    emu, room, to = livekit_emulator, room_name(), number()
    await emu.set_auto_agent(enabled=False, room=room)
    await emu.control("PUT", f"sip/outcomes/{to}", {"ring_s": 0.05})
    caplog.set_level(logging.INFO, logger="devstack.livekit")
    rule = sip_pb.SIPDispatchRule(dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=room))
    async with emu.api() as lk:
        called, _, _ = await inbound_setup(lk, rule)
        answer = await emu.control("POST", "sip/inbound", {"from": CALLER, "to": called})
        await outbound(lk, room, to, wait_until_answered=True)
    await emu.leave(room, answer["identity"])
    await emu.wait_idle()
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "sip_inbound_ringing" in text and "sip_call_active" in text
    assert CALLER not in text and to not in text
    assert f"number={CALLER[-4:]}" in text and f"number={to[-4:]}" in text


async def test_state_counts_sip_and_reset_forgets_it(livekit_emulator: LiveKitEmulator):
    emu = livekit_emulator
    async with emu.api() as lk:
        await lk.sip.create_outbound_trunk(api.CreateSIPOutboundTrunkRequest(
            trunk=sip_pb.SIPOutboundTrunkInfo(address="sip.carrier.example", numbers=[number()],
                                              auth_password="s3cret-trunk-pass")))  # fmt: skip
        await emu.control("PUT", f"sip/outcomes/{number()}", {"outcome": "busy"})
        state = await emu.state()
        assert state["sip"]["outbound_trunks"] == 1
        assert "s3cret-trunk-pass" not in str(state)  # trunk credentials stay out of the state
        await emu.reset()
        assert not (await lk.sip.list_outbound_trunk(api.ListSIPOutboundTrunkRequest())).items
    assert (await emu.control("GET", "sip/outcomes"))["outcomes"] == {}


async def test_a_call_into_a_full_room_is_refused_with_a_4xx(livekit_emulator: LiveKitEmulator):
    emu, room, to = livekit_emulator, room_name(), number()
    async with emu.api() as lk:
        await lk.room.create_room(room_pb.CreateRoomRequest(name=room, max_participants=1))
        await emu.join(room, "customer-1", "customer")
        with pytest.raises(api.TwirpError) as e:
            await outbound(lk, room, to)
        assert (e.value.code, e.value.status) == ("failed_precondition", 412)
        with pytest.raises(api.TwirpError) as e:
            await lk.sip.create_sip_participant(api.CreateSIPParticipantRequest(
                trunk=sip_pb.SIPOutboundConfig(), sip_call_to=to, room_name=room))  # fmt: skip
        assert e.value.message == "no outbound hostname specified"
    (call,) = (await calls(emu)).values()
    assert (call["status"], call["outcome"]) == ("rejected", "room_full")
    await emu.end_room(room)
