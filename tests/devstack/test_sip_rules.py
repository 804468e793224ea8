"""The emulator's inbound routing against livekit/protocol sip/sip.go (MatchTrunkDetailed,
MatchDispatchRuleIter, DispatchRulePriority, EvaluateDispatchRule), without a server."""

from __future__ import annotations

import hashlib

import pytest
from livekit.protocol import sip as sip_pb

from devstack.livekit.sip_rules import (
    check_rule_conflicts,
    check_trunk_conflicts,
    evaluate_rule,
    match_trunk,
    normalize_number,
    select_rule,
)
from devstack.livekit.twirp import TwirpError

CALLER, CALLED = "+15551230001", "+15550009999"


def trunk(tid: str, numbers: list[str], allowed: list[str] | None = None):
    return sip_pb.SIPInboundTrunkInfo(sip_trunk_id=tid, numbers=numbers,
                                      allowed_numbers=allowed or [])  # fmt: skip


def rule(rid: str, trunk_ids: list[str] | None = None, **kw) -> sip_pb.SIPDispatchRuleInfo:
    kind = kw.pop("kind", "individual")
    r = {
        "individual": sip_pb.SIPDispatchRule(
            dispatch_rule_individual=sip_pb.SIPDispatchRuleIndividual(
                room_prefix=kw.pop("prefix", "call"), no_randomness=kw.pop("fixed", False),
                pin=kw.pop("pin", ""))),
        "direct": sip_pb.SIPDispatchRule(
            dispatch_rule_direct=sip_pb.SIPDispatchRuleDirect(room_name=kw.pop("room", "lobby"))),
        "callee": sip_pb.SIPDispatchRule(
            dispatch_rule_callee=sip_pb.SIPDispatchRuleCallee(room_prefix=kw.pop("prefix", "in"))),
    }[kind]  # fmt: skip
    return sip_pb.SIPDispatchRuleInfo(sip_dispatch_rule_id=rid, rule=r,
                                      trunk_ids=trunk_ids or [], **kw)  # fmt: skip


def test_normalize_number_is_livekits():
    assert normalize_number("1 (555) 000-9999") == "+15550009999"
    assert normalize_number("+15550009999") == "+15550009999"
    assert normalize_number("alice") == "alice"  # a SIP user, not a number: unchanged


def test_a_trunk_for_the_number_beats_the_default_and_callers_are_filtered():
    default, specific = trunk("ST_d", []), trunk("ST_s", ["1 555 000 9999"])
    assert match_trunk([default, specific], CALLER, CALLED) is specific
    assert match_trunk([default], CALLER, CALLED) is default
    assert match_trunk([trunk("ST_x", ["+15550000000"])], CALLER, CALLED) is None
    allow_other = trunk("ST_a", [CALLED], allowed=["+15550000001"])
    assert match_trunk([allow_other], CALLER, CALLED) is None
    with pytest.raises(TwirpError) as e:
        match_trunk([trunk("ST_d1", []), trunk("ST_d2", [])], CALLER, CALLED)
    assert e.value.code == "failed_precondition"


def test_a_rule_naming_the_trunk_beats_a_rule_for_any_trunk():
    tr = trunk("ST_1", [CALLED])
    general = rule("SDR_any", kind="direct")
    mine = rule("SDR_mine", ["ST_1"], kind="callee")
    other = rule("SDR_other", ["ST_2"], kind="direct")
    assert select_rule([general, mine, other], tr, CALLER, CALLED) is mine
    assert select_rule([general, other], tr, CALLER, CALLED) is general
    # Among equals, direct (100) beats individual (101) beats callee (102).
    rules = [rule("SDR_c", ["ST_1"], kind="callee"), rule("SDR_i", ["ST_1"])]
    assert select_rule(rules, tr, CALLER, CALLED).sip_dispatch_rule_id == "SDR_i"
    # A rule for other callers, or one that needs a PIN, does not take the call.
    assert select_rule([rule("SDR_n", inbound_numbers=["+1999"])], tr, CALLER, CALLED) is None
    assert select_rule([rule("SDR_p", pin="1234")], tr, CALLER, CALLED) is None


def test_evaluate_individual_rule_names_room_identity_and_attributes():
    r = rule("SDR_1", ["ST_1"], metadata='{"line":"sales"}', attributes={"channel": "phone"})
    d = evaluate_rule(r, trunk("ST_1", [CALLED]), "SCL_x", CALLER, CALLED, "carrier.example")
    assert (
        str(d["room"]).startswith(f"call_{CALLER}_")
        and len(str(d["room"])) == len(f"call_{CALLER}_") + 12
    )
    assert (d["identity"], d["name"], d["metadata"]) == (
        f"sip_{CALLER}",
        f"Phone {CALLER}",
        '{"line":"sales"}',
    )
    assert d["attributes"] == {
        "channel": "phone", "sip.callID": "SCL_x", "sip.trunkID": "ST_1", "sip.ruleID": "SDR_1",
        "sip.phoneNumber": CALLER, "sip.hostname": "carrier.example",
        "sip.trunkPhoneNumber": CALLED,
    }  # fmt: skip


def test_hide_phone_number_hashes_identity_and_keeps_the_number_out():
    r = rule("SDR_1", fixed=True, hide_phone_number=True)
    d = evaluate_rule(r, None, "SCL_x", CALLER, CALLED, "carrier.example")
    assert d["identity"] == "sip_" + hashlib.sha256(CALLER.encode()).hexdigest()[:16]
    assert (d["room"], d["name"]) == ("call_0001", "Phone 0001")
    attrs = d["attributes"]
    assert isinstance(attrs, dict)
    assert CALLER not in "".join(attrs.values())
    assert "sip.phoneNumber" not in attrs and "sip.trunkPhoneNumber" not in attrs


def test_callee_and_direct_rooms():
    callee = evaluate_rule(rule("SDR_c", kind="callee"), None, "SCL_x", CALLER, CALLED, "h")
    assert callee["room"] == f"in_{CALLED}"
    direct = evaluate_rule(rule("SDR_d", kind="direct"), None, "SCL_x", CALLER, CALLED, "h")
    assert direct["room"] == "lobby"


def test_conflicting_trunks_and_rules_are_refused():
    with pytest.raises(TwirpError) as e:
        check_trunk_conflicts([trunk("ST_1", [CALLED])], trunk("", ["1 555 000 9999"]))
    assert e.value.code == "invalid_argument" and "Conflicting inbound SIP Trunks" in e.value.msg
    # The same number for different callers is no conflict.
    check_trunk_conflicts([trunk("ST_1", [CALLED], ["+1"])], trunk("", [CALLED], ["+2"]))
    with pytest.raises(TwirpError):
        check_rule_conflicts([rule("SDR_1", ["ST_1"])], rule("", ["ST_1"], kind="direct"))
    check_rule_conflicts([rule("SDR_1", ["ST_1"])], rule("", ["ST_2"]))
