"""The chaos suite's stack: devstack's own parts (Temporal dev server with its state on disk,
PostgreSQL, moto S3, the LiveKit emulator, worker processes and the API as processes of their
own, restarted by devstack's supervision), held by the test so it can break any of them.

`--chaos-size N` (default 4) sets how many calls each test drives; CI runs the default.
Every test prints what it did and what it checked.

`ChaosStack.run_calls(n, during=...)` drives N calls the way the product sees them: set up
through `POST /api/calls`, the customer joins (emulator -> webhook), a simulated agent on the
agent's own bridge greets (recording starts) and speaks lines (written ahead, stored through the
API, signalled to the workflow), the customer hangs up;
`during` is the chaos, run while the calls talk. `check(...)` then asserts that every call
completed, every recording is stored once with the SHA-256 of the file LiveKit produced, and
every final line is in PostgreSQL exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from minio import Minio
from temporalio.client import Client

import devstack.up as up
from bench.calls import Progress, agent_bridge, simulated_agent
from core import models as m
from core.settings import Settings, load_settings
from core.temporal import connect_temporal
from db.migrate import migrate
from devstack.services import (
    ManagedProcess,
    ensure_bucket,
    free_port,
    postgres_server,
    s3_server,
    temporal_dev_server,
)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--chaos-size", type=int, default=4, help="calls per chaos test (4)")


@pytest.fixture(scope="session")
def chaos_size(request: pytest.FixtureRequest) -> int:
    return int(request.config.getoption("--chaos-size"))


def say(msg: str) -> None:
    print(f"[chaos] {msg}", flush=True)


@dataclass
class Outcome:
    """What a run of calls left behind, for `ChaosStack.check`."""

    lines: dict[str, list[str]] = field(default_factory=dict)  # call id -> line ids spoken


@dataclass
class ChaosStack:
    directory: Path
    ports: up.Ports
    env: dict[str, str]
    settings: Settings
    infra: dict[str, ManagedProcess]
    product: list[up.Supervised]
    client: Client
    http: aiohttp.ClientSession
    rnd: random.Random = field(default_factory=lambda: random.Random(13))

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.api}"

    @property
    def spool_dir(self) -> Path:
        """The simulated agents' write-ahead spool (AGENT_SPOOL_DIR of the agent process)."""
        return self.directory / "agent-spool"

    @property
    def control(self) -> str:
        return f"http://127.0.0.1:{self.ports.livekit}/_emulator"

    def workers(self) -> list[ManagedProcess]:
        return [s.proc for s in self.product if s.proc.name.startswith("worker")]

    def proc(self, name: str) -> ManagedProcess:
        return next(s.proc for s in self.product if s.proc.name == name)

    async def restart_infra(self, name: str, down_s: float) -> None:
        """Stop an infrastructure process, keep it down `down_s`, start it again."""
        proc = self.infra[name]
        await proc.stop(timeout=10)
        say(f"{name} stopped; down for {down_s:.1f} s")
        await asyncio.sleep(down_s)
        await proc.start()
        say(f"{name} started again")

    async def post_call(self) -> str:
        for _ in range(60):
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.post(f"{self.api_url}/api/calls",
                                          json={"customer_name": "Chaos"}) as r:  # fmt: skip
                    if r.status == 201:
                        return str((await r.json())["call_id"])
                    assert r.status == 503, await r.text()  # only "not reachable yet" is retried
            await asyncio.sleep(1)
        raise AssertionError("POST /api/calls never succeeded")

    async def customer_joins(self, cid: str) -> None:
        await self._control("POST", f"rooms/{m.room_name_for(cid)}/participants",
                            {"identity": m.customer_identity(cid), "kind": "customer",
                             "publish_audio": True})  # fmt: skip

    async def hang_up(self, cid: str) -> None:
        path = f"rooms/{m.room_name_for(cid)}/participants/{m.customer_identity(cid)}"
        await self._control("DELETE", path)

    async def fault(self, spec: dict[str, object]) -> None:
        """One fault on in the LiveKit emulator (`devstack/livekit/faults.py`)."""
        async with self.http.post(f"{self.control}/faults", json=spec) as r:
            assert r.status == 201, await r.text()

    async def clear_faults(self) -> None:
        async with self.http.delete(f"{self.control}/faults") as r:
            assert r.status < 300, await r.text()

    async def _control(self, method: str, path: str, body: object = None) -> None:
        for _ in range(30):
            with contextlib.suppress(aiohttp.ClientError):
                async with self.http.request(method, f"{self.control}/{path}", json=body) as r:
                    assert r.status < 300, await r.text()
                    return
            await asyncio.sleep(1)
        raise AssertionError(f"emulator control {method} {path} never answered")

    async def run_calls(
        self,
        n: int,
        lines: int = 10,
        gap_s: tuple[float, float] = (0.8, 1.6),
        during: Callable[[list[str]], Awaitable[None]] | None = None,
    ) -> Outcome:
        """N calls talking concurrently, `during` run meanwhile; returns the lines spoken."""
        ids = [await self.post_call() for _ in range(n)]
        for cid in ids:
            await self.customer_joins(cid)

        async def shared() -> Client:
            return self.client

        progress = Progress("chaos", n * lines)
        sent: dict[str, float] = {}
        bridges = []
        agents = []
        for cid in ids:
            bridge = agent_bridge(self.settings, self.api_url, cid, shared, self.spool_dir)
            bridges.append(bridge)

            async def hang_up(cid: str = cid) -> None:
                await self.hang_up(cid)

            agents.append(asyncio.create_task(simulated_agent(
                bridge, cid, lines, sent, random.Random(self.rnd.random()), progress,
                hang_up, gap=lambda r: r.uniform(*gap_s), first_speaker="assistant")))  # fmt: skip
        chaos = asyncio.create_task(during(ids)) if during else None
        spoken = await asyncio.gather(*agents)
        if chaos is not None:
            await chaos
        for b in bridges:
            await b.aclose(5)
        say(f"{n} calls spoke {sum(len(s) for s in spoken)} final lines and hung up")
        return Outcome(dict(zip(ids, spoken, strict=True)))

    async def check(
        self,
        outcome: Outcome,
        timeout_s: float = 150,
        spoken_only: dict[str, set[str]] | None = None,
    ) -> dict[str, list[int]]:
        """Every call completed, each recording stored once with the right SHA-256, every
        final line in PostgreSQL exactly once. `spoken_only`: lines that may be missing (never
        delivered) but never doubled or invented. Returns the stored segments' numbers by call."""
        ids = list(outcome.lines)
        conn = await asyncpg.connect(self.settings.DATABASE_URL.get_secret_value())
        try:
            deadline = time.monotonic() + timeout_s
            while True:
                rows = await conn.fetch(
                    "SELECT call_id, status, recording_status FROM calls "
                    "WHERE call_id = ANY($1::text[])",
                    ids,
                )
                done = [r for r in rows if (r["status"], r["recording_status"]) ==
                        ("completed", "stored")]  # fmt: skip
                if len(done) == len(ids) or time.monotonic() > deadline:
                    break
                await asyncio.sleep(1)
            states = {r["call_id"]: (r["status"], r["recording_status"]) for r in rows}
            if len(done) != len(ids):
                bad = [c for c in ids if states.get(c) != ("completed", "stored")]
                trail = await conn.fetch(
                    "SELECT call_id, seq, kind, data::text AS data FROM call_events "
                    "WHERE call_id = $1 AND kind IN ('status', 'recording') ORDER BY seq",
                    bad[0],
                )
                story = "\n".join(f"  {t['seq']} {t['kind']} {t['data'][:200]}" for t in trail)
                raise AssertionError(f"not completed with a stored recording: {states}\n"
                                     f"events of {bad[0]}:\n{story}")  # fmt: skip
            lines = await conn.fetch(
                "SELECT call_id, data->>'id' AS line_id, count(*) AS n FROM call_events "
                "WHERE kind = 'final_transcript' AND call_id = ANY($1::text[]) GROUP BY 1, 2",
                ids,
            )
            stored = {(r["call_id"], r["line_id"]): r["n"] for r in lines}
            missing = [(c, i) for c, said in outcome.lines.items() for i in said
                       if (c, i) not in stored]  # fmt: skip
            doubled = {k: n for k, n in stored.items() if n > 1}
            assert not missing, f"final lines missing from PostgreSQL: {missing}"
            assert not doubled, f"final lines stored more than once: {doubled}"
            spoken = {(c, i) for c, said in outcome.lines.items() for i in said}
            if spoken_only is not None:
                spoken |= {(c, i) for c, said in spoken_only.items() for i in said}
            assert set(stored) <= spoken, set(stored) - spoken
            # Every segment (one per egress: a restart after a crash adds one), in order.
            recs = await conn.fetch(
                "SELECT call_id, n, object_key, egress_id, sha256, size_bytes "
                "FROM recording_segments WHERE call_id = ANY($1::text[]) ORDER BY call_id, n",
                ids,
            )
        finally:
            await conn.close()
        assert sorted({r["call_id"] for r in recs}) == sorted(ids)
        s3 = self.minio()
        keys: dict[str, list[str]] = {}
        for r in recs:
            keys.setdefault(r["call_id"], []).append(r["object_key"])
        for call_id, want in keys.items():
            objects = list(s3.list_objects(self.settings.RECORDINGS_BUCKET,
                                           prefix=f"conversations/{call_id}", recursive=True))  # fmt: skip
            assert sorted(o.object_name for o in objects) == sorted(want), objects
        for r in recs:
            async with self.http.get(f"{self.control}/recordings/{r['egress_id']}.ogg") as resp:
                assert resp.status == 200, resp.status
                produced = hashlib.sha256(await resp.read()).hexdigest()
            body = s3.get_object(self.settings.RECORDINGS_BUCKET, r["object_key"])
            try:
                in_s3 = hashlib.sha256(body.read()).hexdigest()
            finally:
                body.close()
                body.release_conn()
            assert r["sha256"] == in_s3 == produced, (r["call_id"], r["sha256"], in_s3, produced)
        say(f"checked: {len(ids)} calls completed; {len(recs)} recording segments stored once each with "
            f"the SHA-256 of LiveKit's file; {len(spoken)} final lines each exactly once in "
            "PostgreSQL")  # fmt: skip
        return {c: [r["n"] for r in recs if r["call_id"] == c] for c in ids}

    def minio(self) -> Minio:
        s = self.settings
        return Minio(s.MINIO_ENDPOINT, access_key=s.MINIO_ACCESS_KEY.get_secret_value(),
                     secret_key=s.MINIO_SECRET_KEY.get_secret_value(), secure=False)  # fmt: skip


async def _supervise(product: list[up.Supervised]) -> None:
    """devstack's supervision loop for the product's processes (restart with backoff)."""
    while True:
        for s in product:
            for msg in (s.check(time.monotonic()), await s.restart_if_due(time.monotonic())):
                if msg:
                    say(f"devstack: {msg.splitlines()[0]}")
        await asyncio.sleep(0.25)


@pytest.fixture(scope="session")
async def chaos_stack() -> AsyncIterator[ChaosStack]:
    # Not pytest's tmp_path: other pytest runs of the same user prune old basetemp folders.
    directory = Path(tempfile.mkdtemp(prefix="callcenter-chaos-"))
    ports = up.Ports(*(free_port() for _ in range(6)))
    logs = directory / "logs"
    saved = up.STATE, up.ENV_FILE
    up.STATE, up.ENV_FILE = directory, directory / "env"
    try:
        values = up.choose_settings(ports)
        values |= {
            "RATE_LIMIT_PER_MINUTE": "100000",
            "MAX_WAITING_CALLS": "100000",  # one address starts every call
            "MAX_CALLS_PER_CLIENT": "100000",
            "MAX_LIVE_AI_CALLS": "100000",
            "EGRESS_END_TIMEOUT_S": "8",  # a dropped egress_ended webhook: LiveKit is asked
            "ROOM_CHECK_AFTER_S": "10",  # a dropped participant_left: LiveKit is asked
            "SILENCE_ALERT_S": "3600",
            "RECORDING_RETRY_FOR_S": "600",
        }
        up.write_env_file(values)
    finally:
        up.STATE, up.ENV_FILE = saved
    # The emulator keeps (and serves, debug only) each file it uploaded: the check compares the
    # stored recording with the bytes LiveKit produced.
    env = {**up.read_env_file(directory / "env"), "DEVSTACK_DIR": str(directory),
           "PYTHONUNBUFFERED": "1", "LIVEKIT_EMULATOR_SERVE_RECORDINGS": "1"}  # fmt: skip
    settings = load_settings(_env_file=str(directory / "env"))
    infra = {
        "temporal": temporal_dev_server(directory, ports.temporal, ports.temporal_ui),
        "postgres": postgres_server(directory / "pgdata", ports.postgres, log_dir=logs),
        "s3": s3_server(logs, ports.s3),
    }
    emulator = up.emulator_process(env, ports, logs)
    assert emulator is not None
    infra["livekit"] = emulator
    started: list[ManagedProcess] = []
    product: list[up.Supervised] = []
    supervisor: asyncio.Task[None] | None = None
    try:
        for name in ("temporal", "postgres", "s3"):
            await infra[name].start()
            started.append(infra[name])
        await migrate(settings.DATABASE_URL.get_secret_value())
        ensure_bucket(settings.MINIO_ENDPOINT, settings.MINIO_ACCESS_KEY.get_secret_value(),
                      settings.MINIO_SECRET_KEY.get_secret_value(), settings.RECORDINGS_BUCKET)  # fmt: skip
        await emulator.start()
        started.append(emulator)
        for proc in up.product_processes(env, ports, logs, agent=False, standin=False, workers=2):
            await proc.start()
            product.append(up.Supervised(proc))
        await up.promote_worker_version(env, logs)  # versioned workers take calls once current
        supervisor = asyncio.create_task(_supervise(product))
        client = await connect_temporal(settings)
        async with aiohttp.ClientSession() as http:
            for _ in range(120):
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"http://127.0.0.1:{ports.api}/readyz") as r:
                        if r.status == 200:
                            break
                await asyncio.sleep(0.5)
            yield ChaosStack(directory, ports, env, settings, infra, product, client, http)
    finally:
        if supervisor is not None:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        for s in reversed(product):
            await s.proc.stop()
        for proc in reversed(started):
            await proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


__all__ = ["ChaosStack", "Outcome", "os", "say"]
