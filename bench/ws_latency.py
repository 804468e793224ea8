"""Final transcript line said -> received on a dashboard WebSocket, with 200 live calls.

    uv run python -m bench.ws_latency [--calls 200 --rounds 5 --period 5.0]

Starts the whole stack (bench/stack.py), creates `--calls` calls through the API, waits until
the emulator's agent has joined each (the call is `in_progress`), opens one WebSocket per call,
then says a final line in every call once per `--period` seconds, spread evenly, for `--rounds`
rounds (calls*rounds samples, calls/period lines per second), the way the agent does
(`agent.bridge.bridge_for_call`: written ahead to its spool, stored through the API, signalled
to the workflow). Every other round's line asks for a manager (a keyword alert). Latency is
measured from just before `CallBridge.send` to the WebSocket message carrying the line (path:
API store + NOTIFY -> API LISTEN -> WebSocket), and to the one carrying its keyword alert.
Target: p99 < 250 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from datetime import datetime

import aiohttp
from temporalio.client import Client

from bench.calls import agent_bridge
from bench.stack import percentile, running_stack
from core.models import SIGNAL_TRANSCRIPT, TranscriptLine
from core.temporal import connect_temporal


async def main(calls: int, rounds: int, period: float) -> None:
    async with running_stack(
        RATE_LIMIT_PER_MINUTE="1000000",
        MAX_WAITING_CALLS="1000000",  # one address starts every call
        MAX_CALLS_PER_CLIENT="1000000",
        MAX_LIVE_AI_CALLS="1000000",
        AGENT_JOIN_TIMEOUT_S="3600",
        SILENCE_ALERT_S="3600",
        RECORDING_CONSENT="off",
    ) as stack:
        client = await connect_temporal(stack.settings)
        auth = {"Authorization": f"Bearer {stack.admin_token}"}
        sent: dict[str, tuple[float, float]] = {}  # text -> (perf counter, wall clock)
        alerts: dict[str, float] = {}  # line id -> perf counter, for lines naming a keyword
        latencies: list[float] = []
        alert_ms: list[float] = []
        to_store: list[float] = []  # said -> the event's time (the API's store)
        from_store: list[float] = []  # that time -> WebSocket
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
                        if m.get("type") == "keyword_alert":
                            said = alerts.pop(m["data"].get("line_id", ""), None)
                            if said is not None:
                                alert_ms.append((time.perf_counter() - said) * 1000)
                            continue
                        if m.get("type") != "final_transcript":
                            continue
                        t = sent.pop(m["data"].get("text", ""), None)
                        if t is not None:
                            latencies.append((time.perf_counter() - t[0]) * 1000)
                            at = datetime.fromisoformat(m["at"]).timestamp()
                            to_store.append((at - t[1]) * 1000)
                            from_store.append((time.time() - at) * 1000)
                            if len(latencies) >= total:
                                done.set()

            readies = [asyncio.Event() for _ in ids]
            watchers = [asyncio.create_task(watch(c, e)) for c, e in zip(ids, readies, strict=True)]
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 60)
            await asyncio.sleep(1.0)  # snapshots and history delivered

            async def shared() -> Client:
                return client

            spool = stack.directory / "agent-spool"
            bridges = {
                c: agent_bridge(stack.settings, stack.api_url, c, shared, spool) for c in ids
            }

            async def say(call_id: str, r: int) -> None:
                text = f"bench line {r} for {call_id}" + (", get me a manager" if r % 2 else "")
                line = TranscriptLine(id=f"bench-{call_id}-{r}", speaker="customer", text=text)
                sent[text] = (time.perf_counter(), time.time())
                if r % 2:
                    alerts[line.id] = sent[text][0]
                bridges[call_id].send(SIGNAL_TRANSCRIPT, line)

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
            await asyncio.gather(*(b.aclose(10) for b in bridges.values()))
            for w in watchers:
                w.cancel()
            await asyncio.gather(*watchers, return_exceptions=True)

    print(
        f"live calls: {calls}; lines: {len(latencies)} of {total}; rate {calls / period:.0f} lines/s"
    )
    print(
        f"final line reaches the dashboard     p50 {percentile(latencies, 50):6.1f} ms   "
        f"p99 {percentile(latencies, 99):6.1f} ms   max {max(latencies):6.1f} ms   (target p99 < 250)"
    )
    print(
        f"  of which said -> stored (event time) p50 {percentile(to_store, 50):6.1f} ms   "
        f"p99 {percentile(to_store, 99):6.1f} ms"
    )
    print(
        f"  of which stored -> WebSocket         p50 {percentile(from_store, 50):6.1f} ms   "
        f"p99 {percentile(from_store, 99):6.1f} ms"
    )
    if alert_ms:
        print(
            f"keyword alert reaches the dashboard  p50 {percentile(alert_ms, 50):6.1f} ms   "
            f"p99 {percentile(alert_ms, 99):6.1f} ms   ({len(alert_ms)} alerts)"
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
