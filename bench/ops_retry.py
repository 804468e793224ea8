"""How long ops wait for `recordings failed` and `recordings retry --all-failed` after an outage.

    uv run python -m bench.ops_retry [--n 200]

Starts the whole stack (bench/stack.py), makes `--n` recording pipelines fail (their egress
file answers 404 at the LiveKit emulator: non-retryable, so each fails at once), then times
`ops.recordings.find_failed` (the visibility query plus the latest run and the reason of each)
and `retry_many` (what `--all-failed` runs) at 4 and 16 replays at once. Each replay fails again
the same way, so both rounds replay all n.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass

import asyncpg
from temporalio.client import Client

from core import models as m
from ops.recordings import find_failed, retry_many
from workflows.recording import RecordingWorkflow


@dataclass
class RetryFigures:
    n: int
    find_s: float
    retry_s: dict[int, float]  # concurrency -> seconds for all n


async def _fail_pipelines(
    client: Client, dsn: str, livekit_url: str, task_queue: str, n: int
) -> list[str]:
    ids = [m.new_call_id() for _ in range(n)]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.executemany(
            "INSERT INTO calls (call_id, room_name, status, recording_status) "
            "VALUES ($1, $2, 'completed', 'uploading')",
            [(c, m.room_name_for(c)) for c in ids],
        )
    finally:
        await conn.close()
    gate = asyncio.Semaphore(16)

    async def one(call_id: str) -> None:
        async with gate:
            inp = m.RecordingInput(
                call_id, m.room_name_for(call_id), "EG_bench",
                f"{livekit_url}/no/such/{call_id}.ogg", 1000, 1.0, 1.0, retry_for_s=5,
            )  # fmt: skip
            await client.start_workflow(
                RecordingWorkflow.run,
                inp,
                id=m.recording_workflow_id(call_id),
                task_queue=task_queue,
            )

    await asyncio.gather(*(one(c) for c in ids))
    await _wait_failed(client, ids)
    return ids


async def _wait_failed(client: Client, ids: list[str], timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    want = set(ids)
    while not want <= {f.call_id for f in await find_failed(client)}:
        if time.monotonic() > deadline:
            raise TimeoutError("the pipelines did not all fail")
        await asyncio.sleep(1)


async def measure(
    client: Client, dsn: str, livekit_url: str, task_queue: str, n: int, concurrency: list[int]
) -> RetryFigures:
    ids = await _fail_pipelines(client, dsn, livekit_url, task_queue, n)
    t0 = time.perf_counter()
    failed = await find_failed(client)
    find_s = time.perf_counter() - t0
    assert set(ids) <= {f.call_id for f in failed}
    retry_s: dict[int, float] = {}
    for c in concurrency:
        t0 = time.perf_counter()
        outcomes = await retry_many(client, ids, on_done=lambda _: None, concurrency=c)
        retry_s[c] = time.perf_counter() - t0
        assert all(o.outcome == "started" for o in outcomes), outcomes[:3]
        await _wait_failed(client, ids)
    return RetryFigures(n, find_s, retry_s)


async def main(n: int) -> None:
    from bench.stack import running_stack
    from core.temporal import connect_temporal

    async with running_stack() as stack:
        s = stack.settings
        client = await connect_temporal(s)
        figures = await measure(
            client, s.database_url, s.LIVEKIT_URL, s.TEMPORAL_TASK_QUEUE, n, [4, 16]
        )
    print(f"failed pipelines: {figures.n}")
    print(f"recordings failed (find, with reasons): {figures.find_s:.2f} s")
    for c, secs in figures.retry_s.items():
        print(f"recordings retry --all-failed, {c:>2} at once: {secs:.2f} s ({n / secs:.0f}/s)")


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    asyncio.run(main(parser.parse_args().n))
    exit_process(0)
