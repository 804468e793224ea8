"""Final transcript line signalled -> received on a dashboard WebSocket, with 200 live calls.

    uv run python -m bench.ws_latency [--calls 200 --rounds 5 --period 5.0]

Starts the whole stack (bench/stack.py), creates `--calls` calls through the API, waits until
the emulator's agent has joined each (the call is `in_progress`), opens one WebSocket per call,
then signals a final line to every call once per `--period` seconds, spread evenly, for
`--rounds` rounds (calls*rounds samples, calls/period lines per second). Latency is measured
from just before the `transcript` signal to the WebSocket message carrying that line (path:
signal -> workflow -> PostgreSQL + NOTIFY -> API LISTEN -> WebSocket). Target: p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime

import aiohttp

from bench.stack import percentile, running_stack
from core.models import SIGNAL_TRANSCRIPT, TranscriptLine, call_workflow_id
from core.temporal import connect_temporal


async def main(calls: int, rounds: int, period: float) -> None:
    async with running_stack(
        RATE_LIMIT_PER_MINUTE="1000000",
        MAX_WAITING_CALLS="1000000",  # one address starts every call
        MAX_CALLS_PER_CLIENT="1000000",
        AGENT_JOIN_TIMEOUT_S="3600",
        SILENCE_ALERT_S="3600",
        RECORDING_CONSENT="off",
    ) as stack:
        client = await connect_temporal(stack.settings)
        auth = {"Authorization": f"Bearer {stack.admin_token}"}
        sent: dict[str, tuple[float, float]] = {}  # text -> (perf counter, wall clock)
        latencies: list[float] = []
        to_workflow: list[float] = []  # signal -> the workflow's timestamp on the event
        from_workflow: list[float] = []  # that timestamp -> WebSocket
        done = asyncio.Event()
        total = calls * rounds
        # One WebSocket per call: lift aiohttp's default cap of 100 connections per session.
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            ids: list[str] = []
            for i in range(calls):
                async with http.post(
                    f"{stack.api_url}/api/calls", json={"customer_name": f"Bench {i}"}
                ) as r:
                    assert r.status == 201, await r.text()
                    ids.append((await r.json())["call_id"])
            await _wait_in_progress(http, stack.api_url, auth, ids)

            async def watch(call_id: str, ready: asyncio.Event) -> None:
                async with http.ws_connect(
                    f"{stack.api_url}/ws/calls/{call_id}", headers=auth, heartbeat=30
                ) as ws:
                    ready.set()
                    async for msg in ws:
                        m = json.loads(msg.data)
                        if m.get("type") != "final_transcript":
                            continue
                        t = sent.pop(m["data"].get("text", ""), None)
                        if t is not None:
                            latencies.append((time.perf_counter() - t[0]) * 1000)
                            at = datetime.fromisoformat(m["at"]).timestamp()
                            to_workflow.append((at - t[1]) * 1000)
                            from_workflow.append((time.time() - at) * 1000)
                            if len(latencies) >= total:
                                done.set()

            readies = [asyncio.Event() for _ in ids]
            watchers = [asyncio.create_task(watch(c, e)) for c, e in zip(ids, readies, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 60)
            await asyncio.sleep(1.0)  # snapshots and history delivered

            async def say(call_id: str, r: int) -> None:
                text = f"bench line {r} for {call_id}"
                line = TranscriptLine(id=f"bench-{call_id}-{r}", speaker="customer", text=text)
                sent[text] = (time.perf_counter(), time.time())
                await client.get_workflow_handle(call_workflow_id(call_id)).signal(
                    SIGNAL_TRANSCRIPT, line
                )

            gap = period / len(ids)
            started = time.perf_counter()
            tasks = []
            for round_no in range(rounds):
                for i, call_id in enumerate(ids):
                    due = started + round_no * period + i * gap
                    await asyncio.sleep(max(0.0, due - time.perf_counter()))
                    tasks.append(asyncio.create_task(say(call_id, round_no)))
            await asyncio.gather(*tasks)
            try:
                await asyncio.wait_for(done.wait(), 60)
            except TimeoutError:
                print(f"warning: {total - len(latencies)} lines never arrived within 60 s")
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    print(
        f"live calls: {calls}; lines: {len(latencies)} of {total}; rate {calls / period:.0f} lines/s"
    )
    print(
        f"signal -> WebSocket  p50 {percentile(latencies, 50):6.1f} ms   "
        f"p99 {percentile(latencies, 99):6.1f} ms   max {max(latencies):6.1f} ms   (target p99 < 250)"
    )
    print(
        f"  of which signal -> workflow event time  p50 {percentile(to_workflow, 50):6.1f} ms   "
        f"p99 {percentile(to_workflow, 99):6.1f} ms"
    )
    print(
        f"  of which event time -> WebSocket        p50 {percentile(from_workflow, 50):6.1f} ms   "
        f"p99 {percentile(from_workflow, 99):6.1f} ms"
    )


async def _wait_in_progress(
    http: aiohttp.ClientSession, url: str, auth: dict[str, str], ids: list[str]
) -> None:
    pending = set(ids)
    deadline = time.monotonic() + 120
    while pending and time.monotonic() < deadline:
        async with http.get(f"{url}/api/calls?status=active&limit=200", headers=auth) as r:
            body = await r.json()
        cursor_calls = body["calls"]
        for c in cursor_calls:
            if c["status"] == "in_progress":
                pending.discard(c["call_id"])
        if len(cursor_calls) == 200 and pending:
            for call_id in list(pending):
                async with http.get(f"{url}/api/calls/{call_id}", headers=auth) as r:
                    if (await r.json()).get("status") == "in_progress":
                        pending.discard(call_id)
        if pending:
            await asyncio.sleep(0.5)
    if pending:
        raise RuntimeError(f"{len(pending)} calls never got an agent")


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--period", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.calls, args.rounds, args.period))
    exit_process(0)
