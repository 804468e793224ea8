"""Pure helpers of the call workflows: deterministic, no I/O, no clock (callers pass times).
`wait_for` and `watch_quiet` are the exceptions: the bounded waits of CallWorkflow."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial

from temporalio import workflow
from temporalio.common import RetryPolicy

from activities import types as act
from core import models as m

# LiveKit EgressStatus names by how far along they are; a status never moves backwards.
_EGRESS_RANK = {
    "EGRESS_STARTING": 0,
    "EGRESS_ACTIVE": 1,
    "EGRESS_ENDING": 2,
    "EGRESS_COMPLETE": 3,
    "EGRESS_FAILED": 3,
    "EGRESS_ABORTED": 3,
    "EGRESS_LIMIT_REACHED": 3,
}
EGRESS_TERMINAL = frozenset(k for k, v in _EGRESS_RANK.items() if v == 3)

# Retry policies, declared once beside the calls that use them.
QUICK_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=500),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=5),
    maximum_attempts=5,
    non_retryable_error_types=act.NON_RETRYABLE_ERRORS,
)
# A database outage must not lose an event: keep trying, slowly.
FOREVER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=[act.ERR_INVALID_INPUT],
)


def cause(err: BaseException) -> str:
    """The innermost failure's message (what actually went wrong), for the call's record."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err) or type(err).__name__


def iso(ts: float) -> str:
    """Epoch seconds (workflow time) -> ISO 8601 UTC; "" for 0 (not yet)."""
    return datetime.fromtimestamp(ts, tz=UTC).isoformat() if ts else ""


def egress_rank(status: str) -> int:
    return _EGRESS_RANK.get(status, -1)


def merge_egress(current: m.EgressState, update: m.EgressState) -> m.EgressState:
    """Fold a later report about the same egress into what we know; never go backwards."""
    status = current.status
    if egress_rank(update.status) > egress_rank(current.status):
        status = update.status
    return m.EgressState(
        egress_id=current.egress_id,
        status=status,
        error=update.error or current.error,
        file=update.file or current.file,
        started_at=current.started_at or update.started_at,
        n=current.n or update.n,
        object_key=current.object_key or update.object_key,
    )


def egress_failed_without_file(eg: m.EgressState | None) -> bool:
    return (
        eg is not None
        and eg.status in EGRESS_TERMINAL
        and eg.status != "EGRESS_COMPLETE"
        and (eg.file is None or not eg.file.location)
    )


def line_entry(line: m.TranscriptLine, seq: int, at: str) -> m.TranscriptEntry:
    return m.TranscriptEntry(
        seq=seq,
        id=line.id,
        speaker=line.speaker,
        text=line.text,
        confidence=line.confidence,
        started_at=line.started_at,
        ended_at=line.ended_at,
        interrupted=line.interrupted,
        at=at,
    )


def details_line(call_id: str, s: m.CallCarry) -> str:
    """The Web UI's current-details line: no customer data (names, words) in it."""
    parts = [f"**{s.status}**", f"call `{call_id}`"]
    if s.agent_identity:
        parts.append(f"agent `{s.agent_identity}`")
    parts.append(f"{s.line_count} lines")
    parts.append(f"recording: {s.recording_status}")
    if s.silence_alerts or s.keyword_alerts:
        parts.append(f"alerts: {s.silence_alerts} silence, {s.keyword_alerts} keyword")
    if s.end_reason:
        parts.append(f"ended: {s.end_reason} ({s.ended_by})")
    if s.runs > 1:
        parts.append(f"run {s.runs}")
    return " · ".join(parts)


def call_state(
    call_id: str, customer_name: str | None, s: m.CallCarry, cfg: m.CallConfig
) -> m.CallState:
    return m.CallState(
        call_id=call_id,
        room_name=m.call_room(call_id, cfg),
        customer_name=customer_name,
        status=s.status,
        recording_status=s.recording_status,
        end_reason=s.end_reason,
        ended_by=s.ended_by,
        created_at=iso(s.created_at),
        agent_joined_at=iso(s.agent_joined_at),
        ended_at=iso(s.ended_at),
        agent_identity=s.agent_identity,
        participants=list(s.participants),
        egress=s.egress,
        egress_attempts=s.egress_attempts,
        recording=s.recording,
        recording_error=s.recording_error,
        event_log_error=s.event_log_error,
        consent=s.consent,
        silence_alerts=s.silence_alerts,
        keyword_alerts=s.keyword_alerts,
        line_count=s.line_count,
        last_seq=s.seq,
        last_lines=s.lines[-10:],
        runs=s.runs,
        dispatch_attempts=s.dispatch_attempts,
        agent_lost=bool(s.agent_lost_at),
        customer_reconnecting=bool(s.customer_away_since),
        segments=s.segments + ([s.egress] if s.egress is not None else []),
        channel=cfg.channel,
        direction=cfg.direction,
        phone=cfg.phone,
    )


def call_row(
    call_id: str, customer_name: str | None, s: m.CallCarry, cfg: m.CallConfig
) -> act.CallRow:
    return act.CallRow(
        call_id=call_id,
        room_name=m.call_room(call_id, cfg),
        customer_name=customer_name,
        status=s.status,
        recording_status=s.recording_status,
        created_at=iso(s.created_at),
        agent_joined_at=iso(s.agent_joined_at),
        ended_at=iso(s.ended_at),
        end_reason=s.end_reason,
        silence_alerts=s.silence_alerts,
        egress_id=s.egress.egress_id if s.egress else "",
        row_version=s.seq,  # every change the row shows comes with an event
        channel=cfg.channel,
        direction=cfg.direction,
        phone=cfg.phone,
    )


def customer_grant(
    call_id: str, name: str, token_id: str, issued_at: float, cfg: m.CallConfig
) -> m.TokenGrant:
    """The customer's join grant, valid `token_ttl_s` from `issued_at` (whole seconds, as a
    JWT's `exp`): everything but the signed token, which only the API makes."""
    return m.TokenGrant(
        call_id=call_id,
        room_name=m.room_name_for(call_id),
        token="",
        livekit_url=cfg.livekit_url,
        participant_identity=m.customer_identity(call_id),
        expires_at=iso(float(int(issued_at + cfg.token_ttl_s))),
        token_id=token_id,
        name=name,
    )


def rejoin_refused(req: m.IssueTokenRequest, s: m.CallCarry, cfg: m.CallConfig, at: float) -> str:
    """Why a rejoin proof is refused, "" when it is accepted. Only the call's latest token
    proves anything (so each proof works once); it does until it expires, and after that
    only within the rejoin grace of its expiry or of the customer's drop, whichever is later
    (a customer who talked for longer than the token's life can still come back)."""
    if req.rejoin_of != s.token_id:
        return "token: not this call's latest token (already used to rejoin, or replaced)"
    if at > max(req.proof_expires_at, s.customer_away_since) + cfg.customer_rejoin_grace_s:
        return "token: expired longer ago than the rejoin grace"
    return ""


def customer_in_room(s: m.CallCarry) -> bool:
    """The call sees the customer connected (joined, not left, not reconnecting)."""
    present = any(p.kind == "customer" and not p.left_at for p in s.participants)
    return present and not s.customer_away_since


async def wait_for(
    condition: Callable[[], bool], timeout_s: float, summary: str | None = None
) -> bool:
    """Wait (in workflow code) for `condition` up to `timeout_s`; False when the time ran out.
    Unless the condition already holds it always awaits a durable timer (at least a
    millisecond, when the time is already up), so a loop around it can never spin."""
    if condition():
        return True
    try:
        await workflow.wait_condition(
            condition, timeout=max(timeout_s, 0.001), timeout_summary=summary
        )
        return True
    except TimeoutError:
        return False


@dataclass
class QuietWatch:
    """A quiet period to act on: `act` runs once `limit_s` have passed since `last()` (the time
    of the latest news it counts) while `armed()` holds; once per quiet period (again only
    after `last()` has moved). A limit of 0 or less turns the watch off."""

    summary: str  # the timer's summary in the Web UI
    last: Callable[[], float]
    limit_s: float
    act: Callable[[], Awaitable[None]]
    armed: Callable[[], bool] = lambda: True
    acted_on: float | None = None  # the `last()` it last acted on


async def watch_quiet(watches: Sequence[QuietWatch], stop: Callable[[], bool]) -> None:
    """Until `stop()` holds: every watch of `watches` on one durable timer.

    The timer runs to the earliest due time among the armed watches. It is not reset per
    news (that is a cancel and a start, 2 history events, on every line): news of the watch it
    runs for, heard in the last third before it is due, moves it inside that news's own
    workflow task; earlier news lets it fire and sleep the rest (5 events). A watch armed or
    disarmed meanwhile moves it too (its due time may now come first). On a call that talks,
    only the shortest watch's timer ever moves (about once per its limit) and none fires."""
    watches = [w for w in watches if w.limit_s > 0]

    def armed() -> list[bool]:
        return [w.armed() and w.last() != w.acted_on for w in watches]

    def changed(on: list[bool]) -> bool:
        return stop() or armed() != on

    while not stop():
        on = armed()
        if not any(on):
            await workflow.wait_condition(partial(changed, on))
            continue
        w = min(
            (w for w, a in zip(watches, on, strict=True) if a), key=lambda w: w.last() + w.limit_s
        )
        heard = w.last()
        due = heard + w.limit_s
        if workflow.now().timestamp() >= due:
            w.acted_on = heard
            await w.act()
            continue

        def moved(w: QuietWatch = w, heard: float = heard, due: float = due,
                  on: list[bool] = on) -> bool:  # fmt: skip
            late = w.last() != heard and workflow.now().timestamp() >= due - w.limit_s / 3
            return late or changed(on)

        await wait_for(moved, due - workflow.now().timestamp(), summary=w.summary)
