"""Operations: liveness, readiness (each dependency checked, failures named), Prometheus metrics."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from prometheus_client import CONTENT_TYPE_LATEST
from sanic import Blueprint, Request, json
from sanic.response import HTTPResponse, raw

from api.docs import endpoint
from api.errors import ApiError
from api.metrics import render
from api.schemas import Health

bp = Blueprint("ops")

CHECK_TIMEOUT_S = 3.0


@bp.get("/healthz")
@endpoint("Liveness: the process answers", tag="ops", response=Health)
async def healthz(request: Request) -> HTTPResponse:
    return json({"status": "ok", "checks": {}})


async def _check_temporal(request: Request) -> None:
    client = request.app.ctx.res.temporal  # raises Unavailable when not connected
    ok = await client.service_client.check_health(timeout=timedelta(seconds=CHECK_TIMEOUT_S))
    if not ok:
        raise RuntimeError("not serving")


async def _check_postgres(request: Request) -> None:
    await request.app.ctx.res.db.fetchval("SELECT 1", timeout=CHECK_TIMEOUT_S)


async def _check_storage(request: Request) -> None:
    res = request.app.ctx.res
    bucket = request.app.ctx.settings.RECORDINGS_BUCKET
    exists = await asyncio.to_thread(res.minio.bucket_exists, bucket)
    if not exists:
        raise RuntimeError(f"bucket {bucket} does not exist")


@bp.get("/readyz")
@endpoint(
    "Readiness: Temporal, PostgreSQL and storage reachable (503 names what is not)",
    tag="ops",
    response=Health,
    errors=(503,),
)
async def readyz(request: Request) -> HTTPResponse:
    checks = {"temporal": _check_temporal, "postgres": _check_postgres, "storage": _check_storage}

    async def run(check):  # type: ignore[no-untyped-def]
        try:
            await asyncio.wait_for(check(request), CHECK_TIMEOUT_S + 1)
            return "ok"
        except ApiError as exc:
            return exc.message
        except Exception as exc:  # a readiness probe reports every failure instead of raising
            return f"{type(exc).__name__}: {exc}"[:200]

    results = await asyncio.gather(*(run(c) for c in checks.values()))
    outcome = dict(zip(checks, results, strict=True))
    failed = sorted(k for k, v in outcome.items() if v != "ok")
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
