"""The profile summaries of bench/profile.py, from py-spy's collapsed stacks and the Temporal
server's Prometheus text (no processes: the tiny `calls` run exercises the live path)."""

from __future__ import annotations

from bench.profile import _metrics, summarise_metrics, summarise_stacks

STACKS = "\n".join([
    "<module> (worker.py:160);run (asyncio/runners.py:190);"
    "_append (/x/activities/database.py:80);_execute (/x/site-packages/asyncpg/connection.py:1) 30",
    "<module> (worker.py:160);activate (/x/workflows/call.py:500);"
    "encode (/x/core/codec.py:40) 10",
    "<module> (worker.py:160);run (asyncio/runners.py:190);EpollSelector.select (selectors.py:468) 60",
    "<module> (worker.py:160);activate (/x/workflows/call.py:500) 10",
])  # fmt: skip


def test_stacks_are_summarised_by_component_and_function_leaving_waits_out() -> None:
    text = summarise_stacks(STACKS)
    assert "50 samples while on CPU (60 more in waits left out)" in text
    assert "60.0 %  asyncpg (PostgreSQL)" in text  # asyncpg outranks the activity calling it
    assert "20.0 %  payload codec (encryption)" in text
    assert "20.0 %  workflow code" in text
    assert "60.0 %  _execute (asyncpg/connection.py)" in text  # own samples, path shortened
    # cumulative: the activity and the workflow appear, the event loop's frames do not
    assert "60.0 %  _append (/x/activities/database.py)" in text
    assert "40.0 %  activate (/x/workflows/call.py)" in text
    assert "runners.py" not in text.split("samples under them")[1]


def test_no_samples_says_so() -> None:
    assert "no samples" in summarise_stacks("")


METRICS_BEFORE = """# HELP persistence_latency
persistence_latency_sum{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 1.0
persistence_latency_count{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 100
service_latency_sum{operation="PollWorkflowTaskQueue",service_name="frontend"} 50
service_latency_count{operation="PollWorkflowTaskQueue",service_name="frontend"} 1
"""
METRICS_AFTER = """persistence_latency_sum{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 3.0
persistence_latency_count{namespace="default",operation="UpdateWorkflowExecution",service_name="history"} 1100
persistence_latency_sum{namespace="default",operation="GetCurrentExecution",service_name="history"} 0.5
persistence_latency_count{namespace="default",operation="GetCurrentExecution",service_name="history"} 500
service_latency_sum{operation="PollWorkflowTaskQueue",service_name="frontend"} 500
service_latency_count{operation="PollWorkflowTaskQueue",service_name="frontend"} 10
service_latency_sum{operation="SignalWorkflowExecution",service_name="frontend"} 4
service_latency_count{operation="SignalWorkflowExecution",service_name="frontend"} 500
"""


def test_server_metrics_are_the_delta_over_the_phase_without_long_polls() -> None:
    text = summarise_metrics(_metrics(METRICS_BEFORE), _metrics(METRICS_AFTER), seconds=10)
    persistence, rpcs = text.split("RPCs per operation")
    assert "2.5 s of calls in 10.0 s (0.25 busy on average)" in persistence
    assert "2.00 s     1000 calls      2.0 ms avg  UpdateWorkflowExecution (history)" in persistence
    assert persistence.index("UpdateWorkflowExecution") < persistence.index("GetCurrentExecution")
    assert "SignalWorkflowExecution (frontend)" in rpcs
    assert "PollWorkflowTaskQueue" not in rpcs  # a long poll waits, it does no work
