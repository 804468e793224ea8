"""Request and response shapes of the public contract, declared once.

Request models refuse unknown fields and wrong types (strict); `api.validation` turns their
errors into 422 responses that name the field. Response models exist for the OpenAPI document
(`/docs`) and to keep the handlers honest about what they return.
"""

from __future__ import annotations

import unicodedata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

NAME_MAX = 64
_NAME_PUNCT = frozenset(" '-.")
ROOM_NAME_MAX = 64
TEXT_MAX = 500
INTERIM_TEXT_MAX = 1000  # pg NOTIFY payloads must stay under 8000 bytes


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


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# --- requests ---------------------------------------------------------------------------------


class Empty(Strict):
    """No fields: an endpoint without input still refuses unknown ones."""


class CreateCallRequest(Strict):
    customer_name: str | None = Field(
        None, min_length=1, max_length=NAME_MAX, description="shown to the agent and supervisors"
    )

    @field_validator("customer_name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_person_name(v)


class GetTokenRequest(Strict):
    """The seed widget's request. `roomName` is accepted for compatibility and checked, but the
    server always chooses the room (a client never chooses a workflow id)."""

    roomName: str | None = Field(
        None, min_length=1, max_length=ROOM_NAME_MAX, pattern=r"^[A-Za-z0-9_-]+$"
    )
    participantName: str | None = Field(None, min_length=1, max_length=NAME_MAX)

    @field_validator("participantName")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        return None if v is None else check_person_name(v)


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


class AfterQuery(Strict):
    after: int = Field(0, ge=0, le=2**62)


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


class CallCreated(BaseModel):
    call_id: str
    room_name: str
    token: str
    livekit_url: str
    participant_identity: str
    expires_at: str


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


class CallList(BaseModel):
    calls: list[CallSummary]
    next_cursor: str | None


class CallDetail(CallSummary):
    source: Literal["workflow", "database"]
    state: dict[str, Any] | None = None


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


class LiveKitGrant(BaseModel):
    call_id: str
    room_name: str
    token: str
    livekit_url: str
    participant_identity: str
    expires_at: str
    can_publish: bool
    hidden: bool


class Accepted(BaseModel):
    call_id: str
    action: str
    status: str
    id: str | None = None  # a supervisor command's id (retry with it to apply it once)


class RecordingLink(BaseModel):
    call_id: str
    url: str
    expires_at: str
    size_bytes: int
    duration_s: float
    sha256: str
    incomplete: bool


class ErasureResult(BaseModel):
    call_id: str
    erasure_workflow_id: str
    status: Literal["erased", "in_progress"]


class Health(BaseModel):
    status: str
    checks: dict[str, str] = Field(default_factory=dict)


class CodecResponse(BaseModel):
    payloads: list[CodecPayload]
