"""Activity names and the dataclasses they take and return.

Deliberately free of heavy imports (no livekit, minio, asyncpg): the workflows import this
module inside Temporal's sandbox and call activities by these names, and tests register
stand-ins under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.models import EraseCallInput, RecordingInput

# LiveKit (activities/livekit.py)
CREATE_ROOM = "create_room"
START_EGRESS = "start_egress"
STOP_EGRESS = "stop_egress"
GET_EGRESS = "get_egress"
DELETE_ROOM = "delete_room"
DISPATCH_AGENT = "dispatch_agent"
GET_ROOM_PRESENCE = "get_room_presence"
# Phone (activities/phone.py)
DIAL_OUTBOUND = "dial_outbound"
TRANSFER_CALL = "transfer_call"
# Callbacks (activities/callbacks.py)
START_CALLBACK_CALL = "start_callback_call"
ON_DO_NOT_CALL = "on_do_not_call"
RECORD_CALLBACK = "record_callback"
# Campaigns (activities/campaigns.py)
NEXT_CAMPAIGN_NUMBERS = "next_campaign_numbers"
START_CAMPAIGN_CALLS = "start_campaign_calls"
RECORD_CAMPAIGN = "record_campaign"
# Storage (activities/storage.py)
DOWNLOAD_AND_STORE_RECORDING = "download_and_store_recording"
FIND_STAGED_RECORDING = "find_staged_recording"
DELETE_RECORDING_SEGMENTS = "delete_recording_segments"
# PostgreSQL (activities/database.py)
APPEND_CALL_EVENTS = "append_call_events"
# After the call (activities/analysis.py)
START_AFTER_CALL = "start_after_call"  # the recording pipeline and the analysis
ANALYZE_CALL = "analyze_call"
RECORD_ANALYSIS_FAILED = "record_analysis_failed"
QUEUE_WEBHOOK = "queue_webhook"
DELIVER_WEBHOOK = "deliver_webhook"
RECORD_RECORDING = "record_recording"
# Erasure (activities/erase.py)
ERASE_WORKFLOW_EXECUTIONS = "erase_workflow_executions"
ERASE_RECORDING_OBJECT = "erase_recording_object"
ERASE_CALL_ROWS = "erase_call_rows"
STOP_RECORDING_PIPELINE = "stop_recording_pipeline"

# ApplicationError types the activities raise; the non-retryable ones name input that can never
# succeed (retrying it would only delay the inevitable).
ERR_INVALID_INPUT = "InvalidInput"
ERR_LIVEKIT_REJECTED = "LiveKitRejected"
ERR_LIVEKIT_UNAVAILABLE = "LiveKitUnavailable"
ERR_SOURCE_UNUSABLE = "RecordingSourceUnusable"
ERR_SOURCE_UNAVAILABLE = "RecordingSourceUnavailable"
ERR_SIZE_MISMATCH = "RecordingSizeMismatch"
# The bytes read differ from what the store says the staged object is (size, ETag, checksum):
# cut or corrupted in transit, so a new attempt reads it again.
ERR_SOURCE_MISMATCH = "RecordingSourceMismatch"
ERR_STORAGE_UNAVAILABLE = "StorageUnavailable"
# Object storage refused the request for good (access denied, bad credentials): no retry helps.
ERR_STORAGE_REFUSED = "StorageRefused"
ERR_DATABASE_UNAVAILABLE = "DatabaseUnavailable"
ERR_CALL_STILL_RUNNING = "CallStillRunning"  # erasure refused: the call's workflow still runs
ERR_CALL_ERASED = "CallErased"  # the call was erased: nothing of it may be stored again
ERR_ROOM_GONE = "RoomGone"  # a dispatch into a room LiveKit no longer has: the call is over
NON_RETRYABLE_ERRORS = [
    ERR_INVALID_INPUT,
    ERR_LIVEKIT_REJECTED,
    ERR_SOURCE_UNUSABLE,
    ERR_ROOM_GONE,
    ERR_STORAGE_REFUSED,
    ERR_CALL_ERASED,
]


@dataclass
class DialInput:
    """`dial_outbound`: call `to` (E.164) into `room_name` as `identity`, through the outbound
    trunk `ops telephony setup` made, and wait until the phone answers or does not."""

    call_id: str
    room_name: str
    to: str
    identity: str
    name: str = "Customer"
    ringing_timeout_s: float = 30.0


@dataclass
class TransferInput:
    """`transfer_call`: a cold transfer (SIP REFER) of the phone participant to `to`."""

    call_id: str
    room_name: str
    identity: str
    to: str  # tel:+1... | sip:... | sips:...


@dataclass
class CreateRoomInput:
    call_id: str
    room_name: str
    agent_name: str
    customer_name: str | None = None
    empty_timeout_s: int = 300  # LiveKit closes the room this long after everyone left
    # ... and this long after the customer left with only agents in it: longer than the
    # customer's rejoin grace (CUSTOMER_REJOIN_GRACE_S), so a reconnecting customer finds it.
    departure_timeout_s: int = 60
    max_participants: int = 6  # customer, agent, egress, a few supervisors


@dataclass
class RoomInfo:
    room_name: str
    sid: str
    dispatched_agent: str


@dataclass
class StartEgressInput:
    call_id: str
    room_name: str
    filepath: str  # where egress writes the file, e.g. conversations/<call_id>/1.ogg
    # The segment's key in the staging bucket (release 2: the same as `filepath`).
    object_key: str = ""


@dataclass
class EgressRef:
    call_id: str
    egress_id: str


@dataclass
class DispatchAgentInput:
    """One more explicit dispatch of the call's agent (`serial` numbers the call's dispatches:
    a retried activity with the same serial finds its dispatch instead of making another)."""

    call_id: str
    room_name: str
    agent_name: str
    serial: int
    resume: bool = False  # the call is under way: the new agent picks up the conversation


@dataclass
class DispatchResult:
    dispatch_id: str
    withdrawn: list[str] = field(default_factory=list)  # earlier dispatches no agent took


@dataclass
class RoomRef:
    call_id: str
    room_name: str


@dataclass
class RoomPresenceQuery:
    """Is the call's room still there, and which of `expected` (identities the call believes
    are in it) are?"""

    call_id: str
    room_name: str
    expected: list[str] = field(default_factory=list)


@dataclass
class RoomPresence:
    exists: bool
    missing: list[str] = field(default_factory=list)  # of the expected identities


@dataclass
class CallEvent:
    """One event the workflow appends; `id` is unique in the call (the database allocates the
    seq the dashboard orders by; `seq` is the workflow's own count, `wf:<seq>` when no id)."""

    seq: int
    kind: str  # core.models.EventKind value
    at: str  # ISO 8601 UTC
    data: dict[str, Any] = field(default_factory=dict)
    id: str = ""


@dataclass
class CallRow:
    """The workflow's part of the `calls` row (upserted, never older over newer). Lines, keyword
    alerts and the newest seq are counted by the database as events are stored."""

    call_id: str
    room_name: str
    customer_name: str | None
    status: str
    recording_status: str
    created_at: str
    agent_joined_at: str = ""
    ended_at: str = ""
    end_reason: str = ""
    silence_alerts: int = 0
    egress_id: str = ""
    row_version: int = 0  # grows with every change the workflow makes (older never wins)
    channel: str = "web"
    direction: str = "inbound"
    phone: str = ""  # a phone call's number (E.164): customer data, erased with the row


@dataclass
class EventBatch:
    call_id: str
    events: list[CallEvent] = field(default_factory=list)
    call: CallRow | None = None


@dataclass
class AppendResult:
    inserted: int  # events written now (a retried batch writes 0)
    duplicates: int = 0  # events the log held already
    refused: list[str] = field(default_factory=list)  # "<event id>: <why>", dropped alone


@dataclass
class RecordingRow:
    """What `record_recording` writes: the stored recording (or the pipeline's failure, or that
    it is uploading again after a retry or a reset)."""

    call_id: str
    status: str  # stored | failed | uploading
    bucket: str = ""
    object_key: str = ""
    egress_id: str = ""
    size_bytes: int = 0
    duration_s: float = 0.0
    sha256: str = ""
    incomplete: bool = False
    error: str = ""
    # Set by the recording workflow: also append the call's `recording` event (sequence number
    # allocated by the database) and set its recording_status, once per id (a report id:
    # `<run id>` for runs from before release 2, `<run id>/<n>` since).
    append_event_for_run: str = ""
    at: str = ""
    by: str = ""  # who caused this report ("" the pipeline itself; an ops principal)
    # Every stored segment in order (dicts: n, key, size, sha256, duration_s, egress_id).
    segments: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class EraseRowsInput:
    request: EraseCallInput
    executions_deleted: int
    object_deleted: bool


@dataclass
class PipelineStop:
    """`stop_recording_pipeline`'s answer: how the call's recording pipeline came to a close.

    `how`: `absent` (never ran), `closed` (had ended already), `cancelled` (stopped by this
    erasure and confirmed: nothing of it can write any more) or `terminated` (it did not close
    in time: forced, so a write already sent may still land; sweep the objects again after
    `sweep_again_after_s`)."""

    how: str
    run_id: str = ""
    sweep_again_after_s: float = 0.0

    @property
    def forced(self) -> bool:
        return self.how == "terminated"


@dataclass
class StagedRecordingQuery:
    """`find_staged_recording`'s argument: where a segment's egress was told to write."""

    call_id: str
    object_key: str


@dataclass
class SegmentsToDelete:
    """`delete_recording_segments`'s argument (consent withdrawn, policy `delete`)."""

    call_id: str
    object_keys: list[str] = field(default_factory=list)


# --- after the call (activities/analysis.py, workflows/analysis.py) -------------------------

EVENT_ENDED = "call.ended"
EVENT_ANALYZED = "call.analyzed"


@dataclass
class AnalysisRequest:
    call_id: str
    run: int = 1  # 1, then one more per ops re-run (a re-run sends no second call.ended)


@dataclass
class AnalysisDone:
    """Labels only: what was said stays in PostgreSQL."""

    call_id: str
    status: str  # done | failed | skipped (the call had no conversation)
    method: str = ""
    outcome: str = ""
    sentiment: str = ""
    score: float | None = None


@dataclass
class AnalysisFailed:
    call_id: str
    run: int
    error: str  # the last failure's message (no transcript text)


@dataclass
class WebhookRequest:
    call_id: str
    event_type: str
    run: int = 1


# The human desk (activities/desk.py)
ENQUEUE_HANDOFF = "enqueue_handoff"
LEAVE_DESK = "leave_desk"
TELL_CALLER = "tell_caller"


@dataclass
class AfterCall:
    """`start_after_call`'s argument: what outlives the call (activities/starts.py)."""

    call_id: str
    recording: RecordingInput | None = None  # its pipeline's input; None: nothing to store
