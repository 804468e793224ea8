"""`core/events.py`, the dashboard's contract: each kind's dataclass writes exactly the keys and
values the workflows wrote as dict literals before (absent keys stay absent, nulls stay null)."""

from __future__ import annotations

import dataclasses

import pytest

import core.events as ev
import core.models as m

S, R, K = m.CallStatus, m.RecordingStatus, m.EventKind

CASES = [
    # (event, kind, the dict literal the code wrote before the dataclasses)
    (ev.Status(status=S.IN_PROGRESS), K.STATUS, {"status": S.IN_PROGRESS}),
    (ev.Status(status=S.ENDING, reason="customer_left"), K.STATUS,
     {"status": S.ENDING, "reason": "customer_left"}),
    (ev.Status(status=S.IN_PROGRESS, events_rejected="3..5", error="too big"), K.STATUS,
     {"status": S.IN_PROGRESS, "events_rejected": "3..5", "error": "too big"}),
    (ev.Status(status=S.COMPLETED, room_delete_failed="gone"), K.STATUS,
     {"status": S.COMPLETED, "room_delete_failed": "gone"}),
    (ev.Recording(consent="granted", at="t"), K.RECORDING, {"consent": "granted", "at": "t"}),
    (ev.Recording(consent="withdrawn", recorded="delete", at="t"), K.RECORDING,
     {"consent": "withdrawn", "recorded": "delete", "at": "t"}),
    (ev.Recording(egress_id="EG_1", started_at="t"), K.RECORDING,
     {"egress_id": "EG_1", "started_at": "t"}),
    (ev.Recording(status="egress_start_failed", attempt=1, will_retry=True, error="x"),
     K.RECORDING, {"status": "egress_start_failed", "attempt": 1, "will_retry": True, "error": "x"}),
    (ev.Recording(status="egress_failed", egress_id="EG_1", error="x", will_retry=False),
     K.RECORDING, {"status": "egress_failed", "egress_id": "EG_1", "error": "x",
                   "will_retry": False}),
    (ev.Recording(status="egress_ended_mid_call", egress_id="EG_1", segment=1,
                  egress="EGRESS_COMPLETE", error="", will_restart=True), K.RECORDING,
     {"status": "egress_ended_mid_call", "egress_id": "EG_1", "segment": 1,
      "egress": "EGRESS_COMPLETE", "error": "", "will_restart": True}),
    (ev.Recording(status=R.STOPPING), K.RECORDING, {"status": R.STOPPING}),
    (ev.Recording(status=R.UPLOADING, egress_id="EG_1", segments=[1, 2]), K.RECORDING,
     {"status": R.UPLOADING, "egress_id": "EG_1", "segments": [1, 2]}),
    (ev.Recording(status=R.NONE, reason="consent_withdrawn", deleted=2), K.RECORDING,
     {"status": R.NONE, "reason": "consent_withdrawn", "deleted": 2}),
    (ev.Recording(status=R.STORED, key="k", size=3, sha256="h", duration_s=1.5,
                  incomplete=False), K.RECORDING,
     {"status": R.STORED, "key": "k", "size": 3, "sha256": "h", "duration_s": 1.5,
      "incomplete": False}),
    (ev.Recording(status="egress_polled", egress="EGRESS_ACTIVE"), K.RECORDING,
     {"status": "egress_polled", "egress": "EGRESS_ACTIVE"}),
    (ev.Recording(status="found_in_staging", segment=2, key="k", size=9), K.RECORDING,
     {"status": "found_in_staging", "segment": 2, "key": "k", "size": 9}),
    (ev.Recording(status=R.FAILED, run_id="r/1", by="pipeline", error="x"), K.RECORDING,
     {"status": R.FAILED, "run_id": "r/1", "by": "pipeline", "error": "x"}),
    (ev.RecordingIncomplete(duration_s=1.0, recorded_for_s=60.0), K.RECORDING_INCOMPLETE,
     {"duration_s": 1.0, "recorded_for_s": 60.0}),
    (ev.SilenceAlert(id="s1", source="agent", speaker="customer", duration_s=8.0, at="t"),
     K.SILENCE_ALERT,
     {"id": "s1", "source": "agent", "speaker": "customer", "duration_s": 8.0, "at": "t"}),
    (ev.SilenceAlert(source="workflow", quiet_s=30.0, since="t"), K.SILENCE_ALERT,
     {"source": "workflow", "quiet_s": 30.0, "since": "t"}),
    (ev.KeywordAlert(line_id="l1", line_seq=4, keywords=["refund"]), K.KEYWORD_ALERT,
     {"line_id": "l1", "line_seq": 4, "keywords": ["refund"]}),
    (ev.AgentAlert(id="a1", kind="tool_error", detail="d", at="t"), K.AGENT_ALERT,
     {"id": "a1", "kind": "tool_error", "detail": "d", "at": "t"}),
    (ev.HandoffRequested(id="a2", kind="handoff_requested", detail="d", at="t"),
     K.HANDOFF_REQUESTED, {"id": "a2", "kind": "handoff_requested", "detail": "d", "at": "t"}),
    (ev.HandoffRequested(id="agent-lost-3", kind="handoff_requested", source="workflow",
                         detail="d", at="t"), K.HANDOFF_REQUESTED,
     {"id": "agent-lost-3", "kind": "handoff_requested", "source": "workflow", "detail": "d",
      "at": "t"}),
    (ev.SupervisorAction(action="end", by="sup", reason="done"), K.SUPERVISOR_ACTION,
     {"action": "end", "by": "sup", "reason": "done"}),
    (ev.SupervisorAction(id="x1", action="whisper", by="sup", detail="d", at="t"),
     K.SUPERVISOR_ACTION, {"id": "x1", "action": "whisper", "by": "sup", "detail": "d", "at": "t"}),
    (ev.AgentDispatch(status="dispatched", attempt=2, of=3, reason="no_agent_joined",
                      dispatch_id="AD_1"), K.AGENT_DISPATCH,
     {"status": "dispatched", "attempt": 2, "of": 3, "reason": "no_agent_joined",
      "dispatch_id": "AD_1"}),
    (ev.AgentDispatch(status="dispatch_failed", attempt=2, of=3, reason="agent_lost",
                      dispatch_id="", error="x"), K.AGENT_DISPATCH,
     {"status": "dispatch_failed", "attempt": 2, "of": 3, "reason": "agent_lost",
      "dispatch_id": "", "error": "x"}),
    (ev.AgentDispatch(status="agent_lost", identity="agent-1"), K.AGENT_DISPATCH,
     {"status": "agent_lost", "identity": "agent-1"}),
    (ev.AgentDispatch(status="agent_replaced", identity="agent-2", attempts=1), K.AGENT_DISPATCH,
     {"status": "agent_replaced", "identity": "agent-2", "attempts": 1}),
    (ev.CustomerConnection(status="reconnecting", grace_s=30.0), K.CUSTOMER_CONNECTION,
     {"status": "reconnecting", "grace_s": 30.0}),
    (ev.CustomerConnection(status="rejoined", away_s=4.2), K.CUSTOMER_CONNECTION,
     {"status": "rejoined", "away_s": 4.2}),
    (ev.CustomerRejoined(token_id="t2", replaces="t1", while_connected=False),
     K.CUSTOMER_REJOINED, {"token_id": "t2", "replaces": "t1", "while_connected": False}),
    (ev.metrics_event(m.AgentMetrics("m1", 0.2, None, 0.5, at="t")), K.AGENT_METRICS,
     {"id": "m1", "end_of_utterance_delay_s": 0.2, "time_to_first_token_s": None,
      "time_to_first_audio_s": 0.5, "at": "t"}),
]  # fmt: skip


@pytest.mark.parametrize(("event", "kind", "before"), CASES)
def test_each_event_writes_what_the_dict_literal_wrote(
    event: ev.EventData, kind: m.EventKind, before: dict
) -> None:
    assert event.KIND == kind
    # Equal as dicts: the order of keys is never seen (Temporal's JSON converter sorts them,
    # PostgreSQL's jsonb keeps its own).
    assert event.to_dict() == before


def test_every_stored_kind_has_its_dataclass() -> None:
    stored = set(m.EventKind) - {K.FINAL_TRANSCRIPT, K.INTERIM_TRANSCRIPT}
    assert {kind for _, kind, _ in CASES} == stored


def test_an_interim_line_keeps_its_null_figures() -> None:
    """The live-only kind: an unknown confidence or id is null, never a missing key."""
    line = ev.InterimTranscript(speaker="customer", text="I'd like", confidence=None, id=None,
                                by="agent-1")  # fmt: skip
    assert line.KIND == K.INTERIM_TRANSCRIPT
    assert line.to_dict() == {"speaker": "customer", "text": "I'd like", "confidence": None,
                              "id": None, "by": "agent-1"}  # fmt: skip


def test_agent_metrics_keep_null_figures_and_label_them_only_for_newer_agents() -> None:
    old = m.AgentMetrics("m1", 0.2, None, 0.5, at="t")
    assert ev.metrics_event(old).to_dict() == {
        "id": "m1", "end_of_utterance_delay_s": 0.2, "time_to_first_token_s": None,
        "time_to_first_audio_s": 0.5, "at": "t",
    }  # fmt: skip
    new = dataclasses.replace(old, stt_delay_s=0.1, end_to_end_latency_s=None)
    assert ev.metrics_event(new).to_dict() == {
        "id": "m1", "end_of_utterance_delay_s": 0.2, "time_to_first_token_s": None,
        "time_to_first_audio_s": 0.5, "at": "t", "stt_delay_s": 0.1,
        "end_to_end_latency_s": None, "tts_ttfb_s": 0.5,
    }  # fmt: skip


def test_a_key_an_event_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError):
        ev.Recording(status=R.STORED, sizes=3)  # type: ignore[call-arg]
