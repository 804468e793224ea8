"""`POST /api/calls` latency against the orchestration limit, same server, same run.

    uv run python -m bench.api_call_latency [--n 100 --warmup 10]

Starts the whole stack (bench/stack.py) and the bare baseline's worker (bench/bare.py) on the
same Temporal server, then alternates, sequentially: one call through the API (HTTP,
validation, rate limit, update-with-start of CallWorkflow whose `issue_token` creates the room
at the LiveKit emulator and mints the token, JSON), and one bare update-with-start of a workflow
whose `issue_token` update returns at once. The ratio is what a call's set-up costs above the
least an update-with-start can cost on this server. Targets: p50 <= 1.5x, p99 <= 2x.
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.bare import BARE_TASK_QUEUE, BARE_WORKFLOW
from bench.stack import bare_worker, percentile, running_stack
from core import models as m
from core.temporal import connect_temporal


async def bare_setup(client: Client) -> float:
    """One bare update-with-start round trip, in ms."""
    cid = m.new_call_id()
    t0 = time.perf_counter()
    start = WithStartWorkflowOperation(
        BARE_WORKFLOW,
        cid,
        id=f"bare-{cid}",
        task_queue=BARE_TASK_QUEUE,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
    )
    grant = await client.execute_update_with_start_workflow(
        m.UPDATE_ISSUE_TOKEN,
        m.IssueTokenRequest(customer_name="Bench Customer"),
        start_workflow_operation=start,
        result_type=m.TokenGrant,
    )
    assert grant.call_id == cid
    return (time.perf_counter() - t0) * 1000


async def main(n: int, warmup: int) -> dict[str, float]:
    async with (
        running_stack(
            RATE_LIMIT_PER_MINUTE="1000000",
            MAX_WAITING_CALLS="1000000",  # one address starts every call
            MAX_CALLS_PER_CLIENT="1000000",
            MAX_LIVE_AI_CALLS="1000000",
            AGENT_JOIN_TIMEOUT_S="3600",
        ) as stack,
        bare_worker(stack, BARE_TASK_QUEUE),
    ):
        client = await connect_temporal(stack.settings)
        api_ms: list[float] = []
        bare_ms: list[float] = []
        async with aiohttp.ClientSession() as http:

            async def via_api() -> float:
                t0 = time.perf_counter()
                async with http.post(
                    f"{stack.api_url}/api/calls", json={"customer_name": "Bench Customer"}
                ) as r:
                    body = await r.json()
                    assert r.status == 201, body
                return (time.perf_counter() - t0) * 1000

            for _ in range(warmup):
                await via_api()
                await bare_setup(client)
            for _ in range(n):
                api_ms.append(await via_api())
                bare_ms.append(await bare_setup(client))

    a50, a99 = percentile(api_ms, 50), percentile(api_ms, 99)
    b50, b99 = percentile(bare_ms, 50), percentile(bare_ms, 99)
    print(f"calls per side: {n} (after {warmup} warm-up each), sequential, alternating")
    print(f"POST /api/calls                 p50 {a50:7.1f} ms   p99 {a99:7.1f} ms")
    print(f"bare update-with-start (no-op)  p50 {b50:7.1f} ms   p99 {b99:7.1f} ms")
    print(
        f"ratio                           p50 {a50 / b50:7.2f}      p99 {a99 / b99:7.2f}"
        "   (targets p50 <= 1.5, p99 <= 2)"
    )
    return {"api_p50": a50, "api_p99": a99, "bare_p50": b50, "bare_p99": b99}


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.warmup))
    exit_process(0)
