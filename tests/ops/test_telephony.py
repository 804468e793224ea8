"""`ops telephony setup` against the LiveKit emulator through livekit-api: it creates the
inbound trunk, an individual dispatch rule with hide_phone_number whose room_config
dispatches our agent, and the outbound trunk; a second run changes nothing; a changed number
replaces the trunk; a phone calling the number lands in a `phone_` room with the agent."""

from __future__ import annotations

import io
import json
from typing import Any

from livekit import api

from core.models import call_id_from_room, is_call_id
from core.settings import Settings, load_settings
from ops.cli import EXIT_OK, EXIT_UNREACHABLE, run
from tests.fixtures.livekit import API_KEY, API_SECRET, LiveKitEmulator

NUMBER = "+15550100000"


def settings_for(url: str, **extra: Any) -> Settings:
    return load_settings(
        _env_file=None,
        DATABASE_URL="postgresql://unused@127.0.0.1:1/unused",
        MINIO_ENDPOINT="127.0.0.1:1",
        MINIO_ACCESS_KEY="unused",
        MINIO_SECRET_KEY="unused",
        LIVEKIT_URL=url,
        LIVEKIT_API_KEY=API_KEY,
        LIVEKIT_API_SECRET=API_SECRET,
        API_TOKENS="unused-token-0123456789:admin",
        **{"SIP_INBOUND_NUMBERS": NUMBER, "SIP_OUTBOUND_ADDRESS": "sip.example.invalid",
           "SIP_OUTBOUND_NUMBERS": NUMBER, "SIP_OUTBOUND_USERNAME": "cc",
           "SIP_OUTBOUND_PASSWORD": "trunk-secret-123", **extra},
    )  # fmt: skip


async def setup(settings: Settings) -> tuple[int, Any, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run(["telephony", "setup", "--json"], settings=settings, stdout=out, stderr=err)
    return code, json.loads(out.getvalue()) if code == EXIT_OK else None, err.getvalue()


async def test_setup_creates_then_finds_then_replaces(livekit_emulator: LiveKitEmulator) -> None:
    livekit_emulator.handle.emulator.sip_reset()
    settings = settings_for(livekit_emulator.url)
    code, first, _ = await setup(settings)
    assert code == EXIT_OK
    assert first["inbound"]["trunk"].startswith("created ST_")
    assert first["inbound"]["dispatch_rule"].startswith("created SDR_")
    assert first["outbound"]["trunk"].startswith("created ST_")
    text = json.dumps(first)
    assert NUMBER not in text and "trunk-secret-123" not in text  # masked, never the secret
    assert first["inbound"]["numbers"] == ["+1•••••0000"]

    code, again, _ = await setup(settings)
    assert code == EXIT_OK
    assert again["inbound"]["trunk"] == first["inbound"]["trunk"].replace("created", "present")
    assert again["inbound"]["dispatch_rule"].startswith("present SDR_")
    assert again["outbound"]["trunk"].startswith("present ST_")

    async with livekit_emulator.api() as lk:
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        assert len(rules) == 1 and rules[0].hide_phone_number
        assert rules[0].rule.dispatch_rule_individual.room_prefix == "phone"
        assert [a.agent_name for a in rules[0].room_config.agents] == [settings.AGENT_NAME]

    other = "+15550109999"
    code, moved, _ = await setup(settings_for(livekit_emulator.url, SIP_INBOUND_NUMBERS=other))
    assert code == EXIT_OK and moved["inbound"]["trunk"].startswith("created ST_")
    assert moved["inbound"]["deleted"] == [first["inbound"]["trunk"].split()[1]]
    async with livekit_emulator.api() as lk:
        trunks = (await lk.sip.list_inbound_trunk(api.ListSIPInboundTrunkRequest())).items
        assert [list(t.numbers) for t in trunks] == [[other]]
        rules = (await lk.sip.list_dispatch_rule(api.ListSIPDispatchRuleRequest())).items
        assert [list(r.trunk_ids) for r in rules] == [[trunks[0].sip_trunk_id]]

    # A phone calling the number lands in a room whose name maps to a call id, no number in it.
    call = await livekit_emulator.control("POST", "sip/inbound", {"from": "+15551230001",
                                                                   "to": other})  # fmt: skip
    assert call["room"].startswith("phone_") and "5551230001" not in call["room"]
    assert "5551230001" not in call["identity"]
    call_id = call_id_from_room(call["room"])
    assert call_id is not None and is_call_id(call_id)
    livekit_emulator.handle.emulator.sip_reset()


async def test_unreachable_livekit_is_exit_3() -> None:
    code, _, err = await setup(settings_for("http://127.0.0.1:1"))
    assert code == EXIT_UNREACHABLE and "LiveKit is not reachable" in err
