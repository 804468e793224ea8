"""How LiveKit decides where an inbound phone call goes: pure functions, no state.

Each follows livekit/protocol `sip/sip.go`: `match_trunk` is MatchTrunkDetailed (a trunk
listing the called number wins over a default trunk with no numbers; `allowed_numbers`
filters callers), `select_rule` is MatchDispatchRuleIter (rules naming the trunk win over
rules for any trunk; among those, DispatchRulePriority), and `evaluate_rule` is
EvaluateDispatchRule (room name, `sip_<caller>` identity or its hash with
`hide_phone_number`, `Phone <caller>` name, the rule's metadata and attributes plus `sip.*`).
PINs are not emulated: a rule with a PIN never matches (a caller cannot type one here).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import string
from collections.abc import Iterable

from livekit.protocol import sip as sip_pb

from .twirp import TwirpError

_NUMBER = re.compile(r"^\+?[\d\- ()]+$")
_GUID = string.ascii_letters + string.digits


def normalize_number(num: str) -> str:
    """livekit.NormalizeNumber: strip spaces, dashes and brackets, lead with "+"."""
    if not num or not _NUMBER.match(num):
        return num
    num = re.sub(r"[ \-()]", "", num)
    return num if num.startswith("+") else "+" + num


def mask_number(num: str) -> str:
    """The last four digits (one when shorter), as LiveKit shows a hidden caller."""
    n = 4 if len(num) > 4 else 1
    return num[-n:]


def _same(a: str, b: str) -> bool:
    return a == b or normalize_number(a) == normalize_number(b)


def match_trunk(
    trunks: list[sip_pb.SIPInboundTrunkInfo], caller: str, called: str
) -> sip_pb.SIPInboundTrunkInfo | None:
    """The inbound trunk for a call from `caller` to `called`, or None."""
    specific, defaults = None, []
    for tr in trunks:
        if tr.allowed_numbers and not any(_same(caller, a) for a in tr.allowed_numbers):
            continue
        if not tr.numbers:
            defaults.append(tr)
        elif any(_same(called, n) for n in tr.numbers):
            if specific is not None:
                raise TwirpError(
                    "failed_precondition", f"Multiple SIP Trunks matched for {called!r}"
                )
            specific = tr
    if specific is not None:
        return specific
    if len(defaults) > 1:
        raise TwirpError(
            "failed_precondition", f"Multiple default SIP Trunks matched for {called!r}"
        )
    return defaults[0] if defaults else None


def rule_kind(rule: sip_pb.SIPDispatchRuleInfo) -> str:
    """The rule's kind (`dispatch_rule_direct`, `_individual`, `_callee`), "" for none."""
    return rule.rule.WhichOneof("rule") or ""


def rule_pin_and_room(rule: sip_pb.SIPDispatchRuleInfo) -> tuple[str, str]:
    kind = rule_kind(rule)
    if not kind:
        raise TwirpError("invalid_argument", "missing rule")
    r = getattr(rule.rule, kind)
    return r.pin, r.room_name if kind == "dispatch_rule_direct" else r.room_prefix


def priority(rule: sip_pb.SIPDispatchRuleInfo) -> int:
    """DispatchRulePriority: lower wins; PIN rules first, then direct, individual, callee."""
    base = {"dispatch_rule_direct": 0, "dispatch_rule_individual": 1, "dispatch_rule_callee": 2}
    kind = rule_kind(rule)
    if kind not in base:
        return 2**31 - 1
    pin, _ = rule_pin_and_room(rule)
    p = base[kind] + (0 if pin else 100)
    return p + (0 if rule.inbound_numbers else 1000) + (0 if rule.numbers else 1000)


def select_rule(
    rules: list[sip_pb.SIPDispatchRuleInfo],
    trunk: sip_pb.SIPInboundTrunkInfo | None,
    caller: str,
    called: str,
) -> sip_pb.SIPDispatchRuleInfo | None:
    """The dispatch rule for the call, or None (LiveKit then drops the call)."""
    specific: list[sip_pb.SIPDispatchRuleInfo] = []
    default: list[sip_pb.SIPDispatchRuleInfo] = []
    for r in rules:
        if r.inbound_numbers and caller not in r.inbound_numbers:
            continue
        if r.numbers and called not in r.numbers:
            continue
        if rule_pin_and_room(r)[0]:
            continue  # needs a PIN the emulated caller cannot enter
        if not r.trunk_ids:
            default.append(r)
        elif trunk is not None and trunk.sip_trunk_id in r.trunk_ids:
            specific.append(r)
    best = specific or default
    if not best:
        return None
    return min(best, key=lambda r: (priority(r), rule_pin_and_room(r)[1]))


def evaluate_rule(
    rule: sip_pb.SIPDispatchRuleInfo,
    trunk: sip_pb.SIPInboundTrunkInfo | None,
    call_id: str,
    caller: str,
    called: str,
    caller_host: str,
) -> dict[str, object]:
    """Room, identity, name, metadata and attributes of the caller's participant."""
    attrs = dict(rule.attributes)
    attrs["sip.callID"] = call_id
    attrs["sip.trunkID"] = trunk.sip_trunk_id if trunk is not None else ""
    shown, identity = caller, "sip_" + caller
    if rule.hide_phone_number:
        identity = "sip_" + hashlib.sha256(caller.encode()).hexdigest()[:16]
        shown = mask_number(caller)
    else:
        attrs["sip.phoneNumber"] = caller
        attrs["sip.hostname"] = caller_host
        attrs["sip.trunkPhoneNumber"] = called
    _, room = rule_pin_and_room(rule)
    kind = rule_kind(rule)
    if kind == "dispatch_rule_individual":
        r = rule.rule.dispatch_rule_individual
        room = f"{r.room_prefix}_{shown}" if r.room_prefix else shown
        if not r.no_randomness:
            room += "_" + _guid()
    elif kind == "dispatch_rule_callee":
        c = rule.rule.dispatch_rule_callee
        room = f"{c.room_prefix}_{called}" if c.room_prefix else called
        if c.randomize:
            room += "_" + _guid()
    attrs["sip.ruleID"] = rule.sip_dispatch_rule_id
    return {
        "room": room,
        "identity": identity,
        "name": "Phone " + shown,
        "metadata": rule.metadata,
        "attributes": attrs,
    }


def _guid() -> str:
    """guid.New(""): 12 base62 characters."""
    return "".join(secrets.choice(_GUID) for _ in range(12))


def check_trunk_conflicts(
    trunks: list[sip_pb.SIPInboundTrunkInfo], new: sip_pb.SIPInboundTrunkInfo
) -> None:
    """ValidateTrunksIter: two trunks may not claim the same number for the same callers."""
    seen: dict[tuple[str, str], sip_pb.SIPInboundTrunkInfo] = {}
    for t in [*trunks, new]:
        for num in {normalize_number(n) for n in t.numbers} or {""}:
            for allowed in {normalize_number(a) for a in t.allowed_numbers} or {""}:
                other = seen.setdefault((num, allowed), t)
                if other is not t:
                    raise TwirpError(
                        "invalid_argument",
                        f"Conflicting inbound SIP Trunks: {_id(t)!r} and {_id(other)!r}, "
                        f"using the same number(s) {_numbers(t.numbers)}",
                    )


def check_rule_conflicts(
    rules: list[sip_pb.SIPDispatchRuleInfo], new: sip_pb.SIPDispatchRuleInfo
) -> None:
    """DispatchRuleValidator: one rule per trunk, caller, called number and PIN."""
    seen: dict[tuple[str, str, str, str], sip_pb.SIPDispatchRuleInfo] = {}
    for r in [*rules, new]:
        pin, _ = rule_pin_and_room(r)
        for trunk in r.trunk_ids or [""]:
            for inbound in r.inbound_numbers or [""]:
                for num in r.numbers or [""]:
                    key = (pin, trunk, normalize_number(inbound), normalize_number(num))
                    other = seen.setdefault(key, r)
                    if other is not r:
                        raise TwirpError(
                            "invalid_argument",
                            "Dispatch rule for the same trunk, inbound number, number, and PIN "
                            f"combination already exists in dispatch rule {_id(other)!r} "
                            f"{other.name or '<no name>'!r}",
                        )


def _id(x: sip_pb.SIPInboundTrunkInfo | sip_pb.SIPDispatchRuleInfo) -> str:
    ident = getattr(x, "sip_trunk_id", "") or getattr(x, "sip_dispatch_rule_id", "")
    return ident or "<new>"


def _numbers(numbers: Iterable[str]) -> str:
    return str(list(numbers)) if numbers else "<any>"
