"""Callbacks: the data that crosses the CallbackWorkflow's boundary and the calling window.

A callback is a promise to ring a customer at a time they chose. `callback-<id>` keeps it
(workflows/callback.py); the API, the agent's tool and ops build its input here, and the
window rule is one pure function both the workflow and the API's checks use.

The calling window is local to the customer: `next_dial_at` takes the earliest instant at or
after the due time whose wall-clock time in the customer's zone (zoneinfo: daylight saving
handled) is inside `[start, end)`. Settings never allow a window outside 08:00-21:00 (the US
telemarketing bound, 47 CFR 64.1200(c)(1)).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WORKFLOW_CALLBACK = "CallbackWorkflow"
UPDATE_RESCHEDULE = "reschedule"
UPDATE_CANCEL = "cancel"
UPDATE_REGISTER = "register"
SIGNAL_DIAL_OUTCOME = "dial_outcome"
QUERY_STATE = "get_state"
SA_CALLBACK_STATUS = "CallbackStatus"
SA_CALLBACK_DUE = "CallbackDue"
CALLBACK_ID_RE = re.compile(r"^cb[a-z0-9]{10,40}$")
# The bound no window may leave, and the default window inside it.
EARLIEST = time(8, 0)
LATEST = time(21, 0)
DEFAULT_HOURS = "09:00-20:00"
# Outcomes of a dial that are worth another try later; any other ends the callback `failed`.
RETRY_OUTCOMES = ("busy", "no_answer")
# Every outcome an attempt can have ("" while its call still rings).
ATTEMPT_OUTCOMES = ("answered", "busy", "no_answer", "rejected", "unavailable", "dial_failed")
ERR_NOT_SCHEDULED = "CallbackNotScheduled"
ERR_FINISHED = "CallbackFinished"


class CallbackStatus(StrEnum):
    SCHEDULED = "scheduled"
    DIALING = "dialing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL = (CallbackStatus.COMPLETED, CallbackStatus.FAILED, CallbackStatus.CANCELLED)


def callback_workflow_id(callback_id: str) -> str:
    return f"callback-{callback_id}"


def callback_id_for(*, request_id: str = "", call_id: str = "", random: str = "") -> str:
    """One id a request: the same request id, or else the same call asking twice, names the
    same callback (hashed: a client's key never becomes a workflow id as it is)."""
    key = f"req:{request_id}" if request_id else f"call:{call_id}" if call_id else ""
    if not key:
        return f"cb{random}"
    return "cb" + hashlib.sha256(key.encode()).hexdigest()[:20]


def attempt_call_id(callback_id: str, attempt: int) -> str:
    """The call an attempt places (a call id like any other): known before it is started, so a
    retried start finds the call it started instead of ringing twice."""
    return hashlib.sha256(f"{callback_id}/{attempt}".encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Window:
    start: time = time(9, 0)
    end: time = time(20, 0)

    @classmethod
    def parse(cls, text: str) -> Window:
        """`HH:MM-HH:MM`, inside 08:00-21:00, start before end; ValueError saying why."""
        try:
            a, b = (time.fromisoformat(p.strip()) for p in text.split("-"))
        except ValueError as exc:
            raise ValueError(f"{text!r} is not HH:MM-HH:MM") from exc
        if not (EARLIEST <= a < b <= LATEST):
            raise ValueError(f"{text!r} must be inside 08:00-21:00, start before end")
        return cls(a, b)

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


def zone(name: str) -> ZoneInfo:
    """The IANA zone `name`; ValueError for an unknown one."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r}") from exc


def next_dial_at(due: datetime, tz: ZoneInfo, window: Window) -> datetime:
    """The earliest instant at or after `due` (aware) inside the window in `tz`'s local time."""
    local = due.astimezone(tz)
    if window.start <= local.time() < window.end:
        return due
    day = local.date() if local.time() < window.start else local.date() + timedelta(days=1)
    opens = datetime.combine(day, window.start, tzinfo=tz)
    return opens.astimezone(UTC)


@dataclass
class CallbackRequest:
    """`CallbackWorkflow.run`'s argument (payload-codec'd: it holds the number and reason)."""

    callback_id: str
    phone: str  # E.164
    at: float  # epoch seconds: when the customer asked to be called
    timezone: str  # IANA zone of the customer
    reason: str = ""
    call_id: str = ""  # the call the customer asked on, if any
    customer_name: str | None = None
    hours: str = DEFAULT_HOURS
    retry_s: float = 1800.0
    max_attempts: int = 3
    ringing_timeout_s: float = 30.0
    by: str = ""  # who asked: a principal id, "agent" or "queue"


@dataclass
class Attempt:
    n: int
    call_id: str
    started_at: float
    outcome: str = ""  # answered | busy | no_answer | rejected | unavailable | dial_failed
    sip_status: int = 0


@dataclass
class DialOutcome:
    """What a callback's call tells it once its dial is settled (`dial_outcome` signal)."""

    call_id: str
    outcome: str
    sip_status: int = 0


@dataclass
class CallbackState:
    """What the workflow knows: the API's answer, the query's, the run's result."""

    callback_id: str
    status: str
    due_at: float  # epoch seconds: the next dial (or the last one, once finished)
    at: float
    timezone: str
    phone: str
    reason: str = ""
    call_id: str = ""
    end_reason: str = ""  # answered | attempts_exhausted | <outcome> | cancelled | do_not_call
    attempts: list[Attempt] = field(default_factory=list)


@dataclass
class Reschedule:
    at: float
    timezone: str = ""  # "" keeps the zone
    by: str = ""


@dataclass
class CancelCallback:
    by: str = ""
    reason: str = "cancelled"  # cancelled | do_not_call


@dataclass
class StartCallbackCall:
    """`start_callback_call`: place attempt `call_id` of a callback (an outbound phone call
    whose dial outcome is signalled back to `report_to`)."""

    callback_id: str
    call_id: str
    phone: str
    reason: str
    origin_call_id: str
    customer_name: str | None
    report_to: str
    ringing_timeout_s: float


def epoch(dt: datetime) -> float:
    return dt.timestamp()


def from_epoch(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def spoken_slot(day: str, at: str, tz: ZoneInfo) -> datetime:
    """The instant of `day` (YYYY-MM-DD) at `at` (HH:MM) on the wall clock of `tz`: what the
    agent resolved "tomorrow at three" to. ValueError when either is malformed."""
    local = datetime.combine(date.fromisoformat(day.strip()), time.fromisoformat(at.strip()))
    return local.replace(tzinfo=tz)


def say_back(when: datetime, tz: ZoneInfo) -> str:
    """`Tuesday, December 8 at 3:00 PM`: a concrete date the customer can confirm."""
    local = when.astimezone(tz)
    return f"{local:%A, %B} {local.day} at {local:%I:%M %p}".replace(" 0", " ")


def e164_from_spoken(phone: str, country_code: str = "1") -> str:
    """`(312) 555-0142` -> `+13125550142`: digits as spoken; ten digits get `country_code`."""
    digits = "".join(c for c in phone if c.isdigit())
    if phone.strip().startswith("+"):
        return "+" + digits
    return f"+{country_code}{digits}" if len(digits) == 10 else "+" + digits
