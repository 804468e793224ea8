"""`POST /api/calls` latency against a bare update-with-start round trip, same stack, same run.

    uv run python -m bench.api_call_latency [--n 100]

Starts the whole stack (bench/stack.py), then alternates: one call through the API
(HTTP + validation + rate limit + Temporal update-with-start + JSON), one call straight through
the Temporal client (`workflows.ops.start_call`, what the API calls). Both run the same
workflow and activities (room creation at the LiveKit emulator, token minting), so the ratio is
what the API adds. Prints p50/p99 of each and the ratios (target: at most 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import time

import aiohttp

from bench.stack import percentile, running_stack
from core.models import CallConfig, new_call_id
from core.temporal import connect_temporal
from workflows import ops


async def main(n: int, warmup: int) -> None:
    async with running_stack(
        RATE_LIMIT_PER_MINUTE="1000000",
        MAX_WAITING_CALLS="1000000",  # one address starts every call
        MAX_CALLS_PER_CLIENT="1000000",
        AGENT_JOIN_TIMEOUT_S="3600",
    ) as stack:
        client = await connect_temporal(stack.settings)
        config = CallConfig.from_settings(stack.settings)
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

            async def bare() -> float:
                t0 = time.perf_counter()
                grant = await ops.start_call(
                    client,
                    new_call_id(),
                    "Bench Customer",
                    config,
                    task_queue=stack.settings.TEMPORAL_TASK_QUEUE,
                )
                assert grant.token
                return (time.perf_counter() - t0) * 1000

            for _ in range(warmup):
                await via_api()
                await bare()
            for _ in range(n):
                api_ms.append(await via_api())
                bare_ms.append(await bare())

    a50, a99 = percentile(api_ms, 50), percentile(api_ms, 99)
    b50, b99 = percentile(bare_ms, 50), percentile(bare_ms, 99)
    print(f"calls per side: {n} (after {warmup} warm-up each), sequential, alternating")
    print(f"POST /api/calls        p50 {a50:7.1f} ms   p99 {a99:7.1f} ms")
    print(f"bare update-with-start p50 {b50:7.1f} ms   p99 {b99:7.1f} ms")
    print(
        f"ratio                  p50 {a50 / b50:7.2f}      p99 {a99 / b99:7.2f}   (target <= 1.5)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.warmup))
