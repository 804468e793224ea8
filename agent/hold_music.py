"""Hold music while a caller waits for a colleague from the desk.

The clip is livekit-agents' own `BuiltinAudioClip.HOLD_MUSIC` (`hold_music.ogg`, shipped inside
the livekit-agents wheel: nothing is downloaded), played in a loop, quietly, by the framework's
`BackgroundAudioPlayer`, which publishes it as a track of its own beside Sarah's voice. It
starts once Sarah has told the caller their place in line (a desk `position` notice,
agent/desk.py) and stops as soon as the caller speaks (Sarah keeps helping them), the desk
settles the hand-off (someone joins, or no one can come), or a person takes the call. The next
`position` notice starts it again.

The media itself cannot be heard here (no WebRTC media on these machines): the tests check
when the player is asked to play and to stop, and that the clip is in the wheel
(tests/agent/test_hold_music.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from livekit import rtc
from livekit.agents import AgentSession
from livekit.agents.voice.background_audio import (
    AudioConfig,
    BackgroundAudioPlayer,
    BuiltinAudioClip,
)

from core.log import get_logger

log = get_logger(__name__)

HOLD_VOLUME = 0.3  # under Sarah's voice, should she speak over it
FADE_S = 1.0


class Player(Protocol):
    """What HoldMusic needs of livekit-agents' `BackgroundAudioPlayer`."""

    async def start(self, *, room: rtc.Room, agent_session: Any = ...) -> None: ...

    def play(self, audio: Any, *, loop: bool = False) -> Any: ...

    async def aclose(self) -> None: ...


class HoldMusic:
    """Plays the hold clip while the call waits at the desk (one per call's session)."""

    def __init__(
        self,
        room: rtc.Room,
        session: AgentSession,
        *,
        call_id: str,
        player: Callable[[], Player] = BackgroundAudioPlayer,
    ) -> None:
        self._room = room
        self._session = session
        self._new_player = player
        self._player: Player | None = None
        self._handle: Any = None
        self._lock = asyncio.Lock()
        self.call_id = call_id
        self.wanted = False  # the call waits: music unless the caller is talking

    def attach(self) -> HoldMusic:
        self._session.on("user_state_changed", self._on_user_state)
        self._session.on("close", lambda _ev: asyncio.ensure_future(self.aclose()))
        return self

    @property
    def playing(self) -> bool:
        return self._handle is not None

    async def start(self) -> None:
        """Play the clip in a loop (once: a second call while it plays changes nothing)."""
        self.wanted = True
        async with self._lock:
            if self._handle is not None or not self.wanted:
                return
            if self._player is None:
                player = self._new_player()
                await player.start(room=self._room, agent_session=self._session)
                self._player = player
            if not self.wanted:  # stopped while the player was starting
                return
            clip = AudioConfig(BuiltinAudioClip.HOLD_MUSIC, volume=HOLD_VOLUME,
                               fade_in=FADE_S, fade_out=FADE_S)  # fmt: skip
            self._handle = self._player.play(clip, loop=True)
        log.info("hold_music_started", call_id=self.call_id)

    def stop(self, why: str) -> None:
        """Stop it (fading out); nothing when it is not playing."""
        self.wanted = False
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.stop()
            log.info("hold_music_stopped", call_id=self.call_id, why=why)

    async def aclose(self) -> None:
        self.stop("closed")
        player, self._player = self._player, None
        if player is not None:
            await player.aclose()

    def _on_user_state(self, ev: Any) -> None:
        if getattr(ev, "new_state", None) == "speaking":
            self.stop("caller_speaks")
