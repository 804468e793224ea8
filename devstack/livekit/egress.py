"""Egress: room-composite recordings from STARTING to egress_ended, as LiveKit's egress goes.

StartRoomCompositeEgress answers EGRESS_STARTING (egress_started); the egress becomes ACTIVE
shortly after (egress_updated). StopEgress, or the room closing, makes it ENDING
(egress_updated); the Ogg/Opus file is then encoded in a worker thread, uploaded as Egress
uploads it (see `upload`: the request's S3Upload, else the emulator's default storage, with
its backup), and egress_ended carries EGRESS_COMPLETE with `file_results` (location as Egress
reports it). A failed upload ends it EGRESS_FAILED with Egress's error text. `egress_end`
faults end it otherwise.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from livekit.protocol import egress as egress_pb

from core.log import get_logger

from .config import EmulatorConfig
from .errors import ControlError
from .faults import Faults
from .ids import new_id, now_ns
from .recording import RecordingCancelled, RecordingFile, write_recording
from .twirp import TwirpError
from .upload import S3Target, UploadFailed, upload_with_backup

if TYPE_CHECKING:
    from .emulator import Room

log = get_logger("devstack.livekit")

ACTIVE_EGRESS = (egress_pb.EGRESS_STARTING, egress_pb.EGRESS_ACTIVE, egress_pb.EGRESS_ENDING)


@dataclass
class Egress:
    info: egress_pb.EgressInfo
    dual_channel: bool
    active_since: float | None = None  # monotonic
    advance_s: float = 0.0
    duration_s: float | None = None  # frozen when the egress stops
    planned_status: int | None = None  # an egress_end fault: end with this instead of COMPLETE
    planned_error: str = ""
    planned_file: bool = False  # an egress_end fault with partial_file: the file is uploaded
    recording: RecordingFile | None = None
    upload: S3Target | None = None  # where the file goes (credentials kept out of `info`)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    @property
    def id(self) -> str:
        return self.info.egress_id

    def recorded_s(self) -> float:
        if self.duration_s is not None:
            return self.duration_s
        if self.active_since is None:
            return 0.0
        return time.monotonic() - self.active_since + self.advance_s


class EgressMixin:
    """The egress half of the Emulator (which provides the attributes declared here)."""

    config: EmulatorConfig
    faults: Faults
    egresses: dict[str, Egress]
    base_url: str
    recordings_dir: Path
    _executor: ThreadPoolExecutor
    _cancel: threading.Event

    def _emit(self, name: str, room: Room | None = None, **fields: Any) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Coroutine[Any, Any, Any], *owners: set[asyncio.Task[Any]]) -> None:
        raise NotImplementedError

    def get_room(self, name: str) -> Room:
        raise NotImplementedError

    def get_egress(self, egress_id: str) -> Egress:
        eg = self.egresses.get(egress_id)
        if eg is None:
            raise TwirpError("not_found", "egress does not exist")
        return eg

    def start_egress(self, req: egress_pb.RoomCompositeEgressRequest) -> egress_pb.EgressInfo:
        """Validate and start a room-composite egress (STARTING now, ACTIVE shortly after)."""
        fault = self.faults.take("egress_start_fail", room=req.room_name)
        if fault and fault.params["mode"] == "error":
            log.warning("egress_start_failed_by_fault", room=req.room_name)
            raise TwirpError(fault.params["code"], fault.params["msg"])
        room = self.get_room(req.room_name)
        outputs = list(req.file_outputs) + ([req.file] if req.HasField("file") else [])
        if not outputs:
            raise TwirpError(
                "invalid_argument", "the emulator records file outputs only: set file_outputs"
            )
        if len(outputs) > 1:
            raise TwirpError("invalid_argument", "more than one file output")
        out = outputs[0]
        if out.file_type not in (egress_pb.DEFAULT_FILETYPE, egress_pb.OGG):
            raise TwirpError("invalid_argument", "the emulator records Ogg/Opus (file_type OGG)")
        now = now_ns()
        request = egress_pb.RoomCompositeEgressRequest()
        request.CopyFrom(req)
        for o in [request.file] if request.HasField("file") else request.file_outputs:
            if o.HasField("s3"):  # LiveKit redacts storage credentials from EgressInfo
                o.s3.access_key = o.s3.secret = "{redacted}"
        info = egress_pb.EgressInfo(
            egress_id=new_id("EG_"),
            room_id=room.info.sid,
            room_name=room.name,
            source_type=(
                egress_pb.EGRESS_SOURCE_TYPE_SDK
                if req.audio_only
                else egress_pb.EGRESS_SOURCE_TYPE_WEB
            ),
            status=egress_pb.EGRESS_STARTING,
            updated_at=now,
            room_composite=request,
        )
        eg = Egress(
            info,
            dual_channel=req.audio_mixing == egress_pb.DUAL_CHANNEL_AGENT,
            upload=S3Target.from_request(out.s3) if out.HasField("s3") else self._default_storage(),
        )
        self.egresses[eg.id] = eg
        log.info("egress_started", room=room.name, egress_id=eg.id)
        self._emit("egress_started", egress_info=info)
        if fault:  # mode "failed": accepted, then it never becomes active
            eg.planned_status, eg.planned_error = egress_pb.EGRESS_FAILED, fault.params["msg"]
            self._spawn(self._fail_start(eg), eg.tasks)
        else:
            self._spawn(self._activate(eg), eg.tasks)
        return _copy(info)

    def _default_storage(self) -> S3Target | None:
        """egress.yaml's `storage.s3`, when the emulator was given one."""
        c = self.config
        if not c.s3_endpoint or not c.s3_bucket:
            return None
        return S3Target(c.s3_endpoint, c.s3_bucket, c.s3_region, c.s3_force_path_style,
                        c.s3_access_key, c.s3_secret)  # fmt: skip

    async def _upload(self, eg: Egress, filename: str) -> tuple[str, bool]:
        """Store the finished file as Egress would: (location, backup_storage_used)."""
        assert eg.recording is not None
        path = eg.recording.path
        if eg.upload is None:
            if self.config.serve_recordings:
                return f"{self.base_url}/_emulator/recordings/{eg.id}.ogg", False
            return filename, False  # Egress's local storage reports the path it wrote
        backup = None
        if self.config.backup_bucket:
            backup = (self._default_storage() or eg.upload).with_bucket(self.config.backup_bucket)
        fault = self.faults.take("egress_upload_fail", egress_id=eg.id, room=eg.info.room_name)
        primary_error = fault.params["error"] if fault else ""
        backup_error = fault.params["backup_error"] if fault else ""
        job = self._executor.submit(
            upload_with_backup, eg.upload, backup, path, filename, primary_error, backup_error
        )
        location, backup_used = await asyncio.wrap_future(job)
        if not self.config.serve_recordings:
            path.unlink(missing_ok=True)  # Egress removes its local copy once uploaded
        return location, backup_used

    async def _fail_start(self, eg: Egress) -> None:
        await asyncio.sleep(self.config.egress_start_delay_s)
        await self._finish(eg, egress_pb.EGRESS_FAILED, eg.planned_error, with_file=False)

    async def _activate(self, eg: Egress) -> None:
        await asyncio.sleep(self.config.egress_start_delay_s)
        if eg.info.status != egress_pb.EGRESS_STARTING:
            return
        eg.active_since = time.monotonic()
        eg.info.status = egress_pb.EGRESS_ACTIVE
        eg.info.started_at = eg.info.updated_at = now_ns()
        self._emit("egress_updated", egress_info=eg.info)
        self.apply_egress_end_faults()

    def apply_egress_end_faults(self) -> None:
        """Give pending `egress_end` faults to active egresses that have none yet."""
        for eg in self.egresses.values():
            if eg.info.status != egress_pb.EGRESS_ACTIVE or eg.planned_status is not None:
                continue
            fault = self.faults.take("egress_end", egress_id=eg.id, room=eg.info.room_name)
            if fault is None:
                continue
            eg.planned_status = egress_pb.EgressStatus.Value(fault.params["status"])
            eg.planned_error = fault.params["error"] or _default_error(eg.planned_status)
            eg.planned_file = bool(fault.params["partial_file"])
            if fault.params["after_s"] is not None:
                self._spawn(self._end_after(eg, float(fault.params["after_s"])), eg.tasks)

    async def _end_after(self, eg: Egress, after_s: float) -> None:
        assert eg.active_since is not None
        await asyncio.sleep(max(0.0, eg.active_since + after_s - time.monotonic()))
        if eg.info.status == egress_pb.EGRESS_ACTIVE:
            self.end_egress(eg, announce_ending=False)

    def stop_egress(self, egress_id: str) -> egress_pb.EgressInfo:
        eg = self.get_egress(egress_id)
        if eg.info.status not in ACTIVE_EGRESS[:2]:
            name = egress_pb.EgressStatus.Name(eg.info.status)
            raise TwirpError("failed_precondition", f"egress with status {name} cannot be stopped")
        self.end_egress(eg)
        return _copy(eg.info)

    def end_egress(self, eg: Egress, announce_ending: bool = True) -> None:
        """Stop recording now: ENDING (egress_updated), then the file, then egress_ended."""
        was_active = eg.info.status == egress_pb.EGRESS_ACTIVE
        eg.duration_s = eg.recorded_s()
        for t in list(eg.tasks):
            t.cancel()
        eg.info.status = egress_pb.EGRESS_ENDING
        eg.info.updated_at = now_ns()
        if announce_ending:
            self._emit("egress_updated", egress_info=eg.info)
        status: int
        if not was_active:  # stopped before its pipeline started
            status, error = egress_pb.EGRESS_ABORTED, "egress stopped before it became active"
        elif eg.planned_status is not None:
            status, error = eg.planned_status, eg.planned_error
        else:
            status, error = egress_pb.EGRESS_COMPLETE, ""
        with_file = status in (egress_pb.EGRESS_COMPLETE, egress_pb.EGRESS_LIMIT_REACHED) or (
            was_active and eg.planned_file
        )
        self._spawn(self._finish(eg, status, error, with_file))

    async def _finish(self, eg: Egress, status: int, error: str, with_file: bool) -> None:
        info = eg.info
        if with_file:
            path = self.recordings_dir / f"{eg.id}.ogg"
            duration = eg.duration_s or 0.0
            try:
                job = self._executor.submit(
                    write_recording, path, duration, eg.dual_channel, self._cancel
                )
                eg.recording = await asyncio.wrap_future(job)
                eg.duration_s = eg.recording.duration_s  # sample-exact, so the numbers agree
            except RecordingCancelled:
                return
            except Exception as e:  # an encode failure is what a real egress reports as FAILED
                log.exception("recording_failed", egress_id=eg.id)
                status, error, with_file = egress_pb.EGRESS_FAILED, f"recording failed: {e}", False
        location, backup_used = "", False
        if with_file and eg.recording is not None:
            try:
                location, backup_used = await self._upload(
                    eg, _filename(self._output(eg).filepath, info)
                )
            except UploadFailed as e:
                log.warning("egress_upload_failed", egress_id=eg.id, error=str(e))
                status, error, with_file = egress_pb.EGRESS_FAILED, str(e), False
        end = now_ns()
        info.status = status  # type: ignore[assignment]
        info.error = error
        info.updated_at = end
        if info.started_at:
            info.ended_at = info.started_at + round((eg.duration_s or 0.0) * 1e9)
        else:
            info.ended_at = end
        if with_file and eg.recording is not None:
            result = egress_pb.FileInfo(
                filename=_filename(self._output(eg).filepath, info),
                started_at=info.started_at,
                ended_at=info.ended_at,
                duration=round(eg.recording.duration_s * 1e9),
                size=eg.recording.size,
                location=location,
            )
            info.file_results.append(result)
            info.file.CopyFrom(result)  # the deprecated single-file result, still filled in
            info.backup_storage_used = backup_used
        log.info("egress_ended", egress_id=eg.id, room=info.room_name,
                 status=egress_pb.EgressStatus.Name(status),
                 duration_s=round(eg.duration_s or 0.0, 3))  # fmt: skip
        self._emit("egress_ended", egress_info=info)

    @staticmethod
    def _output(eg: Egress) -> egress_pb.EncodedFileOutput:
        rc = eg.info.room_composite
        return rc.file if rc.HasField("file") else rc.file_outputs[0]

    def advance_egress(self, egress_id: str, seconds: float) -> float:
        """Add `seconds` to what an active egress will have recorded; returns the new total."""
        eg = self.egresses.get(egress_id)
        if eg is None:
            raise ControlError(404, "not_found", "egress does not exist", "egress_id")
        if eg.info.status not in ACTIVE_EGRESS[:2]:
            raise ControlError(409, "failed_precondition", "egress is not active", "egress_id")
        eg.advance_s += seconds
        return eg.recorded_s()


def _copy(info: egress_pb.EgressInfo) -> egress_pb.EgressInfo:
    out = egress_pb.EgressInfo()
    out.CopyFrom(info)
    return out


def _default_error(status: int) -> str:
    if status == egress_pb.EGRESS_LIMIT_REACHED:
        return "egress time limit reached"
    if status == egress_pb.EGRESS_ABORTED:
        return "egress aborted"
    return "pipeline failure (injected fault)"


def _filename(template: str, info: egress_pb.EgressInfo) -> str:
    """Egress's filepath templating: {room_name}, {room_id}, {time}, {utc}; `.ogg` if no ext."""
    started = (info.started_at or now_ns()) / 1e9
    values = {
        "{room_name}": info.room_name,
        "{room_id}": info.room_id,
        "{time}": time.strftime("%Y-%m-%dT%H%M%S", time.gmtime(started)),
        "{utc}": str(int(started)),
    }
    name = template or "{room_name}-{time}"
    if name.endswith("/"):
        name += "{room_name}-{time}"
    for key, value in values.items():
        name = name.replace(key, value)
    if "." not in name.rsplit("/", 1)[-1]:
        name += ".ogg"
    return name
