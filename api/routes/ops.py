"""Operations: liveness, readiness, Prometheus metrics.

`/readyz` answers only `up` or `down` per part (temporal, postgres, storage); why a part is
down (addresses, namespace, transport errors) goes to the log, never to an anonymous caller.
Its cost is bounded whatever the request rate: one probe runs at a time, its answer is reused
for `READY_CACHE_S`, and PostgreSQL is probed on a connection of its own (`Resources.probe_pool`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, raw

from api.docs import endpoint
from api.metrics import render
from api.schemas import Health
from core.log import get_logger

log = get_logger("api.ops")
bp = Blueprint("ops")

CHECK_TIMEOUT_S = 3.0
READY_CACHE_S = 1.0


@bp.get("/healthz")
@endpoint("Liveness: the process answers", tag="ops", response=Health)
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok", "checks": {}})


async def _check_temporal(res: Any) -> None:
    client = res.temporal  # raises Unavailable when not connected
    ok = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
    if not ok:
        raise RuntimeError("not serving")


async def _check_postgres(res: Any) -> None:
    await res.probe_pool.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)


async def _check_storage(res: Any) -> None:
    bucket = res.settings.RECORDINGS_BUCKET
    exists = await asyncio.to_thread(res.minio.bucket_exists, bucket)
    if not exists:
        raise RuntimeError(f"bucket {bucket} does not exist")


CHECKS = {"temporal": _check_temporal, "postgres": _check_postgres, "storage": _check_storage}


class Readiness:
    """Single-flight, briefly cached readiness: concurrent callers share one probe."""

    def __init__(self, res: Any, clock: Any = time.monotonic) -> None:
        self._res = res
        self._clock = clock
        self._answer: dict[str, str] | None = None
        self._at = 0.0
        self._probe: asyncio.Task[dict[str, str]] | None = None

    async def check(self) -> dict[str, str]:
        """`{part: "up" | "down"}`."""
        if self._answer is not None and self._clock() - self._at < READY_CACHE_S:
            return self._answer
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._run(), name="readiness-probe")
        # Shielded: a caller that goes away does not cancel the probe the others wait for.
        return await asyncio.shield(self._probe)

    async def _run(self) -> dict[str, str]:
        results = await asyncio.gather(*(self._one(n, c) for n, c in CHECKS.items()))
        self._answer = dict(zip(CHECKS, results, strict=True))
        self._at = self._clock()
        return self._answer

    async def _one(self, name: str, check: Any) -> str:
        try:
            await asyncio.wait_for(check(self._res), CHECK_TIMEOUT_S + 1)
            return "up"
        except Exception as exc:  # a readiness probe reports every failure instead of raising
            log.warning("readiness_check_failed", part=name, error=f"{type(exc).__name__}: {exc}")
            return "down"


@bp.get("/readyz")
@endpoint(
    "Readiness: Temporal, PostgreSQL and storage reachable (`up`/`down` each; 503 if any is down)",
    tag="ops",
    response=Health,
    errors=(503,),
)
async def readyz(request: Request) -> HTTPResponse:
    ctx = request.app.ctx
    if getattr(ctx, "readiness", None) is None:
        ctx.readiness = Readiness(ctx.res)
    outcome = await ctx.readiness.check()
    failed = sorted(k for k, v in outcome.items() if v != "up")
    if failed:
        return json(
            {
                "status": "unavailable",
                "checks": outcome,
                "error": {"code": "not_ready", "message": f"not reachable: {', '.join(failed)}"},
            },
            status=503,
        )
    return json({"status": "ready", "checks": outcome})


@bp.get("/metrics")
@endpoint("Prometheus metrics", tag="ops")
async def metrics(request: Request) -> HTTPResponse:
    return raw(await render(), content_type=CONTENT_TYPE_LATEST)
