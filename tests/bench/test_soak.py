"""The soak's own check: calls whose `egress_ended` webhook never comes wait for the egress-end
timeout, and the soak must say so and fail (its pass at tiny size is in test_benchmarks.py)."""

from __future__ import annotations

import os
import subprocess
import sys

from core.settings import ROOT


def test_soak_fails_a_call_that_waited_for_the_egress_end_timeout() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.soak", "--calls", "2", "--rate", "1", "--lines", "2",
         "--drop-webhook", "egress_ended:1", "--egress-end-timeout", "3"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=400,
    )  # fmt: skip
    out = done.stdout + done.stderr[-3000:]
    assert done.returncode == 1, out
    assert "result: FAIL (1 calls with problems)" in done.stdout, out
    assert "timeout path: egress-end timeout ran out, asked LiveKit" in done.stdout, out
    # The other call passed every check, and the late one was still stored and verified.
    assert "2 completed, 2 recordings stored, 2 verified" in done.stdout, out
