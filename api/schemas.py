"""Request and response shapes of the public contract, declared once.

Request models refuse unknown fields and wrong types (strict); `api.validation` turns their
errors into 422 responses that name the field. Response models exist for the OpenAPI document
(`/docs`) and to keep the handlers honest about what they return.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from core.analysis import OUTCOMES, SENTIMENTS
from core.desk import DEFAULT_SKILL
from core.desk import SKILL_RE as SKILL_PATTERN
from core.models import (
    LINE_ID_PATTERN,
    LINE_TEXT_MAX,
    LINE_TIME_MAX,
    LINES_PER_POST_MAX,
    CallStatus,
    RecordingStatus,
)

NAME_MAX = 64
_NAME_PUNCT = frozenset(" '-.")
ROOM_NAME_MAX = 64
TEXT_MAX = 500
INTERIM_TEXT_MAX = 1000  # characters
CALL_STATUSES = frozenset(s.value for s in CallStatus)
RECORDING_STATUSES = frozenset(s.value for s in RecordingStatus)
# pg_notify refuses 8000 bytes or more (core.notify.NOTIFY_MAX_BYTES), and bytes count: the interim
# message is published as UTF-8 JSON (`json_utf8_size`), where a character costs 1-4 bytes and
# a control character 6 once escaped. 1000 emoji are 4000 bytes; the envelope stays under 1000.
INTERIM_TEXT_MAX_BYTES = 6000


def json_utf8_size(value: object) -> int:
    """Bytes of `value` as the UTF-8 JSON the API publishes (`ensure_ascii=False`)."""
    return len(json.dumps(value, ensure_ascii=False).encode())


def check_person_name(value: str) -> str:
    """Letters (any script), marks, digits, spaces, apostrophes, hyphens and dots; trimmed."""
    if any(ch.isspace() and ch != " " for ch in value):
        raise ValueError("must not contain tabs or line breaks")
    name = " ".join(value.split())
    if not name:
        raise ValueError("must not be empty")
    if len(name) > NAME_MAX:
        raise ValueError(f"must be at most {NAME_MAX} characters")
    for ch in name:
        if ch in _NAME_PUNCT:
            continue
        if unicodedata.category(ch)[0] not in ("L", "M", "N"):
            raise ValueError(f"contains a character that is not allowed in a name: {ch!r}")
    if not any(unicodedata.category(ch)[0] == "L" for ch in name):
        raise ValueError("must contain a letter")
    return name


# A person's name as a request field: its length checked as sent, then `check_person_name`.
PersonName = Annotated[
    str, StringConstraints(min_length=1, max_length=NAME_MAX), AfterValidator(check_person_name)
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- requests ---------------------------------------------------------------------------------


class Empty(Strict):
    """No fields: an endpoint without input still refuses unknown ones."""


class CreateCallRequest(Strict):
    customer_name: PersonName | None = Field(None, description="shown to the agent and supervisors")


class OutboundCallRequest(Strict):
    """Place a phone call: the agent calls `to` (E.164, an allowed prefix)."""

    to: str = Field(min_length=1, max_length=16, description="E.164 number, e.g. +15551230001")
    customer_name: PersonName | None = Field(None, description="whom the agent asks for")
    reason: str | None = Field(None, min_length=1, max_length=500, description="why we call")


class TransferRequest(Strict):
    """Cold-transfer a phone caller (SIP REFER) to `to`: `tel:+1...`, `sip:` or `sips:`."""

    to: str = Field(min_length=5, max_length=256, pattern=r"^(tel:\+[1-9][0-9]{6,14}|sips?:\S+)$")


class OutboundCall(BaseModel):
    call_id: str
    room_name: str
    status: str
    channel: str
    direction: str
    phone: str  # masked


class GetTokenRequest(Strict):
    """The seed widget's request. `roomName` is accepted for compatibility and checked, but the
    server always chooses the room (a client never chooses a workflow id)."""

    roomName: str | None = Field(
        None, min_length=1, max_length=ROOM_NAME_MAX, pattern=r"^[A-Za-z0-9_-]+$"
    )
    participantName: PersonName | None = None


class DeskMeRequest(Strict):
    state: Literal["offline", "available", "break", "wrap_up"]
    skills: list[Annotated[str, StringConstraints(pattern=SKILL_PATTERN)]] | None = Field(
        None, min_length=1, max_length=20
    )


class HandoffRequest(Strict):
    reason: str = Field(min_length=1, max_length=TEXT_MAX)
    skill: str = Field(DEFAULT_SKILL, pattern=SKILL_PATTERN)


class EndCallRequest(Strict):
    reason: str | None = Field(None, min_length=1, max_length=200)


COMMAND_ID = Field(
    None,
    min_length=1,
    max_length=64,
    pattern=r"^[A-Za-z0-9_.:-]+$",
    description="idempotency key: a retried command with the same id is applied and recorded once",
)


class SupervisorCommandRequest(Strict):
    """Take over or release a call (the AI agent stops / resumes speaking; it keeps listening)."""

    id: str | None = COMMAND_ID


class WhisperRequest(Strict):
    text: str = Field(min_length=1, max_length=TEXT_MAX, description="instruction for the AI agent")
    id: str | None = COMMAND_ID

    @field_validator("text")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class InterimRequest(Strict):
    """An interim (not yet final) transcript from the agent; fanned out live, never stored."""

    speaker: Literal["customer", "assistant"]
    text: str = Field(max_length=INTERIM_TEXT_MAX)
    confidence: float | None = Field(None, ge=0.0, le=1.0)
    id: str | None = Field(None, min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")

    @field_validator("text")
    @classmethod
    def _fits_a_notification(cls, v: str) -> str:
        if json_utf8_size(v) - 2 > INTERIM_TEXT_MAX_BYTES:  # not counting its quotes
            raise ValueError(f"must be at most {INTERIM_TEXT_MAX_BYTES} bytes as UTF-8 JSON")
        return v


class LineMetrics(Strict):
    """The turn's latency figures an assistant line carries (seconds; null: not measured)."""

    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    end_of_utterance_delay_s: float | None = Field(None, ge=0.0, le=3600.0)
    time_to_first_token_s: float | None = Field(None, ge=0.0, le=3600.0)
    time_to_first_audio_s: float | None = Field(None, ge=0.0, le=3600.0)
    at: str = Field("", max_length=LINE_TIME_MAX, description="ISO 8601")
    stt_delay_s: float | None = Field(None, ge=0.0, le=3600.0)
    end_to_end_latency_s: float | None = Field(None, ge=0.0, le=3600.0)

    @field_validator(
        "end_of_utterance_delay_s", "time_to_first_token_s", "time_to_first_audio_s",
        "stt_delay_s", "end_to_end_latency_s", mode="before",
    )  # fmt: skip
    @classmethod
    def _number(cls, v: object) -> object:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v  # JSON's 1


class FinalLine(Strict):
    """One final transcript line as the agent has it; `id` is unique in the call (a resend
    stores nothing) and never holds ':' (the ids of other events do)."""

    id: str = Field(pattern=LINE_ID_PATTERN)
    speaker: Literal["customer", "assistant", "supervisor"]
    text: str = Field(min_length=1, max_length=LINE_TEXT_MAX)
    confidence: float = Field(1.0, ge=0.0, le=1.0)
    started_at: str = Field("", max_length=LINE_TIME_MAX, description="ISO 8601")
    ended_at: str = Field("", max_length=LINE_TIME_MAX, description="ISO 8601")
    interrupted: bool = False
    metrics: LineMetrics | None = None

    @field_validator("confidence", mode="before")
    @classmethod
    def _number(cls, v: object) -> object:
        return float(v) if isinstance(v, int) and not isinstance(v, bool) else v  # JSON's 1


class FinalLinesRequest(Strict):
    """Final lines from the agent, stored in order (its write-ahead spool resends until 200)."""

    lines: list[FinalLine] = Field(min_length=1, max_length=LINES_PER_POST_MAX)


class LineStored(BaseModel):
    id: str
    seq: int | None = Field(description="the line's place in the call's log; null: stored before")


class LinesStored(BaseModel):
    stored: list[LineStored]


class CodecPayload(BaseModel):
    """Temporal's JSON form of a Payload: metadata values and data are base64."""

    model_config = ConfigDict(extra="forbid", strict=True)
    metadata: dict[str, str] = Field(default_factory=dict)
    data: str = ""


class CodecRequest(Strict):
    payloads: list[CodecPayload] = Field(max_length=1000)


class ListCallsQuery(Strict):
    status: Literal["active", "ended", "all"] = "active"
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=200)


class SearchCallsQuery(Strict):
    """`GET /api/calls/search`: every filter optional, all of them must hold (AND)."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    q: str | None = Field(
        None, min_length=1, max_length=100, description="name or call id, any part"
    )
    from_: datetime | None = Field(None, alias="from", description="created at or after (ISO 8601)")
    to: datetime | None = Field(None, description="created before (ISO 8601)")
    status: str | None = Field(None, min_length=1, max_length=200, description="comma-separated")
    end_reason: str | None = Field(None, min_length=1, max_length=100, description="any part")
    alerts: Literal["any", "none", "silence", "keyword"] | None = None
    recording: str | None = Field(None, min_length=1, max_length=100, description="comma-separated")
    outcome: str | None = Field(
        None, min_length=1, max_length=100, description="analysis outcomes, comma-separated"
    )
    sentiment: str | None = Field(
        None, min_length=1, max_length=100, description="customer sentiments, comma-separated"
    )
    score: float | None = Field(
        None, ge=0, le=1, allow_inf_nan=False, description="minimum QA score (0 to 1)"
    )
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, min_length=1, max_length=200)

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _when(cls, v: object) -> object:
        return _iso(v)

    @field_validator("outcome")
    @classmethod
    def _outcomes(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, OUTCOMES)

    @field_validator("sentiment")
    @classmethod
    def _sentiments(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, SENTIMENTS)

    @field_validator("status")
    @classmethod
    def _statuses(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, CALL_STATUSES)

    @field_validator("recording")
    @classmethod
    def _recordings(cls, v: str | None) -> str | None:
        return None if v is None else _one_of(v, RECORDING_STATUSES)


def _iso(v: object) -> object:
    """Query strings are text: parse ISO 8601 here (strict mode refuses str -> datetime)."""
    if isinstance(v, str):
        try:
            when = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be an ISO 8601 date or date-time") from None
        return when if when.tzinfo else when.replace(tzinfo=UTC)
    return v


class AnalysisExportQuery(Strict):
    """`GET /api/analysis.csv`: calls created in `[from, to)`, at most `EXPORT_SPAN_DAYS` apart."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    from_: datetime = Field(alias="from", description="calls created at or after (ISO 8601)")
    to: datetime = Field(description="calls created before (ISO 8601)")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _when(cls, v: object) -> object:
        return _iso(v)


def _one_of(value: str, allowed: frozenset[str] | tuple[str, ...]) -> str:
    items = [x.strip() for x in value.split(",") if x.strip()]
    bad = [x for x in items if x not in allowed]
    if not items or bad:
        raise ValueError(f"must be one or more of {', '.join(sorted(allowed))} (comma-separated)")
    return ",".join(items)


class AfterQuery(Strict):
    after: int = Field(0, ge=0, le=2**62)


TRANSCRIPT_PAGE = 1000
TRANSCRIPT_PAGE_MAX = 5000


class TranscriptQuery(AfterQuery):
    limit: int = Field(TRANSCRIPT_PAGE, ge=1, le=TRANSCRIPT_PAGE_MAX)


# --- responses --------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None


class ErrorBody(BaseModel):
    error: ErrorDetail


class RejoinRequest(Strict):
    """The customer's earlier token for this call (it may have expired, by up to an hour)."""

    token: str = Field(min_length=20, max_length=4096, description="the call's last customer token")


class RoomGrant(BaseModel):
    """A LiveKit token for one call's room: the customer's, or a supervisor's."""

    call_id: str
    room_name: str
    token: str
    livekit_url: str
    participant_identity: str
    expires_at: str


class CallCreated(RoomGrant):
    pass  # the customer's grant, under its own name in /docs


class SeedTokenResponse(BaseModel):
    """What the seed widget reads (`token`, `roomName`) plus the seed backend's own fields."""

    token: str
    roomName: str
    room_name: str
    participant_identity: str
    call_id: str
    livekit_url: str
    expires_at: str


class CallSummary(BaseModel):
    call_id: str
    room_name: str
    customer_name: str | None
    status: str
    recording_status: str
    created_at: str | None
    agent_joined_at: str | None = None
    ended_at: str | None = None
    end_reason: str | None = None
    silence_alerts: int = 0
    keyword_alerts: int = 0
    last_seq: int = 0
    live: bool = False
    channel: str = "web"
    direction: str = "inbound"
    phone: str | None = None  # masked (`+1•••••0001`); in full only in an admin's call detail


class CallList(BaseModel):
    calls: list[CallSummary]
    next_cursor: str | None


class FoundCall(CallSummary):
    """A search result: the call and, once analysed, its analysis in brief."""

    outcome: str | None = None
    sentiment: str | None = None
    score: float | None = None
    analysis_method: Literal["llm", "local"] | None = None


class FoundCalls(BaseModel):
    calls: list[FoundCall]
    next_cursor: str | None


class CallLink(BaseModel):
    call_id: str | None = Field(
        description="the other call; null when the callback was not asked for on a call, or "
        "that call was erased"
    )
    callback_id: str


class CallLinks(BaseModel):
    """A callback's calls and the call that asked for the callback (`core.call_links`)."""

    callback_of: CallLink | None = Field(
        None, description="this call rings a customer back: the callback and the call it asked on"
    )
    called_back_in: list[CallLink] = Field(
        default_factory=list, description="the callback calls placed for this call, oldest first"
    )


class CallDetail(CallSummary):
    source: Literal["workflow", "database"]
    state: dict[str, Any] | None = None
    links: CallLinks = Field(default_factory=lambda: CallLinks(callback_of=None))


class CallOpeningBody(BaseModel):
    origin_call_id: str
    callback_id: str
    reason: str
    summary: str
    earlier: list[str]


class CallOpeningResponse(BaseModel):
    """`POST /internal/calls/{call_id}/opening`: why a callback's call happens, or null."""

    opening: CallOpeningBody | None


class TranscriptEvent(BaseModel):
    seq: int
    at: str
    speaker: str | None = None
    text: str | None = None
    data: dict[str, Any]


class Transcript(BaseModel):
    call_id: str
    lines: list[TranscriptEvent]
    last_seq: int
    next_after: int | None = Field(
        description="more lines follow: ask again with `after=next_after`; null on the last page"
    )


class LiveKitGrant(RoomGrant):
    can_publish: bool
    hidden: bool


class Accepted(BaseModel):
    call_id: str
    action: str
    status: str
    id: str | None = None  # a supervisor command's id (retry with it to apply it once)


class RecordingSegment(BaseModel):
    """One egress's stored file. `started_at` is its time zero on the call's clock (the egress's
    start as LiveKit reported it, else when the workflow saw the egress start), so transcript
    lines and alerts can be placed on the audio."""

    index: int
    url: str
    size_bytes: int
    duration_s: float
    sha256: str
    incomplete: bool
    started_at: str | None


class RecordingLink(BaseModel):
    call_id: str
    url: str
    expires_at: str
    size_bytes: int
    duration_s: float
    sha256: str
    incomplete: bool
    # The first segment's time zero, and where it came from: `egress` (LiveKit's own start
    # time), `event` (when the workflow recorded the start) or `none` (unknown).
    started_at: str | None = None
    clock: Literal["egress", "event", "none"] = "none"
    segments: list[RecordingSegment] = []


class CallReport(BaseModel):
    """`GET /api/calls/{call_id}/report`: the whole call in one document (`api.domain.report`)."""

    call_id: str
    call: dict[str, Any]
    workflow: dict[str, Any]
    transcript: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    supervisor_actions: list[dict[str, Any]]
    tool_calls: list[dict[str, Any]]
    status_history: list[dict[str, Any]]
    latency: dict[str, Any]
    recording: dict[str, Any]
    analysis: dict[str, Any] | None = Field(
        description="as `GET /api/calls/{call_id}/analysis` answers it; null before one exists"
    )
    links: CallLinks = Field(default_factory=lambda: CallLinks(callback_of=None))
    events: int


class ErasureResult(BaseModel):
    call_id: str
    erasure_workflow_id: str
    status: Literal["erased", "in_progress"]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class CodecResponse(BaseModel):
    payloads: list[CodecPayload]


# --- sign-in and sessions -----------------------------------------------------------------------


class SignInQuery(Strict):
    return_to: str = Field(
        "/dashboard",
        min_length=1,
        max_length=500,
        pattern=r"^/([^/\\\s][^\s]*)?$",
        description="a path on this site to go back to after sign-in (never another site)",
    )


class SignInOptions(BaseModel):
    oidc: bool = Field(description="whether the organisation's identity provider signs people in")
    login_url: str | None = Field(None, description="where the browser goes to sign in there")


class SessionInfo(BaseModel):
    person: str = Field(description="who the audit names: the email, else the subject")
    roles: list[str]
    via: Literal["token", "session"]
    expires_at: datetime | None = None


# --- callbacks (issue 25) ---------------------------------------------------------------------


class CallbackCreateRequest(Strict):
    """Ring `phone` back at `at` (ISO 8601 with an offset), inside the calling window in
    `timezone` (IANA). The same `request_id` (or `Idempotency-Key`), else the same `call_id`,
    gives the same callback."""

    phone: str = Field(min_length=1, max_length=16, description="E.164, an allowed prefix")
    at: str = Field(min_length=10, max_length=40, description="ISO 8601 with an offset")
    timezone: str = Field(min_length=1, max_length=64, description="IANA, e.g. America/Chicago")
    reason: str | None = Field(None, min_length=1, max_length=500, description="why we call")
    call_id: str | None = Field(None, pattern=r"^[a-z0-9]{12,40}$", description="asked on")
    customer_name: PersonName | None = None
    request_id: str | None = Field(None, min_length=1, max_length=128)


class CallbackPatchRequest(Strict):
    """Move a scheduled callback: a new time, and optionally a new zone."""

    at: str = Field(min_length=10, max_length=40, description="ISO 8601 with an offset")
    timezone: str | None = Field(None, min_length=1, max_length=64)


class DncRequest(Strict):
    phone: str = Field(min_length=1, max_length=16, description="E.164")


class CallbackAttempt(BaseModel):
    n: int
    call_id: str
    started_at: str
    outcome: str


class CallbackView(BaseModel):
    id: str
    status: str
    at: str
    due_at: str
    timezone: str
    phone: str  # masked but for an admin
    reason: str
    call_id: str
    end_reason: str
    attempts: list[CallbackAttempt]


class CallbackList(BaseModel):
    callbacks: list[CallbackView]


class CallbackListQuery(Strict):
    """`GET /api/callbacks`: by status, due in `[from, to)`."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    status: Literal["scheduled", "dialing", "completed", "failed", "cancelled"] | None = None
    from_: datetime | None = Field(None, alias="from", description="due at or after (ISO 8601)")
    to: datetime | None = Field(None, description="due before (ISO 8601)")

    @field_validator("from_", "to", mode="before")
    @classmethod
    def _when(cls, v: object) -> object:
        return _iso(v)


class DncAnswer(BaseModel):
    action: str  # added | removed
    phone: str  # masked
    cancelled_callbacks: int


class PersonErasureRequest(Strict):
    """Erase a person by their number: never by a name alone (a name is not unique)."""

    phone: str = Field(min_length=1, max_length=16, description="E.164")


class PersonErasureResult(BaseModel):
    phone: str  # masked
    calls: list[str]  # each erased through EraseCallWorkflow (their ids)
    callbacks: int
    campaign_numbers: int
    test_drives: int
    status: Literal["erased", "in_progress"]


class AgentCallbackRequest(Strict):
    """Sarah's `schedule_callback`: the number, the instant, the customer's zone, why."""

    phone: str = Field(min_length=1, max_length=16)
    at: str = Field(min_length=10, max_length=40)
    timezone: str = Field(min_length=1, max_length=64)
    reason: str | None = Field(None, min_length=1, max_length=500)
    via: Literal["queue"] | None = Field(
        None,
        description="queue: the customer accepted the callback the desk offered "
        "(past the longest wait, or no one signed in); recorded as by=queue",
    )


class CampaignCreateRequest(Strict):
    """Dial `numbers` (E.164, allowed prefixes; or a CSV upload, one number a row, first
    column) `max_concurrent` at a time inside `window` in `timezone`, from `start_at` on."""

    name: str = Field(min_length=1, max_length=200)
    numbers: list[str] = Field(min_length=1, description="E.164 numbers, in dialling order")
    window: str = Field("09:00-20:00", description="HH:MM-HH:MM, inside 08:00-21:00")
    timezone: str = Field(min_length=1, max_length=64, description="IANA, e.g. America/Chicago")
    max_concurrent: int = Field(5, ge=1, le=50, description="calls ringing at once")
    start_at: str | None = Field(None, min_length=10, max_length=40, description="ISO 8601")
    reason: str | None = Field(None, min_length=1, max_length=500, description="why we call")


class CampaignProgress(BaseModel):
    dialled: int
    answered: int
    busy: int
    no_answer: int
    failed: int
    skipped: int
    remaining: int
    total: int


class CampaignView(BaseModel):
    id: str
    name: str
    status: str  # scheduled | running | paused | completed | cancelled
    timezone: str
    window: str
    max_concurrent: int
    start_at: str
    reason: str
    progress: CampaignProgress
    on_do_not_call: int  # numbers on the list when it was created: skipped at dial time


class CampaignList(BaseModel):
    campaigns: list[CampaignView]
