"""Stand-in activities registered under the real names, to run the workflows alone (tests, benches).

One `StandIns` object per worker: it records every call, keeps an in-memory "database" with the
same natural keys as the real one (so a retried batch is visibly a no-op), and can be told to
fail in the ways the tests need.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import types as act
from activities.starts import start_recording_pipeline
from core import desk
from core import models as m


def egress_file(call_id: str, duration_s: float = 60.0, size: int = 480_000) -> m.RecordingFile:
    return m.RecordingFile(
        filename=f"{call_id}.ogg",
        location=f"http://egress.invalid/conversations/{call_id}.ogg",
        size=size,
        duration_s=duration_s,
    )


@dataclass
class StandIns:
    # behaviour knobs
    egress_start_failures: int = 0  # fail this many start_egress calls
    stop_reports: str = "EGRESS_ENDING"  # status stop_egress answers with
    get_reports: str = "EGRESS_COMPLETE"  # status get_egress answers with (with a file)
    download_failures: int = 0  # fail this many downloads, then succeed
    download_incomplete: bool = False
    download_failing_keys: frozenset[str] = frozenset()  # downloads of these keys always fail
    download_error: str = ""  # every download fails with this error type (CallErased: final)
    room_fails: bool = False
    egress_gate: asyncio.Event | None = None  # start_egress waits for it (to reorder reports)
    stop_gate: asyncio.Event | None = None  # stop_egress waits for it (a report during the stop)
    # download_and_store_recording waits for it, heartbeating (an upload cancelled mid-way)
    upload_gate: asyncio.Event | None = None
    uploads_cancelled: int = 0
    staged: dict[str, int] = field(default_factory=dict)  # staging bucket: key -> size
    deleted_keys: list[str] = field(default_factory=list)
    delete_refused: bool = False  # delete_recording_segments: S3 refuses for good (StorageRefused)
    get_failures: int = 0  # fail this many get_egress calls (retryable: LiveKit unreachable)
    append_failures: int = 0  # fail this many append_call_events calls (retryable: db down)
    append_rejects: frozenset[int] = frozenset()  # reject these append calls (1-based) for good
    on_dispatch: Callable[[act.DispatchAgentInput], None] | None = None  # sees each dispatch
    dispatch_error: str = ""  # every dispatch_agent fails with this error type (RoomGone: final)
    # get_room_presence: LiveKit no longer has the room / these identities are not in it /
    # this many calls fail (LiveKit unreachable). By default everyone expected is in.
    room_gone: bool = False
    room_absent: frozenset[str] = frozenset()
    presence_failures: int = 0
    desk: Any = None  # a DeskClient: hand-offs reach a real desk workflow (else only recorded)
    dial_outcome: str = "answered"  # what dial_outbound answers (busy, no_answer, ...)
    dial_error: str = ""  # dial_outbound raises this error type instead (every attempt)
    dial_gate: asyncio.Event | None = None  # dial_outbound waits for it (the phone rings)
    transfer_failure: str = ""  # transfer_call answers this ("" : the transfer went through)
    # records
    calls: dict[str, list[Any]] = field(default_factory=lambda: defaultdict(list))
    events: dict[int, act.CallEvent] = field(default_factory=dict)  # seq -> event (one call)
    event_writes: int = 0
    append_attempts: int = 0  # every append_call_events call, failed ones included
    written_batches: list[list[int]] = field(default_factory=list)  # seqs of each written batch
    call_rows: list[act.CallRow] = field(default_factory=list)
    recording_rows: list[act.RecordingRow] = field(default_factory=list)

    def count(self, name: str) -> int:
        return len(self.calls[name])

    def activities(self) -> list[Callable]:
        return [
            self.create_room,
            self.start_egress,
            self.stop_egress,
            self.get_egress,
            self.delete_room,
            self.dispatch_agent,
            self.get_room_presence,
            self.dial_outbound,
            self.transfer_call,
            self.download_and_store_recording,
            self.find_staged_recording,
            self.delete_recording_segments,
            self.append_call_events,
            self.record_recording,
            self.start_after_call,
            self.enqueue_handoff,
            self.leave_desk,
            self.tell_caller,
        ]

    def kinds(self) -> list[str]:
        return [self.events[s].kind for s in sorted(self.events)]

    def of_kind(self, kind: str) -> list[act.CallEvent]:
        return [self.events[s] for s in sorted(self.events) if self.events[s].kind == kind]

    # --- the desk ---------------------------------------------------------------------------

    @activity.defn(name=act.ENQUEUE_HANDOFF)
    async def enqueue_handoff(self, req: desk.Enqueue) -> None:
        self.calls[act.ENQUEUE_HANDOFF].append(req)
        if self.desk is not None:
            await self.desk.enqueue(req)

    @activity.defn(name=act.LEAVE_DESK)
    async def leave_desk(self, req: desk.CallLeft) -> None:
        self.calls[act.LEAVE_DESK].append(req)
        if self.desk is not None:
            await self.desk.call_left(req)

    @activity.defn(name=act.TELL_CALLER)
    async def tell_caller(self, note: desk.Announcement) -> None:
        self.calls[act.TELL_CALLER].append(note)

    # --- LiveKit ----------------------------------------------------------------------------

    @activity.defn(name=act.CREATE_ROOM)
    async def create_room(self, inp: act.CreateRoomInput) -> act.RoomInfo:
        self.calls[act.CREATE_ROOM].append(inp)
        if self.room_fails:
            raise ApplicationError(
                "LiveKit said no", type=act.ERR_LIVEKIT_REJECTED, non_retryable=True
            )
        return act.RoomInfo(inp.room_name, "RM_test", inp.agent_name)

    @activity.defn(name=act.DIAL_OUTBOUND)
    async def dial_outbound(self, inp: act.DialInput) -> m.DialResult:
        self.calls[act.DIAL_OUTBOUND].append(inp)
        if self.dial_gate is not None:
            await self.dial_gate.wait()
        if self.dial_error:
            raise ApplicationError("LiveKit is not reachable", type=self.dial_error)
        sip_status = {"busy": 486, "rejected": 603, "unavailable": 480}.get(self.dial_outcome, 0)
        return m.DialResult(self.dial_outcome, sip_status, sip_call_id="SCL_test",
                            identity=inp.identity)  # fmt: skip

    @activity.defn(name=act.TRANSFER_CALL)
    async def transfer_call(self, inp: act.TransferInput) -> str:
        self.calls[act.TRANSFER_CALL].append(inp)
        return self.transfer_failure

    @activity.defn(name=act.START_EGRESS)
    async def start_egress(self, inp: act.StartEgressInput) -> m.EgressState:
        self.calls[act.START_EGRESS].append(inp)
        if self.count(act.START_EGRESS) <= self.egress_start_failures:
            raise ApplicationError("egress service unavailable", type=act.ERR_LIVEKIT_UNAVAILABLE)
        n = self.count(act.START_EGRESS)
        if self.egress_gate is not None:
            await self.egress_gate.wait()
        return m.EgressState(f"EG_{n}", "EGRESS_STARTING")

    @activity.defn(name=act.STOP_EGRESS)
    async def stop_egress(self, ref: act.EgressRef) -> m.EgressState:
        self.calls[act.STOP_EGRESS].append(ref)
        if self.stop_gate is not None:
            await self.stop_gate.wait()
        file = egress_file(ref.call_id) if self.stop_reports == "EGRESS_COMPLETE" else None
        return m.EgressState(ref.egress_id, self.stop_reports, file=file)

    @activity.defn(name=act.GET_EGRESS)
    async def get_egress(self, ref: act.EgressRef) -> m.EgressState:
        self.calls[act.GET_EGRESS].append(ref)
        if self.count(act.GET_EGRESS) <= self.get_failures:
            raise ApplicationError("LiveKit unreachable", type=act.ERR_LIVEKIT_UNAVAILABLE)
        if self.get_reports == "UNKNOWN":
            raise ApplicationError(
                f"egress {ref.egress_id} is unknown",
                type=act.ERR_LIVEKIT_REJECTED,
                non_retryable=True,
            )
        file = egress_file(ref.call_id) if self.get_reports == "EGRESS_COMPLETE" else None
        return m.EgressState(ref.egress_id, self.get_reports, file=file)

    @activity.defn(name=act.DELETE_ROOM)
    async def delete_room(self, ref: act.RoomRef) -> None:
        self.calls[act.DELETE_ROOM].append(ref)

    @activity.defn(name=act.DISPATCH_AGENT)
    async def dispatch_agent(self, inp: act.DispatchAgentInput) -> act.DispatchResult:
        self.calls[act.DISPATCH_AGENT].append(inp)
        if self.on_dispatch is not None:
            self.on_dispatch(inp)
        if self.dispatch_error:
            raise ApplicationError(
                f"dispatch_agent: {self.dispatch_error}",
                type=self.dispatch_error,
                non_retryable=self.dispatch_error in act.NON_RETRYABLE_ERRORS,
            )
        return act.DispatchResult(dispatch_id=f"AD_{inp.serial}")

    @activity.defn(name=act.GET_ROOM_PRESENCE)
    async def get_room_presence(self, q: act.RoomPresenceQuery) -> act.RoomPresence:
        self.calls[act.GET_ROOM_PRESENCE].append(q)
        if self.count(act.GET_ROOM_PRESENCE) <= self.presence_failures:
            raise ApplicationError("LiveKit unreachable", type=act.ERR_LIVEKIT_UNAVAILABLE)
        if self.room_gone:
            return act.RoomPresence(exists=False, missing=list(q.expected))
        return act.RoomPresence(True, [i for i in q.expected if i in self.room_absent])

    @activity.defn(name=act.START_AFTER_CALL)
    async def start_after_call(self, after: act.AfterCall) -> None:
        """Starts the recording pipeline for real (on this queue); records the analysis's start
        (the real one starts `analysis-<id>`: tests/workflows/test_analysis.py)."""
        self.calls[act.START_AFTER_CALL].append(after.call_id)
        if after.recording is not None:
            await start_recording_pipeline(after.recording)

    # --- storage ----------------------------------------------------------------------------

    @activity.defn(name=act.DOWNLOAD_AND_STORE_RECORDING)
    async def download_and_store_recording(self, inp: m.RecordingInput) -> m.RecordingResult:
        self.calls[act.DOWNLOAD_AND_STORE_RECORDING].append((inp, time.monotonic()))
        if self.download_error:
            raise ApplicationError(
                f"download_and_store_recording: {self.download_error}",
                type=self.download_error,
                non_retryable=self.download_error in act.NON_RETRYABLE_ERRORS,
            )
        if not inp.location and inp.object_key not in self.staged:
            # Read at its key in staging and not there: S3 answers 404 (activities.storage).
            raise ApplicationError(
                f"recording of call {inp.call_id}: the source answered HTTP 404",
                type=act.ERR_SOURCE_UNUSABLE,
                non_retryable=True,
            )
        failing = inp.object_key in self.download_failing_keys
        if failing or self.count(act.DOWNLOAD_AND_STORE_RECORDING) <= self.download_failures:
            raise ApplicationError("connection reset", type=act.ERR_SOURCE_UNAVAILABLE)
        try:
            while self.upload_gate is not None and not self.upload_gate.is_set():
                activity.heartbeat()  # how a cancellation reaches it
                await asyncio.sleep(0.1)
        except asyncio.CancelledError:
            self.uploads_cancelled += 1
            raise
        duration = inp.call_duration_s / 4 if self.download_incomplete else inp.expected_duration_s
        return m.RecordingResult(
            call_id=inp.call_id,
            bucket="recordings",
            key=inp.object_key or m.recording_object_key(inp.call_id),
            size=inp.expected_size,
            sha256="ab" * 32,
            duration_s=duration,
            incomplete=self.download_incomplete,
            egress_id=inp.egress_id,
        )

    @activity.defn(name=act.FIND_STAGED_RECORDING)
    async def find_staged_recording(self, q: act.StagedRecordingQuery) -> m.RecordingFile | None:
        self.calls[act.FIND_STAGED_RECORDING].append(q)
        size = self.staged.get(q.object_key)
        if size is None:
            return None
        return m.RecordingFile(q.object_key, f"http://s3.invalid/egress/{q.object_key}", size, 0)

    @activity.defn(name=act.DELETE_RECORDING_SEGMENTS)
    async def delete_recording_segments(self, req: act.SegmentsToDelete) -> int:
        self.calls[act.DELETE_RECORDING_SEGMENTS].append(req)
        if self.delete_refused:
            raise ApplicationError(
                "remove object s3://egress/...: refused by object storage (AccessDenied)",
                type=act.ERR_STORAGE_REFUSED,
                non_retryable=True,
            )
        self.deleted_keys += req.object_keys
        for key in req.object_keys:
            self.staged.pop(key, None)
        return len(req.object_keys)

    # --- database ---------------------------------------------------------------------------

    @activity.defn(name=act.APPEND_CALL_EVENTS)
    async def append_call_events(self, batch: act.EventBatch) -> act.AppendResult:
        self.append_attempts += 1
        if self.append_attempts <= self.append_failures:
            raise ApplicationError("database unavailable", type=act.ERR_DATABASE_UNAVAILABLE)
        if self.append_attempts in self.append_rejects:
            raise ApplicationError(
                "batch can never be written", type=act.ERR_INVALID_INPUT, non_retryable=True
            )
        inserted = duplicates = 0
        self.written_batches.append([ev.seq for ev in batch.events])
        ids = {e.id for e in self.events.values()}
        for ev in batch.events:
            if ev.id in ids:  # the log's unique (call_id, event_id): a resend stores nothing
                duplicates += 1
                continue
            self.events[ev.seq] = ev
            ids.add(ev.id)
            inserted += 1
        self.event_writes += 1
        if batch.call is not None:
            self.call_rows.append(batch.call)
        return act.AppendResult(inserted, duplicates)

    @activity.defn(name=act.RECORD_RECORDING)
    async def record_recording(self, row: act.RecordingRow) -> None:
        self.recording_rows.append(row)


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "") -> Any:
    """Poll (real time) until `check()` is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or check}")
        await asyncio.sleep(0.02)
