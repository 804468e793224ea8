"""The data that crosses a boundary: workflow inputs, signals, updates, queries, statuses, ids.

Imported by the API, the worker, the agent and the tests; nothing here is written twice
"for this side". Everything is a plain dataclass so that fields can be added later without
breaking running workflows (add fields with defaults only).
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class CallStatus(StrEnum):
    WAITING_FOR_AGENT = "waiting_for_agent"
    IN_PROGRESS = "in_progress"
    ENDING = "ending"
    COMPLETED = "completed"
    NO_AGENT = "no_agent"
    FAILED = "failed"
    DIALING = "dialing"  # an outbound phone call, until the phone answers (or does not)

    @property
    def is_active(self) -> bool:
        return self in (
            CallStatus.WAITING_FOR_AGENT,
            CallStatus.IN_PROGRESS,
            CallStatus.ENDING,
            CallStatus.DIALING,
        )


class Channel(StrEnum):
    WEB = "web"
    PHONE = "phone"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class RecordingStatus(StrEnum):
    NONE = "none"
    RECORDING = "recording"
    STOPPING = "stopping"
    UPLOADING = "uploading"
    STORED = "stored"
    FAILED = "failed"


class EventKind(StrEnum):
    """Kinds of rows in `call_events`; also the WebSocket message `type`s of the dashboard."""

    FINAL_TRANSCRIPT = "final_transcript"
    INTERIM_TRANSCRIPT = "interim_transcript"  # live path only, never in history or the table
    SILENCE_ALERT = "silence_alert"
    KEYWORD_ALERT = "keyword_alert"
    HANDOFF_REQUESTED = "handoff_requested"
    STATUS = "status"
    RECORDING = "recording"
    SUPERVISOR_ACTION = "supervisor_action"
    AGENT_METRICS = "agent_metrics"
    AGENT_ALERT = "agent_alert"  # any agent alert other than a handoff request
    RECORDING_INCOMPLETE = "recording_incomplete"  # stored, but much shorter than the call
    # An agent dispatch (first, again because none joined, or to replace one that left).
    AGENT_DISPATCH = "agent_dispatch"
    # The customer's connection dropped (reconnecting) or came back (rejoined).
    CUSTOMER_CONNECTION = "customer_connection"
    # A rejoin proof was accepted: a new join grant replaced the customer's latest one.
    CUSTOMER_REJOINED = "customer_rejoined"


# --- ids and names --------------------------------------------------------------------------

CALL_ID_RE = re.compile(r"^[a-z0-9]{12,40}$")
TASK_QUEUE_DEFAULT = "callcenter"


def matched_keywords(text: str, phrases: list[str]) -> list[str]:
    """Configured phrases found in a line, as whole words, case-insensitively."""
    low = text.lower()
    return [p for p in phrases if p and re.search(rf"(?<!\w){re.escape(p.lower())}(?!\w)", low)]


def new_call_id() -> str:
    """Server-generated opaque call id (a client never chooses one)."""
    return secrets.token_hex(10)


def is_call_id(value: str) -> bool:
    return bool(CALL_ID_RE.match(value))


def call_workflow_id(call_id: str) -> str:
    return f"call-{call_id}"


def recording_workflow_id(call_id: str) -> str:
    return f"recording-{call_id}"


ERASE_WORKFLOW = "EraseCallWorkflow"


def erase_workflow_id(call_id: str) -> str:
    return f"erase-{call_id}"


def room_name_for(call_id: str) -> str:
    return f"call-{call_id}"


# The room prefix of the dispatch rule `ops telephony setup` creates: LiveKit names an inbound
# phone call's room `phone_<last 4 digits>_<random>` (hide_phone_number), not after a call id.
PHONE_ROOM_PREFIX = "phone"


def phone_call_id(room_name: str) -> str:
    """The call id of an inbound phone call's room: a hash of the room's name, so the agent's
    job and the caller's webhook, each knowing only the room, start the same workflow."""
    return "p" + hashlib.sha256(room_name.encode()).hexdigest()[:23]


def is_phone_room(room_name: str) -> bool:
    return room_name.startswith(PHONE_ROOM_PREFIX + "_") and len(room_name) <= 128


def call_id_from_room(room_name: str) -> str | None:
    """Inverse of `room_name_for` (and of `phone_call_id` for an inbound phone call's room);
    None for rooms that are not ours."""
    if room_name.startswith("call-") and is_call_id(room_name[5:]):
        return room_name[5:]
    if is_phone_room(room_name):
        return phone_call_id(room_name)
    return None


def call_room(call_id: str, cfg: CallConfig) -> str:
    """The call's LiveKit room: LiveKit's own name for an inbound phone call, else ours."""
    return cfg.room_name or room_name_for(call_id)


# Here, not in core.livekit with the other prefixes, because the workflow names its customer.
CUSTOMER_IDENTITY_PREFIX = "customer-"


def customer_identity(call_id: str) -> str:
    return f"{CUSTOMER_IDENTITY_PREFIX}{call_id}"


def single_recording_object_key(call_id: str) -> str:
    """Where a call recorded before per-egress segments kept its one file (erasure still
    looks there)."""
    return f"conversations/{call_id}.ogg"


def recording_object_key(call_id: str, n: int = 1) -> str:
    """Where egress `n` (1, 2, ... in the order they started) of a call writes its file, in the
    staging bucket and, once stored, in the recordings bucket."""
    return f"conversations/{call_id}/{n}.ogg"


# Workflow handler names, used by the API and the agent instead of string literals.
UPDATE_ISSUE_TOKEN = "issue_token"
UPDATE_END_CALL = "end_call"
UPDATE_TRANSFER = "transfer"  # a phone call's cold transfer (workflows/phone.py)
ERR_TRANSFER_FAILED = "TransferFailed"
ERR_NOT_PHONE = "NotAPhoneCall"
SIGNAL_AGENT_JOINED = "agent_joined"
SIGNAL_TRANSCRIPT = "transcript"
SIGNAL_TRANSCRIPT_BATCH = "transcript_batch"
SIGNAL_SILENCE = "silence"
SIGNAL_PARTICIPANT_JOINED = "participant_joined"
SIGNAL_PARTICIPANT_LEFT = "participant_left"
SIGNAL_EGRESS_UPDATED = "egress_updated"
SIGNAL_EGRESS_ENDED = "egress_ended"
SIGNAL_RECORDING_CONSENT = "recording_consent"
SIGNAL_ROOM_FINISHED = "room_finished"
SIGNAL_AGENT_METRICS = "agent_metrics"
SIGNAL_AGENT_ALERT = "agent_alert"
SIGNAL_SUPERVISOR_ACTION = "supervisor_action"
# `issue_token` refuses a rejoin proof (not the latest token, or expired past the grace).
ERR_REJOIN_REFUSED = "RejoinRefused"
UPDATE_RECORDING_RETRY = "retry"  # RecordingWorkflow, while it waits for ops
UPDATE_RECORDING_GIVE_UP = "give_up"
QUERY_GET_STATE = "get_state"
QUERY_GET_TRANSCRIPT = "get_transcript"

# Workflow type names (for starting or listing them by name).
WORKFLOW_CALL = "CallWorkflow"
WORKFLOW_RECORDING = "RecordingWorkflow"

# Custom search attributes (registered on every Temporal server; typed keys in workflows/search.py).
SA_CALL_STATUS = "CallStatus"
SA_RECORDING_STATUS = "RecordingStatus"
SA_ROOM_NAME = "RoomName"
SA_CUSTOMER_NAME = "CustomerName"
SA_SILENCE_ALERTS = "SilenceAlerts"


# --- workflow inputs ------------------------------------------------------------------------


@dataclass
class CallConfig:
    """Per-call policy, taken from settings by whoever starts the call (the API)."""

    livekit_url: str = ""
    agent_name: str = "sarah-cme"
    agent_join_timeout_s: float = 60
    # A call whose customer never connects (closed the tab) ends after this, from the token.
    customer_join_timeout_s: float = 120
    # Dispatch healing: a dispatch nobody answered within this is made again, up to
    # `agent_dispatch_attempts` dispatches in all (the room's own dispatch is the first).
    agent_redispatch_after_s: float = 10
    agent_dispatch_attempts: int = 3
    # A customer whose connection dropped may come back within this into the same call.
    customer_rejoin_grace_s: float = 30
    # A call whose agent was lost with no replacement waits this long in the desk's queue for
    # a rep before it ends (`agent_lost_no_replacement`); 0: it ends at once.
    agent_lost_queue_s: float = 300
    max_duration_s: float = 7200
    egress_end_timeout_s: float = 600
    # A call that has heard nothing from its room (no line, no participant webhook) this long
    # asks LiveKit who is in it: a lost participant_left or room_finished is found.
    room_check_after_s: float = 120
    silence_alert_s: float = 30
    # A line on which the customer has said nothing this long is hung up (`silent`); 0: never.
    silent_hangup_s: float = 0
    recording_consent: str = "announce"  # announce | ask | off
    keywords: list[str] = field(default_factory=lambda: ["manager", "lawyer", "cancel"])
    recording_retry_for_s: float = 24 * 3600
    token_ttl_s: float = 900  # the customer's token only has to last until they join
    egress_retry_delay_s: float = 10  # a failed egress start is retried once, after this
    # Continue-as-new once a run's history reaches this many events (the server suggests 4,096).
    continue_as_new_after_events: int = 2000
    # Search attributes are never encrypted: with PAYLOAD_KEYS set, no customer name goes there.
    customer_name_searchable: bool = True
    # Egress starts per call (each restart after a mid-call end is a new segment).
    max_egress_starts: int = 5
    # Consent withdrawn mid-call: keep | delete what was recorded until then.
    recording_on_withdrawal: str = "delete"
    # The phone: `channel` web | phone, `direction` inbound | outbound. A phone call's number
    # (E.164) is customer data: a payload (encrypted by the codec), never a search attribute.
    channel: str = "web"
    direction: str = "inbound"
    phone: str = ""
    # The room LiveKit made for an inbound phone call ("": `room_name_for(call_id)`).
    room_name: str = ""
    # An outbound call: how the dial goes (workflows/phone.py, activities/phone.py).
    dial: DialRequest | None = None

    @classmethod
    def from_settings(cls, settings: Any) -> CallConfig:
        """The per-call policy from a `core.settings.Settings` (what the API passes at start)."""
        return cls(
            livekit_url=settings.livekit_public_url,
            agent_name=settings.AGENT_NAME,
            agent_join_timeout_s=settings.AGENT_JOIN_TIMEOUT_S,
            customer_join_timeout_s=settings.CUSTOMER_JOIN_TIMEOUT_S,
            agent_redispatch_after_s=settings.AGENT_REDISPATCH_AFTER_S,
            agent_dispatch_attempts=settings.AGENT_DISPATCH_ATTEMPTS,
            customer_rejoin_grace_s=settings.CUSTOMER_REJOIN_GRACE_S,
            agent_lost_queue_s=settings.QUEUE_MAX_WAIT_S,
            max_duration_s=settings.MAX_CALL_DURATION_S,
            egress_end_timeout_s=settings.EGRESS_END_TIMEOUT_S,
            room_check_after_s=settings.ROOM_CHECK_AFTER_S,
            silence_alert_s=settings.SILENCE_ALERT_S,
            silent_hangup_s=settings.SILENT_CALL_HANGUP_S,
            recording_consent=str(settings.RECORDING_CONSENT),
            keywords=list(settings.keywords),
            recording_retry_for_s=settings.RECORDING_RETRY_FOR_S,
            customer_name_searchable=not settings.payload_keys,
            recording_on_withdrawal=str(settings.RECORDING_ON_WITHDRAWAL),
        )

    def for_phone(
        self,
        direction: str,
        *,
        room_name: str = "",
        phone: str = "",
        dial: DialRequest | None = None,
    ) -> CallConfig:
        """This policy for a phone call: no rejoin grace (a caller who hung up is gone)."""
        return replace(self, channel=Channel.PHONE.value, direction=direction, room_name=room_name,
                       phone=phone, dial=dial, customer_rejoin_grace_s=0)  # fmt: skip


@dataclass
class DialRequest:
    """What an outbound call dials (`dial_outbound`): the number, and why (for the agent)."""

    to: str  # E.164
    reason: str = ""
    ringing_timeout_s: float = 30.0
    # A callback's call: the workflow id (`callback-<id>`) told the dial's outcome by signal.
    report_to: str = ""


@dataclass
class DialResult:
    """`dial_outbound`'s answer: `outcome` answered | busy | no_answer | rejected |
    unavailable | dial_failed (each but `answered` is the call's end reason)."""

    outcome: str
    sip_status: int = 0
    detail: str = ""
    sip_call_id: str = ""
    identity: str = ""


@dataclass
class CallInput:
    """`CallWorkflow.run`'s argument. The API sets call_id, customer_name and config only."""

    call_id: str
    customer_name: str | None = None
    config: CallConfig = field(default_factory=CallConfig)
    # Set only when the workflow continues as new: the state it carries.
    carried: CallCarry | None = None


@dataclass
class IssueTokenRequest:
    """`issue_token`'s argument. A rejoin names the proof it was given: the token id (`jti`)
    of the customer's earlier token and that token's expiry (epoch seconds), both read by the
    API from a token whose signature it checked; the call accepts only its latest token."""

    customer_name: str | None = None
    rejoin_of: str = ""
    proof_expires_at: float = 0.0


@dataclass
class TokenGrant:
    """A customer's join grant. The workflow decides it (identity, expiry, `token_id`, the
    `name` shown in the room) and answers with `token` empty: a join token is never a payload
    in Temporal history. The API signs the JWT from it (`api.domain.join_tokens`)."""

    call_id: str
    room_name: str
    token: str
    livekit_url: str
    participant_identity: str
    expires_at: str  # ISO 8601 UTC
    token_id: str = ""  # the JWT's `jti`; a rejoin must present the latest one
    name: str = ""  # the participant's display name


# --- signals (every one carries an id; a duplicate id changes nothing) ----------------------


@dataclass
class AgentJoined:
    id: str
    identity: str
    at: str = ""


@dataclass
class ParticipantJoined:
    id: str
    identity: str
    kind: str  # customer | agent | supervisor | egress | other
    at: str = ""


@dataclass
class RoomFinished:
    """LiveKit's `room_finished`: the call's room is gone (every participant left, or it was
    deleted), so nobody can talk in it any more."""

    id: str
    at: str = ""


@dataclass
class ParticipantLeft:
    id: str
    identity: str
    kind: str
    at: str = ""


@dataclass
class AgentMetrics:
    """One turn's latency figures (seconds), each named for what it measures."""

    id: str
    end_of_utterance_delay_s: float | None = None  # end of speech -> turn judged over
    time_to_first_token_s: float | None = None  # LLM time to first token
    # TTS time to first byte (kept under its old name for running workflows and histories).
    time_to_first_audio_s: float | None = None
    at: str = ""
    stt_delay_s: float | None = None  # end of speech -> final transcript
    # End of the customer's speech -> Sarah starts answering: what the customer waits.
    end_to_end_latency_s: float | None = None


@dataclass
class TranscriptLine:
    id: str
    speaker: str  # customer | assistant
    text: str
    confidence: float = 1.0
    started_at: str = ""
    ended_at: str = ""
    interrupted: bool = False
    # Per-turn latency figures may ride on the assistant's line instead of their own signal
    # (one signal fewer per turn in the workflow's history).
    metrics: AgentMetrics | None = None


# A final line as the agent sends it to the API (`POST /internal/calls/{call_id}/lines`):
# the bounds both sides hold to. An id never holds ':' (event ids with a colon are the
# workflow's `wf:`, a keyword alert's `kw:`, a pipeline's `rec:`: a line must not take one).
LINE_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
LINE_TEXT_MAX = 10_000  # characters; the agent cuts a longer line here before anyone sees it
LINES_PER_POST_MAX = 50
LINES_POST_MAX_BYTES = 256_000  # the agent's batches stay well under the API's 1 MB bodies
LINE_TIME_MAX = 64  # an ISO 8601 time as text


@dataclass
class TranscriptBatch:
    """Several final lines in one signal (each line keeps its own id for de-duplication).

    Optional: a sender that can hold a line back briefly (e.g. a whole turn) halves the
    history the call costs; single `transcript` signals are the default.
    """

    id: str
    lines: list[TranscriptLine] = field(default_factory=list)


@dataclass
class SilenceSignal:
    id: str
    speaker: str
    duration_s: float
    at: str = ""


@dataclass
class RecordingFile:
    filename: str
    location: str
    size: int
    duration_s: float


@dataclass
class EgressUpdate:
    id: str
    egress_id: str
    status: str  # LiveKit EgressStatus name, e.g. EGRESS_ACTIVE, EGRESS_COMPLETE
    error: str = ""
    file: RecordingFile | None = None
    # LiveKit's EgressInfo.started_at (ISO 8601): the recording's time zero, set once active.
    started_at: str = ""


@dataclass
class RecordingConsentSignal:
    id: str
    granted: bool
    at: str = ""


@dataclass
class AgentAlert:
    """Raised by the agent, e.g. `handoff_requested` when the customer asks for a human (a
    supervisor's hand-off is one too, `by` naming them). A hand-off goes to the desk's queue
    for `skill` (core/desk.py; empty: the default skill)."""

    id: str
    kind: str
    detail: str = ""
    at: str = ""
    skill: str = ""
    by: str = "agent"


@dataclass
class SupervisorAction:
    """monitor | whisper | barge | takeover | release | end | erase, recorded on the call by the
    API; `command_refused` for a command whose id already named another (api.domain.commands)."""

    id: str
    action: str
    by: str
    detail: str = ""
    at: str = ""


@dataclass
class EndCallRequest:
    """`end_call` update argument. Refused (update fails, call untouched) when the call has
    already ended or is ending, or when `reason` is empty or longer than 500 characters."""

    reason: str
    by: str = "supervisor"  # supervisor | agent | system | ops (free text, recorded)


@dataclass
class TransferRequest:
    """`transfer` update argument: where the phone caller goes (`tel:+1...`, `sip:...`)."""

    to: str
    by: str = "supervisor"


@dataclass
class EndCallResult:
    call_id: str
    status: str  # the call's status when the update returns: "ending" (or later)
    reason: str


# --- recording pipeline ---------------------------------------------------------------------


@dataclass
class RecordingInput:
    """`RecordingWorkflow.run`'s argument (built by CallWorkflow from egress's file report)."""

    call_id: str
    room_name: str
    egress_id: str
    location: str  # http(s) URL of the egress file
    expected_size: int  # bytes, as egress reported (0: unknown)
    expected_duration_s: float  # as egress reported (0: unknown)
    call_duration_s: float  # how long the call was being recorded (egress start -> call end)
    retry_for_s: float = 24 * 3600
    # True: the recording workflow appends its `recording` events to the call's log and sets the
    # call's recording_status itself (every run since release 2, and every ops retry).
    report_to_call: bool = False
    # The key this segment's egress wrote in the staging bucket (and is stored under); "" for
    # runs from before segments: `recording_object_key(call_id)`.
    object_key: str = ""
    # Every segment of the call in order (release 2); empty: the one described above.
    segments: list[RecordingSegment] = field(default_factory=list)


@dataclass
class RecordingSegment:
    """One egress of a call and its file, as the call saw it end."""

    n: int
    egress_id: str
    object_key: str
    location: str = ""  # as egress reported it ("" when found at its key in staging)
    expected_size: int = 0
    expected_duration_s: float = 0.0
    recorded_for_s: float = 0.0  # how long this egress ran (its start -> its end or the call's)


@dataclass
class RecordingOpsRequest:
    """`retry` / `give_up` update argument (ops, while the pipeline waits after its retries)."""

    by: str
    reason: str = ""
    retry_for_s: float = 0.0  # retry only: how long to keep trying this time (0: as before)


@dataclass
class RecordingOpsResult:
    call_id: str
    action: str  # retry | give_up
    status: str  # the recording status once the decision took effect: uploading | failed


@dataclass
class RecordingResult:
    call_id: str
    bucket: str
    key: str
    size: int
    sha256: str
    duration_s: float
    incomplete: bool = False
    egress_id: str = ""
    already_stored: bool = False  # the key already held these bytes; nothing was written
    # Every stored segment in order (release 2); the fields above describe the first one.
    segments: list[StoredSegment] = field(default_factory=list)
    given_up: bool = False  # ops gave up on it: nothing (more) will be stored


@dataclass
class StoredSegment:
    n: int
    key: str
    size: int
    sha256: str
    duration_s: float
    egress_id: str = ""


# --- queries and results --------------------------------------------------------------------


@dataclass
class TranscriptEntry:
    """A final line in the call's recent window: the line plus its number in the call (1, 2, ...;
    not the event log's seq, which the database allocates)."""

    seq: int
    id: str
    speaker: str
    text: str
    confidence: float = 1.0
    started_at: str = ""
    ended_at: str = ""
    interrupted: bool = False
    at: str = ""  # when the workflow received it (ISO 8601 UTC)


@dataclass
class TranscriptPage:
    """`get_transcript(after_seq)` result: lines with seq > after_seq, oldest first."""

    call_id: str
    lines: list[TranscriptEntry] = field(default_factory=list)
    last_seq: int = 0  # events the workflow has emitted (its own count, not the log's seq)
    more: bool = False  # more lines exist beyond this page: ask again with the last line's seq
    # Lines before this page exist but the workflow no longer holds them (a very long call):
    # read them from the `call_events` table.
    truncated: bool = False


@dataclass
class ParticipantState:
    identity: str
    kind: str  # customer | agent | supervisor | egress | other
    joined_at: str = ""
    left_at: str = ""


@dataclass
class EgressState:
    egress_id: str
    status: str  # LiveKit EgressStatus name
    error: str = ""
    file: RecordingFile | None = None
    started_at: str = ""
    n: int = 0  # which segment of the call (1, 2, ...; 0 before release 2)
    object_key: str = ""  # where it writes in the staging bucket (known before it starts)


@dataclass
class CallState:
    """`get_state` result. Times are ISO 8601 UTC strings ("" when not yet)."""

    call_id: str
    room_name: str
    customer_name: str | None
    status: str
    recording_status: str
    end_reason: str = ""
    ended_by: str = ""
    created_at: str = ""
    agent_joined_at: str = ""
    ended_at: str = ""
    agent_identity: str = ""
    participants: list[ParticipantState] = field(default_factory=list)
    egress: EgressState | None = None
    egress_attempts: int = 0
    recording: RecordingResult | None = None
    recording_error: str = ""
    event_log_error: str = ""  # a batch of events PostgreSQL rejected for good, and why
    consent: str = ""  # "" | granted | refused (policy "ask" only)
    silence_alerts: int = 0
    keyword_alerts: int = 0
    line_count: int = 0
    last_seq: int = 0
    last_lines: list[TranscriptEntry] = field(default_factory=list)  # the latest 10
    runs: int = 1  # 1 + how many times the call continued as new
    dispatch_attempts: int = 1  # agent dispatches of the current wait for an agent
    agent_lost: bool = False  # the agent left mid-call; a new one is being dispatched
    customer_reconnecting: bool = False  # the customer's connection dropped; grace running
    segments: list[EgressState] = field(default_factory=list)  # every egress, in order
    channel: str = "web"
    direction: str = "inbound"
    phone: str = ""  # E.164; the API masks it for everyone but an admin


@dataclass
class CallResult:
    """`CallWorkflow.run`'s result. Since release 2 the call ends once its recording pipeline
    has started (`recording_status` then `uploading`): the pipeline reports its outcome itself."""

    call_id: str
    status: str
    recording_status: str
    end_reason: str
    line_count: int
    recording: RecordingResult | None = None
    segments: list[EgressState] = field(default_factory=list)  # every egress, in order


@dataclass
class CallCarry:
    """What a call carries into its next run when it continues as new (internal). A few
    kilobytes whatever the call's length: PostgreSQL holds what was said, the run keeps only a
    bounded window of recent lines (`lines`) for its queries and a replacement agent."""

    status: str
    recording_status: str
    created_at: float  # epoch seconds (workflow time)
    room_ready: bool = False
    agent_joined_at: float = 0.0
    agent_identity: str = ""
    greeted: bool = False
    consent: str = ""
    participants: list[ParticipantState] = field(default_factory=list)
    egress: EgressState | None = None  # the latest egress
    egress_attempts: int = 0
    egress_started_at: float = 0.0
    segments: list[EgressState] = field(default_factory=list)  # earlier egresses, in order
    segment_spans: list[list[float]] = field(default_factory=list)  # [started, ended] each
    early_egress: dict[str, EgressState] = field(default_factory=dict)  # beat start_egress
    recording: RecordingResult | None = None
    recording_error: str = ""
    event_log_error: str = ""  # an event PostgreSQL refused, and why
    end_reason: str = ""
    ended_by: str = ""
    ended_at: float = 0.0
    silence_alerts: int = 0
    keyword_alerts: int = 0
    last_heard_at: float = 0.0
    customer_heard_at: float = 0.0  # the customer's last line (or the conversation's start)
    silence_alerted: bool = False
    seq: int = 0  # events this call has emitted (each goes to the log as `wf:<seq>`)
    line_count: int = 0  # lines received (each once per run; PostgreSQL's count is the record)
    lines: list[TranscriptEntry] = field(default_factory=list)  # the recent window
    seen_ids: list[str] = field(default_factory=list)  # recent signal ids (bounded)
    unflushed: list[dict[str, Any]] = field(default_factory=list)  # events not yet written
    runs: int = 1
    # Healing: dispatches made so far in the current episode (1 = the room's own dispatch),
    # when the agent was lost (0: not lost), when the customer's connection dropped (0: there).
    dispatch_attempts: int = 1
    dispatch_serial: int = 1  # every dispatch of the call, the room's own first
    agent_lost_at: float = 0.0
    customer_away_since: float = 0.0
    token_issued_at: float = 0.0  # the first token (the customer-join clock starts there)
    token_id: str = ""  # the latest join grant's id: the only one a rejoin may present
    desk_queued: bool = False  # handed off to the desk: it is told when the call ends


# --- erasure (EraseCallWorkflow's input and result) -----------------------------------------


@dataclass
class EraseCallInput:
    call_id: str
    requested_by: str  # principal id of the admin, never a token
    requested_at: str  # ISO 8601 UTC


@dataclass
class EraseCallResult:
    call_id: str
    executions_deleted: int = 0
    object_deleted: bool = False
    rows_deleted: int = 0
