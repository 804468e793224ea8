"""Signal -> workflow on the Temporal dev server alone, per way of running the server.

    uv run python -m bench.temporal_signals [--calls 200 --lines 4 --period 4]

For each server configuration in turn (`--configs`, default all): a fresh `temporal server
start-dev` on free ports, one worker process of `bench.bare` (its bare workflow, plain JSON, no
codec), `--calls` workflows started by update-with-start, then every workflow gets `--lines`
transcript signals, one every `--period` s (+-25 %, calls out of step), and a hang-up. A line's
latency runs from just before the signal RPC to the workflow's clock in the task that handled
it. Printed per configuration: line p50/p99/max, signal RPC p50/p99, the server's and the
worker's CPU, and the server's time per SQLite operation (its Prometheus metrics).

Configurations: `journal` (a file, SQLite's defaults: what devstack ran before), `wal` (a file,
`devstack.services.TEMPORAL_SQLITE_PRAGMAS`: what devstack runs now), `memory` (no file,
`devstack up --temporal-in-memory`). Nothing else runs: this is the server's own limit, which
`bench.calls` measures again with the whole product around it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp
import psutil
from temporalio.client import Client, WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy

from bench.bare import BARE_WORKFLOW, WORKFLOW_TASK_POLLS, BareResult
from bench.profile import _metrics, summarise_metrics
from bench.stack import percentile
from core import models as m
from devstack.services import TEMPORAL_BIN, TEMPORAL_SQLITE_PRAGMAS, free_port

CONFIGS: dict[str, list[str]] = {
    "journal": ["--db-filename", "{dir}/temporal.sqlite"],
    "wal": ["--db-filename", "{dir}/temporal.sqlite"]
    + [a for k, v in TEMPORAL_SQLITE_PRAGMAS.items() for a in ("--sqlite-pragma", f"{k}={v}")],
    "memory": [],
}
TASK_QUEUE = "bench-signals"


async def _connect(address: str, timeout: float = 60) -> Client:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await Client.connect(address)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.3)


async def one_config(name: str, calls: int, lines: int, period: float, polls: int) -> str:
    directory = Path(tempfile.mkdtemp(prefix=f"bench-signals-{name}-"))
    port, metrics_port = free_port(), free_port()
    argv = [str(TEMPORAL_BIN), "server", "start-dev", "--headless", "--ip", "127.0.0.1",
            "--port", str(port), "--metrics-port", str(metrics_port), "--log-level", "error",
            *(a.format(dir=directory) for a in CONFIGS[name])]  # fmt: skip
    server = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.DEVNULL, stderr=open(directory / "server.log", "wb")
    )
    worker: asyncio.subprocess.Process | None = None
    try:
        address = f"127.0.0.1:{port}"
        client = await _connect(address)
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.bare", "--task-queue", TASK_QUEUE, "--address", address,
            "--workflow-task-polls", str(polls), stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert worker.stdout is not None
        await asyncio.wait_for(worker.stdout.readline(), 60)  # "bare worker started"
        procs = [psutil.Process(server.pid), psutil.Process(worker.pid)]
        ids = [f"bare-{uuid.uuid4().hex[:12]}" for _ in range(calls)]
        sem = asyncio.Semaphore(8)

        async def start(wid: str) -> None:
            async with sem:
                op: WithStartWorkflowOperation[object, object] = WithStartWorkflowOperation(
                    BARE_WORKFLOW, wid, id=wid, task_queue=TASK_QUEUE,
                    id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                )  # fmt: skip
                await client.execute_update_with_start_workflow(
                    m.UPDATE_ISSUE_TOKEN, m.IssueTokenRequest(customer_name="B"),
                    start_workflow_operation=op, result_type=m.TokenGrant,
                )  # fmt: skip

        await asyncio.gather(*(start(w) for w in ids))
        sent: dict[str, float] = {}
        rpc: list[float] = []
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        async with aiohttp.ClientSession() as http:
            async with http.get(metrics_url) as r:
                before = _metrics(await r.text())
            cpu0 = [sum(p.cpu_times()[:2]) for p in procs]
            t0 = time.monotonic()

            async def talk(wid: str, rnd: random.Random) -> None:
                handle = client.get_workflow_handle(wid)
                await asyncio.sleep(rnd.uniform(0, period))
                for _ in range(lines):
                    await asyncio.sleep(rnd.uniform(0.75 * period, 1.25 * period))
                    line = m.TranscriptLine(id=f"line-{uuid.uuid4().hex[:16]}",
                                            speaker="customer", text="x")  # fmt: skip
                    sent[line.id] = time.time()
                    t = time.perf_counter()
                    await handle.signal(m.SIGNAL_TRANSCRIPT, line)
                    rpc.append((time.perf_counter() - t) * 1000)
                left = m.ParticipantLeft(f"left-{wid}", "customer", "customer")
                await handle.signal(m.SIGNAL_PARTICIPANT_LEFT, left)

            await asyncio.gather(*(talk(w, random.Random(i)) for i, w in enumerate(ids)))
            results = await asyncio.gather(
                *(client.get_workflow_handle(w, result_type=BareResult).result() for w in ids)
            )
            took = time.monotonic() - t0
            cpu = [
                (sum(p.cpu_times()[:2]) - c) / took * 100 for p, c in zip(procs, cpu0, strict=True)
            ]
            async with http.get(metrics_url) as r:
                after = _metrics(await r.text())
        lat = [(at - sent[i]) * 1000 for res in results for i, at in res.seen_at.items()]
        head = (
            f"{name:8} {calls} calls, {calls / period:.0f} lines/s: {len(lat)} lines, "
            f"p50 {percentile(lat, 50):.0f} ms, p99 {percentile(lat, 99):.0f} ms, "
            f"max {max(lat):.0f} ms; signal RPC p50 {percentile(rpc, 50):.0f} ms, "
            f"p99 {percentile(rpc, 99):.0f} ms; CPU server {cpu[0]:.0f} %, worker {cpu[1]:.0f} %; "
            f"load average {os.getloadavg()[0]:.1f}"
        )
        persistence = summarise_metrics(before, after, took, top=5).split("  RPCs per")[0]
        return head + "\n" + persistence
    finally:
        for proc in (worker, server):
            if proc is not None and proc.returncode is None:
                proc.terminate()
                await proc.wait()


async def main(configs: list[str], calls: int, lines: int, period: float, polls: int) -> None:
    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start")
    for name in configs:
        print(await one_config(name, calls, lines, period, polls), flush=True)


if __name__ == "__main__":
    from core.temporal import exit_process

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--lines", type=int, default=4, help="signals per call")
    parser.add_argument("--period", type=float, default=4.0, help="seconds between a call's lines")
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated, of: "
                        + ", ".join(CONFIGS))  # fmt: skip
    parser.add_argument("--workflow-task-polls", type=int, default=WORKFLOW_TASK_POLLS,
                        help=f"the worker's (default {WORKFLOW_TASK_POLLS}, as worker.py)")  # fmt: skip
    a = parser.parse_args()
    asyncio.run(main(a.configs.split(","), a.calls, a.lines, a.period, a.workflow_task_polls))
    exit_process(0)
