"""Every benchmark under bench/ runs at a tiny size, so one that no longer finishes (or no longer
prints its figures) fails the suite. Figures are not asserted here: they are for
docs/benchmarks.md, measured at full size."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.settings import ROOT

BENCH_DIR = ROOT / "bench"

# bench module -> (tiny arguments, a line its report must print, seconds it may take)
TINY: dict[str, tuple[list[str], str, int]] = {
    "history_events": (["--lines", "4"], "events/line", 300),
    "recording_store": (["--size-mb", "4", "--rounds", "1"], "result:", 300),
    "api_call_latency": (["--n", "3", "--warmup", "1"], "bare update-with-start", 400),
    "ws_latency": (
        ["--calls", "3", "--rounds", "2", "--period", "1"],
        "keyword alert reaches the dashboard",
        400,
    ),
    "calls": (["--calls", "3", "--lines", "2", "--workers", "2"], "history events per call", 500),
    "ops_retry": (["--n", "2"], "recordings retry --all-failed", 400),
    "metrics_labels": (["--n", "20"], "api_requests_total series", 300),
    "desk": (["--waiting", "5", "--reps", "3", "--n", "3"], "accept -> token: p50", 300),
    "soak": (["--calls", "3", "--rate", "1", "--lines", "4"], "result: PASS", 400),
    "temporal_signals": (
        ["--calls", "3", "--lines", "2", "--period", "0.5"],
        "signal RPC p50",
        300,
    ),
}
# Modules of bench/ that are helpers, not benchmarks.
HELPERS = {"__init__", "stack", "fixtures", "bare", "profile"}


def test_every_benchmark_has_a_tiny_run() -> None:
    benches = {p.stem for p in BENCH_DIR.glob("*.py")} - HELPERS
    assert benches == set(TINY), "add the new benchmark to TINY (or to HELPERS if it is one)"


@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_finishes_at_tiny_size(name: str, tmp_path: Path) -> None:
    args, expect, timeout = TINY[name]
    if name == "calls":  # its profiler (py-spy, the Temporal server's metrics) runs too
        args = [*args, "--profile", str(tmp_path)]
    done = subprocess.run(
        [sys.executable, "-m", f"bench.{name}", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    out = done.stdout + done.stderr[-3000:]
    # recording_store exits 1 when a target is missed: at 4 MiB its ratio means nothing.
    assert done.returncode == 0 or (name == "recording_store" and done.returncode == 1), out
    assert expect in done.stdout, out
    if name == "calls":
        assert "lost 0, doubled 0, calls not completed 0" in done.stdout, out
        assert "keyword alert reaches the dashboard" in done.stdout, out
        summary = (tmp_path / "product.txt").read_text()
        assert "-- worker-1 (py-spy" in summary and "UpdateWorkflowExecution" in summary, summary
        assert (tmp_path / "bare.txt").exists()
