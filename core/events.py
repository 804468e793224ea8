"""The `data` of each event in a call's log, one dataclass per `EventKind`: the dashboard's
contract (`call_events.data` in PostgreSQL, the `data` of each WebSocket message, the report).

Who writes them: `CallWorkflow` (workflows/ledger.py, call.py, healing.py) through
`CallLedger.emit`, and the recording pipeline's outcome (activities/database.py). Who reads
them: the dashboard (web/), `api/domain/report.py`, `api/domain/fanout.py`.

A field left at `UNSET` is not written: a key is absent rather than null, as the dashboard
tells the two apart (a figure an agent did not measure is null; a key a shape never has is
absent). Values are written as given (a status enum as its string). Adding a field is safe;
renaming or removing one breaks the dashboard and the reports of calls already stored.

`final_transcript`'s data is `core.models.TranscriptEntry` without its `seq` (the event's own
seq): `workflows.common.entry_data`.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

from core import models as m
from core.models import EventKind


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # a key this event does not have


@dataclass(kw_only=True)
class EventData:
    KIND: ClassVar[EventKind]

    def to_dict(self) -> dict[str, Any]:
        """The event's `data` as it is written: every field set, in declaration order."""
        return {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if getattr(self, f.name) is not UNSET
        }


@dataclass(kw_only=True)
class Status(EventData):
    """The call's status changed (`reason` on `ending` and the end), or a note about the log
    or the room with the status as it is."""

    KIND = EventKind.STATUS
    status: str
    reason: str = UNSET
    events_rejected: str = UNSET  # "first..last" seqs the database refused
    error: str = UNSET
    room_delete_failed: str = UNSET
    # The room asked of LiveKit after it went quiet: what was found that no webhook said
    # (`room_gone`, `customer_absent`, `agent_absent`), or why it could not be asked.
    room_reconciled: str = UNSET
    room_check_failed: str = UNSET
    dial: str = UNSET  # an outbound call's dial outcome (answered, busy, no_answer, ...)
    sip_status: int = UNSET  # the far end's SIP status when the dial failed with one


@dataclass(kw_only=True)
class Recording(EventData):
    """The recording's course. Shapes: a consent answer (`consent`, `at`, `recorded` when
    withdrawn); LiveKit's clock for an egress (`egress_id`, `started_at`); a new
    `status` (a `RecordingStatus` with what goes with it: `egress_id`, `segments`, `key`...);
    a step of the pipeline (`status` such as `egress_failed`, `egress_polled`,
    `found_in_staging`, with `error` and `will_retry` when it went wrong); the pipeline's own
    report (`run_id`, `by`)."""

    KIND = EventKind.RECORDING
    status: str = UNSET
    run_id: str = UNSET
    by: str = UNSET
    consent: str = UNSET
    recorded: str = UNSET  # kept or deleted, when consent is withdrawn
    at: str = UNSET
    attempt: int = UNSET
    egress_id: str = UNSET
    started_at: str = UNSET
    segment: int = UNSET
    egress: str = UNSET  # the egress's own status
    key: str = UNSET
    size: int = UNSET
    sha256: str = UNSET
    duration_s: float = UNSET
    incomplete: bool = UNSET
    # Segment numbers (uploading); `core.models.StoredSegment`s as dicts (stored, by the pipeline).
    segments: list[Any] = UNSET
    reason: str = UNSET
    deleted: int = UNSET
    error: str = UNSET
    will_retry: bool = UNSET
    will_restart: bool = UNSET


@dataclass(kw_only=True)
class RecordingIncomplete(EventData):
    """Stored, but much shorter than the time it was recording for."""

    KIND = EventKind.RECORDING_INCOMPLETE
    duration_s: float
    recorded_for_s: float


@dataclass(kw_only=True)
class SilenceAlert(EventData):
    """Nobody spoke: reported by the agent (`id`, `speaker`, `duration_s`, `at`) or noticed
    by the workflow (`quiet_s`, `since`)."""

    KIND = EventKind.SILENCE_ALERT
    id: str = UNSET
    source: str
    speaker: str = UNSET
    duration_s: float = UNSET
    quiet_s: float = UNSET
    since: str = UNSET
    at: str = UNSET


@dataclass(kw_only=True)
class KeywordAlert(EventData):
    KIND = EventKind.KEYWORD_ALERT
    line_id: str
    line_seq: int
    keywords: list[str]


@dataclass(kw_only=True)
class AgentAlert(EventData):
    """An alert raised by the agent (`source` is set when the workflow raised it)."""

    KIND = EventKind.AGENT_ALERT
    id: str
    kind: str
    source: str = UNSET
    detail: str
    at: str


@dataclass(kw_only=True)
class HandoffRequested(AgentAlert):
    """A person must take the call (asked by the agent, or by the workflow when no agent
    replaced a lost one)."""

    KIND = EventKind.HANDOFF_REQUESTED


@dataclass(kw_only=True)
class SupervisorAction(EventData):
    """A supervisor's (or ops') action on the call: `end` carries `reason`, the others `id`,
    `detail` and `at`."""

    KIND = EventKind.SUPERVISOR_ACTION
    id: str = UNSET
    action: str
    by: str
    reason: str = UNSET
    detail: str = UNSET
    at: str = UNSET


@dataclass(kw_only=True)
class AgentMetrics(EventData):
    """One turn's latency figures (null when the agent did not measure one); newer agents
    also label each figure (`stt_delay_s`, `end_to_end_latency_s`, `tts_ttfb_s`)."""

    KIND = EventKind.AGENT_METRICS
    id: str
    end_of_utterance_delay_s: float | None
    time_to_first_token_s: float | None
    time_to_first_audio_s: float | None
    at: str
    stt_delay_s: float | None = UNSET
    end_to_end_latency_s: float | None = UNSET
    tts_ttfb_s: float | None = UNSET


@dataclass(kw_only=True)
class AgentDispatch(EventData):
    """An agent dispatched (`attempt` of `of`, `reason`, `dispatch_id`, `error` when it
    failed), lost (`identity`) or replaced (`identity`, `attempts`)."""

    KIND = EventKind.AGENT_DISPATCH
    status: str
    identity: str = UNSET
    attempt: int = UNSET
    attempts: int = UNSET
    of: int = UNSET
    reason: str = UNSET
    dispatch_id: str = UNSET
    error: str = UNSET


@dataclass(kw_only=True)
class CustomerConnection(EventData):
    """The customer's connection: `reconnecting` and `gone` (with `grace_s`), `rejoined`
    (with `away_s`)."""

    KIND = EventKind.CUSTOMER_CONNECTION
    status: str
    grace_s: float = UNSET
    away_s: float = UNSET


@dataclass(kw_only=True)
class CustomerRejoined(EventData):
    """A rejoin proof was accepted: `token_id` is the new grant's, `replaces` the proof's.
    `while_connected`: the call still saw the customer in the room (LiveKit will evict that
    connection as a duplicate identity), worth a supervisor's look if the customer complains."""

    KIND = EventKind.CUSTOMER_REJOINED
    token_id: str
    replaces: str
    while_connected: bool


@dataclass(kw_only=True)
class InterimTranscript(EventData):
    """A line still being spoken, as the agent heard it so far: live only (WebSocket, with
    `seq: null`), never in history, `call_events` or a report. `id` is the final line's id when
    the agent knows it; `by` is the agent's identity."""

    KIND = EventKind.INTERIM_TRANSCRIPT
    speaker: str
    text: str
    confidence: float | None
    id: str | None
    by: str


def metrics_event(sig: m.AgentMetrics) -> AgentMetrics:
    """A turn's figures as the `agent_metrics` event holds them."""
    event = AgentMetrics(
        id=sig.id,
        end_of_utterance_delay_s=sig.end_of_utterance_delay_s,
        time_to_first_token_s=sig.time_to_first_token_s,
        time_to_first_audio_s=sig.time_to_first_audio_s,
        at=sig.at,
    )
    # Newer agents label each figure (TTS TTFB is `time_to_first_audio_s`, kept as it was).
    if sig.stt_delay_s is not None or sig.end_to_end_latency_s is not None:
        event.stt_delay_s = sig.stt_delay_s
        event.end_to_end_latency_s = sig.end_to_end_latency_s
        event.tts_ttfb_s = sig.time_to_first_audio_s
    return event
