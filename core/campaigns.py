"""Outbound campaigns: what crosses `CampaignWorkflow`'s boundary (workflows/campaign.py).

A campaign's numbers live in PostgreSQL (`campaign_numbers`, in upload order, migration 0018),
never in the workflow's input: the workflow reads them a batch at a time, so 10,000 numbers
cost one small payload a batch, and it continues as new once a run's history is long, carrying
a cursor, the counts and the calls still ringing (at most `max_concurrent`). The calling window
is the callbacks' (core/callbacks.py: `Window`, `next_dial_at`).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from enum import StrEnum

WORKFLOW_CAMPAIGN = "CampaignWorkflow"
SIGNAL_PAUSE = "pause"
SIGNAL_RESUME = "resume"
SIGNAL_CANCEL = "cancel"
QUERY_PROGRESS = "progress"
CAMPAIGN_ID_RE = re.compile(r"^cp[a-z0-9]{10,40}$")
# What `start_campaign_calls` says of each number.
STARTED = "started"
DO_NOT_CALL = "do_not_call"
HELD_BACK = "held_back"  # the hour's outbound cap or the inbound reserve said no: not dialled
COUNTED = ("answered", "busy", "no_answer")


class CampaignStatus(StrEnum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


FINAL = (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


def campaign_workflow_id(campaign_id: str) -> str:
    return f"campaign-{campaign_id}"


def number_call_id(campaign_id: str, seq: int) -> str:
    """The call a number's dial places, known before it is started: a retried start finds the
    call it started instead of ringing twice, and an outcome that arrives before the start's
    result still names a call the workflow is waiting for."""
    return hashlib.sha256(f"{campaign_id}#{seq}".encode()).hexdigest()[:20]


@dataclass
class Progress:
    dialled: int = 0
    answered: int = 0
    busy: int = 0
    no_answer: int = 0
    failed: int = 0  # rejected, unavailable, dial_failed, no report in time
    skipped: int = 0  # on the do-not-call list at dial time
    total: int = 0

    @property
    def remaining(self) -> int:
        return max(0, self.total - self.dialled - self.skipped)

    def count(self, outcome: str) -> None:
        if outcome in COUNTED:
            setattr(self, outcome, getattr(self, outcome) + 1)
        else:
            self.failed += 1


@dataclass
class CampaignNumber:
    seq: int
    phone: str


@dataclass
class Ringing:
    seq: int
    call_id: str
    started_at: float  # workflow time, epoch seconds


@dataclass
class NumberOutcome:
    seq: int
    outcome: str  # answered | busy | no_answer | rejected | ... | do_not_call
    call_id: str = ""


@dataclass
class CampaignCarry:
    """What a run hands the next when it continues as new: bounded whatever the list's size."""

    cursor: int = 0  # the last seq read from the list
    pending: list[CampaignNumber] = field(default_factory=list)  # read, not yet dialled
    ringing: list[Ringing] = field(default_factory=list)  # at most max_concurrent
    done: list[NumberOutcome] = field(default_factory=list)  # not yet written to the rows
    progress: Progress = field(default_factory=Progress)
    paused: bool = False
    runs: int = 1
    events: int = 0  # history events of the runs before this one


@dataclass
class CampaignRequest:
    """`CampaignWorkflow.run`'s argument (payload-codec'd; no numbers but those carried)."""

    campaign_id: str
    timezone: str
    total: int
    hours: str = "09:00-20:00"
    max_concurrent: int = 5
    start_at: float = 0.0  # epoch seconds
    reason: str = ""
    batch_size: int = 50
    ringing_timeout_s: float = 30.0
    # Continue as new once a run's history is this long (the server suggests it at 4 Ki events).
    max_events: int = 2000
    carry: CampaignCarry | None = None


@dataclass
class NextNumbers:
    campaign_id: str
    after: int
    limit: int


@dataclass
class StartCampaignCalls:
    """`start_campaign_calls`: write the finished numbers' outcomes, then dial `numbers` in
    order (each `STARTED`, `DO_NOT_CALL` or `HELD_BACK`; after a hold-back, the rest are too)."""

    campaign_id: str
    numbers: list[CampaignNumber]
    reason: str
    report_to: str
    ringing_timeout_s: float
    done: list[NumberOutcome] = field(default_factory=list)


@dataclass
class CampaignState:
    campaign_id: str
    status: str
    progress: Progress
    ringing: int
    runs: int
    done: list[NumberOutcome] = field(default_factory=list)  # for `record_campaign` to write
