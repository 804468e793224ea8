"""A simulated agent as a process of its own, for the chaos test that kills it mid-call.

    python -m tests.chaos.agent_process --spool DIR --from K --lines N CALL_ID...

Starts as an agent job does: it claims the spool files a dead agent process left in DIR and
sends their lines (to the API, and to the workflow again). Then it speaks lines K..N-1 of each
call through the agent's own bridge (`agent.bridge.bridge_for_call`: written ahead to DIR,
stored through the API, signalled), one every 0.5-1 s, printing `said <call> <k> <id>` once the
line is on disk and `stored <call> <k> <id>` once the API and Temporal have it. Settings from
DEVSTACK_DIR/env like every process of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import random
from pathlib import Path

from agent.api_client import AgentApi
from agent.lines import send_orphans, signal_to_workflow
from agent.signals import ClientFactory, new_signal_id
from bench.calls import agent_bridge
from core import models as m
from core.livekit import room_admin_token
from core.settings import Settings, settings_or_exit
from core.temporal import connect_temporal, exit_process


def api_url(settings: Settings) -> str:
    return f"http://{settings.API_HOST}:{settings.API_PORT}"


async def speak(settings: Settings, spool: Path, call_id: str, first: int, lines: int,
                connect: ClientFactory) -> None:  # fmt: skip
    bridge = agent_bridge(settings, api_url(settings), call_id, connect, spool)
    rnd = random.Random()
    for k in range(first, lines):
        await asyncio.sleep(rnd.uniform(0.5, 1.0))
        speaker = "assistant" if k % 2 == 0 else "customer"
        line = m.TranscriptLine(id=new_signal_id("line"), speaker=speaker,
                                text=f"line {k} of {call_id}")  # fmt: skip
        bridge.send(m.SIGNAL_TRANSCRIPT, line)
        print(f"said {call_id} {k} {line.id}", flush=True)
        await bridge.drain(60)
        print(f"stored {call_id} {k} {line.id}", flush=True)
    await bridge.aclose(10)


async def main(spool: Path, first: int, lines: int, calls: list[str]) -> None:
    settings = settings_or_exit()
    client = await connect_temporal(settings)

    async def shared():  # type: ignore[no-untyped-def]
        return client

    def api_for(call_id: str) -> AgentApi:
        token = room_admin_token(settings.LIVEKIT_API_KEY.get_secret_value(),
                                 settings.LIVEKIT_API_SECRET.get_secret_value(),
                                 room=m.room_name_for(call_id), identity="agent-chaos")  # fmt: skip
        return AgentApi(api_url(settings), token, call_id=call_id)

    resent = await send_orphans(spool, api_for, signal_to_workflow(shared, timeout_s=30))
    print(f"claimed {resent}", flush=True)
    await asyncio.gather(*(speak(settings, spool, c, first, lines, shared) for c in calls))
    print("done", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--spool", type=Path, required=True)
    p.add_argument("--from", dest="first", type=int, default=0)
    p.add_argument("--lines", type=int, default=10)
    p.add_argument("calls", nargs="+")
    a = p.parse_args()
    asyncio.run(main(a.spool, a.first, a.lines, a.calls))
    exit_process(0)
