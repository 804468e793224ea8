"""The workflows' pure helpers and the boundary data (no server needed)."""

from __future__ import annotations

from collections.abc import Callable

from core import models as m
from core.settings import Settings
from workflows.common import merge_egress

matched_keywords = m.matched_keywords


def test_call_config_from_settings(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(
        RECORDING_CONSENT="ask", KEYWORD_ALERTS="Manager, lawyer ,", SILENCE_ALERT_S=12
    )
    cfg = m.CallConfig.from_settings(s)
    assert cfg.recording_consent == "ask" and cfg.keywords == ["manager", "lawyer"]
    assert cfg.silence_alert_s == 12 and cfg.livekit_url == s.LIVEKIT_URL
    assert cfg.agent_name == s.AGENT_NAME and cfg.max_duration_s == s.MAX_CALL_DURATION_S


def test_keywords_match_whole_words_and_phrases() -> None:
    phrases = ["manager", "cancel my order", "c++"]
    assert matched_keywords("Get me your MANAGER!", phrases) == ["manager"]
    assert matched_keywords("management is great", phrases) == []
    assert matched_keywords("Please cancel my order now.", phrases) == ["cancel my order"]
    assert matched_keywords("I code in C++ daily", phrases) == ["c++"]


def test_egress_status_never_goes_backwards() -> None:
    file = m.RecordingFile("f.ogg", "http://x/f.ogg", 10, 1.0)
    done = m.EgressState("EG", "EGRESS_COMPLETE", file=file)
    merged = merge_egress(done, m.EgressState("EG", "EGRESS_ACTIVE"))
    assert merged.status == "EGRESS_COMPLETE" and merged.file == file
    assert merge_egress(m.EgressState("EG", "EGRESS_STARTING"), done).status == "EGRESS_COMPLETE"
