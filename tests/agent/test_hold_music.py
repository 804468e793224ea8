"""Hold music while the caller waits at the desk: livekit-agents' own clip, asked to play once
Sarah has told the caller their place in line and to stop when the caller speaks, when the
desk settles the hand-off, or when a person takes the call. The player is livekit-agents'
`BackgroundAudioPlayer` in the product; here a recording stand-in at its interface (it needs a
room to publish its track, and no media flows on these machines), on a real AgentSession."""

from __future__ import annotations

import json
from typing import Any

from livekit import rtc
from livekit.agents import UserStateChangedEvent
from livekit.agents.voice.background_audio import AudioConfig, BuiltinAudioClip

from agent.hold_music import HoldMusic
from agent.supervisor import SupervisorChannel
from tests.agent.test_supervisor import call, settle  # noqa: F401  (the fixture)


class RecordingPlayer:
    """BackgroundAudioPlayer's interface, recording what it is asked."""

    def __init__(self) -> None:
        self.started = 0
        self.played: list[tuple[AudioConfig, bool]] = []
        self.handles: list[Handle] = []

    async def start(self, *, room: Any, agent_session: Any = None) -> None:
        self.started += 1

    def play(self, audio: AudioConfig, *, loop: bool = False) -> Handle:
        self.played.append((audio, loop))
        self.handles.append(Handle())
        return self.handles[-1]

    async def aclose(self) -> None:
        pass


class Handle:
    def __init__(self) -> None:
        self.stopped = False

    def stop(self) -> None:
        self.stopped = True


def test_the_clip_is_in_the_livekit_agents_wheel() -> None:
    with open(BuiltinAudioClip.HOLD_MUSIC.path(), "rb") as clip:
        assert clip.read(4) == b"OggS"  # nothing to download at run time


def notice(channel: SupervisorChannel, kind: str, **more: Any) -> None:
    channel._on_data(rtc.DataPacket(  # type: ignore[arg-type]
        data=json.dumps({"call_id": "c", "notice": kind, **more}).encode(), kind=1,
        participant=None, topic="desk.notice"))  # fmt: skip


async def test_hold_music_plays_while_the_caller_waits_and_stops_when_anything_happens(
    call: Any,  # noqa: F811
) -> None:
    session, channel, _, _ = call
    said: list[str] = []
    session.say = lambda text, **_: said.append(text)  # type: ignore[method-assign]
    player = RecordingPlayer()
    hold = HoldMusic(None, session, call_id="c", player=lambda: player).attach()  # type: ignore[arg-type]
    channel._hold = hold
    notice(channel, "position", position=2, estimate_s=130.0)
    await settle(channel)
    assert said and "number 2 in line" in said[-1]
    assert player.started == 1 and len(player.played) == 1
    clip, loop = player.played[0]
    assert clip.source == BuiltinAudioClip.HOLD_MUSIC and loop and clip.volume < 1.0
    notice(channel, "position", position=1, estimate_s=40.0)  # a new estimate: still one loop
    await settle(channel)
    assert len(player.played) == 1 and not player.handles[0].stopped
    # The caller speaks: Sarah keeps helping, the music stops.
    session.emit("user_state_changed",
                 UserStateChangedEvent(old_state="listening", new_state="speaking"))  # fmt: skip
    assert player.handles[0].stopped and not hold.playing
    notice(channel, "position", position=1, estimate_s=20.0)  # told again: it plays again
    await settle(channel)
    assert len(player.played) == 2 and player.started == 1  # one player, one track
    notice(channel, "no_rep")  # the desk settled: no one can come
    assert player.handles[1].stopped
    notice(channel, "position", position=1, estimate_s=20.0)
    await settle(channel)
    notice(channel, "joining", rep_name="Ann")
    assert player.handles[2].stopped and not hold.playing


async def test_a_person_taking_the_call_stops_the_music(call: Any) -> None:  # noqa: F811
    session, channel, _, _ = call
    session.say = lambda text, **_: None  # type: ignore[method-assign]
    player = RecordingPlayer()
    channel._hold = HoldMusic(None, session, call_id="c", player=lambda: player).attach()  # type: ignore[arg-type]
    notice(channel, "position", position=1, estimate_s=None)
    await settle(channel)
    assert len(player.played) == 1
    channel._set_taken_over(True)
    assert player.handles[0].stopped
    notice(channel, "position", position=1, estimate_s=None)  # said to no one: a person has it
    await settle(channel)
    assert len(player.played) == 1
