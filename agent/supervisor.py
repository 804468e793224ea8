"""Supervisor commands to a live agent: whisper an instruction, take over the call, release it.

One contract, one way in (see agent/README.md): a LiveKit data packet whose topic is the
action's name (`supervisor.whisper`, `supervisor.takeover`, `supervisor.release`), sent by
the API (`RoomService.SendData`, destination the agent's identity) after it recorded the
action on the call. Only packets without a sender participant (from the server) are
accepted. Participant RPCs with those names are refused (4003) whoever calls, monitors and
barging supervisors included: every command goes through the audited API.

Payload: JSON `{"text": str (whisper only, <= 1000 chars), "by": str?, "id": str?}`. With an
`id` (the API always sends one), a repeated command is acknowledged and changes nothing.

A take-over keeps the agent listening: the customer is still transcribed (lines, keyword
alerts), Sarah only stops replying and speaking; the supervisor's own speech is transcribed
as speaker `supervisor`, and both go into Sarah's context so that she continues from there
after the release. A supervisor who barges in (a `supervisor-` participant publishing audio)
takes over by itself, and releases when that audio or participant goes away.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Literal, cast

from livekit import rtc
from livekit.agents import Agent, AgentSession, stt

from agent.bridge import CallBridge
from agent.desk import NOTICE_TOPIC, notice_text, parse_notice
from agent.hold_music import HoldMusic
from agent.signals import new_signal_id, utc_now
from core.desk import Notice
from core.livekit import REP_IDENTITY_PREFIX, SUPERVISOR_IDENTITY_PREFIX
from core.log import get_logger
from core.models import SIGNAL_TRANSCRIPT, TranscriptLine

log = get_logger(__name__)

COMMANDS = {
    "supervisor.whisper": "whisper",
    "supervisor.takeover": "takeover",
    "supervisor.release": "release",
}
MAX_WHISPER_CHARS = 1000

Action = Literal["whisper", "takeover", "release"]


class CommandError(ValueError):
    """A malformed command; the message names the field."""


@dataclass(frozen=True)
class SupervisorCommand:
    id: str
    action: Action
    by: str = ""
    text: str = ""

    @classmethod
    def parse(cls, raw: str | bytes, *, action: str) -> SupervisorCommand:
        try:
            data = json.loads(raw or "{}")
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CommandError("payload is not JSON") from exc
        if not isinstance(data, dict):
            raise CommandError("payload must be a JSON object")
        if action not in ("whisper", "takeover", "release"):
            raise CommandError("action must be whisper, takeover or release")
        act = action
        cid = data.get("id", f"anon-{uuid.uuid4().hex[:16]}")
        if not isinstance(cid, str) or not cid or len(cid) > 128:
            raise CommandError("id must be a non-empty string of at most 128 characters")
        text = data.get("text", "")
        if not isinstance(text, str):
            raise CommandError("text must be a string")
        text = text.strip()
        if act == "whisper" and not text:
            raise CommandError("text is required for whisper")
        if len(text) > MAX_WHISPER_CHARS:
            raise CommandError(f"text must be at most {MAX_WHISPER_CHARS} characters")
        by = data.get("by", "")
        return cls(id=cid, action=cast(Action, act), by=str(by)[:128], text=text)


class SupervisorChannel:
    """Applies supervisor commands to one call's session and agent."""

    def __init__(
        self,
        session: AgentSession,
        agent: Agent,
        *,
        call_id: str,
        bridge: CallBridge | None = None,
        stt_: stt.STT | None = None,
        hold: HoldMusic | None = None,
    ) -> None:
        self._session = session
        self._hold = hold  # hold music while the call waits at the desk (agent/hold_music.py)
        self._stt = stt_  # transcribes a supervisor who speaks (None: not transcribed)
        self._agent = agent
        self._bridge = bridge
        self.call_id = call_id
        self.taken_over = False
        self._seen: deque[str] = deque(maxlen=256)
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[object]] = set()
        self._barging: set[str] = set()  # supervisors publishing audio right now

    @property
    def state(self) -> str:
        return "supervisor" if self.taken_over else "agent"

    async def handle(self, cmd: SupervisorCommand) -> dict[str, object]:
        async with self._lock:
            if cmd.id in self._seen:
                return {"ok": True, "id": cmd.id, "state": self.state, "duplicate": True}
            if cmd.action == "whisper":
                await self._whisper(cmd)
            elif cmd.action == "takeover":
                self._set_taken_over(True)
            else:
                self._set_taken_over(False)
            self._seen.append(cmd.id)
            log.info("supervisor_command", call_id=self.call_id, action=cmd.action, by=cmd.by)
            return {"ok": True, "id": cmd.id, "state": self.state}

    async def _whisper(self, cmd: SupervisorCommand) -> None:
        # Lands in the agent's context; the next reply follows it. Never spoken, never a line.
        ctx = self._agent.chat_ctx.copy()
        ctx.add_message(
            role="system",
            content=f"Supervisor instruction (not from the customer; follow it, do not read it aloud): {cmd.text}",
            id=f"whisper-{cmd.id}",
        )
        await self._agent.update_chat_ctx(ctx)

    def _set_taken_over(self, on: bool) -> None:
        if on == self.taken_over:
            return
        self.taken_over = on
        if self._bridge is not None:
            self._bridge.supervisor_active = on
        if hasattr(self._agent, "taken_over"):
            self._agent.taken_over = on  # she keeps listening but does not reply
        if on:
            if self._hold is not None:
                self._hold.stop("taken_over")
            # the supervisor speaks now: stop talking (and keep listening)
            try:
                self._session.interrupt(force=True)
            except RuntimeError:
                log.info("supervisor_takeover_nothing_to_interrupt", call_id=self.call_id)
        self._session.output.set_audio_enabled(not on)

    async def transcribe(self, frames: AsyncIterable[rtc.AudioFrame], identity: str) -> None:
        """The supervisor's speech as `supervisor` lines, and into Sarah's context."""
        if self._stt is None:
            return
        stream = self._stt.stream()

        async def push() -> None:
            async for frame in frames:
                stream.push_frame(frame)
            stream.end_input()

        pusher = asyncio.create_task(push())
        try:
            async for ev in stream:
                if ev.type != stt.SpeechEventType.FINAL_TRANSCRIPT or not ev.alternatives:
                    continue
                text = ev.alternatives[0].text.strip()
                if text:
                    await self._supervisor_said(text, identity)
        finally:
            pusher.cancel()
            await stream.aclose()

    async def _supervisor_said(self, text: str, identity: str) -> None:
        rep = identity.startswith(REP_IDENTITY_PREFIX)
        if self._bridge is not None:
            self._bridge.send(
                SIGNAL_TRANSCRIPT,
                TranscriptLine(
                    id=new_signal_id("line"),
                    speaker="rep" if rep else "supervisor",
                    text=text,
                    started_at=utc_now(),
                    ended_at=utc_now(),
                ),  # fmt: skip
            )
        ctx = self._agent.chat_ctx.copy()
        who = "Your colleague from the desk" if rep else "Your supervisor"
        ctx.add_message(
            role="system",
            content=f"{who}, who has taken over the call, said to the customer: {text}",
        )
        await self._agent.update_chat_ctx(ctx)
        log.info("supervisor_transcribed", call_id=self.call_id, by=identity)

    # transports ------------------------------------------------------------------------------
    def attach(self, room: rtc.Room) -> None:
        for name, action in COMMANDS.items():
            room.local_participant.register_rpc_method(name, self._rpc_handler(action))
        room.on("data_received", self._on_data)
        room.on("track_published", self._on_track_published)
        room.on("track_unpublished", self._on_track_unpublished)
        room.on("participant_disconnected", self._on_participant_disconnected)
        room.on("track_subscribed", self._on_track_subscribed)

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        pub: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if _is_supervisor_audio(pub, participant):
            frames = _frames(rtc.AudioStream(track, sample_rate=16000, num_channels=1))
            task = asyncio.create_task(self.transcribe(frames, participant.identity))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_log_failure)

    def _rpc_handler(self, action: str):  # type: ignore[no-untyped-def]
        async def handler(data: rtc.RpcInvocationData) -> str:
            # A monitor or barge token is a room participant like any other: commands come
            # only from the server, after the API recorded them on the call.
            log.warning("supervisor_rpc_refused", call_id=self.call_id, method=data.method,
                        caller=data.caller_identity[:64], action=action)  # fmt: skip
            raise rtc.RpcError(4003, "send supervisor commands through the API")

        return handler

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic == NOTICE_TOPIC:
            if packet.participant is None:  # from the server (the desk), never a participant
                self.desk_notice(packet.data)
            return
        action = COMMANDS.get(packet.topic or "")
        if action is None:
            return
        if packet.participant is not None:
            # only the server API may send these; a participant (the customer) may not
            log.warning("supervisor_data_refused", call_id=self.call_id, topic=packet.topic)
            return
        try:
            cmd = SupervisorCommand.parse(packet.data, action=action)
        except CommandError as exc:
            log.warning("supervisor_data_malformed", call_id=self.call_id, error=str(exc))
            return
        self._spawn(cmd)

    def desk_notice(self, data: bytes) -> None:
        """Sarah says what the desk told the caller (agent/desk.py); not while a person has
        the call. A notice that settles the hand-off lets her ask again later."""
        note = parse_notice(data)
        can_call_back = getattr(self._agent, "callbacks", None) is not None
        text = notice_text(note, can_call_back) if note is not None else ""
        if not text or note is None:
            log.warning("desk_notice_malformed", call_id=self.call_id)
            return
        # The hand-off is settled (no one, or someone joined): a later request may ask again.
        waiting = note.get("notice") == Notice.POSITION
        if not waiting and hasattr(self._agent, "desk_said"):
            self._agent.desk_said(str(note.get("notice")))
        if self._hold is not None and not waiting:
            self._hold.stop(f"desk_{note.get('notice')}")
        if self.taken_over:
            return
        try:
            said = self._session.say(text, allow_interruptions=True)
        except RuntimeError:  # the session is closing
            log.info("desk_notice_not_said", call_id=self.call_id)
            return
        log.info("desk_notice_said", call_id=self.call_id, notice=note.get("notice"))
        if self._hold is not None and waiting:
            self._hold.wanted = (
                True  # until the caller speaks, the desk settles or a person takes over
            )
            task = asyncio.create_task(self._hold_after(said))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            task.add_done_callback(_log_failure)

    async def _hold_after(self, said: object) -> None:
        """Hold music once Sarah has said the caller's place in line (not over her words)."""
        assert self._hold is not None
        wait = getattr(said, "wait_for_playout", None)
        if wait is not None:
            await wait()
        if self._hold.wanted and not self.taken_over:
            await self._hold.start()

    # a supervisor who barges in takes over; when their audio goes, the agent resumes
    def _on_track_published(
        self, pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if _is_supervisor_audio(pub, participant):
            self._barging.add(participant.identity)
            self._spawn(
                SupervisorCommand(id=f"barge-{pub.sid}", action="takeover", by=participant.identity)
            )

    def _on_track_unpublished(
        self, pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if _is_supervisor_audio(pub, participant):
            self._barge_ended(participant.identity, f"unbarge-{pub.sid}")

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        self._barge_ended(
            participant.identity, f"left-{participant.identity}-{uuid.uuid4().hex[:8]}"
        )

    def _barge_ended(self, identity: str, cid: str) -> None:
        if identity in self._barging:
            self._barging.discard(identity)
            if not self._barging:
                self._spawn(SupervisorCommand(id=cid, action="release", by=identity))

    def _spawn(self, cmd: SupervisorCommand) -> None:
        task: asyncio.Task[object] = asyncio.create_task(self.handle(cmd))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)


def _is_supervisor_audio(
    pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
) -> bool:
    return (
        participant.identity.startswith((SUPERVISOR_IDENTITY_PREFIX, REP_IDENTITY_PREFIX))
        and pub.kind == rtc.TrackKind.KIND_AUDIO
    )


def _log_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("supervisor_command_failed", error=repr(task.exception()))


async def _frames(stream: rtc.AudioStream) -> AsyncIterator[rtc.AudioFrame]:
    async for ev in stream:
        yield ev.frame
