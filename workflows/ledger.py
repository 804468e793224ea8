"""CallLedger: a call's state and its event log, as CallWorkflow keeps them (workflow code).

Every change of the call goes through here: it updates `CallCarry`, appends an event with the
next per-call sequence number to the queue that the workflow's flusher writes to PostgreSQL,
and keeps the search attributes and the Web UI's details line current. No I/O, no awaits.
CallWorkflow (and its healing half) read `s` but change it only through the methods below
(tests/workflows/test_ledger_sealed.py); each event is a `core.events` dataclass.
"""

from __future__ import annotations

import dataclasses
import json
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
    details_line,
    egress_failed_without_file,
    entry_data,
    epoch,
    iso,
    line_entry,
    matched_keywords,
    merge_egress,
    pack_lines,
    unpack_lines,
)

S = m.CallStatus
R = m.RecordingStatus
K = m.EventKind
TRANSCRIPT_PAGE = 500
# Emits a `recording` event with LiveKit's egress start when an egress report first carries it.
PATCH_EGRESS_CLOCK = "egress-clock-event"
LARGE_LINE = 1000  # characters: a longer line is carried by reference (its text is in PG)
# A line the agent stamped this long after the latest forgotten signal id was first seen cannot
# repeat a forgotten line (the agent's clock may run this far behind the workflow's).
CLOCK_SKEW_S = 600.0


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
        if self.s.line_rows:
            self.s.lines, self.s.line_rows = unpack_lines(self.s.line_rows), []
        self.line_ids = {e.id for e in self.s.lines}  # (ids of dropped lines are in `seen`)
        self.seen = set(self.s.seen_ids) | set(self.s.seen_at)
        self.seen_at = dict(self.s.seen_at)  # id -> when first seen (bounds the carried ids)
        self.s.seen_at = {}
        # Lines that may repeat one whose id is forgotten: held until the event log is asked.
        self.suspects: list[m.TranscriptLine] = list(self.s.suspects)
        self.s.suspects = []
        self.pending = [act.CallEvent(**e) for e in self.s.unflushed]
        by_seq = {e.seq: e for e in self.s.lines}
        for event in self.pending:  # a line's event was carried by reference to the line
            if event.kind == K.FINAL_TRANSCRIPT and not event.data and event.seq in by_seq:
                event.data = entry_data(by_seq[event.seq])
        self.inflight: list[act.CallEvent] = []  # the batch being written
        self.s.unflushed = []
        self.end: tuple[str, str] | None = None  # (reason, by): the first end request wins
        # Reports that beat start_egress (carried since release 2).
        self.early_egress: dict[str, m.EgressState] = self.s.early_egress
        self._sa_sent: tuple[str, str, int] | None = None
        self.v2 = False  # release 2's behaviour (CallWorkflow sets it from its patch gate)
        # Derived, not carried: a carried participant or line of the customer says the same
        # (and a run that dropped lines has had a long call, not an absent customer).
        self.customer_seen = (
            self.s.lines_dropped > 0
            or any(p.kind == "customer" for p in self.s.participants)
            or any(e.speaker == "customer" for e in self.s.lines)
        )

    # --- signals ------------------------------------------------------------------------

    def late(self, signal: str, signal_id: str) -> bool:
        """True for a signal about the conversation that came after the call ended (status
        completed, no_agent or failed): logged as late, it changes nothing."""
        if not self.v2 or S(self.s.status).is_active:
            return False
        workflow.logger.warning(
            f"call {self.call_id}: late {signal} signal {signal_id} ignored "
            f"(the call ended {self.s.status})",
            extra={"call_id": self.call_id, "signal": signal, "signal_id": signal_id},
        )
        return True

    def first(self, signal_id: str) -> bool:
        """True the first time a signal id is seen (a duplicate must change nothing)."""
        if signal_id in self.seen:
            return False
        self.seen.add(signal_id)
        self.seen_at[signal_id] = now()
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

    def add_line(self, line: m.TranscriptLine, *, checked: bool = False) -> None:
        if line.id in self.line_ids or line.id in self.seen:
            return
        if not checked and self._may_repeat_forgotten(line):
            if all(x.id != line.id for x in self.suspects):
                self.suspects.append(line)  # CallWorkflow asks the event log, then decides
            return
        self.line_ids.add(line.id)
        self.seen_at[line.id] = now()  # carried (bounded) when the line itself is not
        if line.speaker == "assistant":
            self.agent_in(self.s.agent_identity)  # a line of the agent says it is in
            self.s.greeted = True
        self.s.seq += 1
        entry = line_entry(line, self.s.seq, iso(now()))
        self.s.lines.append(entry)
        self._queue(self.s.seq, K.FINAL_TRANSCRIPT, entry_data(entry))
        self.s.last_heard_at = now()
        self.s.silence_alerted = False
        if line.metrics is not None:
            self.emit(metrics_event(line.metrics))
        if line.speaker == "customer":
            self.customer_seen = True  # a line of the customer says they are in
            found = matched_keywords(line.text, self.cfg.keywords)
            if found:
                self.s.keyword_alerts += 1
                self.emit(ev.KeywordAlert(line_id=line.id, line_seq=entry.seq, keywords=found))

    def _may_repeat_forgotten(self, line: m.TranscriptLine) -> bool:
        """True if the line could be a resend of one whose id this run no longer holds: ids are
        forgotten only once older than the window, and a resend carries its original's
        `started_at`, stamped before the original was first seen. A line without one counts."""
        if not self.s.forgot_before:
            return False
        sent = epoch(line.started_at)
        return sent is None or sent <= self.s.forgot_before + CLOCK_SKEW_S

    def suspects_checked(self, lines: list[m.TranscriptLine], stored: set[str]) -> None:
        """The event log's answer for suspect lines: a stored one is a duplicate (refused,
        logged), any other is new and counts from now."""
        asked = {line.id for line in lines}
        self.suspects = [x for x in self.suspects if x.id not in asked]
        for line in lines:
            if line.id in stored:
                workflow.logger.warning(
                    f"call {self.call_id}: duplicate line {line.id} refused (in the event log)",
                    extra={"call_id": self.call_id, "signal_id": line.id},
                )
                self.seen.add(line.id)
                self.seen_at[line.id] = now()
            else:
                self.add_line(line, checked=True)

    def silence_alert(self, alert: ev.SilenceAlert) -> None:
        self.s.silence_alerts += 1
        self.s.silence_alerted = True
        self.emit(alert)
        self.publish()

    def consent(self, sig: m.RecordingConsentSignal) -> None:
        if not self.s.consent:  # the first answer is final (but a grant can be withdrawn)
            self.s.consent = "granted" if sig.granted else "refused"
            self.emit(ev.Recording(consent=self.s.consent, at=sig.at))
        elif self.v2 and self.s.consent == "granted" and not sig.granted:
            # Withdrawn: the egress stops; what was recorded is kept or deleted by policy.
            self.s.consent = "withdrawn"
            recorded = self.cfg.recording_on_withdrawal
            self.emit(ev.Recording(consent="withdrawn", recorded=recorded, at=sig.at))

    def egress_report(self, upd: m.EgressUpdate) -> None:
        report = m.EgressState(upd.egress_id, upd.status, upd.error, upd.file, upd.started_at)
        eg = self.s.egress
        if eg is None or eg.egress_id != upd.egress_id:
            # Out of order (before start_egress's result) or an older egress: keep for later.
            prev = self.early_egress.get(upd.egress_id)
            self.early_egress[upd.egress_id] = merge_egress(prev, report) if prev else report
            return
        was_failed = egress_failed_without_file(eg)
        was_ended = eg.status in EGRESS_TERMINAL
        self.s.egress = merge_egress(eg, report)
        if not eg.started_at and self.s.egress.started_at and workflow.patched(PATCH_EGRESS_CLOCK):
            # LiveKit's own start: the time zero the dashboard plays transcript and audio against.
            self.emit(ev.Recording(egress_id=eg.egress_id, started_at=self.s.egress.started_at))
        if not was_failed and egress_failed_without_file(self.s.egress):
            self.egress_failed()
        elif (
            self.v2
            and not was_ended
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
        self.s.last_heard_at = now()
        self.set_status(S.IN_PROGRESS)

    def hanging_up(self, reason: str) -> None:
        self.s.ended_at = now()
        self.set_status(S.ENDING, reason)

    def room_created(self) -> None:
        self.s.room_ready = True

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
        early = self.early_egress.pop(info.egress_id, None)
        if self.v2 and self.s.egress is not None:
            # The earlier egress ended mid-call: it is a segment of its own.
            self.s.segments.append(self.s.egress)
            self.s.segment_spans.append([self.s.egress_started_at, now()])
        info.n, info.object_key = n or info.n, key or info.object_key
        self.s.egress = merge_egress(info, early) if early else info
        self.s.egress_started_at = now()
        self.s.recording_error = ""
        clock = {"started_at": self.s.egress.started_at} if self.s.egress.started_at else {}
        self.set_recording(R.RECORDING, egress_id=info.egress_id, **clock)
        if egress_failed_without_file(self.s.egress):
            self.egress_failed()

    def egress_start_failed(self, error: str) -> None:
        self.s.recording_error = error
        last = self.s.egress_attempts >= 2
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
        return self.cfg.max_egress_starts if self.v2 else 2

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

    def batch_done(self) -> None:
        """The batch in flight was written (or dropped): nothing is being written now."""
        self.inflight = []

    def flushed(self) -> bool:
        """Nothing queued and nothing being written."""
        return not self.pending and not self.inflight

    def events_rejected(self, batch: list[act.CallEvent], error: str) -> None:
        """A batch the database can never take was dropped: logged every time, and noted once
        in the event log itself (more notes could loop if the call's row is what fails)."""
        seqs = f"{batch[0].seq}..{batch[-1].seq}"
        workflow.logger.error(f"call {self.call_id}: events {seqs} dropped, rejected: {error}")
        first = not self.s.event_log_error
        self.s.event_log_error = f"events {seqs} not written: {error}"
        if first:
            self.emit(ev.Status(status=self.s.status, events_rejected=seqs, error=error))

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

    def emit(self, event: ev.EventData) -> None:
        """Appends `event` to the call's log with the next seq (written by the flusher)."""
        self.s.seq += 1
        self._queue(self.s.seq, event.KIND, event.to_dict())

    def _queue(self, seq: int, kind: K, data: dict) -> None:
        self.pending.append(act.CallEvent(seq, kind.value, iso(now()), data))
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
        return call_state(self.call_id, self.customer_name, self.s)

    def row(self) -> act.CallRow:
        return call_row(self.call_id, self.customer_name, self.s)

    def transcript(self, after_seq: int) -> m.TranscriptPage:
        lines = self.s.lines
        lo, hi = 0, len(lines)
        while lo < hi:  # the first line with seq > after_seq (lines are in seq order)
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if lines[mid].seq <= after_seq else (lo, mid)
        page = lines[lo : lo + TRANSCRIPT_PAGE]
        truncated = (
            lo == 0 and self.s.lines_dropped > 0 and (not lines or after_seq < lines[0].seq - 1)
        )
        return m.TranscriptPage(
            self.call_id, page, self.s.seq, lo + len(page) < len(lines), truncated
        )

    def carry(self) -> m.CallCarry | None:
        """The state for the next run, its encoded size bounded by `carry_max_bytes`; None when
        what must travel (events not yet written, and their lines) is larger than that: the run
        goes on until the database takes them.

        A copy, so this run stays intact if the server refuses the continue-as-new. Carried:
        every unwritten event once (a line's event by reference to its line), then the newest
        lines that fit (a line longer than `LARGE_LINE` characters by reference: its text is in
        `call_events` already), the signal ids seen in the last `seen_window_s` (a sender's
        retries and LiveKit's webhook resends come within minutes; carried lines keep their own
        ids), early egress reports, lines still to be checked, and when the newest id left out
        was first seen (`forgot_before`: a later resend of a line it no longer holds is looked
        up in `call_events`, so every duplicate is refused, however late)."""
        if not self.v2:
            return self._carry_v1()
        unflushed = self.inflight + self.pending
        line_seqs = {e.seq for e in unflushed if e.kind == K.FINAL_TRANSCRIPT}
        must = [e for e in self.s.lines if e.seq in line_seqs]
        events = [dataclasses.asdict(e) for e in unflushed]
        for event in events:
            if event["seq"] in line_seqs and any(e.seq == event["seq"] for e in must):
                event["data"] = {}  # rebuilt from the carried line
        horizon = now() - self.cfg.seen_window_s
        base = dataclasses.replace(
            self.s,
            lines=[],
            line_rows=pack_lines(must),
            seen_ids=[],
            seen_at={k: t for k, t in self.seen_at.items() if t >= horizon},
            runs=self.s.runs + 1,
            unflushed=events,
            early_egress=dict(self.early_egress),
            line_refs=[],
            suspects=list(self.suspects),
        )
        size = encoded_size(dataclasses.asdict(base))
        budget = int(self.cfg.carry_max_bytes * 0.9)  # the codec and the envelope add a little
        if size > budget:
            return None
        rest = [e for e in self.s.lines if e.seq not in line_seqs]
        if self.cfg.carry_max_lines:
            rest = rest[-self.cfg.carry_max_lines :]
        else:
            rest = []
        kept: list[list[Any]] = []
        for entry in reversed(rest):
            [row] = pack_lines([entry])
            if len(entry.text) > LARGE_LINE:
                row[3] = ""
                base.line_refs.append(entry.seq)
            cost = encoded_size(row) + 1
            if size + cost > budget:
                break
            size += cost
            kept.append(row)
        rows = sorted(base.line_rows + kept, key=lambda r: r[0])
        kept_ids = {r[1] for r in rows}
        base.line_refs = sorted(x for x in base.line_refs if any(r[0] == x for r in kept))
        base.line_rows = rows
        base.seen_at = {k: t for k, t in base.seen_at.items() if k not in kept_ids}
        for entry in self.s.lines:  # a line left out keeps its id (it may have come carried)
            if entry.id not in kept_ids:
                # When it was first seen: a carried line's own receipt time (`at`).
                first = self.seen_at.get(entry.id) or epoch(entry.at) or now()
                if first >= horizon:
                    base.seen_at.setdefault(entry.id, first)
        base.lines_dropped = self.s.lines_dropped + len(self.s.lines) - len(rows)
        # Ids the next run will not hold: a line sent before the newest of them is checked.
        held = set(base.seen_at) | kept_ids
        gone = [self.seen_at.get(i, now()) for i in self.seen | set(self.seen_at) | self.line_ids
                if i not in held]  # fmt: skip
        if gone:
            base.forgot_before = max(self.s.forgot_before, *gone)
        return base

    def _carry_v1(self) -> m.CallCarry:
        """The state for the next run: a copy, so this run stays intact if the server refuses
        the continue-as-new (a signal came in meanwhile) and the run goes on. Events not yet
        written travel along (writing a batch twice is a no-op)."""
        keep = self.s.lines[-self.cfg.carry_max_lines :] if self.cfg.carry_max_lines else []
        dropped = self.s.lines[: len(self.s.lines) - len(keep)]
        return dataclasses.replace(
            self.s,
            lines=[],
            line_rows=pack_lines(keep),
            lines_dropped=self.s.lines_dropped + len(dropped),
            seen_ids=sorted(self.seen | {e.id for e in dropped}),  # still de-duplicated
            runs=self.s.runs + 1,
            unflushed=[dataclasses.asdict(e) for e in self.inflight + self.pending],
        )


def encoded_size(value: Any) -> int:
    """Bytes of `value` as JSON: what the payload converter writes (before the codec)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def metrics_event(sig: m.AgentMetrics) -> ev.AgentMetrics:
    event = ev.AgentMetrics(
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
