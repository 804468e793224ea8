"""The worker's metrics port: the Temporal SDK's own metrics and the product's, on one page.

- The SDK's: the worker's `temporalio.runtime.Runtime` exports them with its Prometheus
  exporter on a loopback port of its own (`sdk_runtime`); `/metrics` here appends that page.
- The product's, from PostgreSQL (refreshed every `REFRESH_S` in the background, so a scrape
  never waits on the database): calls by status, live calls, recordings pending and failed,
  alerts (silence and keyword) on live calls and on all kept calls, and signal lag (how long a
  final transcript line took from the end of speech to its row, over the last 5 minutes).

- The desk's (workflows/desk.py, its `snapshot` query, refreshed with the rest; absent until
  a desk has started): calls waiting, longest wait, service level, abandon rate, average wait
  and handle time, the hold-time estimate, outcomes so far, and reps by state.

- The callbacks' (the `callbacks` rows CallbackWorkflow writes, refreshed with the rest):
  callbacks by status (`scheduled`, `dialing`, `completed`, `failed`, `cancelled`), their dial
  attempts by outcome (`ringing` while a call is still being placed), and callbacks overdue
  (still `scheduled` more than `OVERDUE` past their dial time: no worker is dialling them).

- Campaigns' (campaign_numbers, refreshed with the rest): campaigns by state (`active`: not
  ended), and the numbers of the active ones by progress: `remaining`, `ringing` (started, no
  outcome written yet), `answered`, `busy`, `no_answer`, `failed`, `skipped` (do-not-call).

Webhook verification failures and WebSocket subscribers happen in the API process and are on
the API's `/metrics` (`api_webhook_verification_failures_total`, `api_ws_subscribers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

from core.callbacks import ATTEMPT_OUTCOMES, CallbackStatus
from core.desk import Snapshot, Stats
from core.log import get_logger
from core.models import CallStatus, RecordingStatus

log = get_logger("worker.metrics")

REFRESH_S = 5.0
LAG_WINDOW = "5 minutes"
PENDING = [RecordingStatus.RECORDING, RecordingStatus.STOPPING, RecordingStatus.UPLOADING]
LIVE = [s.value for s in CallStatus if s.is_active]

_SNAPSHOT_SQL = """
SELECT
  (SELECT coalesce(jsonb_object_agg(st, n), '{}') FROM
     (SELECT CASE WHEN status IN ('completed', 'cancelled') THEN status ELSE 'active' END AS st,
             count(*) AS n FROM campaigns GROUP BY 1) c) AS campaigns,
  (SELECT coalesce(jsonb_object_agg(o, n), '{}') FROM
     (SELECT CASE WHEN n.outcome <> '' THEN n.outcome WHEN n.call_id <> '' THEN 'ringing'
                  ELSE 'remaining' END AS o, count(*) AS n
        FROM campaign_numbers n JOIN campaigns c USING (campaign_id)
       WHERE c.status NOT IN ('completed', 'cancelled') GROUP BY 1) x) AS campaign_numbers,
  (SELECT coalesce(jsonb_object_agg(status, n), '{}') FROM
     (SELECT status, count(*) AS n FROM calls GROUP BY status) s) AS by_status,
  (SELECT count(*) FROM calls WHERE recording_status = ANY($1::text[])) AS rec_pending,
  (SELECT count(*) FROM calls WHERE recording_status = 'failed') AS rec_failed,
  (SELECT coalesce(sum(silence_alerts), 0) FROM calls WHERE status = ANY($2::text[])) AS live_silence,
  (SELECT coalesce(sum(keyword_alerts), 0) FROM calls WHERE status = ANY($2::text[])) AS live_keyword,
  (SELECT coalesce(sum(silence_alerts), 0) FROM calls) AS all_silence,
  (SELECT coalesce(sum(keyword_alerts), 0) FROM calls) AS all_keyword
"""
OVERDUE = "5 minutes"
_CALLBACKS_SQL = f"""
SELECT
  (SELECT coalesce(jsonb_object_agg(status, n), '{{}}') FROM
     (SELECT status, count(*) AS n FROM callbacks GROUP BY status) s) AS by_status,
  (SELECT coalesce(jsonb_object_agg(outcome, n), '{{}}') FROM
     (SELECT coalesce(a->>'outcome', '') AS outcome, count(*) AS n
      FROM callbacks, jsonb_array_elements(attempts) a GROUP BY 1) o) AS attempts,
  (SELECT count(*) FROM callbacks
   WHERE status = 'scheduled' AND due_at < now() - interval '{OVERDUE}') AS overdue
"""
_LAG_SQL = f"""
SELECT extract(epoch FROM at - (data->>'ended_at')::timestamptz) AS lag
FROM call_events
WHERE kind = 'final_transcript' AND at > now() - interval '{LAG_WINDOW}'
  AND coalesce(data->>'ended_at', '') <> ''
ORDER BY lag
"""


def free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sdk_runtime() -> tuple[Runtime, str]:
    """A Temporal Runtime exporting the SDK's metrics on a loopback port; (runtime, its URL)."""
    bind = f"127.0.0.1:{free_loopback_port()}"
    runtime = Runtime(
        telemetry=TelemetryConfig(
            metrics=PrometheusConfig(bind_address=bind, durations_as_seconds=True)
        )
    )
    return runtime, f"http://{bind}/metrics"


class ProductMetrics(Collector):
    """The product's gauges, from the last snapshot `refresh()` took."""

    def __init__(self, pool: Any, desk: Callable[[], Awaitable[Snapshot | None]] | None = None):
        self.pool = pool
        self.desk = desk
        self.desk_snapshot: Snapshot | None = None
        self.port = 0  # where serve_metrics bound
        self.snapshot: dict[str, Any] = {}
        self.lags: list[float] = []
        self.callbacks: dict[str, Any] = {}
        self.refreshed_at = 0.0

    async def refresh(self) -> None:
        row = await self.pool.fetchrow(_SNAPSHOT_SQL, [s.value for s in PENDING], LIVE)
        lags = await self.pool.fetch(_LAG_SQL)
        self.snapshot = dict(row)
        self.lags = [max(0.0, float(r["lag"])) for r in lags if r["lag"] is not None]
        self.callbacks = dict(await self.pool.fetchrow(_CALLBACKS_SQL))
        if self.desk is not None:
            self.desk_snapshot = await self.desk()
        self.refreshed_at = time.time()

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if not snap:
            return
        by_status = _json(snap["by_status"])
        calls = GaugeMetricFamily("callcenter_calls", "Calls kept, by status", labels=["status"])
        for status in CallStatus:  # fixed label set: every status, 0 when none
            calls.add_metric([status.value], float(by_status.get(status.value, 0)))
        yield calls
        yield GaugeMetricFamily(
            "callcenter_live_calls",
            "Calls waiting for the agent, in progress or ending",
            value=float(sum(by_status.get(s, 0) for s in LIVE)),
        )
        recs = GaugeMetricFamily(
            "callcenter_recordings", "Recordings pending (recording to uploading) and failed",
            labels=["state"],
        )  # fmt: skip
        recs.add_metric(["pending"], float(snap["rec_pending"]))
        recs.add_metric(["failed"], float(snap["rec_failed"]))
        yield recs
        alerts = GaugeMetricFamily(
            "callcenter_alerts", "Alerts raised, on live calls and on all kept calls",
            labels=["kind", "calls"],
        )  # fmt: skip
        alerts.add_metric(["silence", "live"], float(snap["live_silence"]))
        alerts.add_metric(["keyword", "live"], float(snap["live_keyword"]))
        alerts.add_metric(["silence", "all"], float(snap["all_silence"]))
        alerts.add_metric(["keyword", "all"], float(snap["all_keyword"]))
        yield alerts
        lag = GaugeMetricFamily(
            "callcenter_signal_lag_seconds",
            f"End of speech to stored transcript line, over the last {LAG_WINDOW}",
            labels=["quantile"],
        )
        for q in (0.5, 0.95, 1.0):
            lag.add_metric([str(q)], _quantile(self.lags, q))
        yield lag
        yield GaugeMetricFamily(
            "callcenter_metrics_refreshed_timestamp_seconds",
            "When the product metrics were last read from PostgreSQL",
            value=self.refreshed_at,
        )
        if self.callbacks:
            yield from callback_metrics(self.callbacks)
        yield from campaign_metrics(_json(snap["campaigns"]), _json(snap["campaign_numbers"]))
        if self.desk_snapshot is not None:
            yield from desk_metrics(self.desk_snapshot.stats)


CAMPAIGN_PROGRESS = ("remaining", "ringing", "answered", "busy", "no_answer", "failed", "skipped")


def callback_metrics(snap: dict[str, Any]) -> Iterator[Metric]:
    """Callbacks by status and their attempts by outcome: fixed label sets, 0 when none."""
    by_status, attempts = _json(snap["by_status"]), _json(snap["attempts"])
    callbacks = GaugeMetricFamily("callcenter_callbacks", "Callbacks kept, by status",
                                  labels=["status"])  # fmt: skip
    for status in CallbackStatus:
        callbacks.add_metric([status.value], float(by_status.get(status.value, 0)))
    yield callbacks
    tries = GaugeMetricFamily(
        "callcenter_callback_attempts", "Callback dials, by outcome (ringing: not settled yet)",
        labels=["outcome"],
    )  # fmt: skip
    known = {"ringing": attempts.get("", 0), **{o: attempts.get(o, 0) for o in ATTEMPT_OUTCOMES}}
    known["other"] = sum(n for o, n in attempts.items() if o and o not in ATTEMPT_OUTCOMES)
    for outcome, n in known.items():
        tries.add_metric([outcome], float(n))
    yield tries
    yield GaugeMetricFamily(
        "callcenter_callbacks_overdue",
        f"Callbacks still scheduled more than {OVERDUE} past their dial time",
        value=float(snap["overdue"]),
    )


def _json(value: Any) -> dict[str, Any]:
    """A jsonb column as asyncpg gives it (text unless a codec is set on the pool)."""
    import json

    return json.loads(value) if isinstance(value, str) else dict(value)


def campaign_metrics(campaigns: dict[str, Any], numbers: dict[str, Any]) -> Iterator[Metric]:
    """Campaigns by state, and the active ones' numbers by progress (fixed label sets)."""
    by_state = GaugeMetricFamily("callcenter_campaigns", "Campaigns: active (not ended), "
                                 "completed, cancelled", labels=["state"])  # fmt: skip
    for state in ("active", "completed", "cancelled"):
        by_state.add_metric([state], float(campaigns.get(state, 0)))
    yield by_state
    counts = dict.fromkeys(CAMPAIGN_PROGRESS, 0.0)
    for outcome, n in numbers.items():
        key = {"do_not_call": "skipped"}.get(outcome, outcome)
        counts[key if key in counts else "failed"] += float(n)
    progress = GaugeMetricFamily("callcenter_campaign_numbers", "Numbers of the active "
                                 "campaigns, by progress", labels=["progress"])  # fmt: skip
    for key, n in counts.items():
        progress.add_metric([key], n)
    yield progress


def desk_metrics(st: Stats) -> Iterator[Metric]:
    """The desk's figures (core/desk.py: Asterisk's definitions); a figure without data (no
    call answered yet) is left out rather than shown as 0."""
    simple = [
        ("callcenter_desk_waiting", "Calls waiting for a rep", st.waiting),
        ("callcenter_desk_longest_wait_seconds", "The longest current wait", st.longest_wait_s),
        ("callcenter_desk_holdtime_seconds", "Moving average of answered waits", st.holdtime_s),
        ("callcenter_desk_service_level_percent",
         f"Answered within {st.service_level_s:g} s over answered", st.service_level_pct),
        ("callcenter_desk_abandon_rate_percent", "Abandoned over answered and abandoned",
         st.abandon_rate_pct),
        ("callcenter_desk_average_wait_seconds", "Average wait of answered calls",
         st.average_wait_s),
        ("callcenter_desk_average_handle_seconds", "Average time a rep spent on a call",
         st.average_handle_s),
    ]  # fmt: skip
    for name, doc, val in simple:
        if val is not None:
            yield GaugeMetricFamily(name, doc, value=float(val))
    calls = GaugeMetricFamily("callcenter_desk_calls", "Hand-offs so far, by outcome",
                              labels=["outcome"])  # fmt: skip
    for outcome, n in (("answered", st.answered), ("abandoned", st.abandoned),
                       ("timed_out", st.timed_out), ("unstaffed", st.unstaffed)):  # fmt: skip
        calls.add_metric([outcome], float(n))
    yield calls
    reps = GaugeMetricFamily("callcenter_desk_reps", "Reps by state", labels=["state"])
    for state, n in sorted(st.reps_by_state.items()):
        reps.add_metric([state], float(n))
    yield reps


def _quantile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(q * (len(sorted_values) - 1) + 0.5))]


@contextlib.asynccontextmanager
async def serve_metrics(
    host: str,
    port: int,
    pool: Any,
    sdk_url: str | None,
    desk: Callable[[], Awaitable[Snapshot | None]] | None = None,
) -> AsyncIterator[ProductMetrics]:
    """Serve `/metrics` on host:port until the block ends (port 0: a free one, see `.port`)."""
    registry = CollectorRegistry(auto_describe=False)
    product = ProductMetrics(pool, desk)
    registry.register(product)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))

    async def refresher() -> None:
        while True:
            try:
                await product.refresh()
            except Exception as exc:  # the next round tries again; the page keeps the last snapshot
                log.warning("metrics_refresh_failed", error=type(exc).__name__)
            await asyncio.sleep(REFRESH_S)

    async def metrics(_: web.Request) -> web.Response:
        body = await asyncio.to_thread(generate_latest, registry)
        if sdk_url:
            try:
                async with session.get(sdk_url) as resp:
                    body += await resp.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                log.warning("sdk_metrics_unavailable", error=type(exc).__name__)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    task = asyncio.create_task(refresher())
    server: Any = site._server
    bound = int(server.sockets[0].getsockname()[1]) if server is not None else port
    product.port = bound
    log.info("metrics_serving", address=f"{host}:{bound}")
    try:
        yield product
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await runner.cleanup()
        await session.close()
