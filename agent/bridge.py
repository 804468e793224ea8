"""The agent's side of the call: session events in; final lines to the API, signals out.

    AgentSession events ──CallBridge──▶ FinalLines (spool on disk) ──POST──▶ API ──▶ PostgreSQL
                           ├──────────▶ SignalQueue ──signal──▶ CallWorkflow(call-<id>)
                           └─interim──▶ InterimPoster ──POST──▶ API live path (never history)

- A final line (the customer's, Sarah's, a supervisor's) is first written ahead to the job's
  spool file (`FinalLines`, agent/lines.py), which stores it through the API, the system of
  record for what was said; only then is it signalled to the workflow, which decides on it.

- `SignalQueue` (agent/signals.py) delivers signals to one workflow in the order they were
  sent, each at least once (every signal carries an id; the workflow ignores an id it has
  seen). While Temporal is unreachable it keeps them (bounded) and retries with backoff.
- `InterimPoster` (agent/interim.py) forwards the newest interim customer line to the API and
  tolerates it failing; `FinalTranscripts` (agent/stt_confidence.py) lends finals their confidence.
- `CallBridge` turns the session's events into `core.models` signals.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from livekit import rtc
from livekit.agents import (
    AgentSession,
    CloseEvent,
    CloseReason,
    ConversationItemAddedEvent,
    UserInputTranscribedEvent,
    UserStateChangedEvent,
)
from livekit.agents.llm import ChatMessage

from agent.api_client import AgentApi
from agent.interim import InterimPoster
from agent.lines import FinalLines, fit_for_storage
from agent.signals import (
    ClientFactory,
    SignalQueue,
    SignalSink,
    iso_from_epoch,
    new_signal_id,
    utc_now,
)
from agent.spool import Spool
from agent.stt_confidence import FinalTranscripts
from core.log import get_logger
from core.models import (
    SIGNAL_AGENT_JOINED,
    SIGNAL_PARTICIPANT_JOINED,
    SIGNAL_PARTICIPANT_LEFT,
    SIGNAL_SILENCE,
    SIGNAL_TRANSCRIPT,
    AgentJoined,
    AgentMetrics,
    ParticipantJoined,
    ParticipantLeft,
    SilenceSignal,
    TranscriptLine,
    call_workflow_id,
    customer_identity,
)

log = get_logger(__name__)


class CallBridge:
    """Turns one call's session events into signals for its workflow (and interims for the API).

    It is also the `SignalSink` the agent's tools use, so everything the call sends to its
    workflow goes through the same ordered queue.
    """

    def __init__(
        self,
        *,
        call_id: str,
        customer_identity: str,
        signals: SignalQueue | SignalSink,
        interim: InterimPoster | None = None,
        finals: FinalTranscripts | None = None,
        away_after_s: float = 30.0,
        lines: FinalLines | None = None,
        api: AgentApi | None = None,
    ) -> None:
        self.call_id = call_id
        self.customer_identity = customer_identity
        self._signals = signals
        self.lines = lines
        self._api = api  # closed with the bridge (the interim poster and the lines share it)
        self.interim = interim
        self.finals = finals or FinalTranscripts()
        self._away_after_s = away_after_s
        self.supervisor_active = False  # a supervisor has taken over: silence is theirs
        self._speech_started_at: float | None = None
        self._last_line_end: float = 0.0
        self._user_eou_delay: float | None = None
        self._user_stt_delay: float | None = None
        # Also handed each turn's figures (the worker's Prometheus histograms).
        self.on_metrics: Callable[[AgentMetrics], None] | None = None
        self._left_sent = False

    # SignalSink ----------------------------------------------------------------------------
    def send(self, name: str, payload: Any) -> None:
        """A final line is written ahead and sent to the API first, then signalled."""
        if name == SIGNAL_TRANSCRIPT and self.lines is not None:
            payload = fit_for_storage(payload)
            self.lines.add(payload)
        self._signals.send(name, payload)

    # lifecycle -----------------------------------------------------------------------------
    def attach(self, session: AgentSession) -> None:
        session.on("user_state_changed", self.on_user_state_changed)
        session.on("user_input_transcribed", self.on_user_input_transcribed)
        session.on("conversation_item_added", self.on_conversation_item_added)
        session.on("close", self.on_close)

    def watch_room(self, room: rtc.Room) -> None:
        """Report the customer's connection dropping and coming back (the session stays open
        through a drop: the workflow gives the customer a grace period to rejoin)."""
        room.on("participant_connected", self._on_participant_connected)
        room.on("participant_disconnected", self._on_participant_disconnected)

    def _on_participant_connected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.customer_identity:
            self.send(
                SIGNAL_PARTICIPANT_JOINED,
                ParticipantJoined(
                    new_signal_id("joined"), self.customer_identity, "customer", at=utc_now()
                ),  # fmt: skip
            )

    def _on_participant_disconnected(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.customer_identity:
            self.customer_left(utc_now())

    def customer_left(self, at: str) -> None:
        # A fresh id per drop: a customer may leave, rejoin and leave again.
        self.send(
            SIGNAL_PARTICIPANT_LEFT,
            ParticipantLeft(new_signal_id("left"), self.customer_identity, "customer", at=at),
        )

    def agent_joined(self, identity: str) -> None:
        """Call when the agent is in the room, before it speaks (the workflow starts egress)."""
        self.send(
            SIGNAL_AGENT_JOINED,
            AgentJoined(id=new_signal_id("joined"), identity=identity, at=utc_now()),
        )

    async def aclose(self, timeout: float, spool: Spool | None = None) -> bool:
        """Store every final line and flush every queued signal (the call's last line
        included) within `timeout` seconds. Lines not stored yet stay in their spool file for
        the next job; signals still undelivered go to `spool` for the next job to send."""
        if self.interim is not None:
            await self.interim.aclose()
        flushes: list[Awaitable[bool]] = []
        if self.lines is not None:
            flushes.append(self.lines.aclose(timeout))
        left = self._signals if isinstance(self._signals, SignalQueue) else None
        if left is not None:
            flushes.append(left.aclose(timeout))
        done = await asyncio.gather(*flushes)
        if left is not None and not done[-1] and spool is not None:
            # (a line also left in its own spool is signalled twice: the workflow keeps one)
            spool.save(left.workflow_id, self.call_id, left.undelivered())
        if self._api is not None:
            await self._api.aclose()
        return all(done)

    async def drain(self, timeout: float) -> bool:
        """Wait until every line sent so far is stored and every signal delivered."""
        waits: list[Awaitable[bool]] = []
        if self.lines is not None:
            waits.append(self.lines.drain(timeout))
        if isinstance(self._signals, SignalQueue):
            waits.append(self._signals.drain(timeout))
        return all(await asyncio.gather(*waits))

    # session events ------------------------------------------------------------------------
    def on_user_state_changed(self, ev: UserStateChangedEvent) -> None:
        if ev.new_state == "speaking":
            self._speech_started_at = ev.created_at
        elif ev.new_state == "away" and not self.supervisor_active:
            self.send(
                SIGNAL_SILENCE,
                SilenceSignal(
                    id=new_signal_id("silence"),
                    speaker="customer",
                    duration_s=self._away_after_s,
                    at=iso_from_epoch(ev.created_at),
                ),
            )

    def on_user_input_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        text = ev.transcript.strip()
        if not text:
            return
        if not ev.is_final:
            if self.interim is not None:
                self.interim.post(text)
            return
        confidence = self.finals.take(text)
        started = self._speech_started_at or ev.created_at
        started = min(max(started, self._last_line_end), ev.created_at)
        self._last_line_end = ev.created_at
        self.send(
            SIGNAL_TRANSCRIPT,
            TranscriptLine(
                id=new_signal_id("line"),
                speaker="customer",
                text=text,
                confidence=round(confidence, 4) if confidence is not None else 1.0,
                started_at=iso_from_epoch(started),
                ended_at=iso_from_epoch(ev.created_at),
            ),
        )

    def on_conversation_item_added(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, ChatMessage):
            return
        if item.role == "user":
            self._user_eou_delay = item.metrics.get("end_of_turn_delay")
            self._user_stt_delay = item.metrics.get("transcription_delay")
            return
        if item.role != "assistant":
            return
        text = (item.text_content or "").strip()
        if not text:
            return
        started = item.metrics.get("started_speaking_at") or item.created_at
        ended = item.metrics.get("stopped_speaking_at") or ev.created_at
        ttft = item.metrics.get("llm_node_ttft")
        ttfa = item.metrics.get("tts_node_ttfb")
        e2e = item.metrics.get("e2e_latency")
        eou, self._user_eou_delay = self._user_eou_delay, None
        stt_delay, self._user_stt_delay = self._user_stt_delay, None
        metrics = None
        if any(v is not None for v in (ttft, ttfa, eou, stt_delay, e2e)):
            # rides on the line: one signal per turn instead of two in the call's history
            metrics = AgentMetrics(
                id=f"metrics-{item.id}",
                end_of_utterance_delay_s=_round(eou),
                time_to_first_token_s=_round(ttft),
                time_to_first_audio_s=_round(ttfa),
                at=iso_from_epoch(ev.created_at),
                stt_delay_s=_round(stt_delay),
                end_to_end_latency_s=_round(e2e),
            )
            if self.on_metrics is not None:
                self.on_metrics(metrics)
        self.send(
            SIGNAL_TRANSCRIPT,
            TranscriptLine(
                id=f"line-{item.id}",
                speaker="assistant",
                text=text,
                confidence=1.0,
                started_at=iso_from_epoch(started),
                ended_at=iso_from_epoch(max(ended, started)),
                interrupted=item.interrupted,
                metrics=metrics,
            ),
        )

    def on_close(self, ev: CloseEvent) -> None:
        # The session emits its last lines before `close`, so they are queued ahead of this.
        if ev.reason == CloseReason.PARTICIPANT_DISCONNECTED and not self._left_sent:
            self._left_sent = True
            self.customer_left(iso_from_epoch(ev.created_at))
        log.info("session_closed", call_id=self.call_id, reason=ev.reason.value)


def bridge_for_call(
    call_id: str,
    connect: ClientFactory,
    *,
    api_url: str,
    token: Callable[[], str],
    spool_dir: str | Path,
    interim: bool = True,
    **queue_options: Any,
) -> CallBridge:
    """A call's bridge wired as a job wires it (signal queue started, final lines written ahead
    and stored through the API, interims to the API), for what speaks for an agent without a
    LiveKit session: devstack's stand-in, the benchmarks, the chaos tests' agent process.
    `token` is a roomAdmin token source for the call's room (`core.livekit.room_admin_token`)."""
    queue = SignalQueue(call_workflow_id(call_id), connect, call_id=call_id, **queue_options)
    queue.start()
    api = AgentApi(api_url, token, call_id=call_id)
    return CallBridge(
        call_id=call_id,
        customer_identity=customer_identity(call_id),
        signals=queue,
        interim=InterimPoster(api) if interim else None,
        lines=FinalLines(spool_dir, api),
        api=api,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
