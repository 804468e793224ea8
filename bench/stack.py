"""A whole call-center stack for a benchmark: `python -m devstack up --no-agent --no-standin` in
a scratch directory on free ports (Temporal dev server, PostgreSQL, S3, LiveKit emulator,
worker(s), API as separate processes), torn down afterwards; and the bare baseline's worker
(`bench.bare`) on the same Temporal server. Shared by the API benchmarks.

The benchmark drives every call itself: the stand-in conversation must not run (it would hang
the calls up under the benchmark's feet)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from core.settings import ROOT, Settings, load_settings
from devstack.services import free_port


@dataclass
class Stack:
    settings: Settings
    api_url: str
    admin_token: str
    directory: Path
    pid: int  # devstack's own; the product's processes are its children

    def temporal_metrics_url(self) -> str | None:
        """The dev server's Prometheus endpoint (devstack gives it a free `--metrics-port`)."""
        for proc in self.processes("start-dev"):
            argv = proc.cmdline()
            if "--metrics-port" in argv:
                return f"http://127.0.0.1:{argv[argv.index('--metrics-port') + 1]}/metrics"
        return None

    def processes(self, needle: str) -> list[psutil.Process]:
        """The stack's child processes whose command line contains `needle`."""
        found = []
        for child in psutil.Process(self.pid).children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                if needle in " ".join(child.cmdline()):
                    found.append(child)
        return found


@contextlib.asynccontextmanager
async def running_stack(
    workers: int = 1, temporal_in_memory: bool = False, **env: str
) -> AsyncIterator[Stack]:
    """Start the stack; `env` adds settings for every process (e.g. RATE_LIMIT_PER_MINUTE)."""
    directory = Path(tempfile.mkdtemp(prefix="callcenter-bench-"))
    ports = {name: free_port() for name in ("api", "temporal", "ui", "livekit", "s3", "pg")}
    argv = [
        sys.executable, "-m", "devstack", "up", "--no-agent", "--no-standin",
        "--workers", str(workers),
        "--api-port", str(ports["api"]), "--temporal-port", str(ports["temporal"]),
        "--temporal-ui-port", str(ports["ui"]), "--livekit-port", str(ports["livekit"]),
        "--s3-port", str(ports["s3"]), "--postgres-port", str(ports["pg"]),
    ]  # fmt: skip
    if temporal_in_memory:
        argv.append("--temporal-in-memory")
    log = open(directory / "devstack.log", "wb")  # noqa: SIM115 - closed below
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=ROOT,
        env={**os.environ, **env, "DEVSTACK_DIR": str(directory), "PYTHONUNBUFFERED": "1"},
        stdout=log,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    api_url = f"http://127.0.0.1:{ports['api']}"
    try:
        await _wait_ready(api_url, proc, directory / "devstack.log")
        settings = load_settings(_env_file=str(directory / "env"), **_env_overrides(env))
        admin = next(t for t, role in settings.api_tokens.items() if role == "admin")
        yield Stack(settings, api_url, admin, directory, proc.pid)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 60)
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        log.close()


def _env_overrides(env: dict[str, str]) -> dict[str, str]:
    from core.settings import Settings

    return {k: v for k, v in env.items() if k in Settings.model_fields}


async def _wait_ready(api_url: str, proc: asyncio.subprocess.Process, log: Path) -> None:
    deadline = time.monotonic() + 180
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"devstack exited ({proc.returncode}); see {log}")
            try:
                async with session.get(f"{api_url}/readyz") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.5)
    raise RuntimeError(f"the stack did not become ready in 180 s; see {log}")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return ordered[k]


@contextlib.asynccontextmanager
async def bare_worker(stack: Stack, task_queue: str) -> AsyncIterator[psutil.Process]:
    """`bench.bare`'s worker on the stack's Temporal server, as a process of its own."""
    log = open(stack.directory / "bare-worker.log", "wb")  # noqa: SIM115 - closed below
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.bare", "--task-queue", task_queue,
        cwd=ROOT, stdout=log, stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "DEVSTACK_DIR": str(stack.directory), "PYTHONUNBUFFERED": "1",
             "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "bare worker started" not in (stack.directory / "bare-worker.log").read_text():
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"bare worker did not start; see {stack.directory}")
            await asyncio.sleep(0.2)
        yield psutil.Process(proc.pid)
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 30)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        log.close()
