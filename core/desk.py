"""The human desk: reps, the queue of calls handed off to them, offers, and the figures.

`DeskBook` is the whole decision logic, pure and deterministic (time and ids are passed in),
so the desk's workflow (workflows/desk.py) only wraps it with timers and activities, and
tests drive it without a server. The data classes are what crosses the workflow boundary: the
API, the worker and the tests import them from here.

Routing: the longest-waiting call goes to the longest-idle available rep who has its skill
(Asterisk's `leastrecent` over a FIFO queue). Each call has at most one offer at a time and
each rep at most one, so two reps never hold the same call; an offer rings `offer_timeout_s`,
then the rep is set `away` (not routable, as Asterisk's autopause) and the call is offered to
the next rep. A rep who declines is not offered that call again.

Figures as Asterisk's app_queue keeps them: the hold time is an exponential moving average of
the waits of answered calls, `(3 * old + new) / 4` (`recalc_holdtime`); the service level is
answered within `service_level_s` over answered, times 100 (`QUEUESRVLEVELPERF`); the
estimated wait told to a caller is that hold time less what they have already waited
(`say_position`). The abandon rate is abandoned over (answered + abandoned).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

WORKFLOW_DESK = "DeskWorkflow"
DESK_WORKFLOW_ID = "desk"
SIGNAL_ENQUEUE = "enqueue"
SIGNAL_CALL_LEFT = "call_left"
UPDATE_SET_REP = "set_rep"
UPDATE_ANSWER_OFFER = "answer_offer"
QUERY_SNAPSHOT = "snapshot"
ERR_DESK_REFUSED = "DeskRefused"  # an update the desk cannot take now (the API's 409)
DEFAULT_SKILL = "general"
SKILL_RE = r"^[a-z][a-z0-9_-]{0,31}$"


class RepState(StrEnum):
    OFFLINE = "offline"
    AVAILABLE = "available"
    BUSY = "busy"  # on a call
    WRAP_UP = "wrap_up"  # after a call, for wrap_up_s, then available
    BREAK = "break"
    AWAY = "away"  # let an offer ring out: not routable until they come back


# What a rep may choose; busy comes with an accepted offer, away with an offer that rang out.
CHOOSABLE = frozenset({RepState.OFFLINE, RepState.AVAILABLE, RepState.BREAK, RepState.WRAP_UP})


class Notice(StrEnum):
    """What the caller is told while waiting (the agent says it)."""

    POSITION = "position"  # place in the queue and the estimated wait
    NO_REP = "no_rep"  # nobody with the skill is signed in: no one can come now
    MAX_WAIT = "max_wait"  # waited queue_max_wait_s: no one can come now
    JOINING = "joining"  # a rep accepted: who is joining


@dataclass
class DeskConfig:
    offer_timeout_s: float = 20.0
    wrap_up_s: float = 30.0
    max_wait_s: float = 300.0
    service_level_s: float = 20.0
    announce_change_s: float = 60.0  # an estimate that moved this much is told again
    continue_as_new_after_events: int = 4000


@dataclass
class Rep:
    id: str
    name: str
    skills: list[str]
    state: str = RepState.OFFLINE
    since: float = 0.0  # when the state last changed
    idle_since: float = 0.0  # when the rep last became available (routing order)
    offer_id: str = ""
    call_id: str = ""  # the call the rep is on (busy) or wrapping up
    answered_at: float = 0.0
    wrap_until: float = 0.0


@dataclass
class Waiting:
    call_id: str
    skill: str
    reason: str
    by: str
    enqueued_at: float
    declined: list[str] = field(default_factory=list)  # reps not to offer it again
    offer_id: str = ""
    told_position: int = 0
    told_wait_s: float = -1.0
    room: str = ""


@dataclass
class Offer:
    id: str
    call_id: str
    rep_id: str
    skill: str
    reason: str
    offered_at: float
    expires_at: float
    enqueued_at: float = 0.0


@dataclass
class Counters:
    answered: int = 0
    answered_in_sl: int = 0
    abandoned: int = 0
    abandoned_in_sl: int = 0
    timed_out: int = 0  # waited max_wait_s, told no one can come
    unstaffed: int = 0  # handed off with no rep of the skill signed in
    offers_rung_out: int = 0
    wait_answered_s: float = 0.0
    handled: int = 0
    handle_s: float = 0.0
    holdtime_s: float = 0.0  # Asterisk's moving average of answered waits


@dataclass
class DeskCarry:
    reps: list[Rep] = field(default_factory=list)
    waiting: list[Waiting] = field(default_factory=list)
    offers: list[Offer] = field(default_factory=list)
    counters: Counters = field(default_factory=Counters)
    runs: int = 1


@dataclass
class DeskInput:
    config: DeskConfig = field(default_factory=DeskConfig)
    carried: DeskCarry | None = None


# --- what the call and the API send -----------------------------------------------------------


@dataclass
class Enqueue:
    """A hand-off: the call wants a person with `skill`."""

    id: str
    call_id: str
    skill: str = DEFAULT_SKILL
    reason: str = ""
    by: str = "agent"
    room: str = ""  # the call's LiveKit room ("": `call-<call_id>`; a phone call's is LiveKit's)


@dataclass
class CallLeft:
    """The call ended (or went back to the AI for good)."""

    id: str
    call_id: str
    reason: str = ""


@dataclass
class SetRep:
    """A rep's chosen state (and skills, within those the API allowed)."""

    rep_id: str
    name: str
    state: str
    skills: list[str] = field(default_factory=list)


@dataclass
class AnswerOffer:
    rep_id: str
    offer_id: str
    accept: bool


@dataclass
class Accepted:
    offer_id: str
    call_id: str
    skill: str
    reason: str
    waited_s: float
    room: str = ""


@dataclass
class Announcement:
    """Something the waiting caller must hear (the desk's activity passes it to the agent)."""

    call_id: str
    notice: str
    position: int = 0
    estimate_s: float | None = None
    rep_name: str = ""
    room: str = ""  # where the caller is ("": `call-<call_id>`)


# --- what the API reads -------------------------------------------------------------------------


@dataclass
class QueueEntry:
    call_id: str
    position: int
    skill: str
    reason: str
    waited_s: float
    estimate_s: float | None
    offered_to: str = ""


@dataclass
class Stats:
    waiting: int
    answered: int
    abandoned: int
    timed_out: int
    unstaffed: int
    service_level_pct: float | None
    abandon_rate_pct: float | None
    longest_wait_s: float
    average_wait_s: float | None
    average_handle_s: float | None
    holdtime_s: float
    reps_by_state: dict[str, int]
    service_level_s: float


@dataclass
class Snapshot:
    queue: list[QueueEntry]
    reps: list[Rep]
    offers: list[Offer]
    stats: Stats
    at: float


def _pct(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


class DeskBook:
    """The desk's state and every decision on it. `now` is epoch seconds (workflow time);
    `new_id` makes offer ids (the workflow's deterministic uuid4)."""

    def __init__(self, cfg: DeskConfig, carried: DeskCarry | None, new_id: Callable[[], str]):
        c = carried or DeskCarry()
        self.cfg = cfg
        self.reps: dict[str, Rep] = {r.id: r for r in c.reps}
        self.waiting: list[Waiting] = list(c.waiting)  # oldest first
        self.offers: dict[str, Offer] = {o.id: o for o in c.offers}
        self.counters = c.counters
        self.runs = c.runs
        self.new_id = new_id
        self.announcements: list[Announcement] = []  # for the workflow to deliver
        self.version = 0  # bumped on every change: the live desk's cue

    # --- calls ------------------------------------------------------------------------------

    def enqueue(self, req: Enqueue, now: float) -> None:
        """Queue the call for its skill; a call already waiting or on a rep stays as it is.
        With nobody of the skill signed in, the call is not queued: the caller hears so."""
        if self._waiting(req.call_id) or any(r.call_id == req.call_id and r.state == RepState.BUSY
                                             for r in self.reps.values()):  # fmt: skip
            return
        if not self.staffed(req.skill):
            self.counters.unstaffed += 1
            self.announcements.append(Announcement(req.call_id, Notice.NO_REP, room=req.room))
            self._changed()
            return
        self.waiting.append(Waiting(req.call_id, req.skill, req.reason[:500], req.by, now,
                                    room=req.room))  # fmt: skip
        self._changed()

    def call_left(self, req: CallLeft, now: float) -> None:
        """A waiting call that ends is abandoned; a rep on it goes to wrap-up."""
        w = self._waiting(req.call_id)
        if w is not None:
            self._drop_offer(w.offer_id)
            self.waiting.remove(w)
            self.counters.abandoned += 1
            if now - w.enqueued_at <= self.cfg.service_level_s:
                self.counters.abandoned_in_sl += 1
        for rep in self.reps.values():
            if rep.call_id == req.call_id and rep.state == RepState.BUSY:
                self._call_done(rep, now)
        self._changed()

    # --- reps -------------------------------------------------------------------------------

    def set_rep(self, req: SetRep, now: float) -> Rep:
        """A rep's chosen state. `refusal` says first why it cannot be taken."""
        rep = self.reps.get(req.rep_id)
        if rep is None:
            rep = self.reps[req.rep_id] = Rep(req.rep_id, req.name, list(req.skills), since=now)
        rep.name = req.name or rep.name
        if req.skills:
            rep.skills = sorted(set(req.skills))
        state = RepState(req.state)
        if state == RepState.WRAP_UP:
            self._call_done(rep, now)
        elif state != rep.state:
            self._drop_offer(rep.offer_id)  # a rep leaving the line hands their offer on
            if rep.state == RepState.BUSY:
                self._call_done(rep, now)
            self._enter(rep, state, now)
        self._changed()
        return rep

    def set_rep_refusal(self, req: SetRep) -> str:
        if req.state not in CHOOSABLE:
            return f"state must be one of {', '.join(sorted(CHOOSABLE))}"
        rep = self.reps.get(req.rep_id)
        busy = rep is not None and rep.state == RepState.BUSY
        if busy and req.state not in (RepState.WRAP_UP,):
            return "you are on a call: wrap it up first"
        if req.state == RepState.WRAP_UP and not busy:
            return "wrap_up follows a call; you are not on one"
        return ""

    def answer(self, req: AnswerOffer, now: float) -> Accepted | None:
        """Accept or decline the rep's own live offer (`answer_refusal` first)."""
        offer = self.offers.pop(req.offer_id)
        rep = self.reps[req.rep_id]
        rep.offer_id = ""
        w = self._waiting(offer.call_id)
        assert w is not None  # an offer lives only while its call waits
        w.offer_id = ""
        if not req.accept:
            w.declined.append(rep.id)
            self._changed()
            return None
        waited = now - w.enqueued_at
        self.waiting.remove(w)
        c = self.counters
        c.answered += 1
        c.wait_answered_s += waited
        if waited <= self.cfg.service_level_s:
            c.answered_in_sl += 1
        c.holdtime_s = (3 * c.holdtime_s + waited) / 4  # Asterisk's recalc_holdtime
        self._enter(rep, RepState.BUSY, now)
        rep.call_id, rep.answered_at = offer.call_id, now
        self.announcements.append(Announcement(offer.call_id, Notice.JOINING, rep_name=rep.name,
                                                room=w.room))  # fmt: skip
        self._changed()
        return Accepted(
            offer.id, offer.call_id, offer.skill, offer.reason, round(waited, 3), w.room
        )

    def answer_refusal(self, req: AnswerOffer, now: float) -> str:
        offer = self.offers.get(req.offer_id)
        if offer is None or offer.rep_id != req.rep_id:
            return "this offer is no longer yours (it rang out, was withdrawn or taken)"
        if now >= offer.expires_at:
            return "this offer rang out"
        return ""

    # --- time -------------------------------------------------------------------------------

    def tick(self, now: float) -> None:
        """Offers that rang out, wrap-ups that ended, callers past the longest wait; then
        routing and what each caller must hear."""
        for offer in [o for o in self.offers.values() if now >= o.expires_at]:
            rep = self.reps[offer.rep_id]
            self._drop_offer(offer.id)
            self.counters.offers_rung_out += 1
            self._enter(rep, RepState.AWAY, now)
            self._changed()
        for rep in self.reps.values():
            if rep.state == RepState.WRAP_UP and rep.wrap_until and now >= rep.wrap_until:
                self._enter(rep, RepState.AVAILABLE, now)
                self._changed()
        for w in [w for w in self.waiting if now - w.enqueued_at >= self.cfg.max_wait_s]:
            self._drop_offer(w.offer_id)
            self.waiting.remove(w)
            self.counters.timed_out += 1
            self.announcements.append(Announcement(w.call_id, Notice.MAX_WAIT, room=w.room))
            self._changed()
        self.route(now)
        self._tell_positions(now)

    def deadlines(self) -> list[float]:
        """Every moment `tick` will have something to do."""
        due = [o.expires_at for o in self.offers.values()]
        due += [r.wrap_until for r in self.reps.values()
                if r.state == RepState.WRAP_UP and r.wrap_until]  # fmt: skip
        due += [w.enqueued_at + self.cfg.max_wait_s for w in self.waiting]
        return due

    def route(self, now: float) -> None:
        """Longest-waiting call without an offer to the longest-idle free rep with its skill."""
        for w in self.waiting:
            if w.offer_id:
                continue
            free = [r for r in self.reps.values() if r.state == RepState.AVAILABLE
                    and not r.offer_id and w.skill in r.skills and r.id not in w.declined]  # fmt: skip
            if not free:
                continue
            rep = min(free, key=lambda r: (r.idle_since, r.id))
            offer = Offer(self.new_id(), w.call_id, rep.id, w.skill, w.reason, now,
                          now + self.cfg.offer_timeout_s, w.enqueued_at)  # fmt: skip
            self.offers[offer.id] = offer
            rep.offer_id = w.offer_id = offer.id
            self._changed()

    def _tell_positions(self, now: float) -> None:
        """A caller hears their place and estimate on joining, and again when the place
        changes or the estimate moves by `announce_change_s` (not on every tick)."""
        for pos, w in self._positions():
            est = self.estimate(w, now)
            moved = est is not None and (
                w.told_wait_s < 0 or abs(est - w.told_wait_s) >= self.cfg.announce_change_s)  # fmt: skip
            if pos != w.told_position or moved:
                w.told_position, w.told_wait_s = pos, (est if est is not None else -1.0)
                self.announcements.append(Announcement(w.call_id, Notice.POSITION, pos, est,
                                                       room=w.room))  # fmt: skip

    # --- reading ----------------------------------------------------------------------------

    def estimate(self, w: Waiting, now: float) -> float | None:
        """Asterisk's announced hold time: the moving average less what was waited; None
        before any call was answered (nothing to estimate from)."""
        if not self.counters.answered:
            return None
        return round(max(0.0, self.counters.holdtime_s - (now - w.enqueued_at)), 1)

    def staffed(self, skill: str) -> bool:
        """Someone with the skill is taking calls or about to (available, on a call, wrapping
        up); reps on a break, away or offline will not come."""
        working = (RepState.AVAILABLE, RepState.BUSY, RepState.WRAP_UP)
        return any(r.state in working and skill in r.skills for r in self.reps.values())

    def snapshot(self, now: float) -> Snapshot:
        queue = [QueueEntry(w.call_id, pos, w.skill, w.reason, round(now - w.enqueued_at, 1),
                            self.estimate(w, now),
                            self.offers[w.offer_id].rep_id if w.offer_id else "")
                 for pos, w in self._positions()]  # fmt: skip
        return Snapshot(queue, list(self.reps.values()), list(self.offers.values()),
                        self.stats(now), now)  # fmt: skip

    def stats(self, now: float) -> Stats:
        c = self.counters
        by_state = {s.value: 0 for s in RepState}
        for r in self.reps.values():
            by_state[r.state] += 1
        return Stats(
            waiting=len(self.waiting), answered=c.answered, abandoned=c.abandoned,
            timed_out=c.timed_out, unstaffed=c.unstaffed,
            service_level_pct=_pct(c.answered_in_sl, c.answered),
            abandon_rate_pct=_pct(c.abandoned, c.answered + c.abandoned),
            longest_wait_s=round(max((now - w.enqueued_at for w in self.waiting), default=0.0), 1),
            average_wait_s=round(c.wait_answered_s / c.answered, 1) if c.answered else None,
            average_handle_s=round(c.handle_s / c.handled, 1) if c.handled else None,
            holdtime_s=round(c.holdtime_s, 1), reps_by_state=by_state,
            service_level_s=self.cfg.service_level_s,
        )  # fmt: skip

    def carry(self) -> DeskCarry:
        return DeskCarry(list(self.reps.values()), list(self.waiting), list(self.offers.values()),
                         self.counters, self.runs + 1)  # fmt: skip

    def take_announcements(self) -> list[Announcement]:
        out, self.announcements = self.announcements, []
        return out

    # --- helpers ----------------------------------------------------------------------------

    def _positions(self) -> list[tuple[int, Waiting]]:
        """Each waiting call's place among the calls of its own skill, 1 first."""
        seen: dict[str, int] = {}
        out = []
        for w in self.waiting:
            seen[w.skill] = seen.get(w.skill, 0) + 1
            out.append((seen[w.skill], w))
        return out

    def _waiting(self, call_id: str) -> Waiting | None:
        return next((w for w in self.waiting if w.call_id == call_id), None)

    def _drop_offer(self, offer_id: str) -> None:
        offer = self.offers.pop(offer_id, None) if offer_id else None
        if offer is None:
            return
        if (rep := self.reps.get(offer.rep_id)) is not None:
            rep.offer_id = ""
        if (w := self._waiting(offer.call_id)) is not None:
            w.offer_id = ""

    def _call_done(self, rep: Rep, now: float) -> None:
        """The rep's call is over for them: handle time counted, wrap-up begins."""
        if rep.state == RepState.BUSY:
            self.counters.handled += 1
            self.counters.handle_s += now - rep.answered_at
            self._enter(rep, RepState.WRAP_UP, now)
            rep.wrap_until = now + self.cfg.wrap_up_s

    def _enter(self, rep: Rep, state: RepState, now: float) -> None:
        rep.state, rep.since = state, now
        rep.wrap_until = 0.0
        if state == RepState.AVAILABLE:
            rep.idle_since = now
            rep.call_id = ""
        if state in (RepState.OFFLINE, RepState.BREAK, RepState.AWAY):
            rep.call_id = ""

    def _changed(self) -> None:
        self.version += 1


def desk_config(settings: Any) -> DeskConfig:
    """The desk's configuration from the settings (core/settings.py)."""
    return DeskConfig(
        offer_timeout_s=settings.REP_OFFER_TIMEOUT_S,
        wrap_up_s=settings.REP_WRAP_UP_S,
        max_wait_s=settings.QUEUE_MAX_WAIT_S,
        service_level_s=settings.DESK_SERVICE_LEVEL_S,
    )
