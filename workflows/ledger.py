"""CallLedger: a call's state and what it tells the world, as CallWorkflow keeps them.

Every change of the call goes through here: it updates `CallCarry`, queues an event for the
call's log in PostgreSQL (each with an id unique in the call, so a batch written twice stores
nothing) and keeps the search attributes and the Web UI's details line current. No I/O, no
awaits. CallWorkflow (and its healing and recording halves) read `s` but change it only through
the methods below (tests/workflows/test_ledger_sealed.py); each event is a `core.events` class.

What was said is not kept here: the agent stores each line in PostgreSQL through the API (with
its keyword alert). The workflow receives every line as a signal for what it decides (silence,
the agent's presence, the customer's) and keeps a bounded window of recent lines for its
queries and for a replacement agent's context.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

with workflow.unsafe.imports_passed_through():
    import activities.types as act
    import core.events as ev
    import core.models as m
    import workflows.search as sa

# Workflow code: imported inside the sandbox (a clock or I/O here fails the workflow task).
from workflows.common import (
    EGRESS_TERMINAL,
    call_row,
    call_state,
    customer_in_room,
    details_line,
    egress_failed_without_file,
    iso,
    line_entry,
    merge_egress,
)

S = m.CallStatus
R = m.RecordingStatus
K = m.EventKind
TRANSCRIPT_PAGE = 500
WINDOW_LINES = 20  # recent lines a run keeps (a replacement agent's context, the queries)
WINDOW_CHARS = 3000  # ...and their text at most (a longer line is cut in the window only)
SEEN_IDS = 32  # recent signal ids a run remembers (the carry stays under 8 KB)
MAX_PENDING = 200  # events waiting for PostgreSQL; beyond, the oldest metrics go first


def now() -> float:
    return workflow.now().timestamp()


class CallLedger:
    def __init__(self, inp: m.CallInput) -> None:
        self.call_id = inp.call_id
        self.customer_name = inp.customer_name
        self.cfg = inp.config
        self.s = inp.carried or m.CallCarry(
            status=S.WAITING_FOR_AGENT, recording_status=R.NONE, created_at=now()
        )
        self.seen: deque[str] = deque(self.s.seen_ids, maxlen=SEEN_IDS)
        self.pending = [act.CallEvent(**e) for e in self.s.unflushed]
        self.s.unflushed = []
        self.inflight: list[act.CallEvent] = []  # the batch being written
        self.end: tuple[str, str] | None = None  # (reason, by): the first end request wins
        self._sa_sent: tuple[str, str, int] | None = None
        # Derived, not carried: a carried participant or line of the customer says the same.
        self.customer_seen = (
            any(p.kind == "customer" for p in self.s.participants)
            or any(e.speaker == "customer" for e in self.s.lines)
            or self.s.line_count > len(self.s.lines)
        )

    # --- signals ------------------------------------------------------------------------

    def late(self, signal: str, signal_id: str) -> bool:
        """True for a signal about the conversation that came after the call ended (status
        completed, no_agent or failed): logged as late, it changes nothing."""
        if S(self.s.status).is_active:
            return False
        workflow.logger.warning(
            f"call {self.call_id}: late {signal} signal {signal_id} ignored "
            f"(the call ended {self.s.status})",
            extra={"call_id": self.call_id, "signal": signal, "signal_id": signal_id},
        )
        return True

    def first(self, signal_id: str) -> bool:
        """True the first time this run has seen a signal id (recent ids only: an older resend
        gets through, and its event is refused by the log's unique id)."""
        if signal_id in self.seen:
            return False
        self.seen.append(signal_id)
        return True

    def agent_in(self, identity: str) -> None:
        if self.s.agent_joined_at and not self.s.agent_identity and identity:
            self.s.agent_identity = identity  # joined was inferred from a line; now we know who
            return
        if self.s.agent_joined_at or self.end is not None or not S(self.s.status).is_active:
            return  # the first report wins; a late one changes nothing
        self.s.agent_joined_at = now()
        self.s.agent_identity = identity
        if identity:
            self.s.participants.append(m.ParticipantState(identity, "agent", iso(now())))

    def participant_joined(self, sig: m.ParticipantJoined) -> None:
        if sig.kind == "agent":
            self.agent_in(sig.identity)
            return
        if sig.kind == "customer":
            self.customer_seen = True
        if not any(p.identity == sig.identity and not p.left_at for p in self.s.participants):
            self.s.participants.append(m.ParticipantState(sig.identity, sig.kind, iso(now())))

    def participant_left(self, sig: m.ParticipantLeft) -> None:
        self.mark_left(sig.identity)
        if sig.kind == "customer":
            self.request_end("customer_left", "customer")
        elif sig.kind == "agent" and sig.identity == self.s.agent_identity:
            self.request_end("agent_left", "agent")

    def add_line(self, line: m.TranscriptLine) -> None:
        """A final line the agent also stored in PostgreSQL: it resets the silence clock, says
        who is in, and joins the window. A resend of a line in the window changes nothing."""
        if any(e.id == line.id for e in self.s.lines):
            return
        if line.speaker == "assistant":
            self.agent_in(self.s.agent_identity)  # a line of the agent says it is in
            self.s.greeted = True
        elif line.speaker == "customer":
            self.customer_seen = True  # a line of the customer says they are in
            self.s.customer_heard_at = now()
            if m.matched_keywords(line.text, self.cfg.keywords):
                self.s.keyword_alerts += 1  # the API raised the alert as it stored the line
        self.s.line_count += 1
        self.s.lines.append(line_entry(line, self.s.line_count, iso(now())))
        self._trim_window()
        self.s.last_heard_at = now()
        self.s.silence_alerted = False

    def _trim_window(self) -> None:
        lines = self.s.lines
        while len(lines) > WINDOW_LINES or (
            len(lines) > 1 and sum(len(e.text) for e in lines) > WINDOW_CHARS
        ):
            lines.pop(0)
        if len(lines[-1].text) > WINDOW_CHARS:  # the whole line is in PostgreSQL
            lines[-1] = dataclasses.replace(lines[-1], text=lines[-1].text[:WINDOW_CHARS] + "…")

    def silence_alert(self, alert: ev.SilenceAlert, event_id: str = "") -> None:
        self.s.silence_alerts += 1
        self.s.silence_alerted = True
        self.emit(alert, event_id)
        self.publish()

    def consent(self, sig: m.RecordingConsentSignal) -> None:
        # Under `announce` the customer was told, not asked: an objection withdraws.
        objected = not sig.granted and self.cfg.recording_consent == "announce"
        if not self.s.consent and not objected:
            # The first answer is final (but a grant, or an announcement, can be withdrawn).
            self.s.consent = "granted" if sig.granted else "refused"
            self.emit(ev.Recording(consent=self.s.consent, at=sig.at))
        elif self.s.consent in ("", "granted") and not sig.granted:
            # Withdrawn: the egress stops; what was recorded is kept or deleted by policy.
            self.s.consent = "withdrawn"
            recorded = self.cfg.recording_on_withdrawal
            self.emit(ev.Recording(consent="withdrawn", recorded=recorded, at=sig.at))

    def egress_report(self, upd: m.EgressUpdate) -> None:
        report = m.EgressState(upd.egress_id, upd.status, upd.error, upd.file, upd.started_at)
        eg = self.s.egress
        if eg is None or eg.egress_id != upd.egress_id:
            # Out of order (before start_egress's result) or an older egress: keep for later.
            prev = self.s.early_egress.get(upd.egress_id)
            self.s.early_egress[upd.egress_id] = merge_egress(prev, report) if prev else report
            return
        was_failed = egress_failed_without_file(eg)
        was_ended = eg.status in EGRESS_TERMINAL
        self.s.egress = merge_egress(eg, report)
        if not eg.started_at and self.s.egress.started_at:
            # LiveKit's own start: the time zero the dashboard plays transcript and audio against.
            self.emit(ev.Recording(egress_id=eg.egress_id, started_at=self.s.egress.started_at))
        if not was_failed and egress_failed_without_file(self.s.egress):
            self.egress_failed()
        elif (
            not was_ended
            and self.s.egress.status in EGRESS_TERMINAL
            and self.end is None
            and self.s.status == S.IN_PROGRESS
        ):
            self.egress_ended_early()

    def mark_left(self, identity: str) -> None:
        for p in self.s.participants:
            if p.identity == identity and not p.left_at:
                p.left_at = iso(now())

    # --- the call's course (CallWorkflow changes the state only through these) ---------

    @property
    def status(self) -> S:
        return S(self.s.status)

    def conversation_started(self) -> None:
        """The agent is in: the call is in progress, and the silence clock starts now."""
        self.s.last_heard_at = self.s.customer_heard_at = now()
        self.set_status(S.IN_PROGRESS)

    def hanging_up(self, reason: str) -> None:
        self.s.ended_at = now()
        self.set_status(S.ENDING, reason)

    def room_created(self) -> None:
        self.s.room_ready = True

    def token_granted(self, token_id: str, rejoin_of: str) -> None:
        """A join grant: the customer-join clock starts at the first; it becomes the only one
        a rejoin may present, and a rejoin's is recorded on the call (`customer_rejoined`)."""
        self.s.token_issued_at = self.s.token_issued_at or now()
        if rejoin_of:
            there = customer_in_room(self.s)
            self.emit(ev.CustomerRejoined(token_id=token_id, replaces=rejoin_of,
                                          while_connected=there))  # fmt: skip
        self.s.token_id = token_id

    # --- healing (the agent and the customer's connection) -------------------------------

    def dispatch_attempt(self) -> None:
        """One more agent dispatch: counted for this loss, and numbered for the whole call."""
        self.s.dispatch_attempts += 1
        self.s.dispatch_serial += 1

    def agent_lost(self, identity: str) -> None:
        """The agent left while the customer stays: replacements are dispatched from now."""
        self.mark_left(identity)
        self.s.agent_lost_at = now()
        self.s.dispatch_attempts = 0
        self.emit(ev.AgentDispatch(status="agent_lost", identity=identity))
        self.publish()

    def agent_replaced(self, identity: str) -> None:
        self.s.agent_lost_at = 0.0
        self.s.agent_identity = identity
        self.s.participants.append(m.ParticipantState(identity, "agent", iso(now())))
        attempts = self.s.dispatch_attempts
        self.emit(ev.AgentDispatch(status="agent_replaced", identity=identity, attempts=attempts))
        self.publish()

    def customer_away(self, identity: str, grace_s: float) -> None:
        """The customer's connection dropped: the rejoin grace starts (once per absence)."""
        self.mark_left(identity)
        if not self.s.customer_away_since:
            self.s.customer_away_since = now()
            self.emit(ev.CustomerConnection(status="reconnecting", grace_s=grace_s))
            self.publish()

    def customer_back(self) -> None:
        if self.s.customer_away_since:
            away = round(now() - self.s.customer_away_since, 3)
            self.s.customer_away_since = 0.0
            self.emit(ev.CustomerConnection(status="rejoined", away_s=away))
            self.publish()

    # --- egress -------------------------------------------------------------------------

    def egress_started(self, info: m.EgressState, n: int = 0, key: str = "") -> None:
        early = self.s.early_egress.pop(info.egress_id, None)
        if self.s.egress is not None:
            # The earlier egress ended mid-call: it is a segment of its own.
            self.s.segments.append(self.s.egress)
            self.s.segment_spans.append([self.s.egress_started_at, now()])
        # A reused egress (an earlier start that timed out) keeps its own segment and key.
        info.n, info.object_key = info.n or n, info.object_key or key
        self.s.egress = merge_egress(info, early) if early else info
        self.s.egress_started_at = now()
        self.s.recording_error = ""
        clock = {"started_at": self.s.egress.started_at} if self.s.egress.started_at else {}
        self.set_recording(R.RECORDING, egress_id=info.egress_id, **clock)
        if egress_failed_without_file(self.s.egress):
            self.egress_failed()

    def egress_start_failed(self, error: str) -> None:
        self.s.recording_error = error
        last = self.s.egress_attempts >= self.max_egress_starts()
        self.emit(ev.Recording(status="egress_start_failed", attempt=self.s.egress_attempts,
                               will_retry=not last, error=error))  # fmt: skip
        if last:
            self.set_recording(R.FAILED)

    def egress_failed(self) -> None:
        eg = self.s.egress
        assert eg is not None
        self.s.recording_error = eg.error or eg.status
        will_retry = self.s.egress_attempts < self.max_egress_starts() and self.end is None
        self.emit(ev.Recording(status="egress_failed", egress_id=eg.egress_id,
                               error=self.s.recording_error, will_retry=will_retry))  # fmt: skip
        if not will_retry:
            self.set_recording(R.FAILED)

    def egress_ended_early(self) -> None:
        """An egress that ended (with its file) while the call goes on: a new one follows."""
        eg = self.s.egress
        assert eg is not None
        will_restart = (
            self.s.consent != "withdrawn" and self.s.egress_attempts < self.max_egress_starts()
        )
        self.emit(ev.Recording(status="egress_ended_mid_call", egress_id=eg.egress_id,
                               segment=eg.n, egress=eg.status, error=eg.error,
                               will_restart=will_restart))  # fmt: skip

    def egress_attempt(self) -> int:
        """Counts one more egress start; returns how many there have been."""
        self.s.egress_attempts += 1
        return self.s.egress_attempts

    def egress_stopped(self, base: m.EgressState, info: m.EgressState) -> None:
        """What `stop_egress` answered, merged into `base` (the egress as known after it)."""
        self.s.egress = merge_egress(base, info)

    def egress_polled(self, egress_id: str, state: m.EgressState) -> None:
        """An egress's state as LiveKit answered when asked (the latest or an earlier segment)."""
        if self.s.egress is not None and self.s.egress.egress_id == egress_id:
            self.s.egress = state
        else:
            self.s.segments = [state if x.egress_id == egress_id else x for x in self.s.segments]

    def egress_lost(self, error: str) -> None:
        """LiveKit no longer knows the egress and its file is nowhere: none will come."""
        self.s.recording_error = error
        self.emit(ev.Recording(status="egress_lost", error=error))

    def recording_error_is(self, error: str) -> None:
        self.s.recording_error = error

    # --- the recording at the end of the call ---------------------------------------------

    def recording_without_file(self) -> None:
        """No egress left a file: the recording failed (with the first reason known)."""
        eg = self.s.egress
        assert eg is not None
        self.s.recording_error = (
            self.s.recording_error or eg.error or f"egress ended as {eg.status} without a file"
        )
        self.set_recording(R.FAILED, error=self.s.recording_error)

    def recording_failed(self, error: str) -> None:
        self.s.recording_error = error
        self.set_recording(R.FAILED, error=error)

    def recording_deleted(self, segments: int) -> None:
        """Consent withdrawn with the `delete` policy: what was recorded is gone."""
        self.s.recording_error = ""
        self.set_recording(R.NONE, reason="consent_withdrawn", deleted=segments)

    def recording_stored(self, result: m.RecordingResult, recorded_for: float) -> None:
        self.s.recording = result
        self.set_recording(R.STORED, key=result.key, size=result.size, sha256=result.sha256,
                           duration_s=result.duration_s, incomplete=result.incomplete)  # fmt: skip
        if result.incomplete:
            self.emit(
                ev.RecordingIncomplete(duration_s=result.duration_s, recorded_for_s=recorded_for)
            )

    def max_egress_starts(self) -> int:
        return self.cfg.max_egress_starts

    def all_segments(self) -> list[m.EgressState]:
        """Every egress of the call in order (the latest last)."""
        return self.s.segments + ([self.s.egress] if self.s.egress is not None else [])

    def segment(self, egress_id: str) -> m.EgressState | None:
        for seg in self.all_segments():
            if seg.egress_id == egress_id:
                return seg
        return None

    # --- the event log ------------------------------------------------------------------

    def take_batch(self) -> list[act.CallEvent]:
        """The flush hand-off: everything queued so far becomes the batch being written."""
        batch, self.pending = self.pending, []
        self.inflight = batch
        return batch

    def batch_done(self, result: act.AppendResult | None, error: str = "") -> None:
        """The batch in flight was written (`result`), or can never be (`error`): either way
        nothing is being written now. What PostgreSQL refused is logged, and noted once."""
        batch, self.inflight = self.inflight, []
        refused = result.refused if result is not None else [f"{len(batch)} events: {error}"]
        if not refused:
            return
        for why in refused:
            workflow.logger.error(f"call {self.call_id}: event refused: {why}",
                                  extra={"call_id": self.call_id})  # fmt: skip
        if not self.s.event_log_error:
            self.s.event_log_error = refused[0]
            lost = len(refused) if result is not None else len(batch)  # a whole batch: each
            self.emit(ev.Status(status=self.s.status, events_rejected=str(lost),
                                error=refused[0]))  # fmt: skip

    def queued_at_desk(self) -> None:
        """The call's hand-off reached the desk's queue (it must leave it when the call ends)."""
        self.s.desk_queued = True

    def flushed(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self.pending and not self.inflight

    # --- status -------------------------------------------------------------------------

    def request_end(self, reason: str, by: str) -> None:
        if self.end is None and self.s.status in (S.WAITING_FOR_AGENT, S.IN_PROGRESS):
            self.end = (reason, by)

    def finish(self, status: S, reason: str, by: str) -> None:
        self.s.end_reason, self.s.ended_by = reason, by
        self.s.ended_at = self.s.ended_at or now()
        self.set_status(status, reason)

    def set_status(self, status: S, reason: str = "") -> None:
        if self.s.status != status:
            self.s.status = status
            self.emit(ev.Status(status=status, reason=reason or ev.UNSET))
            self.publish()

    def set_recording(self, status: R, **details: Any) -> None:
        """A new recording status, with what goes with it (fields of `core.events.Recording`)."""
        if self.s.recording_status != status:
            self.s.recording_status = status
            self.emit(ev.Recording(status=status, **details))
            self.publish()

    def emit(self, event: ev.EventData, event_id: str = "") -> None:
        """Queues `event` for the call's log. Its id is `event_id` (from a signal's own id, so a
        resend the run no longer remembers is refused by the log) or `wf:<n>`."""
        self.s.seq += 1
        event_id = event_id or f"wf:{self.s.seq}"
        data = event.to_dict()
        self.pending.append(act.CallEvent(self.s.seq, event.KIND.value, iso(now()), data, event_id))
        if len(self.pending) > MAX_PENDING:  # PostgreSQL has been down a long while
            drop = next((e for e in self.pending if e.kind == K.AGENT_METRICS), self.pending[0])
            self.pending.remove(drop)
            workflow.logger.warning(
                f"call {self.call_id}: event {drop.id} ({drop.kind}) dropped, log unreachable",
                extra={"call_id": self.call_id},
            )
        workflow.set_current_details(details_line(self.call_id, self.s))

    def publish(self) -> None:
        """Search attributes (only when they changed: each upsert is a history event)."""
        values = (self.s.status, self.s.recording_status, self.s.silence_alerts)
        if values != self._sa_sent:
            self._sa_sent = values
            updates: list[SearchAttributeUpdate[Any]] = [
                sa.CALL_STATUS.value_set(self.s.status),
                sa.RECORDING_STATUS.value_set(self.s.recording_status),
                sa.SILENCE_ALERTS.value_set(self.s.silence_alerts),
            ]
            workflow.upsert_search_attributes(updates)
        workflow.set_current_details(details_line(self.call_id, self.s))

    # --- views --------------------------------------------------------------------------

    def state(self) -> m.CallState:
        return call_state(self.call_id, self.customer_name, self.s, self.cfg)

    def row(self) -> act.CallRow:
        return call_row(self.call_id, self.customer_name, self.s, self.cfg)

    def transcript(self, after_seq: int) -> m.TranscriptPage:
        """The window's lines after `after_seq` (the run's own line numbers); `truncated` when
        earlier lines exist that the window no longer holds (PostgreSQL has them all)."""
        lines = [e for e in self.s.lines if e.seq > after_seq]
        page = lines[:TRANSCRIPT_PAGE]
        first = self.s.lines[0].seq if self.s.lines else self.s.line_count + 1
        more = len(lines) > len(page)
        return m.TranscriptPage(self.call_id, page, self.s.seq, more, after_seq < first - 1)

    def carry(self) -> m.CallCarry:
        """The state for the next run: a copy (this run stays intact if the server refuses the
        continue-as-new). Events not yet written travel along; a batch written twice stores
        nothing, since each event has its id."""
        return dataclasses.replace(
            self.s,
            lines=list(self.s.lines),
            seen_ids=list(self.seen),
            unflushed=[dataclasses.asdict(e) for e in self.inflight + self.pending],
            early_egress=dict(self.s.early_egress),
            runs=self.s.runs + 1,
        )
