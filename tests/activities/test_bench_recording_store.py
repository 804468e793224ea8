"""bench/recording_store.py runs at a tiny size from both sources (its own assertions check the
stored SHA-256 and, for staging, that the staging copy is gone); the figures are not judged."""

from __future__ import annotations

import pytest

from bench.recording_store import main


@pytest.mark.parametrize("source", ["http", "staging"])
async def test_the_benchmark_runs_at_a_tiny_size(
    source: str, capsys: pytest.CaptureFixture[str]
) -> None:
    await main(8, 1, source)  # PASS/FAIL on the targets is for real sizes
    out = capsys.readouterr().out
    assert f"source:                    {source}" in out and "peak RSS growth" in out
