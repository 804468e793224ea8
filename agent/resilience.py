"""A provider failure never leaves the customer in silence or hangs up on them.

STT, LLM and TTS each sit behind livekit-agents' `FallbackAdapter` (agent/plugins.py), which
moves to a secondary provider when one is configured. A failure that still remains reaches
the session as an `error` event with `recoverable=False`; by default the session closes after
`max_unrecoverable_errors` of those in a row (the agent leaves, the customer hears nothing).

`ProviderGuard` replaces that ending:
- the session is built with a practically unlimited `max_unrecoverable_errors`
  (`session_connect_options()`), so an error never closes it;
- on each unrecoverable error it plays a pre-rendered apology (`audio/apology.ogg`, spoken
  from the file, so it plays with TTS down) at most once per `apology_every_s`;
- it raises one `handoff_requested` alert for the call (a person must take over), and
  keeps the customer on the line, connected, for that person.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

from livekit import rtc
from livekit.agents import AgentSession, ErrorEvent, utils
from livekit.agents.voice.agent_session import SessionConnectOptions

from agent.signals import SignalSink, new_signal_id, utc_now
from core.log import get_logger
from core.models import SIGNAL_AGENT_ALERT, AgentAlert, EventKind

log = get_logger(__name__)

APOLOGY_FILE = Path(__file__).parent / "audio" / "apology.ogg"
# What the file says (espeak-ng; see agent/README.md): also the line in the transcript.
APOLOGY_TEXT = (
    "I'm sorry, I'm having a technical problem on my side. "
    "I have asked for a colleague. Please stay on the line while I find out if one is free."
)
# Errors never close the session: the guard keeps the customer on the line instead.
NEVER_CLOSE = 1_000_000


def session_connect_options() -> SessionConnectOptions:
    return SessionConnectOptions(max_unrecoverable_errors=NEVER_CLOSE)


async def apology_audio(path: Path = APOLOGY_FILE) -> AsyncIterator[rtc.AudioFrame]:
    """The apology's frames, decoded from the shipped file (no TTS involved)."""
    async for frame in utils.audio.audio_frames_from_file(str(path), sample_rate=24000):
        yield frame


class ProviderGuard:
    """Turns an unrecoverable STT/LLM/TTS error into an apology, a hand-off and a held line."""

    def __init__(
        self,
        session: AgentSession,
        signals: SignalSink,
        *,
        call_id: str,
        apology_every_s: float = 30.0,
        apology_file: Path = APOLOGY_FILE,
    ) -> None:
        self._session = session
        self._signals = signals
        self.call_id = call_id
        self._every = apology_every_s
        self._file = apology_file
        self._last_apology = float("-inf")
        self.handoff_sent = False
        self.failures = 0
        self.apologies = 0

    def attach(self) -> None:
        self._session.on("error", self.on_error)

    def on_error(self, ev: ErrorEvent) -> None:
        error = ev.error
        if getattr(error, "recoverable", True):
            return  # the plugin retries or the adapter falls back: nothing to do yet
        self.failures += 1
        kind = str(getattr(error, "type", "provider_error"))
        log.error("provider_failed", call_id=self.call_id, kind=kind,
                  error=type(getattr(error, "error", error)).__name__, failures=self.failures)  # fmt: skip
        self._apologise()
        if not self.handoff_sent:
            self.handoff_sent = True
            self._signals.send(
                SIGNAL_AGENT_ALERT,
                AgentAlert(
                    id=new_signal_id("alert"),
                    kind=EventKind.HANDOFF_REQUESTED.value,
                    detail=f"{kind}: the voice agent's provider failed; a person must take over "
                    "(the customer is kept on the line)",
                    at=utc_now(),
                ),
            )

    def _apologise(self) -> None:
        now = time.monotonic()
        if now - self._last_apology < self._every:
            return
        self._last_apology = now
        try:
            self._session.say(
                APOLOGY_TEXT,
                audio=apology_audio(self._file),
                allow_interruptions=False,
                add_to_chat_ctx=True,
            )
            self.apologies += 1
        except RuntimeError as exc:  # the session is closing: nothing can be played any more
            log.warning("apology_not_played", call_id=self.call_id, error=str(exc))
