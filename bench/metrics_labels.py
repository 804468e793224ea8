"""What a flood of made-up HTTP methods costs the API: `/metrics` series, body size, RSS.

    uv run python -m bench.metrics_labels [--n 4000]

Runs `python -m api` as its own process (PostgreSQL, Temporal and LiveKit pointed at closed
ports: neither `/metrics` nor an unknown route needs them), sends `--n` requests each with a new
random method name to random paths, and prints, before and after: the number of
`api_requests_total` series, the `/metrics` body size and the API process's RSS. Labels are
bounded when the series count does not grow with n (issue 14 measured 22 MB and a 32 MB body
after 4,000 such requests before the fix).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import string
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psutil

from core.settings import ROOT, Settings
from devstack.services import free_port

# An unknown path, a known route (wrong method), a route with an id in it.
PATHS = ("/nowhere/", "/api/calls?x=", "/api/calls/")


@dataclass
class Figures:
    series: int
    body_bytes: int
    rss_mb: float


async def _measure(http: aiohttp.ClientSession, url: str, pid: int) -> Figures:
    async with http.get(f"{url}/metrics") as r:
        body = await r.read()
    series = sum(1 for line in body.splitlines() if line.startswith(b"api_requests_total{"))
    return Figures(series, len(body), psutil.Process(pid).memory_info().rss / 2**20)


async def run(n: int) -> tuple[Figures, Figures]:
    port, dead = free_port(), "127.0.0.1:9"
    env = {k: v for k, v in os.environ.items() if k not in Settings.model_fields}
    env.update(
        DEVSTACK_DIR=tempfile.mkdtemp(), PYTHONPATH=str(ROOT), API_PORT=str(port),
        DATABASE_URL=f"postgresql://bench@{dead}/bench", MINIO_ENDPOINT=dead,
        MINIO_ACCESS_KEY="bench", MINIO_SECRET_KEY="bench-secret", TEMPORAL_ADDRESS=dead,
        LIVEKIT_URL=f"http://{dead}", LIVEKIT_API_KEY="bench", LIVEKIT_API_SECRET="bench-secret",
        API_TOKENS="bench-admin-token-0123456789:admin",
    )  # fmt: skip
    log = Path(env["DEVSTACK_DIR"]) / "api.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api", cwd=ROOT, env=env, stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as http:
            deadline = time.monotonic() + 60
            while True:
                try:
                    async with http.get(f"{url}/healthz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise RuntimeError(f"the API did not start; see {log}")
                await asyncio.sleep(0.2)
            for path in PATHS:  # every label set the flood can reach, once
                async with http.request("BREWX", f"{url}{path}0"):
                    pass
            await _measure(http, url, proc.pid)  # so /metrics itself is counted already
            before = await _measure(http, url, proc.pid)
            for _ in range(n):
                verb = "".join(random.choices(string.ascii_uppercase, k=12))
                path = random.choice(PATHS) + str(random.random())[:6]
                async with http.request(verb, url + path) as r:
                    await r.read()
            after = await _measure(http, url, proc.pid)
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()
    return before, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="requests with made-up methods")
    args = parser.parse_args()
    before, after = asyncio.run(run(args.n))
    print(f"requests with made-up methods: {args.n}")
    print(f"api_requests_total series: {before.series} -> {after.series}")
    print(f"/metrics body bytes:       {before.body_bytes} -> {after.body_bytes}")
    print(f"API process RSS (MB):      {before.rss_mb:.1f} -> {after.rss_mb:.1f}")


if __name__ == "__main__":
    main()
