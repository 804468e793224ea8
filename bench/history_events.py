"""History events a call costs: a 10-minute call with 150 final lines.

    uv run python -m bench.history_events [--lines 150]

Runs CallWorkflow on the time-skipping test server with the stand-in activities. The agent
joins, greets (recording starts), then customer and assistant alternate, one final line every
4 s of simulated time (each line therefore gets a workflow task of its own, as on a real call),
with per-turn latency metrics; then the customer hangs up and egress reports its file.

Three ways for the agent to send the same conversation:
- `line+metrics`: a `transcript` signal per line and an `agent_metrics` signal per turn;
- `line`: a `transcript` signal per line, the turn's metrics riding on the assistant's line;
- `turn`: one `transcript_batch` signal per turn (customer + assistant line, metrics attached).

Prints the call workflow's events in total and per line, and the marginal cost of a line
(events of the 150-line call minus those of the same call with no lines, divided by 150).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from temporalio.api.enums.v1 import EventType

from activities import types as act
from core import models as m
from testkit.harness import Harness, running_harness
from testkit.standins import egress_file, until
from testkit.temporal import start_time_skipping
from workflows.call import CallWorkflow

LINES = 150
GAP_S = 4.0  # 150 lines in 10 minutes
BY_TYPE = False  # --by-type: print each call's events by type


async def call_events(h: Harness, mode: str, lines: int) -> int:
    handle, _ = await h.start()
    call_id = handle.id.removeprefix("call-")
    await h.agent_joins(handle)
    await h.say(
        handle, "assistant", "Hi, this is Sarah from CME Auto Sales; this call is recorded."
    )
    await until(lambda: h.fakes.count(act.START_EGRESS) >= 1)
    turns = lines // 2
    for t in range(turns):
        customer = m.TranscriptLine(f"c{t}", "customer", f"question number {t} about a car")
        metrics = m.AgentMetrics(f"m{t}", 0.35, 0.42, 0.81)
        assistant = m.TranscriptLine(f"a{t}", "assistant", f"answer number {t}")
        if mode == "turn":
            assistant.metrics = metrics
            await h.env.sleep(2 * GAP_S)
            await handle.signal(
                CallWorkflow.transcript_batch, m.TranscriptBatch(f"b{t}", [customer, assistant])
            )
            continue
        await h.env.sleep(GAP_S)
        await handle.signal(CallWorkflow.transcript, customer)
        await h.env.sleep(GAP_S)
        if mode == "line":
            assistant.metrics = metrics
        await handle.signal(CallWorkflow.transcript, assistant)
        if mode == "line+metrics":
            await handle.signal(CallWorkflow.agent_metrics, metrics)
    if not turns:
        await h.env.sleep(GAP_S * lines)
    await h.customer_leaves(handle)
    await until(lambda: h.fakes.count(act.STOP_EGRESS) >= 1)
    await handle.signal(
        CallWorkflow.egress_ended,
        m.EgressUpdate("ee", "EG_1", "EGRESS_COMPLETE", file=egress_file(call_id, 600)),
    )
    result = await handle.result()
    assert result.line_count == 2 * turns + 1, result
    history = await handle.fetch_history()
    if BY_TYPE:
        kinds = Counter(
            EventType.Name(e.event_type).removeprefix("EVENT_TYPE_") for e in history.events
        )
        print(f"  {mode} ({lines} lines): " + ", ".join(f"{k} {n}" for k, n in kinds.most_common()))
    return len(history.events)


async def measured(mode: str, lines: int) -> int:
    """One call on a time-skipping server of its own: the test server stops skipping time once
    a call completed before its abandoned recording pipeline (tests/fixtures/services.py)."""
    env = await start_time_skipping()
    try:
        async with running_harness(env) as h:
            return await call_events(h, mode, lines)
    finally:
        await env.shutdown()


async def main(lines: int = LINES) -> None:
    baseline = await measured("line", 0)
    print(f"call without lines (greeting only): {baseline} history events")
    print(f"{'mode':<14}{'events/call':>12}{'events/line':>13}{'marginal/line':>15}{'s':>6}")
    for mode in ("line+metrics", "line", "turn"):
        began = time.monotonic()
        events = await measured(mode, lines)
        per_line = events / lines
        marginal = (events - baseline) / lines
        took = time.monotonic() - began
        print(f"{mode:<14}{events:>12}{per_line:>13.2f}{marginal:>15.2f}{took:>6.1f}")


if __name__ == "__main__":
    import argparse

    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=LINES, help="final lines per call (even)")
    parser.add_argument("--by-type", action="store_true", help="print each call's events by type")
    args = parser.parse_args()
    BY_TYPE = args.by_type
    asyncio.run(main(args.lines))
    exit_process(0)
