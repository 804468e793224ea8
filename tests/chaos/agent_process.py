"""A simulated agent as a process of its own, for the chaos test that kills it mid-call.

    python -m tests.chaos.agent_process --from K --lines N CALL_ID...

Speaks lines K..N-1 of each call through the agent's own `SignalQueue` (one every 0.5-1 s),
printing `said <call> <k> <id>` when it has a line and `delivered <call> <k> <id>` once
Temporal accepted it; settings from DEVSTACK_DIR/env like every process of the product.
"""

from __future__ import annotations

import argparse
import asyncio
import random

from agent.signals import SignalQueue, new_signal_id
from core import models as m
from core.settings import settings_or_exit
from core.temporal import connect_temporal, exit_process


async def speak(call_id: str, first: int, lines: int, client_factory) -> None:  # type: ignore[no-untyped-def]
    queue = SignalQueue(m.call_workflow_id(call_id), client_factory, call_id=call_id)
    queue.start()
    rnd = random.Random()
    for k in range(first, lines):
        await asyncio.sleep(rnd.uniform(0.5, 1.0))
        speaker = "assistant" if k % 2 == 0 else "customer"
        line = m.TranscriptLine(id=new_signal_id("line"), speaker=speaker,
                                text=f"line {k} of {call_id}")  # fmt: skip
        print(f"said {call_id} {k} {line.id}", flush=True)
        queue.send(m.SIGNAL_TRANSCRIPT, line)
        await queue.drain(60)
        print(f"delivered {call_id} {k} {line.id}", flush=True)
    await queue.aclose(10)


async def main(first: int, lines: int, calls: list[str]) -> None:
    client = await connect_temporal(settings_or_exit())

    async def shared():  # type: ignore[no-untyped-def]
        return client

    await asyncio.gather(*(speak(c, first, lines, shared) for c in calls))
    print("done", flush=True)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--from", dest="first", type=int, default=0)
    p.add_argument("--lines", type=int, default=10)
    p.add_argument("calls", nargs="+")
    a = p.parse_args()
    asyncio.run(main(a.first, a.lines, a.calls))
    exit_process(0)
