"""N concurrent calls end to end, against a bare workflow with the same signals, same run.

    uv run python -m bench.calls [--calls 500 --lines 6 --workers 2] [--profile DIR]
                                 [--temporal-in-memory]

Starts the whole product (bench/stack.py: Temporal dev server, PostgreSQL, S3, LiveKit emulator,
`--workers` worker processes, the API) and the bare baseline's worker (bench/bare.py) on the
same Temporal server. Then, per side (product first, then bare):

- product: `--calls` calls through `POST /api/calls` (set-up time each); the emulator's agent
  joins each (webhook); a dashboard WebSocket per call; a simulated agent per call on the agent's
  own code path (`agent.bridge.bridge_for_call`: each final line written ahead to its spool,
  stored through `POST /internal/calls/{id}/lines`, signalled to the workflow; interim lines
  through `agent.interim.InterimPoster`) speaks `--lines` final lines, one every 3-5 s with an
  interim line between (every other customer line asks for a manager: a keyword alert), then
  the customer hangs up (emulator -> signed webhook). Line latency: from the moment the
  simulated agent has the line (just before `CallBridge.send`) to the WebSocket message carrying
  it (API store -> NOTIFY -> WebSocket); keyword alert latency likewise to its alert.
- bare: the same number of bare workflows by update-with-start (a no-op update), the same
  SignalQueue signals at the same pace, hang-up as a `participant_left` signal. Line latency:
  from the same moment to the workflow's clock in the task that handled the signal.

Prints per side: set-up p50/p99, line latency p50/p99 (product: "final line reaches the
dashboard", "keyword alert reaches the dashboard"; bare: the signal's time to the workflow), sustained lines/s, history events per
call, CPU (% of one core) and peak RSS of the worker(s) and the API per 100 live calls; the
ratios; and checks that nothing was lost: every final line exactly once in PostgreSQL, every
call completed. Targets at 500 live calls: line p99 < 250 ms, worker RSS < 2 MB per live call.

The bare side starts once no workflow of the product runs any more (its recordings end after
its calls). `--profile DIR` runs bench/profile.py over each side's talk (py-spy of the workers,
the API and this process; the Temporal server's own persistence and RPC times) and prints the
summaries; `--temporal-in-memory` runs the dev server without its SQLite file.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import psutil
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from agent.bridge import CallBridge, bridge_for_call
from agent.signals import ClientFactory, SignalQueue, new_signal_id, utc_now
from bench.bare import BARE_TASK_QUEUE, BARE_WORKFLOW, BareResult
from bench.profile import Profile
from bench.stack import Stack, bare_worker, percentile, running_stack
from core import models as m
from core.livekit import room_admin_token
from core.settings import Settings
from core.temporal import connect_temporal

MiB = 1024 * 1024


@dataclass
class Side:
    """What one side (product or bare) measured."""

    name: str
    calls: int = 0
    setup_ms: list[float] = field(default_factory=list)
    line_ms: list[float] = field(default_factory=list)
    # product only: the line's split at its event's time (the API's store, PostgreSQL's now())
    to_workflow_ms: list[float] = field(default_factory=list)
    from_workflow_ms: list[float] = field(default_factory=list)
    alert_ms: list[float] = field(default_factory=list)  # product only: keyword alert -> WS
    lines_sent: int = 0
    talk_s: float = 0.0  # from the first line spoken to the last one delivered
    events_per_call: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)  # % of one core, over the talk
    peak_rss: dict[str, float] = field(default_factory=dict)  # MiB
    base_rss: dict[str, float] = field(default_factory=dict)  # MiB, before any call
    lost: int = 0
    doubled: int = 0
    not_completed: int = 0


class ProcessMeter:
    """Samples CPU time and RSS of named process groups every 0.5 s while the talk runs."""

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self.peak: dict[str, float] = dict.fromkeys(groups, 0.0)
        self._cpu0: dict[str, float] = {}
        self._t0 = 0.0
        self._task: asyncio.Task[None] | None = None

    def _cpu(self, name: str) -> float:
        total = 0.0
        for p in self.groups[name]():
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                total += t.user + t.system
        return total

    def rss(self) -> dict[str, float]:
        return {name: self._rss(name) for name in self.groups}

    def _rss(self, name: str) -> float:
        total = 0
        for p in self.groups[name]():
            with contextlib.suppress(psutil.NoSuchProcess):
                total += p.memory_info().rss
        return total / MiB

    async def _sample(self) -> None:
        while True:
            for name in self.groups:
                self.peak[name] = max(self.peak[name], self._rss(name))
            await asyncio.sleep(0.5)

    def start(self) -> None:
        self._cpu0 = {name: self._cpu(name) for name in self.groups}
        self._t0 = time.monotonic()
        self._task = asyncio.create_task(self._sample())

    async def stop(self) -> dict[str, float]:
        """CPU of each group over the sampled time, in % of one core."""
        took = max(1e-6, time.monotonic() - self._t0)
        cpu = {n: (self._cpu(n) - self._cpu0[n]) / took * 100 for n in self.groups}
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        return cpu


class Progress:
    """One line on stderr: lines delivered of those planned, and calls done."""

    def __init__(self, label: str, total: int) -> None:
        self.label, self.total, self.done, self.calls_done = label, total, 0, 0
        self._last = 0.0

    def tick(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.5:
            return
        self._last = now
        width = 30
        filled = int(width * self.done / max(1, self.total))
        sys.stderr.write(f"\r{self.label:8} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{self.done}/{self.total} lines, {self.calls_done} calls hung up ")  # fmt: skip
        sys.stderr.flush()


async def bounded(n: int, jobs: list[Callable[[], Awaitable[float]]]) -> list[float]:
    """Run `jobs` at most `n` at a time; their results in order."""
    sem = asyncio.Semaphore(n)

    async def one(job: Callable[[], Awaitable[float]]) -> float:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(one(j) for j in jobs)))


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def pace(rnd: random.Random) -> float:
    return rnd.uniform(3.0, 5.0)  # a conversation's pace: a final line every 3-5 s


def agent_bridge(
    settings: Settings,
    api_url: str,
    call_id: str,
    connect: ClientFactory,
    spool_dir: Path,
    *,
    interim: bool = False,
) -> CallBridge:
    """A simulated agent's bridge, wired as the real agent's job wires it: final lines written
    ahead and stored through the API, then signalled; interims to the API when `interim`."""
    token = room_admin_token(
        settings.LIVEKIT_API_KEY.get_secret_value(),
        settings.LIVEKIT_API_SECRET.get_secret_value(),
        room=m.room_name_for(call_id),
        identity="agent-simulated",
    )
    return bridge_for_call(
        call_id, connect, api_url=api_url, token=token, spool_dir=spool_dir, interim=interim
    )


async def simulated_agent(
    bridge: CallBridge,
    call_id: str,
    lines: int,
    sent: dict[str, float],
    rnd: random.Random,
    progress: Progress,
    hang_up: Callable[[], Awaitable[None]],
    gap: Callable[[random.Random], float] = pace,
    first_speaker: str = "customer",
    alerts: dict[str, float] | None = None,
) -> list[str]:
    """Speaks `lines` final lines at a conversation's pace through the agent's own bridge
    (written ahead, stored through the API, signalled), then hangs up; their ids. With
    `alerts`, every other customer line asks for a manager (a keyword alert), and its id is
    noted there with the time it was said."""
    ids = []
    await asyncio.sleep(rnd.uniform(0, 4.0))  # calls do not all speak in step
    for k in range(lines):
        wait = gap(rnd)
        if bridge.interim is not None:
            await asyncio.sleep(wait / 2)
            bridge.interim.post(f"line {k} of {call_id} so")
            await asyncio.sleep(wait / 2)
        else:
            await asyncio.sleep(wait)
        other = "assistant" if first_speaker == "customer" else "customer"
        speaker = first_speaker if k % 2 == 0 else other
        keyword = alerts is not None and speaker == "customer" and (k // 2) % 2 == 0
        text = f"line {k} of {call_id}" + (", can I talk to a manager?" if keyword else "")
        line = m.TranscriptLine(id=new_signal_id("line"), speaker=speaker, text=text,
                                confidence=0.95, started_at=utc_now(), ended_at=utc_now())  # fmt: skip
        sent[line.text] = time.time()  # the simulated agent has the line now
        if keyword and alerts is not None:
            alerts[line.id] = sent[line.text]
        bridge.send(m.SIGNAL_TRANSCRIPT, line)
        ids.append(line.id)
    await bridge.drain(120)
    await hang_up()
    progress.calls_done += 1
    return ids


async def _history_events(client: Client, workflow_ids: list[str]) -> float:
    sample = workflow_ids[:20]
    counts = []
    for wid in sample:
        history = await client.get_workflow_handle(wid).fetch_history()
        counts.append(len(history.events))
    return sum(counts) / max(1, len(counts))


def profiler(
    out_dir: Path | None, label: str, stack: Stack, pythons: dict[str, int]
) -> contextlib.AbstractAsyncContextManager[object]:
    """py-spy on `pythons` and the Temporal server's metrics over the talk, when `out_dir`."""
    if out_dir is None:
        return contextlib.nullcontext()
    temporal = stack.processes("start-dev")
    pythons = {**pythons, "bench": os.getpid()}
    return Profile(out_dir, label, pythons, stack.temporal_metrics_url(),
                   temporal[0] if temporal else None)  # fmt: skip


async def product_side(
    stack: Stack,
    client: Client,
    n: int,
    lines: int,
    interim: bool,
    rnd: random.Random,
    profile: Path | None = None,
) -> Side:
    side = Side("product", calls=n)
    auth = {"Authorization": f"Bearer {stack.admin_token}"}
    control = stack.settings.LIVEKIT_URL.replace("ws", "http", 1).rstrip("/") + "/_emulator"
    sent: dict[str, float] = {}
    alerts: dict[str, float] = {}  # line id -> said at, for lines that raise a keyword alert
    progress = Progress("product", n * lines)
    all_in = asyncio.Event()
    last_delivery = [0.0]
    meter = ProcessMeter({"worker": lambda: stack.processes("worker.py"),
                          "api": lambda: stack.processes("-m api"),
                          "temporal": lambda: stack.processes("start-dev"),
                          "bench": lambda: [psutil.Process()]})  # fmt: skip

    async def shared() -> Client:
        return client

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        ids: list[str] = []

        async def start_call() -> float:
            t0 = time.perf_counter()
            async with http.post(
                f"{stack.api_url}/api/calls", json={"customer_name": "Bench"}
            ) as r:
                body = await r.json()
                assert r.status == 201, body
            ids.append(body["call_id"])
            return (time.perf_counter() - t0) * 1000

        side.base_rss = meter.rss()
        side.setup_ms = await bounded(8, [start_call] * n)

        async def watch(call_id: str, ready: asyncio.Event) -> None:
            url = f"{stack.api_url}/ws/calls/{call_id}"
            async with http.ws_connect(url, headers=auth, heartbeat=30) as ws:
                ready.set()
                async for msg in ws:
                    event = json.loads(msg.data)
                    if event.get("type") == "keyword_alert":
                        said = alerts.pop(event["data"].get("line_id", ""), None)
                        if said is not None:
                            side.alert_ms.append((time.time() - said) * 1000)
                        continue
                    if event.get("type") != "final_transcript":
                        continue
                    had = sent.pop(event["data"].get("text", ""), None)
                    if had is not None:
                        now = time.time()
                        side.line_ms.append((now - had) * 1000)
                        at = datetime.fromisoformat(event["at"]).timestamp()
                        side.to_workflow_ms.append((at - had) * 1000)
                        side.from_workflow_ms.append((now - at) * 1000)
                        last_delivery[0] = now
                        progress.done += 1
                        progress.tick()
                        if progress.done >= n * lines:
                            all_in.set()

        readies = [asyncio.Event() for _ in ids]
        watchers = [asyncio.create_task(watch(c, e)) for c, e in zip(ids, readies, strict=True)]
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in readies)), 120)
        for call_id in ids:  # the customer joins (emulator -> webhook), as a widget would
            room = m.room_name_for(call_id)
            async with http.post(f"{control}/rooms/{room}/participants",
                                 json={"identity": m.customer_identity(call_id),
                                       "kind": "customer", "publish_audio": True}) as r:  # fmt: skip
                assert r.status < 300, await r.text()

        bridges, agents = [], []
        pythons = {f"worker-{k}": p.pid for k, p in enumerate(stack.processes("worker.py"), 1)}
        pythons.update({f"api-{k}": p.pid for k, p in enumerate(stack.processes("-m api"), 1)})
        prof = profiler(profile, "product", stack, pythons)
        await prof.__aenter__()
        meter.start()
        first_line = time.time()
        for call_id in ids:
            bridge = agent_bridge(stack.settings, stack.api_url, call_id, shared,
                                  stack.directory / "agent-spool", interim=interim)  # fmt: skip
            bridges.append(bridge)
            room = m.room_name_for(call_id)

            async def hang_up(room: str = room, call_id: str = call_id) -> None:
                ident = m.customer_identity(call_id)
                async with http.delete(f"{control}/rooms/{room}/participants/{ident}") as r:
                    assert r.status < 300, await r.text()

            agents.append(asyncio.create_task(simulated_agent(
                bridge, call_id, lines, sent, random.Random(rnd.random()), progress,
                hang_up, alerts=alerts)))  # fmt: skip
        spoken = await asyncio.gather(*agents)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_in.wait(), 60)
        side.cpu = await meter.stop()
        await prof.__aexit__(None, None, None)
        side.peak_rss = dict(meter.peak)
        progress.tick(force=True)
        sys.stderr.write("\n")
        side.talk_s = max(1e-6, last_delivery[0] - first_line)
        side.lines_sent = sum(len(s) for s in spoken)
        for b in bridges:
            await b.aclose(5)
        for w in watchers:
            w.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)

    expected = {cid: s for cid, s in zip(ids, spoken, strict=True)}
    side.lost, side.doubled, side.not_completed = await check_calls(
        stack.settings.DATABASE_URL.get_secret_value(), expected
    )
    side.events_per_call = await _history_events(client, [m.call_workflow_id(c) for c in ids])
    return side


async def wait_quiet(client: Client, timeout_s: float = 300) -> float:
    """Wait until no workflow runs (the product's recordings finish after its calls), so the
    bare side has the server to itself as the product had; seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        running = await client.count_workflows("ExecutionStatus = 'Running'")
        if running.count == 0:
            break
        await asyncio.sleep(2)
    return time.monotonic() - t0


async def check_calls(
    dsn: str, expected: dict[str, list[str]], timeout_s: float = 120
) -> tuple[int, int, int]:
    """Lines missing, lines doubled (in `call_events`), calls not `completed` after waiting."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            open_calls = await conn.fetchval(
                "SELECT count(*) FROM calls WHERE call_id = ANY($1::text[]) AND status <> 'completed'",
                list(expected),
            )
            if open_calls == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(1)
        rows = await conn.fetch(
            "SELECT call_id, data->>'id' AS line_id, count(*) AS n FROM call_events "
            "WHERE kind = 'final_transcript' AND call_id = ANY($1::text[]) GROUP BY 1, 2",
            list(expected),
        )
        stored = {(r["call_id"], r["line_id"]): r["n"] for r in rows}
        missing = sum(1 for cid, ids in expected.items() for i in ids if (cid, i) not in stored)
        doubled = sum(n - 1 for n in stored.values() if n > 1)
        return missing, doubled, int(open_calls or 0)
    finally:
        await conn.close()


async def bare_side(
    stack: Stack,
    client: Client,
    bare: psutil.Process,
    n: int,
    lines: int,
    rnd: random.Random,
    profile: Path | None = None,
) -> Side:
    side = Side("bare", calls=n)
    sent: dict[str, float] = {}
    progress = Progress("bare", n * lines)
    meter = ProcessMeter({"worker": lambda: [bare],
                          "temporal": lambda: stack.processes("start-dev"),
                          "bench": lambda: [psutil.Process()]})  # fmt: skip
    ids: list[str] = []

    async def shared() -> Client:
        return client

    async def start_call() -> float:
        cid = m.new_call_id()
        t0 = time.perf_counter()
        start: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            BARE_WORKFLOW, cid, id=f"bare-{cid}", task_queue=BARE_TASK_QUEUE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        )  # fmt: skip
        await client.execute_update_with_start_workflow(
            m.UPDATE_ISSUE_TOKEN, m.IssueTokenRequest(customer_name="Bench"),
            start_workflow_operation=start, result_type=m.TokenGrant,
        )  # fmt: skip
        ids.append(cid)
        return (time.perf_counter() - t0) * 1000

    side.base_rss = meter.rss()
    side.setup_ms = await bounded(8, [start_call] * n)
    prof = profiler(profile, "bare", stack, {"worker": bare.pid})
    await prof.__aenter__()
    meter.start()
    first_line = time.time()
    queues, agents = [], []
    for cid in ids:
        queue = SignalQueue(f"bare-{cid}", shared, call_id=cid)
        queue.start()
        queues.append(queue)

        async def hang_up(queue: SignalQueue = queue) -> None:
            queue.send(m.SIGNAL_PARTICIPANT_LEFT,
                       m.ParticipantLeft(new_signal_id("left"), "customer", "customer"))  # fmt: skip
            await queue.drain(60)

        bare_bridge = CallBridge(call_id=cid, customer_identity="customer", signals=queue)
        agents.append(asyncio.create_task(simulated_agent(
            bare_bridge, cid, lines, sent, random.Random(rnd.random()), progress, hang_up)))  # fmt: skip
    spoken = await asyncio.gather(*agents)
    results = await asyncio.gather(
        *(client.get_workflow_handle(f"bare-{c}", result_type=BareResult).result() for c in ids)
    )
    side.cpu = await meter.stop()
    await prof.__aexit__(None, None, None)
    side.peak_rss = dict(meter.peak)
    last = 0.0
    by_id = {}
    for cid, s in zip(ids, spoken, strict=True):
        for k, line_id in enumerate(s):
            by_id[line_id] = f"line {k} of {cid}"
    for res in results:
        for line_id, at in res.seen_at.items():
            had = sent.get(by_id.get(line_id, ""))
            if had is not None:
                side.line_ms.append((at - had) * 1000)
                last = max(last, at)
    progress.done = len(side.line_ms)
    progress.calls_done = len(ids)
    progress.tick(force=True)
    sys.stderr.write("\n")
    side.talk_s = max(1e-6, last - first_line)
    side.lines_sent = sum(len(s) for s in spoken)
    side.lost = side.lines_sent - len(side.line_ms)
    for q in queues:
        await q.aclose(5)
    side.events_per_call = await _history_events(client, [f"bare-{c}" for c in ids])
    return side


def report(sides: list[Side]) -> None:
    prod, bare = sides
    print(
        f"live calls: {prod.calls}; final lines per call: {prod.lines_sent // max(1, prod.calls)}; "
        f"keyword alerts seen: {len(prod.alert_ms)}"
    )

    def row(label: str, fn: Callable[[Side], float], unit: str, ratio: bool = True) -> None:
        a, b = fn(prod), fn(bare)
        r = f"{a / b:8.2f}x" if ratio and b else "        -"
        print(f"{label:42}{a:10.1f} {unit:5}{b:10.1f} {unit:5}{r}")

    per100 = lambda s: 100 / max(1, s.calls)  # noqa: E731
    print(f"{'':42}{'product':>16}{'bare':>16}{'ratio':>9}")
    row("set-up p50", lambda s: percentile(s.setup_ms, 50), "ms")
    row("set-up p99", lambda s: percentile(s.setup_ms, 99), "ms")
    row("final line -> dashboard (bare: -> wf) p50", lambda s: percentile(s.line_ms, 50), "ms")
    row("final line -> dashboard (bare: -> wf) p99", lambda s: percentile(s.line_ms, 99), "ms")
    row("sustained final lines/s", lambda s: len(s.line_ms) / s.talk_s, "/s")
    row("history events per call", lambda s: s.events_per_call, "")
    row("worker CPU per 100 live calls", lambda s: s.cpu["worker"] * per100(s), "%")
    row("worker peak RSS per 100 live calls", lambda s: s.peak_rss["worker"] * per100(s), "MiB")
    row("worker peak RSS per live call", lambda s: s.peak_rss["worker"] / max(1, s.calls), "MiB")
    row("worker RSS growth per live call",
        lambda s: (s.peak_rss["worker"] - s.base_rss["worker"]) / max(1, s.calls), "MiB")  # fmt: skip
    row("Temporal server CPU (whole server)", lambda s: s.cpu["temporal"], "%")
    row("this benchmark's own CPU (agents, sockets)", lambda s: s.cpu["bench"], "%")
    for label, ms in (("final line reaches the dashboard", prod.line_ms),
                      ("  of which said -> stored (event time)", prod.to_workflow_ms),
                      ("  of which stored -> dashboard", prod.from_workflow_ms),
                      ("keyword alert reaches the dashboard", prod.alert_ms),
                      ("bare: final line signal -> workflow", bare.line_ms)):  # fmt: skip
        if ms:
            print(f"{label:42} p50 {percentile(ms, 50):8.1f} ms   p99 {percentile(ms, 99):8.1f} ms")
    print(f"{'API CPU per 100 live calls':42}{prod.cpu['api'] * per100(prod):10.1f} %")
    print(f"{'API peak RSS per 100 live calls':42}{prod.peak_rss['api'] * per100(prod):10.1f} MiB")
    for s in sides:
        print(f"{s.name}: {len(s.line_ms)} of {s.lines_sent} lines delivered; lost {s.lost}, "
              f"doubled {s.doubled}, calls not completed {s.not_completed}")  # fmt: skip
    print("targets: line -> dashboard p99 < 250 ms; nothing lost; worker RSS < 2 MiB per live call")


async def main(
    calls: int,
    lines: int,
    workers: int,
    interim: bool,
    seed: int,
    profile: Path | None = None,
    temporal_in_memory: bool = False,
) -> list[Side]:
    rnd = random.Random(seed)
    async with (
        running_stack(
            workers=workers,
            temporal_in_memory=temporal_in_memory,
            RATE_LIMIT_PER_MINUTE="1000000",
            MAX_WAITING_CALLS="1000000",  # one address starts every call
            MAX_CALLS_PER_CLIENT="1000000",
            MAX_LIVE_AI_CALLS="1000000",
            AGENT_JOIN_TIMEOUT_S="3600",
            CUSTOMER_JOIN_TIMEOUT_S="3600",
            SILENCE_ALERT_S="3600",
            RECORDING_CONSENT="off",
        ) as stack,
        bare_worker(stack, BARE_TASK_QUEUE) as bare,
    ):
        client = await connect_temporal(stack.settings)
        print(f"machine: {os.cpu_count()} cores, load average {load()} at the start")
        prod = await product_side(stack, client, calls, lines, interim, rnd, profile)
        print(f"load average after the product side: {load()}")
        quiet = await wait_quiet(client)
        print(f"waited {quiet:.0f} s for the product's workflows (recordings) to end")
        base = await bare_side(stack, client, bare, calls, lines, rnd, profile)
        print(f"load average after the bare side: {load()}")
    report([prod, base])
    if profile is not None:
        for label in ("product", "bare"):
            print((profile / f"{label}.txt").read_text())
    return [prod, base]


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--lines", type=int, default=6, help="final lines per call")
    parser.add_argument("--workers", type=int, default=2, help="worker processes")
    parser.add_argument("--no-interim", action="store_true", help="no interim lines")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="py-spy the workers, the API and this process, and read the Temporal "
                             "server's metrics, over each side's talk; summaries in DIR")  # fmt: skip
    parser.add_argument("--temporal-in-memory", action="store_true",
                        help="the dev server without SQLite (devstack --temporal-in-memory)")  # fmt: skip
    a = parser.parse_args()
    asyncio.run(main(a.calls, a.lines, a.workers, not a.no_interim, a.seed, a.profile,
                     a.temporal_in_memory))  # fmt: skip
    exit_process(0)
