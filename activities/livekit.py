"""LiveKit server API activities: the call's room, its agent dispatches, the room's egress.

Every one is idempotent: creating an existing room returns it, starting egress first looks for
an active egress of the room, stopping an ended egress or deleting a gone room is not an error.
Errors become `ApplicationError`s typed as in `activities.types`: a request LiveKit will never
accept (4xx, bad credentials) is `LiveKitRejected` (non-retryable); an outage (5xx, timeout,
refused connection) is `LiveKitUnavailable`, which Temporal retries. A dispatch into a room
that no longer exists is `RoomGone` (non-retryable): the call it was for is over.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from livekit import api
from livekit.protocol.egress import EgressInfo, EgressStatus
from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from activities import types as act
from core import models as m
from core.livekit import egress_state
from core.log import get_logger

log = get_logger("activities.livekit")

T = TypeVar("T")

# Twirp codes that may succeed when asked again (the rest of the 4xx never will).
_RETRYABLE_CODES = frozenset({"canceled", "deadline_exceeded", "aborted", "resource_exhausted"})
_RETRYABLE_4XX = frozenset({408, 409, 429})
# An egress that is still going (and so the one to reuse instead of starting another).
_LIVE_EGRESS = frozenset({EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_ACTIVE})


def egress_file_key(info: EgressInfo) -> str:
    """Where an egress writes: its request's file path, else the file name it reports."""
    rc = info.room_composite
    outputs = [rc.file] if rc.HasField("file") else list(rc.file_outputs)
    if outputs and outputs[0].filepath:
        return outputs[0].filepath
    files = list(info.file_results) or ([info.file] if info.HasField("file") else [])
    return files[0].filename if files else ""


def segment_number(call_id: str, key: str) -> int:
    """n of `conversations/<call_id>/<n>.ogg`; 0 when the key is not of that shape."""
    name = key.removeprefix(f"conversations/{call_id}/")
    stem, dot, ext = name.partition(".")
    return int(stem) if name != key and dot and ext == "ogg" and stem.isdigit() else 0


def livekit_error(exc: BaseException, what: str) -> ApplicationError:
    """The ApplicationError for a failed LiveKit call (no secrets: only code, status, message)."""
    if isinstance(exc, api.ServerError):
        detail = f"{what}: LiveKit answered {exc.status} {exc.code}: {exc.message}".rstrip(": ")
        if exc.status in (401, 403):
            # A real LiveKit answers 401 in plain text (code "unknown"): judge by the status.
            return ApplicationError(
                f"{detail} (check LIVEKIT_API_KEY / LIVEKIT_API_SECRET)",
                type=act.ERR_LIVEKIT_REJECTED,
                non_retryable=True,
            )
        if exc.status >= 500 and exc.status != 501:
            return ApplicationError(detail, type=act.ERR_LIVEKIT_UNAVAILABLE)
        if exc.status in _RETRYABLE_4XX or exc.code in _RETRYABLE_CODES:
            return ApplicationError(detail, type=act.ERR_LIVEKIT_UNAVAILABLE)
        return ApplicationError(detail, type=act.ERR_LIVEKIT_REJECTED, non_retryable=True)
    return ApplicationError(
        f"{what}: LiveKit unreachable ({type(exc).__name__}: {exc})",
        type=act.ERR_LIVEKIT_UNAVAILABLE,
    )


def _dispatch_serial(metadata: str) -> int | None:
    try:
        data = json.loads(metadata) if metadata else None
    except json.JSONDecodeError:
        return None
    value = data.get("serial") if isinstance(data, dict) else None
    return value if isinstance(value, int) else None


@dataclass(frozen=True)
class EgressUpload:
    """The S3 target every egress request carries (Egress uploads each file there).

    Sent in the request rather than left to Egress's own `storage:` config so that the staging
    bucket and its credentials live in our settings alone, and LiveKit Cloud's Egress (which
    has no config file of ours) uploads to the same place. Credentials are never logged, and
    LiveKit redacts them from the EgressInfo it returns.
    """

    bucket: str
    endpoint: str  # URL Egress can reach; "" for AWS itself
    region: str
    force_path_style: bool
    access_key: str = field(repr=False)
    secret: str = field(repr=False)

    def s3(self) -> api.S3Upload:
        return api.S3Upload(
            access_key=self.access_key,
            secret=self.secret,
            region=self.region,
            endpoint=self.endpoint,
            bucket=self.bucket,
            force_path_style=self.force_path_style,
        )


class LiveKitActivities:
    """Built once per worker with a `LiveKitAPI` client (closed by whoever opened it).

    `egress_upload` is the S3 target sent with every egress request; None leaves the upload
    to Egress's own storage configuration. No join token is made here: the workflow decides
    the customer's grant and the API signs it (a token would sit in history otherwise).
    """

    def __init__(self, lk: api.LiveKitAPI, egress_upload: EgressUpload | None = None) -> None:
        self.lk = lk
        self.egress_upload = egress_upload

    async def _call(self, what: str, call_id: str, request: Awaitable[T]) -> T:
        try:
            return await request
        except (api.ServerError, aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed(what, call_id, exc) from exc

    @activity.defn(name=act.CREATE_ROOM)
    async def create_room(self, inp: act.CreateRoomInput) -> act.RoomInfo:
        """Create the call's room with the agent explicitly dispatched (returns it if it exists)."""
        meta = json.dumps({"call_id": inp.call_id})
        room = await self._call(
            "create_room",
            inp.call_id,
            self.lk.room.create_room(
                api.CreateRoomRequest(
                    name=inp.room_name,
                    empty_timeout=inp.empty_timeout_s,
                    departure_timeout=inp.departure_timeout_s,
                    max_participants=inp.max_participants,
                    metadata=meta,
                    agents=[api.RoomAgentDispatch(agent_name=inp.agent_name, metadata=meta)],
                )
            ),
        )
        log.info("room_created", call_id=inp.call_id, room=room.name, sid=room.sid)
        return act.RoomInfo(room_name=room.name, sid=room.sid, dispatched_agent=inp.agent_name)

    @activity.defn(name=act.START_EGRESS)
    async def start_egress(self, inp: act.StartEgressInput) -> m.EgressState:
        """Audio-only, dual-channel (agent left, customer right) Ogg recording of the room.

        Reuses the room's active egress when there is one, so a retried start records once;
        the state then carries that egress's own key and segment number (what it really
        writes, told by an earlier attempt), not this request's.
        """
        active = await self._call(
            "list_egress",
            inp.call_id,
            self.lk.egress.list_egress(api.ListEgressRequest(room_name=inp.room_name, active=True)),
        )
        for info in active.items:
            if info.room_name == inp.room_name and info.status in _LIVE_EGRESS:
                state = egress_state(info)
                state.object_key = egress_file_key(info)
                state.n = segment_number(inp.call_id, state.object_key)
                log.info(
                    "egress_reused",
                    call_id=inp.call_id,
                    egress_id=info.egress_id,
                    object_key=state.object_key,
                    requested_key=inp.object_key or inp.filepath,
                )
                return state
        info = await self._call(
            "start_egress",
            inp.call_id,
            self.lk.egress.start_room_composite_egress(
                api.RoomCompositeEgressRequest(
                    room_name=inp.room_name,
                    audio_only=True,
                    audio_mixing=api.AudioMixing.DUAL_CHANNEL_AGENT,
                    file_outputs=[
                        api.EncodedFileOutput(
                            file_type=api.EncodedFileType.OGG,
                            filepath=inp.filepath,
                            # Egress would also upload <dir>/<egress_id>.json, a copy no
                            # erasure could find by call id: ask for none.
                            disable_manifest=True,
                            s3=self.egress_upload.s3() if self.egress_upload else None,
                        )
                    ],
                )
            ),
        )
        log.info(
            "egress_started",
            call_id=inp.call_id,
            egress_id=info.egress_id,
            filepath=inp.filepath,
            bucket=self.egress_upload.bucket if self.egress_upload else "(egress config)",
        )
        return egress_state(info)

    @activity.defn(name=act.STOP_EGRESS)
    async def stop_egress(self, ref: act.EgressRef) -> m.EgressState:
        """Stop the egress; one that already ended (or is unknown) is reported, not an error."""
        try:
            info = await self.lk.egress.stop_egress(api.StopEgressRequest(egress_id=ref.egress_id))
        except api.ServerError as exc:
            if exc.code not in ("failed_precondition", "not_found"):
                raise self._failed("stop_egress", ref.call_id, exc) from exc
            found = await self._find_egress(ref)
            if found is None:
                # Unknown to LiveKit now: say "ending" and let the webhook or a poll settle it.
                log.warning("egress_unknown_on_stop", call_id=ref.call_id, egress_id=ref.egress_id)
                return m.EgressState(ref.egress_id, "EGRESS_ENDING", error="unknown to LiveKit")
            log.info("egress_already_ended", call_id=ref.call_id, egress_id=ref.egress_id)
            return egress_state(found)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed("stop_egress", ref.call_id, exc) from exc
        log.info("egress_stopping", call_id=ref.call_id, egress_id=ref.egress_id)
        return egress_state(info)

    @activity.defn(name=act.GET_EGRESS)
    async def get_egress(self, ref: act.EgressRef) -> m.EgressState:
        """The egress as LiveKit knows it now (with its file once complete)."""
        found = await self._find_egress(ref)
        if found is None:
            raise ApplicationError(
                f"egress {ref.egress_id} is unknown to LiveKit",
                type=act.ERR_LIVEKIT_REJECTED,
                non_retryable=True,
            )
        return egress_state(found)

    @activity.defn(name=act.DISPATCH_AGENT)
    async def dispatch_agent(self, inp: act.DispatchAgentInput) -> act.DispatchResult:
        """Dispatch the call's agent again (AgentDispatch `CreateDispatch`).

        Earlier dispatches of the same agent that no job has taken are withdrawn first, so a
        late answer to one of them cannot put a second agent in the room. A dispatch whose
        metadata already carries this `serial` is returned as it is (a retried activity).

        A room LiveKit no longer has raises `RoomGone` (non-retryable): the call is over. Its
        existence is asked of `ListRooms`, because livekit-server never says so otherwise: it
        routes the dispatch calls to the room's node, so for a missing room they answer 503
        `unavailable` "no response from servers" (what an outage answers), and CreateDispatch
        with `room.auto_create` on (the default) would even create the room again
        (pkg/service/agent_dispatch_service.go).
        """
        if not await self._room_exists(inp.call_id, inp.room_name):
            raise self._room_gone(inp, "")
        try:
            return await self._dispatch(inp)
        except ApplicationError as err:
            # Whatever LiveKit answered: a room closed meanwhile explains it (it can't be
            # told from the code alone), anything else stays as it was.
            if await self._room_exists(inp.call_id, inp.room_name):
                raise
            raise self._room_gone(inp, err.message) from None  # the message says it all

    async def _room_exists(self, call_id: str, room_name: str) -> bool:
        res = await self._call(
            "list_rooms", call_id, self.lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        )
        return any(r.name == room_name for r in res.rooms)

    @staticmethod
    def _room_gone(inp: act.DispatchAgentInput, answer: str) -> ApplicationError:
        log.info("dispatch_room_gone", call_id=inp.call_id, room=inp.room_name, answer=answer)
        return ApplicationError(
            f"dispatch_agent: room {inp.room_name} no longer exists"
            + (f" ({answer})" if answer else ""),
            type=act.ERR_ROOM_GONE,
            non_retryable=True,
            # An answer, not a fault: the SDK logs it at debug, without a traceback or metric.
            category=ApplicationErrorCategory.BENIGN,
        )

    async def _dispatch(self, inp: act.DispatchAgentInput) -> act.DispatchResult:
        found = await self._call(
            "list_dispatch", inp.call_id, self.lk.agent_dispatch.list_dispatch(inp.room_name)
        )
        withdrawn = []
        for d in found:
            if d.agent_name != inp.agent_name:
                continue
            if _dispatch_serial(d.metadata) == inp.serial:
                log.info("agent_dispatch_exists", call_id=inp.call_id, dispatch_id=d.id)
                return act.DispatchResult(dispatch_id=d.id)
            if not d.state.jobs:
                await self._call(
                    "delete_dispatch",
                    inp.call_id,
                    self.lk.agent_dispatch.delete_dispatch(d.id, inp.room_name),
                )
                withdrawn.append(d.id)
        meta = json.dumps({"call_id": inp.call_id, "serial": inp.serial, "resume": inp.resume})
        made = await self._call(
            "create_dispatch",
            inp.call_id,
            self.lk.agent_dispatch.create_dispatch(
                api.CreateAgentDispatchRequest(
                    agent_name=inp.agent_name, room=inp.room_name, metadata=meta
                )
            ),
        )
        log.info("agent_dispatched", call_id=inp.call_id, dispatch_id=made.id,
                 serial=inp.serial, resume=inp.resume, withdrawn=len(withdrawn))  # fmt: skip
        return act.DispatchResult(dispatch_id=made.id, withdrawn=withdrawn)

    @activity.defn(name=act.GET_ROOM_PRESENCE)
    async def get_room_presence(self, q: act.RoomPresenceQuery) -> act.RoomPresence:
        """Whether LiveKit still has the room, and which expected identities are not in it.

        The room's existence is asked of `ListRooms`: livekit-server's `ListParticipants`
        answers an empty list for a room it does not have (its room stores return no rows,
        pkg/service/redisstore.go), which would read as "everyone left". A participant in
        state DISCONNECTED is leaving and counts as gone.
        """
        if not await self._room_exists(q.call_id, q.room_name):
            log.info("room_check", call_id=q.call_id, room=q.room_name, exists=False)
            return act.RoomPresence(exists=False, missing=list(q.expected))
        res = await self._call(
            "list_participants",
            q.call_id,
            self.lk.room.list_participants(api.ListParticipantsRequest(room=q.room_name)),
        )
        present = {
            p.identity for p in res.participants if p.state != api.ParticipantInfo.DISCONNECTED
        }
        missing = [i for i in q.expected if i not in present]
        log.info("room_check", call_id=q.call_id, room=q.room_name, exists=True,
                 present=len(present), missing=len(missing))  # fmt: skip
        return act.RoomPresence(exists=True, missing=missing)

    @activity.defn(name=act.DELETE_ROOM)
    async def delete_room(self, ref: act.RoomRef) -> None:
        """Delete the room (disconnecting everyone); a room that is already gone is fine."""
        try:
            await self.lk.room.delete_room(api.DeleteRoomRequest(room=ref.room_name))
        except api.ServerError as exc:
            if exc.code != "not_found":
                raise self._failed("delete_room", ref.call_id, exc) from exc
            log.info("room_already_gone", call_id=ref.call_id, room=ref.room_name)
            return
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise self._failed("delete_room", ref.call_id, exc) from exc
        log.info("room_deleted", call_id=ref.call_id, room=ref.room_name)

    async def _find_egress(self, ref: act.EgressRef) -> EgressInfo | None:
        found = await self._call(
            "list_egress",
            ref.call_id,
            self.lk.egress.list_egress(api.ListEgressRequest(egress_id=ref.egress_id)),
        )
        return next((i for i in found.items if i.egress_id == ref.egress_id), None)

    @staticmethod
    def _failed(what: str, call_id: str, exc: BaseException) -> ApplicationError:
        err = livekit_error(exc, what)
        log.warning(
            "livekit_call_failed", call_id=call_id, op=what, type=err.type, error=err.message
        )
        return err
