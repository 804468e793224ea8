"""A LiveKit server emulator for the devstack and the tests (issue #3).

It speaks the part of LiveKit's server API the product calls -- Twirp RoomService, Egress,
AgentDispatchService and SIP, protobuf or JSON -- and checks every request's JWT and grants as
livekit-server does, so `livekit.api.LiveKitAPI` cannot tell it from a real server for those
calls. Behind its SIP stands a pretend phone network: phones call in through the control API
and answer (or not) the calls LiveKit places to them (sip.py). It sends webhooks signed as LiveKit signs them, writes a real Ogg/Opus recording for
each egress and serves it over HTTP, joins a stand-in agent when an agent is dispatched, and
can be told to fail (see faults.py). There is no WebRTC: media needs a real LiveKit.

State lives in memory only: stopping or restarting the emulator ends every room, egress and
dispatch without webhooks, and deletes recordings kept in its temporary directory.

    handle = await start_emulator(EmulatorConfig(api_key="devkey", api_secret="...", port=0))
    ...  # LIVEKIT_URL = handle.url; control API at handle.control_url
    await handle.stop()

`python -m devstack.livekit --help` runs it as a process. README.md has the control API.
"""

from .config import ConfigError, EmulatorConfig
from .server import RunningEmulator, start_emulator

__all__ = ["ConfigError", "EmulatorConfig", "RunningEmulator", "start_emulator"]
